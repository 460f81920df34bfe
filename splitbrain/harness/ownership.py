"""Who owns what a run creates, so that `splitbrain cleanup` ends only what a dead harness left.

An owner is one harness process, named by (host, boot id, pid, start time): the start time is
field 22 of /proc/<pid>/stat (clock ticks since boot), so a pid that the kernel reused for another
process never passes for the owner, and the boot id tells a pid of an earlier boot apart. An owner
is alive when a process with that pid and that start time exists on this host and boot.

What a run records (the contract `cleanup` relies on):
  - the registry (`registry_dir()`, /run/splitbrain as root): `run-<pid>-<start>.json` holding
    the owner and the run directory, written when a run starts and removed when it ends. The
    netns backend's `netns-<ID>.json` state files live there too, with the same owner.
  - the run directory: `running.json` (the run marker: the owner; removed at the end, so a run
    directory that still has it after its owner died was cut short, e.g. by SIGKILL) and
    `pids.jsonl`, one line per node process started: node, pid, pgid, start time. Cleanup kills a
    recorded process group only while a member of it has a start time at or after the recorded
    leader's, and the leader pid (if it exists) still has the recorded start time.
  - Docker containers and networks: the label `io.splitbrain.owner` = `owner_id()`.
  - SSH hosts (backends/ssh.py): `<dir>/run-<ID>-<node>/splitbrain-run.json` on each host holds
    the owner (`me()` of the controller), judged here by `owner_state` when `cleanup --hosts`
    runs on the same controller; another controller's runs are "unknown" and left.

`SPLITBRAIN_STATE_DIR` overrides the registry directory (tests use a private one).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

REGISTRY_ROOT = "/run/splitbrain"
RUN_MARKER = "running.json"
PIDS_FILE = "pids.jsonl"
OWNER_LABEL = "io.splitbrain.owner"
KILL_WAIT_S = 5.0
PR_SET_PDEATHSIG = 1


def registry_dir() -> Path:
    """Where runs register themselves: $SPLITBRAIN_STATE_DIR, /run/splitbrain as root, else
    $XDG_RUNTIME_DIR/splitbrain or /tmp/splitbrain-<uid>."""
    env = os.environ.get("SPLITBRAIN_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path(REGISTRY_ROOT)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "splitbrain" if xdg else Path(f"/tmp/splitbrain-{os.geteuid()}")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from field 3 (state) on; None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw.rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None when it does not exist."""
    f = _stat_fields(pid)
    return int(f[19]) if f and len(f) > 19 else None


def _state_pgid(pid: int) -> tuple[str, int, int] | None:
    """(state letter, pgid, start time) of a process, None when it does not exist."""
    f = _stat_fields(pid)
    if not f or len(f) <= 19:
        return None
    return f[0], int(f[2]), int(f[19])


def me() -> dict:
    """This process as an owner record."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": boot_id(), "pid": pid,
            "start": start_time(pid)}


def owner_id(owner: dict | None = None) -> str:
    """An owner as one string (a Docker label value): HOST/BOOT/PID/START."""
    o = owner or me()
    return f"{o['host']}/{o['boot']}/{o['pid']}/{o['start']}"


def parse_owner_id(text: str) -> dict | None:
    parts = text.split("/")
    if len(parts) != 4:
        return None
    try:
        return {"host": parts[0], "boot": parts[1], "pid": int(parts[2]),
                "start": int(parts[3]) if parts[3] not in ("", "None") else None}
    except ValueError:
        return None


def owner_state(owner: dict | None) -> tuple[str, str]:
    """("alive" | "dead" | "unknown", why) for an owner record.

    "unknown": it cannot be judged from here (another host, no pid recorded): leave its things.
    A record without a start time (written by an older splitbrain) counts as alive while its
    pid exists: a reused pid then keeps things alive, never the other way round."""
    if not owner or not isinstance(owner.get("pid"), int):
        return "unknown", "no owner recorded"
    host = owner.get("host")
    if host and host != socket.gethostname():
        return "unknown", f"owner is on host {host}"
    pid = owner["pid"]
    boot = owner.get("boot")
    if boot and boot != boot_id():
        return "dead", f"owner pid {pid} ran before this machine's last boot"
    st = _state_pgid(pid)
    if st is None or st[0] == "Z":
        return "dead", f"owner pid {pid} is gone"
    if owner.get("start") is not None and st[2] != owner["start"]:
        return "dead", f"owner pid {pid} is gone (the pid now belongs to another process)"
    return "alive", f"owner pid {pid} is alive"


# ---- the run marker and the registry -------------------------------------------------------------

def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunRegistration:
    """The run marker in the run directory plus the registry entry; `close()` removes both.

    Registration failures (a read-only /run, ...) never stop a run: the run directory's marker
    and pids.jsonl are what matter, the registry only lets `cleanup` find them without a store.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir).resolve()
        self.owner = me()
        self.marker = self.run_dir / RUN_MARKER
        self.entry = registry_dir() / f"run-{self.owner['pid']}-{self.owner['start']}.json"
        record = {"owner": self.owner, "run_dir": str(self.run_dir),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_json_atomic(self.marker, record)
        try:
            self.entry.parent.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self.entry, record)
        except OSError:
            self.entry = None

    def close(self) -> None:
        """The run ended (any way but a killed harness): its marker and registry entry go."""
        for p in (self.marker, self.entry):
            if p is not None:
                try:
                    p.unlink()
                except OSError:
                    pass


def read_marker(run_dir: str | os.PathLike) -> dict | None:
    """The run marker of a run directory (None: the run ended, or it predates markers)."""
    try:
        data = json.loads((Path(run_dir) / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def registered_runs() -> Iterator[tuple[Path, dict]]:
    d = registry_dir()
    if not d.is_dir():
        return
    for f in sorted(d.glob("run-*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        yield f, data if isinstance(data, dict) else {}


# ---- node processes ------------------------------------------------------------------------------

class ProcessLedger:
    """pids.jsonl in a run directory: every node process started, one JSON line each."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / PIDS_FILE
        self.last_start: int | None = None

    def add(self, node: str, pid: int, **extra: Any) -> None:
        """Record a process that leads its own group (start_new_session); `last_start` is its
        start time."""
        self.last_start = start_time(pid)
        rec = {"node": node, "pid": pid, "pgid": pid, "start": self.last_start, **extra}
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError:
            pass     # cleanup loses this entry; the run itself goes on (its teardown kills it)


def read_ledger(run_dir: str | os.PathLike) -> list[dict]:
    """The records of pids.jsonl (a torn last line, from a killed harness, is skipped)."""
    try:
        lines = (Path(run_dir) / PIDS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("pgid"), int):
            out.append(rec)
    return out


def group_members(pgid: int, leader_start: int | None) -> list[int]:
    """Live processes of process group `pgid` that belong to the group a node started as.

    The group is ours when its leader pid (if it still exists) has the recorded start time; a
    member must have started no earlier than the leader (a group number is only reused after
    every member is gone, so later members of a reused number fail one of the two tests)."""
    if leader_start is None:
        return []
    lead = _state_pgid(pgid)
    if lead is not None and lead[2] != leader_start:
        return []                     # the pid was reused: not our group
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _state_pgid(int(entry))
        if st is None or st[0] == "Z" or st[1] != pgid or st[2] < leader_start:
            continue
        out.append(int(entry))
    return out


def kill_group(pgid: int, leader_start: int | None) -> list[int]:
    """SIGKILL what is left of a recorded node's process group; returns the pids signalled."""
    pids = group_members(pgid, leader_start)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return pids


# ---- the first line of defence: die with the harness ---------------------------------------------

_SETPRIV: list[str | None] = []     # cached: the setpriv that knows --pdeathsig, or None


def _setpriv() -> str | None:
    if not _SETPRIV:
        import shutil
        import subprocess
        path = shutil.which("setpriv")
        ok = False
        if path:
            try:
                ok = "--pdeathsig" in subprocess.run([path, "--help"], capture_output=True,
                                                     text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                ok = False
        _SETPRIV.append(path if ok else None)
    return _SETPRIV[0]


def pdeathsig_launch(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that start `argv` with PR_SET_PDEATHSIG = SIGKILL: through util-linux's
    `setpriv --pdeathsig KILL` when there is one (it keeps subprocess's fast spawn path: a
    preexec_fn forces a full fork of the harness, 15-25 ms of the caller's thread), else
    through pdeathsig_preexec(). Unchanged when disabled (SPLITBRAIN_NO_PDEATHSIG)."""
    if os.environ.get("SPLITBRAIN_NO_PDEATHSIG"):
        return argv, None
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
    return argv, pdeathsig_preexec()

def pdeathsig_preexec() -> Callable[[], None] | None:
    """A `preexec_fn` that asks the kernel to SIGKILL the child when the thread that started it
    dies (PR_SET_PDEATHSIG), so that nodes ignoring EOF do not outlive a SIGKILLed harness.

    The signal follows the THREAD that forked the child: start nodes only from a thread that lives
    as long as the run (the local backend's loop thread). None where prctl is unavailable or when
    SPLITBRAIN_NO_PDEATHSIG is set (tests of the cleanup path); `cleanup` works without it.
    """
    if os.environ.get("SPLITBRAIN_NO_PDEATHSIG") or not os.path.exists("/proc/self/stat"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl   # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:     # the harness died before prctl took effect
            os._exit(1)
    return preexec
