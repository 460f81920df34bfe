"""A fleet of SSH hosts for tests, built as a remote fleet would look: one Debian `sshd` per
node, each in its own network namespace with its own address on a bridge, its own host key and
config, accepting one client key; the controller (the test process) connects over the bridge
with known-hosts checking on.

Names carry this module's own prefix (`ssht`) and a per-fleet id, so other tests' cleanups
(`sb-`, `sbr-`, `sbv-` prefixes) never touch them, and `close()` removes exactly this fleet's:
sshd processes (and anything else still running in its namespaces), namespaces, veths, the
bridge, the FORWARD rule (tagged `ssht-ID`), the temp dir. The namespaces share this machine's
filesystem (so a run's "remote" folders, /var/run/docker.sock and the docker CLI are visible in
them); each host gets its own `dir` in the hosts file so that nothing of two hosts mixes.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
    return p


def fleet_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "root (network namespaces)"
    for tool in (SSHD, shutil.which("ssh-keygen") or "/nonexistent/ssh-keygen",
                 shutil.which("ip") or "/nonexistent/ip",
                 shutil.which("iptables") or "/nonexistent/iptables"):
        if not os.path.exists(tool):
            return False, f"{os.path.basename(tool)} (apt-get install openssh-server " \
                          f"openssh-client iproute2 iptables)"
    return True, ""


class Fleet:
    """`Fleet(n).start()`; `hosts_toml(path)`, `addresses`, `key`, `known_hosts`; `close()`."""

    def __init__(self, n: int, user: str = "root"):
        from splitbrain.harness.backends.netns import pick_subnet
        rng = random.Random()
        self.id = f"{rng.randrange(16 ** 4):04x}"
        self.n = n
        self.user = user
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ssht-{self.id}-"))
        self.subnet = pick_subnet(rng)
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self.nodes = [f"n{k}" for k in range(1, n + 1)]
        self.addresses = {nd: str(hosts[9 + k]) for k, nd in enumerate(self.nodes, start=1)}
        self.ns = {nd: f"ssht-{self.id}-{k}" for k, nd in enumerate(self.nodes, start=1)}
        self.veth = {nd: f"sshtv-{self.id}-{k}" for k, nd in enumerate(self.nodes, start=1)}
        self.bridge = f"sshtb-{self.id}"
        self.comment = f"ssht-{self.id}"
        self.key = self.tmp / "id_ed25519"
        self.known_hosts = self.tmp / "known_hosts"
        self.sshd: dict[str, subprocess.Popen] = {}
        self.dirs = {nd: str(self.tmp / "hosts" / nd) for nd in self.nodes}

    # ---- set-up -------------------------------------------------------------------------------

    def start(self) -> "Fleet":
        try:
            self._network()
            self._keys()
            for nd in self.nodes:
                self._sshd(nd)
            self._wait_listening()
        except BaseException:
            self.close()
            raise
        return self

    def _network(self) -> None:
        p = self.subnet.prefixlen
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/{p}", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        _run(["iptables", "-w", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-m",
              "comment", "--comment", self.comment, "-j", "ACCEPT"])
        for nd in self.nodes:
            ns, veth, inner = self.ns[nd], self.veth[nd], f"sshti-{self.id}"
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", inner])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", inner, "name", "eth0"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.addresses[nd]}/{p}", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # The controller (this machine) reaches the fleet through the bridge's address.
            _run(["ip", "-n", ns, "route", "add", "default", "via", self.gateway])
            _run(["ip", "link", "set", veth, "master", self.bridge])
            _run(["ip", "link", "set", veth, "up"])

    def _keys(self) -> None:
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ssht-{self.id}", "-f",
              str(self.key)])
        (self.tmp / "authorized_keys").write_text((self.tmp / "id_ed25519.pub").read_text())
        lines = []
        for nd in self.nodes:
            hk = self.tmp / f"host_{nd}"
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"host-{nd}", "-f",
                  str(hk)])
            pub = Path(f"{hk}.pub").read_text().split()
            lines.append(f"{self.addresses[nd]} {pub[0]} {pub[1]}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _sshd(self, nd: str) -> None:
        cfg = self.tmp / f"sshd_{nd}.conf"
        # StrictModes off: the keys live in a temp dir whose modes sshd would otherwise refuse.
        # UsePAM off: no PAM session (the namespace is not a login machine). Root logs in with
        # its key only.
        cfg.write_text("\n".join([
            f"ListenAddress {self.addresses[nd]}", "Port 22",
            f"HostKey {self.tmp / f'host_{nd}'}",
            f"AuthorizedKeysFile {self.tmp / 'authorized_keys'}",
            f"PidFile {self.tmp / f'sshd_{nd}.pid'}",
            "StrictModes no", "UsePAM no", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "MaxSessions 100", "MaxStartups 100:30:200",
            "Subsystem sftp /usr/lib/openssh/sftp-server", "LogLevel ERROR", ""]))
        Path("/run/sshd").mkdir(exist_ok=True)      # sshd's privilege-separation directory
        log = open(self.tmp / f"sshd_{nd}.log", "ab")
        self.sshd[nd] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[nd], SSHD, "-D", "-e", "-f", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def _wait_listening(self, timeout_s: float = 15.0) -> None:
        import socket
        deadline = time.monotonic() + timeout_s
        for nd in self.nodes:
            while True:
                if self.sshd[nd].poll() is not None:
                    raise RuntimeError(f"sshd for {nd} exited: "
                                       f"{(self.tmp / f'sshd_{nd}.log').read_text()[-500:]}")
                try:
                    with socket.create_connection((self.addresses[nd], 22), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd for {nd} does not listen") from None
                    time.sleep(0.05)

    # ---- use ----------------------------------------------------------------------------------

    def hosts_toml(self, path: Path | None = None, nodes: list[str] | None = None,
                   extra: dict[str, dict] | None = None) -> Path:
        path = path or (self.tmp / "hosts.toml")
        out = ["[defaults]", f'user = "{self.user}"', f'identity = "{self.key}"',
               f'known_hosts = "{self.known_hosts}"', "connect_timeout_s = 5", ""]
        for nd in nodes or self.nodes:
            out += [f"[hosts.{nd}]", f'address = "{self.addresses[nd]}"',
                    f'dir = "{self.dirs[nd]}"']
            for k, v in (extra or {}).get(nd, {}).items():
                out.append(f"{k} = {v!r}".replace("'", '"'))
            out.append("")
        path.write_text("\n".join(out))
        return path

    def ns_pids(self, nd: str) -> list[int]:
        """Processes in the host's namespace other than its sshd."""
        pids = [int(p) for p in _run(["ip", "netns", "pids", self.ns[nd]],
                                     check=False).stdout.split()]
        sshd = self._sshd_pids(nd)
        return [p for p in pids if p not in sshd]

    def _sshd_pids(self, nd: str) -> set[int]:
        """The listening sshd (and the `ip netns exec` that execs it: the same pid)."""
        p = self.sshd.get(nd)
        return {p.pid} if p is not None and p.poll() is None else set()

    def iptables_save(self, nd: str) -> str:
        return _run(["ip", "netns", "exec", self.ns[nd], "iptables-save"], check=False).stdout

    def leftovers(self, settle_s: float = 5.0) -> list[str]:
        """What splitbrain left on the hosts: processes (besides sshd and its sessions that
        end by themselves), chains or rules named splitbrain, files under the hosts' dirs.
        Looks again for up to `settle_s` (a closed session's shell takes a moment to end)."""
        deadline = time.monotonic() + settle_s
        while True:
            out = self._leftovers()
            if not out or time.monotonic() > deadline:
                return out
            time.sleep(0.2)

    def _leftovers(self) -> list[str]:
        out = []
        for nd in self.nodes:
            for pid in self.ns_pids(nd):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if cmd.startswith(b"sshd:"):
                    continue          # a session closing
                out.append(f"{nd}: process {pid} {cmd.decode(errors='replace')[:100]}")
            for line in self.iptables_save(nd).splitlines():
                if "splitbrain" in line.lower() or line.startswith(":SB-") or "SB-" in line:
                    out.append(f"{nd}: iptables {line}")
            d = Path(self.dirs[nd])
            if d.is_dir():
                out += [f"{nd}: file {p}" for p in d.rglob("*")]
        return out

    def close(self) -> None:
        for nd in self.nodes:
            p = self.sshd.get(nd)
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        for nd in self.nodes:
            ns = self.ns[nd]
            for pid in _run(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run(["ip", "netns", "del", ns], check=False)
            _run(["ip", "link", "del", self.veth[nd]], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        while _run(["iptables", "-w", "-D", "FORWARD", "-i", self.bridge, "-o", self.bridge,
                    "-m", "comment", "--comment", self.comment, "-j", "ACCEPT"],
                   check=False).returncode == 0:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def remains(self) -> list[str]:
        """What of the fleet itself is still there after close() (for the tests' own check)."""
        out = []
        names = _run(["ip", "netns", "list"], check=False).stdout
        out += [ns for ns in self.ns.values() if ns in names.split()]
        if _run(["ip", "link", "show", self.bridge], check=False).returncode == 0:
            out.append(self.bridge)
        if self.comment in _run(["iptables", "-w", "-S", "FORWARD"], check=False).stdout:
            out.append(f"FORWARD rule {self.comment}")
        if self.tmp.exists():
            out.append(str(self.tmp))
        return out
