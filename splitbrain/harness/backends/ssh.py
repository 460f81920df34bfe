"""The `ssh` backend: nodes run on remote hosts driven over SSH (Jepsen's model), one node per
host (`--hosts hosts.toml` or `--host n1=user@addr ...`; ssh_hosts.py parses them and holds
the ONE connection per host every operation goes through).

What runs where, per host (one folder per run and node: `<dir>/run-<ID>-<node>/`, ID unique per
run):
  splitbrain-run.json   the run's marker on the host: the controller's owner record
                        (ownership.me(): host, boot, pid, start time), the run id, the chain
  runtime/              the in-house node runtime (splitbrain's .py files, uploaded at start);
                        a `--bin` node also runs under it (the TCP shim)
  bin/                  a `--bin` program and each argument naming a local file, uploaded
  node.pid, node.exit   the node's process-group leader "PID START" and, when it ends by
                        itself, its exit status
  node.log              the node's stdout and stderr (downloaded to nodes/<n>/node.log at
                        teardown and when a node exits unexpectedly)
  data/                 the node's data directory
A database (dbs/cluster.py, `--db NAME --backend ssh`) runs the adapter's command unchanged: its
files, written locally into nodes/<n>/ by the adapter's setup_node, are uploaded into the host's
folder and every argument or config line naming nodes/<n>/ is rewritten to the host's copy. Its
Debian packages must be installed on the host: start checks the adapter's BINARIES there and
fails naming the host and the `apt-get install` line (the backend does not run apt-get on a
machine it does not own; on the test fleet the hosts share this machine's filesystem).

Processes: a node is started detached (`setsid -f`, stdio to files), leading its own process
group, so kill (SIGKILL), pause/resume (SIGSTOP/SIGCONT) reach everything it started. A process is
only ever signalled when its start time (/proc/PID/stat field 22) still matches the one
recorded: a reused pid is never hit.

Faults: iptables on each host (`iptables -w`, waiting for the xtables lock), in a chain of the
run's own, SB-<ID>, jumped to from INPUT by one rule tagged `--comment splitbrain-<ID>`;
teardown deletes exactly that rule and that chain and leaves the host's other chains alone. A
partition drops packets from the peers' addresses only, so the harness's own connections (the
controller is not a peer) still work. Clock offsets: the in-house runtime's clock file and
control message (as on netns); a database refuses clock faults as on every backend.

Teardown (always, in `finally`; per host in parallel): nodes killed, the chain and its jump
removed, node logs (and a database's data, as data.tar.gz) downloaded into the store, the run's
folder deleted, the connection closed. A controller killed outright cannot do this: the marker
stays, and `splitbrain cleanup --hosts hosts.toml` (cleanup_hosts) removes every run on those
hosts whose controller is gone (ownership.owner_state), and leaves live runs' and other
controllers' things, saying why.

Connection failures are harness errors: a host that cannot be reached at start fails the start
naming it (exit 4), and a session lost during the run (a watcher looks every WATCH_S) stops the
run with `fatal` naming the host (the runner turns it into exit 4, not a verdict).
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from ...systems.runtime import CLOCK_FILE, RECORDS_FILE
from .ssh_hosts import HostSpec, SshError, SshHost, connect_all, q
from .tcp_cluster import NODE_PORT, TcpClusterBackend

MARKER = "splitbrain-run.json"
RUN_PREFIX = "run-"
CHAIN_PREFIX = "SB-"
COMMENT_PREFIX = "splitbrain-"
KILL_WAIT_S = 10.0
LAUNCH_WAIT_S = 5.0
WATCH_S = 1.0
MIN_PYTHON = (3, 11)


def chain_name(run_id: str) -> str:
    return f"{CHAIN_PREFIX}{run_id}"


def remote_run_dir(spec: HostSpec, run_id: str) -> str:
    return f"{spec.dir.rstrip('/')}/{RUN_PREFIX}{run_id}-{spec.node}"


def runtime_tarball() -> bytes:
    """splitbrain's Python files as a tar.gz (the in-house node runtime and the TCP shim need
    only the standard library and the package itself)."""
    root = Path(__file__).resolve().parents[2]      # .../splitbrain
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for p in sorted(root.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            tar.add(p, arcname=str(Path("splitbrain") / p.relative_to(root)), recursive=False)
    return buf.getvalue()


# ---- shell snippets run on the hosts ---------------------------------------------------------

def _launch_script(rdir: str, argv: list[str], env: dict[str, str]) -> str:
    """Start argv detached in rdir, leading its own process group; print "PID START".
    The group leader is a small sh that records its pid and start time, runs the node, and
    records the node's exit status (a node that ends by itself is a crash to report)."""
    inner = ('echo "$$ $(cut -d" " -f22 /proc/$$/stat)" > node.pid.tmp && '
             'mv node.pid.tmp node.pid; "$@"; echo $? > node.exit')
    envs = " ".join(f"{k}={q(v)}" for k, v in env.items())
    return (f"cd {q(rdir)} && rm -f node.pid node.exit && "
            f"{envs + ' ' if envs else ''}setsid -f /bin/sh -c {q(inner)} splitbrain-node "
            f"{' '.join(q(a) for a in argv)} </dev/null >>node.log 2>&1; "
            f"i=0; while [ ! -s node.pid ] && [ $i -lt {int(LAUNCH_WAIT_S * 100)} ]; do "
            f"sleep 0.01; i=$((i+1)); done; cat node.pid")


def _is_ours(pid: int, start: int) -> str:
    """A test that pid is alive (not a zombie) and still the process that started at `start`."""
    return (f"[ \"$(cut -d' ' -f3,22 /proc/{pid}/stat 2>/dev/null)\" != \"Z {start}\" ] && "
            f"[ \"$(cut -d' ' -f22 /proc/{pid}/stat 2>/dev/null)\" = \"{start}\" ]")


def _group_alive(pgid: int, start: int) -> str:
    """A test that some live (non-zombie) process is in process group pgid and started no
    earlier than its leader (ownership.group_members' rule: a reused group number fails it)."""
    # cat, not awk on the files: gawk stops at a file that vanished mid-scan, cat goes on.
    return (f"cat /proc/[0-9]*/stat 2>/dev/null | awk -v g={pgid} -v s={start} "
            f"'$5==g && $3!=\"Z\" && $22>=s {{f=1}} END {{exit !f}}'")


def _signal_group(pgid: int, start: int, sig: str) -> str:
    """Signal every member of the group (dash's `kill` takes no negative pid: one by one)."""
    return (f"for p in $(cat /proc/[0-9]*/stat 2>/dev/null | awk -v g={pgid} -v s={start} "
            f"'$5==g && $22>=s {{print $1}}'); do kill -{sig} $p 2>/dev/null; done")


def _kill_script(pid: int, start: int, wait_s: float = KILL_WAIT_S) -> str:
    """SIGKILL the group pid led (members that started no earlier than the recorded leader),
    again until no live member is left. Exit 0 when the group is gone, 1 when it is still
    there after wait_s."""
    n = int(wait_s / 0.02)
    kill = _signal_group(pid, start, "KILL")
    return (f"{kill}; i=0; while {_group_alive(pid, start)} && [ $i -lt {n} ]; do "
            f"sleep 0.02; {kill}; i=$((i+1)); done; ! {_group_alive(pid, start)}")


def _unhook_script(run_id: str) -> str:
    """Remove the run's INPUT jump (every copy) and its chain; nothing else."""
    ch, tag = chain_name(run_id), f"{COMMENT_PREFIX}{run_id}"
    return (f"while iptables -w -D INPUT -m comment --comment {tag} -j {ch} 2>/dev/null; "
            f"do :; done; iptables -w -F {ch} 2>/dev/null; iptables -w -X {ch} 2>/dev/null; "
            f"! iptables -w -S {ch} >/dev/null 2>&1")


class SshNodes:
    """Nodes on SSH hosts: the process, iptables and file operations of TcpClusterBackend
    (mixed in before it). The subclass gives `_node_argv(n)` and `_node_env(n)`."""

    specs: dict[str, HostSpec]
    hosts: dict[str, SshHost]
    id: str
    fatal: str | None
    on_fatal: Callable[[], None] | None
    ship_runtime = True

    def _ssh_init(self, specs: dict[str, HostSpec]) -> None:
        import random
        self.specs = {n: specs[n] for n in self.nodes}
        self.id = f"{random.Random().randrange(16 ** 6):06x}"
        self.chain = chain_name(self.id)
        self.rdir = {n: remote_run_dir(s, self.id) for n, s in self.specs.items()}
        self.addr = {n: (s.address, NODE_PORT) for n, s in self.specs.items()}
        self.hosts = {}
        self.pids: dict[str, tuple[int, int]] = {}
        self.fatal = None
        self.on_fatal = None
        self._watch_stop = threading.Event()
        self.timings: dict[str, float] = {}
        self._uploaded: set[str] = set()

    def _each(self, fn: Callable[[str], object], nodes: Sequence[str] | None = None) -> dict:
        """fn(node) for every node's host at once; the first error (node order) is raised."""
        nodes = list(nodes or self.nodes)
        with ThreadPoolExecutor(max(1, len(nodes)), thread_name_prefix="splitbrain-ssh") as ex:
            futs = {n: ex.submit(fn, n) for n in nodes}
        out, errs = {}, []
        for n in nodes:
            try:
                out[n] = futs[n].result()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errs.append(e)
        if errs:
            raise errs[0]
        return out

    # ---- infrastructure -----------------------------------------------------------------------

    def _setup_infra(self) -> None:
        from ..ownership import me
        t0 = time.monotonic()
        try:
            self.hosts = connect_all([self.specs[n] for n in self.nodes])
        except SshError as e:
            raise RuntimeError(str(e)) from None
        t1 = time.monotonic()
        marker = {"run": self.id, "owner": me(), "chain": self.chain,
                  "controller_run_dir": str(self.run_dir),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tgz = runtime_tarball() if self.ship_runtime else b""

        def prepare(n: str) -> None:
            h, d = self.hosts[n], self.rdir[n]
            # The folder and its marker in one command: whatever follows, `cleanup --hosts` can
            # find and undo it.
            h.run(f"mkdir -p {q(d)}/data && printf '%s\\n' "
                  f"{q(json.dumps({**marker, 'node': n}))} > {q(d)}/{MARKER} && "
                  "{ command -v iptables >/dev/null && command -v setsid >/dev/null || "
                  "{ echo 'iptables and setsid are needed (apt-get install iptables "
                  "util-linux)'; exit 1; }; }")
            if tgz:
                h.put_bytes(tgz, f"{d}/runtime.tgz")
                h.run(f"mkdir -p {q(d)}/runtime && tar -xzf {q(d)}/runtime.tgz -C "
                      f"{q(d)}/runtime && rm -f {q(d)}/runtime.tgz && "
                      "{ python3 -c 'import sys; sys.exit(sys.version_info < "
                      f"{MIN_PYTHON!r})' 2>/dev/null || {{ echo 'python3 >= "
                      f"{'.'.join(map(str, MIN_PYTHON))} is needed for the node runtime'; "
                      "exit 1; }; }")
            self._prepare_host(n)
        try:
            self._each(prepare)
        except SshError as e:
            raise RuntimeError(str(e)) from None
        self.timings.update(connect_s=t1 - t0, upload_s=time.monotonic() - t1)
        threading.Thread(target=self._watch, name="splitbrain-ssh-watch", daemon=True).start()
        self._log(f"ssh: run {self.id} on "
                  + ", ".join(f"{n}={s.user}@{s.address}" for n, s in self.specs.items())
                  + f" (connected in {t1 - t0:.2f} s, set up in "
                    f"{self.timings['upload_s']:.2f} s)")

    def _prepare_host(self, n: str) -> None:
        """Per-host set-up after the runtime is there (a subclass: --bin upload, db checks)."""

    def _watch(self) -> None:
        """A lost session (the connection closed or reset) is a harness error naming the host
        (`fatal`), found within WATCH_S. A host that goes silent without closing shows as a
        command that does not finish within ssh_hosts.COMMAND_TIMEOUT_S (also exit 4)."""
        while not self._watch_stop.wait(WATCH_S):
            for n, h in self.hosts.items():
                if not h.alive() and self.fatal is None and not self._torn_down:
                    self.fatal = f"{h.label}: the SSH session was lost"
                    self._log(self.fatal)
                    if self.on_fatal is not None:
                        self.on_fatal()

    def _teardown_infra(self) -> None:
        self._watch_stop.set()

        def one(n: str) -> None:
            h = self.hosts.get(n)
            if h is None or not h.alive():
                self._log(f"{self.specs[n].label}: unreachable at teardown; `splitbrain cleanup "
                          f"--hosts ...` removes run {self.id} there")
                return
            try:
                try:
                    self._kill_process(n)
                except RuntimeError as e:      # still alive: logged, the rest goes on
                    self._log(f"{n}: {e}")
                h.run(_unhook_script(self.id), check=False)
                self._fetch(n)
                h.run(f"rm -rf {q(self.rdir[n])}", check=False)
            except SshError as e:
                self._log(f"{e}; `splitbrain cleanup --hosts ...` removes run {self.id} there")
        try:
            self._each(one, [n for n in self.nodes if n in self.hosts])
        finally:
            for h in self.hosts.values():
                h.close()

    def _fetch(self, n: str) -> None:
        """Download what the store keeps of the node: node.log (and, for a subclass, more)."""
        try:
            self.hosts[n].get(f"{self.rdir[n]}/node.log", self.node_dir(n) / "node.log")
        except SshError as e:
            self._log(f"{n}: node.log not downloaded: {e}")

    def collect_logs(self) -> None:
        """Download every node's log now (teardown does it too)."""
        for n in self.nodes:
            if n in self.hosts and self.hosts[n].alive():
                self._fetch(n)

    # ---- processes ----------------------------------------------------------------------------

    def _node_env(self, n: str) -> dict[str, str]:
        return {"PYTHONPATH": f"{self.rdir[n]}/runtime"}

    def _node_argv(self, n: str) -> list[str]:
        raise NotImplementedError

    def _launch(self, n: str) -> None:
        assert not self._process_alive(n), f"{n} is running"
        _, out, _ = self.hosts[n].run(_launch_script(self.rdir[n], self._node_argv(n),
                                                     self._node_env(n)))
        parts = out.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise RuntimeError(f"{self.specs[n].label}: the node did not start (no pid within "
                               f"{LAUNCH_WAIT_S:.0f} s)")
        self.pids[n] = (int(parts[0]), int(parts[1]))
        self._log(f"{n}: started pid {parts[0]} on {self.specs[n].address}")

    def _kill_process(self, n: str) -> None:
        if n not in self.pids:
            return
        pid, start = self.pids[n]
        rc, _, _ = self.hosts[n].run(_kill_script(pid, start), check=False,
                                     timeout_s=KILL_WAIT_S + 10)
        if rc != 0:
            raise RuntimeError(f"{n}: still alive {KILL_WAIT_S} s after SIGKILL on "
                               f"{self.specs[n].label}")

    def _signal(self, n: str, sig: str) -> None:
        if n not in self.pids:
            return
        pid, start = self.pids[n]
        self.hosts[n].run(f"if {_is_ours(pid, start)}; then {_signal_group(pid, start, sig)}; "
                          f"fi", check=False)

    def _pause_process(self, n: str) -> None:
        self._signal(n, "STOP")

    def _resume_process(self, n: str) -> None:
        self._signal(n, "CONT")

    def _process_alive(self, n: str) -> bool:
        if n not in self.pids or n not in self.hosts:
            return False
        pid, start = self.pids[n]
        rc, _, _ = self.hosts[n].run(_is_ours(pid, start), check=False)
        return rc == 0

    def alive(self) -> list[int]:
        return [self.pids[n][0] for n in self.nodes if self._process_alive(n)]

    def _exit_code(self, n: str) -> int | None:
        """(LOOP THREAD, after an unexpected exit) the node's exit status; its log is
        downloaded now, so that the crash report shows its last lines."""
        self._fetch(n)
        rc, out, _ = self.hosts[n].run(f"cat {q(self.rdir[n])}/node.exit", check=False)
        return int(out.strip()) if rc == 0 and out.strip().lstrip("-").isdigit() else None

    # ---- iptables: the run's own chain --------------------------------------------------------

    def _iptables(self, n: str, args: list[str], check: bool = True) -> bool:
        rc, _, _ = self.hosts[n].run("iptables -w " + " ".join(q(a) for a in args),
                                     check=check)
        return rc == 0

    def _install_chain(self, node: str) -> None:
        """The run's chain and its tagged jump from INPUT (unless there), then the rules: one
        round trip."""
        ch, tag = self.chain, f"{COMMENT_PREFIX}{self.id}"
        self.hosts[node].run(
            f"{{ iptables -w -S {ch} >/dev/null 2>&1 || iptables -w -N {ch}; }} && "
            f"{{ iptables -w -C INPUT -m comment --comment {tag} -j {ch} 2>/dev/null || "
            f"iptables -w -I INPUT -m comment --comment {tag} -j {ch}; }} && "
            + self._rules_script(node))

    def _rules_script(self, node: str) -> str:
        ch = self.chain
        cmds = [f"iptables -w -F {ch}"]
        for src in sorted(self.grudge.get(node, ())):
            cmds.append(f"iptables -w -A {ch} -s {q(self.addr[src][0])} -j DROP")
        if self.loss > 0:
            for src in self.nodes:
                if src != node:
                    cmds.append(f"iptables -w -A {ch} -s {q(self.addr[src][0])} -m statistic "
                                f"--mode random --probability {self.loss:.4f} -j DROP")
        return " && ".join(cmds)

    def _apply_rules(self, node: str) -> None:
        self.hosts[node].run(self._rules_script(node))

    def partition(self, grudge) -> None:
        """Every host's rules at once (one round trip each, in parallel); a node that is down
        gets them too (harmless: its restart rewrites them)."""
        self.grudge = {n: frozenset(v) for n, v in grudge.items()}
        self._each(self._apply_rules)

    def set_network(self, loss: float = 0.0, latency_ms: tuple[int, int] = (0, 0),
                    duplicate: float = 0.0) -> None:
        """As TcpClusterBackend's, with every host's rules rewritten at once (one round trip
        each, in parallel) instead of a liveness probe and a rewrite per node in turn."""
        assert 0.0 <= loss <= 1.0 and 0.0 <= duplicate <= 1.0
        assert 0 <= latency_ms[0] <= latency_ms[1]
        self.loss = loss
        self.latency_ms, self.duplicate = (int(latency_ms[0]), int(latency_ms[1])), duplicate
        self._each(self._apply_rules)
        for n in self.nodes:
            if self.loop.call(lambda n=n: self.conns[n].up):
                self._send_net(n)

    def drop_counters(self) -> dict[str, int]:
        """Packets each host's kernel dropped in the run's chain (evidence for tests)."""
        out = {}
        for n in self.nodes:
            _, text, _ = self.hosts[n].run(f"iptables -w -L {self.chain} -v -n -x", check=False)
            out[n] = sum(int(p[0]) for p in (line.split() for line in text.splitlines()[2:])
                         if len(p) > 2 and p[2] == "DROP")
        return out


class SshBackend(SshNodes, TcpClusterBackend):
    """In-house runtime or --bin nodes on SSH hosts (see the module docstring)."""

    name = "ssh"

    def __init__(self, nodes: Sequence[str], specs: dict[str, HostSpec], run_dir, *,
                 node_args: list[str], in_house: bool = True, bin_path: str | None = None,
                 bin_args: Sequence[str] = (), seed: int = 0,
                 logger: Callable[[str], None] | None = None):
        """`node_args`: the arguments after `python3 -m splitbrain.systems.node` for an
        in-house node (factory.in_house_args: no --data, no network flags). For --bin:
        `bin_path` (a path: uploaded; a bare name: the host's own program) and `bin_args`
        (each naming an existing local file is uploaded and rewritten)."""
        super().__init__(nodes, run_dir, in_house=in_house, logger=logger, seed=seed)
        missing = [n for n in self.nodes if n not in specs]
        if missing:
            raise RuntimeError(f"no host for node {missing[0]} (give one per node: --hosts or "
                               f"--host {missing[0]}=USER@ADDRESS)")
        self._ssh_init(specs)
        self.node_args = list(node_args)
        self.bin_path = bin_path
        self.bin_args = list(bin_args)
        self._bin_argv: dict[str, list[str]] = {}

    def _prepare_host(self, n: str) -> None:
        if self.in_house:
            return
        h, d = self.hosts[n], self.rdir[n]
        argv: list[str] = []
        uploads: list[tuple[Path, str]] = []
        if "/" in str(self.bin_path):
            p = Path(self.bin_path).resolve()
            argv.append(f"{d}/bin/{p.name}")
            uploads.append((p, argv[0]))
        else:
            argv.append(str(self.bin_path))      # the host's own interpreter or program
        for k, a in enumerate(self.bin_args):
            p = Path(a)
            if a and not a.startswith("-") and p.is_file():
                argv.append(f"{d}/bin/args/{k}/{p.name}")
                uploads.append((p.resolve(), argv[-1]))
            else:
                argv.append(a)
        for local, remote in uploads:
            h.run(f"mkdir -p {q(str(Path(remote).parent))}")
            h.put(local, remote)
            h.run(f"chmod +x {q(remote)}" if local.stat().st_mode & 0o111 else "true")
        self._bin_argv[n] = argv

    def _node_argv(self, n: str) -> list[str]:
        net = ["--listen", f"{self.addr[n][0]}:{NODE_PORT}", *self.peer_args()]
        if self.in_house:
            return ["python3", "-m", "splitbrain.systems.node", *self.node_args,
                    "--data", f"{self.rdir[n]}/data", *net]
        return ["python3", "-m", "splitbrain.systems.tcp_shim", *net, "--", *self._bin_argv[n]]

    def supports(self, ability: str) -> bool:
        return TcpClusterBackend.supports(self, ability)

    def kill(self, node: str, lose_unsynced: bool = False) -> dict:
        self.loop.call(lambda: self._expected.add(node))
        self.loop.call(lambda: self._disconnect(node))
        self._kill_process(node)
        out = {"node": node}
        if lose_unsynced and self.in_house:
            # The runtime's own cut, run on the host against the node's records file.
            path = f"{self.rdir[node]}/data/{RECORDS_FILE}"
            code = ("import sys; from splitbrain.systems.runtime import cut_to_last_sync; "
                    "print(cut_to_last_sync(sys.argv[1]))")
            _, text, _ = self.hosts[node].run(
                f"PYTHONPATH={q(self.rdir[node] + '/runtime')} python3 -c {q(code)} {q(path)}")
            out["lost_bytes"] = int(text.strip().splitlines()[-1])
        self._log(f"{node}: killed {out}")
        return out

    def set_clock(self, node: str, offset_ms: int) -> None:
        if not self.in_house:
            raise RuntimeError("clock offsets need an in-house node (the runtime's clock control)")
        self.hosts[node].run(f"echo {int(offset_ms)} > {q(self.rdir[node])}/data/{CLOCK_FILE}")
        if self.loop.call(lambda: self.conns[node].up):
            try:
                self.control(node, {"type": "splitbrain_clock", "offset_ms": int(offset_ms)},
                             timeout_s=2.0)
            except TimeoutError:
                pass


# ---- cleanup of dead runs on hosts ------------------------------------------------------------

def cleanup_hosts(specs: dict[str, HostSpec], log: Callable[[str], None] = print, *,
                  all_: bool = False, dry_run: bool = False,
                  left: list[str] | None = None) -> int:
    """Remove what dead runs left on each host: for every run folder under the host's `dir`
    whose marker names a controller that is gone (ownership.owner_state; `all_`: every run),
    the node's process group (only if its leader still has the recorded start time), the run's
    iptables chain and its tagged jump, and the folder. Returns the items removed (or, dry,
    that would be). SshError naming a host that cannot be reached."""
    from ..ownership import owner_state
    left = left if left is not None else []
    hosts = connect_all(list(specs.values()))
    removed = 0
    verb = "would remove" if dry_run else "removed"
    try:
        for n, h in hosts.items():
            base = specs[n].dir.rstrip("/")
            _, out, _ = h.run(f"for f in {q(base)}/{RUN_PREFIX}*/{MARKER}; do "
                              f"[ -f \"$f\" ] && printf '%s\\t' \"$f\" && tr -d '\\n' < \"$f\" "
                              f"&& echo; done", check=False)
            for line in out.splitlines():
                path, _, text = line.partition("\t")
                folder = path.rsplit("/", 1)[0]
                try:
                    marker = json.loads(text)
                except ValueError:
                    left.append(f"{h.label}: {folder}: unreadable marker")
                    continue
                status, why = owner_state(marker.get("owner"))
                if status != "dead" and not all_:
                    left.append(f"{h.label}: run {marker.get('run')} ({folder}): {why}")
                    continue
                run_id = str(marker.get("run", ""))
                if not run_id.isalnum():
                    left.append(f"{h.label}: {folder}: marker names no run id")
                    continue
                if dry_run:
                    log(f"would remove run {run_id} on {h.label}: {folder}; {why}")
                    removed += 1
                    continue
                _, pid_text, _ = h.run(f"cat {q(folder)}/node.pid 2>/dev/null", check=False)
                parts = pid_text.split()
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    h.run(_kill_script(int(parts[0]), int(parts[1])), check=False,
                          timeout_s=KILL_WAIT_S + 10)
                h.run(_unhook_script(run_id), check=False)
                h.run(f"rm -rf {q(folder)}")
                log(f"{verb} run {run_id} on {h.label}: node process group, chain "
                    f"{chain_name(run_id)}, {folder}; {why}")
                removed += 1
    finally:
        for h in hosts.values():
            h.close()
    return removed


class SshDbNodes(SshNodes):
    """The database variant (dbs/cluster.py SshDb mixes it with DbCluster): the adapter's
    command and files, unchanged but for the node folder's path, on each host; its packages
    checked there. No runtime is uploaded (a database host needs no Python)."""

    ship_runtime = False

    def _prepare_host(self, n: str) -> None:
        missing = []
        for b in self.db.BINARIES:
            rc, _, _ = self.hosts[n].run(f"command -v {q(b)} >/dev/null || [ -e {q(b)} ]",
                                         check=False)
            if rc != 0:
                missing.append(b)
        if missing:
            raise SshError(f"{self.specs[n].label}: {self.db.name} is not installed there "
                           f"({missing[0]} not found): apt-get install "
                           f"{' '.join(self.db.PACKAGES)}")

    def _node_env(self, n: str) -> dict[str, str]:
        return {}

    def _rewrite(self, n: str, text: str) -> str:
        """A path under the local nodes/<n>/ becomes the host's copy."""
        return text.replace(str(self.node_dir(n)), self.rdir[n])

    def _node_argv(self, n: str) -> list[str]:
        return [self._rewrite(n, a) for a in self.db.command(n)]

    def _launch(self, n: str) -> None:
        if n not in self._uploaded:
            self._upload_node_files(n)
            self._uploaded.add(n)
        SshNodes._launch(self, n)

    def _upload_node_files(self, n: str) -> None:
        """What setup_node wrote into nodes/<n>/ (config files, ids; not the log), with local
        paths in text files rewritten; the host's data folder is wiped first (a fresh run)."""
        h, base = self.hosts[n], self.node_dir(n)
        h.run(f"rm -rf {q(self.rdir[n])}/data && mkdir -p {q(self.rdir[n])}/data")
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base)
            if rel.parts[0] in ("node.log",) or p.is_symlink():
                continue
            remote = f"{self.rdir[n]}/{rel.as_posix()}"
            if p.is_dir():
                h.run(f"mkdir -p {q(remote)}")
                continue
            data = p.read_bytes()
            try:
                data = self._rewrite(n, data.decode("utf-8")).encode("utf-8")
            except UnicodeDecodeError:
                pass
            h.put_bytes(data, remote)
            if p.stat().st_mode & 0o111:      # a wrapper script the adapter made
                h.run(f"chmod {p.stat().st_mode & 0o777:o} {q(remote)}")

    def _fetch(self, n: str) -> None:
        """node.log, and the data folder as nodes/<n>/data.tar.gz (the local data folder, which
        only held what setup_node wrote, goes: the adapter's archive() then finds none)."""
        import shutil
        SshNodes._fetch(self, n)
        shutil.rmtree(self.data_dir(n), ignore_errors=True)
        # gzip level 1, as Database.archive: preallocated WAL files are mostly zeros.
        rc = self.hosts[n].run_to_file(f"tar -C {q(self.rdir[n])} -cf - data | gzip -1",
                                       self.node_dir(n) / "data.tar.gz", timeout_s=300)
        if rc != 0:
            self._log(f"{n}: the data folder was not archived (tar exit {rc})")

    def _exit_code(self, n: str) -> int | None:
        SshNodes._fetch(self, n)
        rc, out, _ = self.hosts[n].run(f"cat {q(self.rdir[n])}/node.exit", check=False)
        return int(out.strip()) if rc == 0 and out.strip().lstrip("-").isdigit() else None
