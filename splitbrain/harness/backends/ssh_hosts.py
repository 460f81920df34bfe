"""The SSH backend's hosts and its one connection per host (paramiko).

Hosts come from a TOML file (`--hosts hosts.toml`) or the command line (`--host n1=user@addr`):

    [defaults]                      # every key optional; a host's own keys win
    user = "root"                   # default: the local user name
    port = 22
    identity = "~/.ssh/id_ed25519"  # a private key file; default: the agent, then ~/.ssh/id_*
    known_hosts = "~/.ssh/known_hosts"
    dir = "/var/tmp/splitbrain"     # where runs live on the host (one folder per run and node)
    connect_timeout_s = 10

    [hosts.n1]
    address = "10.0.0.1"            # the address the nodes use to reach each other, and the
                                    # harness to reach the node's ports
    [hosts.n2]
    address = "10.0.0.2"
    user = "admin"

Node names are the keys of [hosts] and must be n1..nK (the runner's names); one node per host
address (the node's ports are fixed: 7000 for the runtime, the database's own).

Why paramiko (not asyncssh): the harness drives backends from threads (the nemesis thread, the
runner's thread, the loop thread) with blocking calls (backends/base.py), which is paramiko's
model: one `Transport` per host, thread-safe, on which every operation opens a channel. asyncssh
would need an asyncio loop of its own beside our selector loop, and the docker SDK already uses
paramiko for `DOCKER_HOST=ssh://...` (docker[ssh]), so one SSH library serves both.

Security: the host key must be in the known-hosts file (paramiko's RejectPolicy): an unknown
or changed key is a connection failure naming the host, never a silent accept. Keys come from
the `identity` file when one is named, else the SSH agent ($SSH_AUTH_SOCK) and ~/.ssh/id_*.

Every failure to connect or a session lost later is an `SshError` whose message names the node
and the host (`host n2 (root@10.0.0.2:22): ...`): a harness error (exit 4), never a verdict.
"""

from __future__ import annotations

import base64
import getpass
import io
import os
import re
import shlex
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIR = "/var/tmp/splitbrain"
DEFAULT_PORT = 22
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
KEEPALIVE_S = 5
_NODE_NAME = re.compile(r"n[1-9][0-9]*")
_HOST_KEYS = ("address", "user", "port", "identity", "known_hosts", "dir", "connect_timeout_s")


class SshError(RuntimeError):
    """A host could not be reached, refused us, or lost its session (the message names it)."""


class HostsError(ValueError):
    """A hosts file or --host argument is wrong (the message names what and where)."""


@dataclass
class HostSpec:
    node: str
    address: str
    user: str = field(default_factory=getpass.getuser)
    port: int = DEFAULT_PORT
    identity: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    dir: str = DEFAULT_DIR
    connect_timeout_s: float = CONNECT_TIMEOUT_S

    @property
    def label(self) -> str:
        return f"host {self.node} ({self.user}@{self.address}:{self.port})"

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("node", *_HOST_KEYS)}

    @classmethod
    def from_json(cls, d: dict) -> "HostSpec":
        return cls(**{k: d[k] for k in ("node", *_HOST_KEYS) if k in d})


def _spec(node: str, values: dict, where: str) -> HostSpec:
    unknown = sorted(set(values) - set(_HOST_KEYS))
    if unknown:
        raise HostsError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_HOST_KEYS)})")
    if not isinstance(values.get("address"), str) or not values["address"]:
        raise HostsError(f"{where}: `address` is missing")
    kw: dict[str, Any] = {"node": node, "address": values["address"]}
    for k in ("user", "identity", "known_hosts", "dir"):
        if k in values:
            if not isinstance(values[k], str) or not values[k]:
                raise HostsError(f"{where}: `{k}` must be a non-empty string")
            kw[k] = values[k]
    if "port" in values:
        if not isinstance(values["port"], int) or not 0 < values["port"] < 65536:
            raise HostsError(f"{where}: `port` must be an integer in 1..65535")
        kw["port"] = values["port"]
    if "connect_timeout_s" in values:
        if not isinstance(values["connect_timeout_s"], (int, float)) or \
                values["connect_timeout_s"] <= 0:
            raise HostsError(f"{where}: `connect_timeout_s` must be a number > 0")
        kw["connect_timeout_s"] = float(values["connect_timeout_s"])
    if not kw.get("dir", DEFAULT_DIR).startswith("/"):
        raise HostsError(f"{where}: `dir` must be an absolute path")
    return HostSpec(**kw)


def _check_nodes(hosts: dict[str, HostSpec], where: str) -> dict[str, HostSpec]:
    if not hosts:
        raise HostsError(f"{where}: no hosts")
    names = sorted(hosts, key=lambda n: int(n[1:]))
    want = [f"n{i}" for i in range(1, len(names) + 1)]
    if names != want:
        raise HostsError(f"{where}: node names must be n1..n{len(names)} (got "
                         f"{', '.join(names)})")
    seen: dict[str, str] = {}
    for n in names:
        a = hosts[n].address
        if a in seen:
            raise HostsError(f"{where}: {n} and {seen[a]} share the address {a} (one node per "
                             f"host: the nodes' ports are fixed)")
        seen[a] = n
    return {n: hosts[n] for n in names}


def parse_hosts_file(path: str | os.PathLike) -> dict[str, HostSpec]:
    """node -> HostSpec from a TOML hosts file (see the module docstring); HostsError naming the
    file and the entry when it is wrong."""
    import tomllib
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise HostsError(f"--hosts {path}: cannot read it: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise HostsError(f"--hosts {path}: not valid TOML: {e}") from None
    extra = sorted(set(doc) - {"defaults", "hosts"})
    if extra:
        raise HostsError(f"--hosts {path}: unknown table [{extra[0]}] (known: defaults, hosts)")
    defaults = doc.get("defaults", {})
    hosts = doc.get("hosts", {})
    if not isinstance(defaults, dict) or not isinstance(hosts, dict):
        raise HostsError(f"--hosts {path}: [defaults] and [hosts.NODE] must be tables")
    out = {}
    for node, values in hosts.items():
        if not _NODE_NAME.fullmatch(node):
            raise HostsError(f"--hosts {path}: [hosts.{node}]: node names are n1, n2, ...")
        if not isinstance(values, dict):
            raise HostsError(f"--hosts {path}: [hosts.{node}] must be a table")
        out[node] = _spec(node, {**defaults, **values}, f"--hosts {path}: [hosts.{node}]")
    return _check_nodes(out, f"--hosts {path}")


_HOST_ARG = re.compile(r"(n[1-9][0-9]*)=(?:([^@\s]+)@)?([^\s:@]+)(?::([0-9]+))?")


def parse_host_args(args: list[str] | tuple[str, ...]) -> dict[str, HostSpec]:
    """node -> HostSpec from `--host n1=[user@]address[:port]` arguments (the agent's or
    ~/.ssh's keys, ~/.ssh/known_hosts)."""
    out = {}
    for a in args:
        m = _HOST_ARG.fullmatch(a.strip())
        if not m:
            raise HostsError(f"--host {a!r}: expected NODE=[USER@]ADDRESS[:PORT], e.g. "
                             f"n1=root@10.0.0.1")
        node, user, addr, port = m.groups()
        if node in out:
            raise HostsError(f"--host {a!r}: {node} is given twice")
        values: dict[str, Any] = {"address": addr}
        if user:
            values["user"] = user
        if port:
            values["port"] = int(port)
        out[node] = _spec(node, values, f"--host {a!r}")
    return _check_nodes(out, "--host")


class SshHost:
    """One SSH connection to one host, shared by every operation on it (each operation is a
    channel on the same transport: no new TCP connection or handshake per operation).
    Thread-safe: any thread may call `run`, `put`, `get`."""

    def __init__(self, spec: HostSpec):
        self.spec = spec
        self.client = None
        self._sftp = None
        self._lock = threading.Lock()
        self._shell_lock = threading.Lock()
        self._shell_chan = None
        self._shell_buf = bytearray()
        self.ops = 0              # operations performed (channels opened)

    @property
    def label(self) -> str:
        return self.spec.label

    def connect(self) -> "SshHost":
        """Open the connection; SshError naming the host on any failure (unreachable, refused,
        unknown host key, no accepted key)."""
        import paramiko
        s = self.spec
        kh = Path(os.path.expanduser(s.known_hosts))
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(kh))
        except FileNotFoundError:
            raise SshError(f"{s.label}: the known-hosts file {kh} does not exist (host keys "
                           f"are checked; add the host with ssh-keyscan after verifying it)") \
                from None
        except Exception as e:  # noqa: BLE001 - paramiko raises several kinds for a bad file
            raise SshError(f"{s.label}: cannot read the known-hosts file {kh}: {e}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        identity = os.path.expanduser(s.identity) if s.identity else None
        if identity and not os.path.isfile(identity):
            raise SshError(f"{s.label}: the identity file {identity} does not exist")
        try:
            client.connect(s.address, port=s.port, username=s.user, key_filename=identity,
                           allow_agent=True, look_for_keys=identity is None,
                           timeout=s.connect_timeout_s, banner_timeout=s.connect_timeout_s,
                           auth_timeout=s.connect_timeout_s)
        except paramiko.SSHException as e:
            client.close()
            # RejectPolicy says "Server '[addr]:port' not found in known_hosts".
            raise SshError(f"{s.label}: {e}") from None
        except (OSError, socket.timeout) as e:
            client.close()
            why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or
                                                                              type(e).__name__)
            raise SshError(f"{s.label}: cannot connect: {why}") from None
        client.get_transport().set_keepalive(KEEPALIVE_S)
        self.client = client
        return self

    def alive(self) -> bool:
        t = self.client.get_transport() if self.client is not None else None
        return t is not None and t.is_active()

    def run(self, cmd: str, *, check: bool = True, timeout_s: float = COMMAND_TIMEOUT_S,
            stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run `cmd` (a shell command line) on the host; (exit status, output, "").
        The command's stdout and stderr come back together as the output (stdin is /dev/null
        unless `stdin` is given, which goes through a channel of its own).
        SshError when the session is gone, the command times out, or `check` and it failed."""
        if stdin is not None:
            out, err = io.BytesIO(), io.BytesIO()
            rc = self._exec(cmd, out, err, timeout_s, stdin)
            o = out.getvalue().decode(errors="replace") + err.getvalue().decode(errors="replace")
        else:
            rc, o = self._shell_run(cmd, timeout_s)
        if check and rc != 0:
            short = cmd if len(cmd) < 120 else cmd[:117] + "..."
            raise SshError(f"{self.label}: `{short}` failed (exit {rc}): {o.strip()[-300:]}")
        return rc, o, ""

    def _shell_run(self, cmd: str, timeout_s: float) -> tuple[int, str]:
        """One command through the host's shell session (see `_shell`): the command goes as
        base64 (any bytes, one line), its output comes back as base64 then its status."""
        enc = base64.b64encode(cmd.encode()).decode()
        line = (f"o=$(eval \"$(printf %s {enc} | base64 -d)\" 2>&1 </dev/null); r=$?; "
                f"printf '%s' \"$o\" | base64 | tr -d '\\n'; printf ' %d\\n' \"$r\"\n")
        with self._shell_lock:
            chan, buf = self._shell(timeout_s)
            self.ops += 1
            try:
                chan.settimeout(timeout_s)
                chan.sendall(line.encode())
                while b"\n" not in buf:
                    chunk = chan.recv(1 << 16)
                    if not chunk:
                        raise EOFError("the shell session ended")
                    buf += chunk
            except socket.timeout:
                self._drop_shell()
                raise SshError(f"{self.label}: `{cmd[:80]}` did not finish within "
                               f"{timeout_s:.0f} s") from None
            except (EOFError, OSError) as e:
                self._drop_shell()
                if not self.alive():
                    raise SshError(f"{self.label}: the SSH session was lost") from None
                raise SshError(f"{self.label}: the shell session failed: {e}") from None
            reply, _, rest = bytes(buf).partition(b"\n")
            self._shell_buf = bytearray(rest)
        b64, _, rc = reply.decode().rpartition(" ")
        return int(rc), base64.b64decode(b64).decode(errors="replace")

    def _shell(self, timeout_s: float):
        """The host's shell session: one `sh` on one channel, opened at the first command and
        kept. Why not one exec channel per command: each exec starts the user's login shell,
        whose rc files can cost 100+ ms (pyenv, ...); a kept `sh` runs a command in ~1 ms.
        (SHELL_LOCK held.)"""
        if self._shell_chan is None or self._shell_chan.closed:
            if self.client is None or not self.alive():
                raise SshError(f"{self.label}: the SSH session was lost")
            try:
                chan = self.client.get_transport().open_session(timeout=timeout_s)
                chan.exec_command("exec /bin/sh")
            except Exception as e:  # noqa: BLE001 - paramiko: SSHException, EOFError, OSError
                raise SshError(f"{self.label}: the SSH session was lost ({type(e).__name__}: "
                               f"{e})") from None
            self._shell_chan, self._shell_buf = chan, bytearray()
        return self._shell_chan, self._shell_buf

    def _drop_shell(self) -> None:
        if self._shell_chan is not None:
            try:
                self._shell_chan.close()
            except Exception:  # noqa: BLE001
                pass
        self._shell_chan, self._shell_buf = None, bytearray()

    def run_to_file(self, cmd: str, path: Path, timeout_s: float = COMMAND_TIMEOUT_S) -> int:
        """Run `cmd` with its stdout streamed into the local file `path`; its exit status."""
        err = io.BytesIO()
        with open(path, "wb") as fh:
            return self._exec(cmd, fh, err, timeout_s, None)

    def _exec(self, cmd: str, out, err, timeout_s: float, stdin: bytes | None) -> int:
        if self.client is None or not self.alive():
            raise SshError(f"{self.label}: the SSH session was lost")
        try:
            chan = self.client.get_transport().open_session(timeout=timeout_s)
        except Exception as e:  # noqa: BLE001 - paramiko: SSHException, EOFError, OSError
            raise SshError(f"{self.label}: the SSH session was lost ({type(e).__name__}: "
                           f"{e})") from None
        self.ops += 1
        try:
            # Every read waits at most timeout_s: a command that hangs is an error, not a hang.
            chan.settimeout(timeout_s)
            chan.exec_command(cmd)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            # stdout to its end, then stderr (our commands write little to stderr: it cannot
            # fill the channel's window while stdout is read).
            while True:
                chunk = chan.recv(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
            while True:
                chunk = chan.recv_stderr(1 << 16)
                if not chunk:
                    break
                err.write(chunk)
            return chan.recv_exit_status()
        except socket.timeout:
            raise SshError(f"{self.label}: `{cmd[:80]}` did not finish within "
                           f"{timeout_s:.0f} s") from None
        except (EOFError, OSError) as e:
            if not self.alive():
                raise SshError(f"{self.label}: the SSH session was lost") from None
            raise SshError(f"{self.label}: `{cmd[:80]}`: {type(e).__name__}: {e}") from None
        finally:
            chan.close()

    def sftp(self):
        with self._lock:
            if self._sftp is None:
                if not self.alive():
                    raise SshError(f"{self.label}: the SSH session was lost")
                try:
                    self._sftp = self.client.open_sftp()
                except Exception as e:  # noqa: BLE001 - paramiko: SSHException, EOFError
                    raise SshError(f"{self.label}: no SFTP ({type(e).__name__}: {e}; the "
                                   f"host's sshd needs `Subsystem sftp ...`)") from None
            return self._sftp

    def put_bytes(self, data: bytes, remote: str) -> None:
        """Write `data` (small: a marker, config files, the runtime's ~0.4 MB) to the file
        `remote` through the shell session, atomically (a temp file renamed): no SFTP session
        is needed for it (opening one costs another start of the user's login shell)."""
        enc = base64.b64encode(data).decode()
        tmp = f"{remote}.tmp.{os.getpid()}"
        self.run(f"printf %s {enc} | base64 -d > {q(tmp)} && mv {q(tmp)} {q(remote)}")

    def put(self, local: str | os.PathLike, remote: str) -> None:
        try:
            self.sftp().put(str(local), remote)
        except OSError as e:
            raise SshError(f"{self.label}: cannot upload {local} to {remote}: {e}") from None

    def get(self, remote: str, local: str | os.PathLike) -> bool:
        """Download `remote` to `local`; False when it does not exist."""
        try:
            self.sftp().get(remote, str(local))
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            raise SshError(f"{self.label}: cannot download {remote}: {e}") from None

    def close(self) -> None:
        with self._shell_lock:
            self._drop_shell()
        with self._lock:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:  # noqa: BLE001
                    pass
                self._sftp = None
        if self.client is not None:
            self.client.close()


def connect_all(specs: list[HostSpec]) -> dict[str, SshHost]:
    """Connect to every host at once (threads: set-up time is one handshake, not N). SshError
    naming the first host (in node order) that failed; the others are closed again."""
    hosts = {s.node: SshHost(s) for s in specs}
    errors: dict[str, BaseException] = {}

    def one(n: str) -> None:
        try:
            hosts[n].connect()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors[n] = e
    threads = [threading.Thread(target=one, args=(n,), name=f"splitbrain-ssh-{n}")
               for n in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for h in hosts.values():
            h.close()
        first = sorted(errors, key=lambda n: int(n[1:]) if n[1:].isdigit() else 0)[0]
        e = errors[first]
        more = f" (and {len(errors) - 1} more host(s))" if len(errors) > 1 else ""
        raise SshError(f"{e}{more}" if isinstance(e, SshError) else
                       f"{hosts[first].label}: {type(e).__name__}: {e}{more}")
    return hosts


def q(s: str | os.PathLike) -> str:
    """Shell-quote one word for the remote shell."""
    return shlex.quote(str(s))
