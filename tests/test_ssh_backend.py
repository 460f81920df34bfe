"""The ssh backend (splitbrain/harness/backends/ssh.py) on a fleet built as a remote fleet would
look (tests/ssh_fleet.py): one Debian sshd per node in its own network namespace, the controller
connecting over a bridge with known-hosts checking on.

CI tier: hosts-file errors (exit 2); Raft and etcd (the dbs adapter) valid under partition+kill
over SSH with nothing left on any host; a host that cannot be reached, or whose key is not
known, is exit 4 naming it; a SIGKILLed controller's leftovers (processes, iptables chain and
jump, marker folders) are removed by `cleanup --hosts`, and a live run's are not.
Slow tier (`-m slow`): a Raft bug switch caught over SSH; a session lost mid-run is exit 4
naming the host; the docker backend against a remote engine (DOCKER_HOST=ssh://).

Needs root, openssh-server/-client, iproute2, iptables (and etcd for its test): skipped outside
CI when missing, a failure in CI (conftest.require).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, docker_available, require
from ssh_fleet import Fleet, fleet_available


def _require_fleet() -> None:
    ok, what = fleet_available()
    require(ok, what)


@pytest.fixture(scope="module")
def fleet():
    _require_fleet()
    f = Fleet(3).start()
    try:
        yield f
    finally:
        f.close()
        assert f.remains() == [], f.remains()


def _env(tmp_path: Path) -> dict:
    # A private registry: the runs' entries never mix with other tests' or users'.
    return {**os.environ, "PYTHONPATH": str(REPO), "SPLITBRAIN_STATE_DIR": str(tmp_path / "state")}


def _splitbrain(tmp_path: Path, *args: str, timeout_s: float = 300,
                env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitbrain", *args], capture_output=True,
                          text=True, timeout=timeout_s, cwd=REPO, env=env or _env(tmp_path))


def _out(r: subprocess.CompletedProcess) -> str:
    return r.stdout[-3000:] + r.stderr[-3000:]


# ---- hosts: bad input is a usage error --------------------------------------------------------

@pytest.mark.parametrize("text, expect", [
    ("[hosts.n1]\naddress = '10.0.0.1'\n[hosts.n3]\naddress = '10.0.0.3'\n",
     "node names must be n1..n2"),
    ("[hosts.n1]\nadress = '10.0.0.1'\n", "unknown key 'adress'"),
    ("[hosts.n1]\naddress = '10.0.0.1'\n[hosts.n2]\naddress = '10.0.0.1'\n",
     "share the address 10.0.0.1"),
    ("[hosts.n1\naddress = 1\n", "not valid TOML"),
    ("[hosts.n1]\naddress = '10.0.0.1'\nport = 0\n", "`port` must be an integer"),
])
def test_a_bad_hosts_file_is_a_usage_error(tmp_path, text, expect):
    f = tmp_path / "hosts.toml"
    f.write_text(text)
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(f), "--system", "raft",
                    "--time-limit", "1")
    assert r.returncode == 2, _out(r)
    assert expect in r.stderr and str(f) in r.stderr and "Traceback" not in r.stderr, _out(r)


def test_host_arguments_and_their_errors(tmp_path):
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--host", "n1=root@@x",
                    "--system", "raft")
    assert r.returncode == 2 and "expected NODE=[USER@]ADDRESS[:PORT]" in r.stderr, _out(r)
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--system", "raft")
    assert r.returncode == 2 and "--backend ssh needs hosts" in r.stderr, _out(r)
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--host", "n1=10.0.0.1", "--host",
                    "n2=10.0.0.2", "--nodes", "3", "--system", "raft")
    assert r.returncode == 2 and "one node per host" in r.stderr, _out(r)
    r = _splitbrain(tmp_path, "test", "--backend", "netns", "--host", "n1=10.0.0.1",
                    "--system", "raft")
    assert r.returncode == 2 and "are for --backend ssh" in r.stderr, _out(r)


# ---- real runs over SSH -----------------------------------------------------------------------

def test_raft_is_valid_under_partition_and_kill_over_ssh(fleet, tmp_path):
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(fleet.hosts_toml()),
                    "--system", "raft", "--workload", "lin-kv", "--nemesis",
                    "partition,kill,pause", "--time-limit", "6", "--rate", "100", "--opt",
                    "harness.nemesis_interval_s=1.5", "--opt", "harness.reports=false",
                    "--seed", "7", "--json", "--store",
                    str(tmp_path / "store"))
    assert r.returncode == 0, _out(r)
    summary = json.loads(r.stdout)
    assert summary["valid"] is True and summary["history_ops"] > 200, summary
    run_dir = Path(summary["run_dir"])
    log = (run_dir / "splitbrain.log").read_text()
    assert "ssh: run" in log and "killed" in log, log[-2000:]
    hist = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    faults = {h["f"] for h in hist if h["process"] == "nemesis"}
    assert {"start-partition", "kill", "pause"} & faults, faults
    for n in fleet.nodes:        # the hosts' logs are in the store
        assert (run_dir / "nodes" / n / "node.log").stat().st_size > 0
    assert fleet.leftovers() == []


def test_etcd_is_valid_under_partition_and_kill_over_ssh(fleet, tmp_path):
    import shutil
    require(shutil.which("etcd") is not None, "etcd (apt-get install etcd-server etcd-client)")
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(fleet.hosts_toml()),
                    "--db", "etcd", "--workload", "register", "--nemesis", "partition,kill",
                    "--time-limit", "6", "--rate", "100", "--opt",
                    "harness.nemesis_interval_s=1.5", "--opt", "harness.reports=false",
                    "--seed", "3", "--json", "--store",
                    str(tmp_path / "store"))
    assert r.returncode == 0, _out(r)
    summary = json.loads(r.stdout)
    assert summary["valid"] is True and summary["history_ops"] > 200, summary
    run_dir = Path(summary["run_dir"])
    for n in fleet.nodes:
        assert (run_dir / "nodes" / n / "data.tar.gz").stat().st_size > 0
        assert "etcd" in (run_dir / "nodes" / n / "node.log").read_text()[:5000]
    assert fleet.leftovers() == []


def test_a_database_missing_on_a_host_names_the_host_and_the_apt_line(fleet, tmp_path):
    """The packages are checked on each host (not on the controller) before anything starts."""
    from splitbrain.dbs.cluster import _ssh_class
    from splitbrain.dbs.etcd import Etcd
    from splitbrain.harness.backends.ssh_hosts import parse_hosts_file

    class NotHere(Etcd):
        BINARIES = ("/nonexistent/splitbrain-test/etcd",)
    b = _ssh_class()(fleet.nodes, tmp_path / "run", NotHere, {}, "register",
                     hosts=parse_hosts_file(fleet.hosts_toml()))
    try:
        with pytest.raises(RuntimeError) as e:
            b.start()
    finally:
        b.teardown()
    assert "host n1 (root@" in str(e.value) and "apt-get install etcd-server etcd-client" in \
        str(e.value), e.value
    assert fleet.leftovers() == []


# ---- connection failures are harness errors ---------------------------------------------------

def test_an_unreachable_host_is_exit_4_naming_it(fleet, tmp_path):
    hosts = fleet.hosts_toml(tmp_path / "hosts.toml")
    # n4: an address on the fleet's bridge where nothing listens.
    dead = str(list(fleet.subnet.hosts())[200])
    text = hosts.read_text() + (f'[hosts.n4]\naddress = "{dead}"\n'
                                f'dir = "{fleet.dirs["n1"]}-n4"\n')
    hosts.write_text(text)
    t0 = time.monotonic()
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(hosts), "--system",
                    "raft", "--time-limit", "2", "--store", str(tmp_path / "store"))
    assert r.returncode == 4, _out(r)
    assert f"host n4 (root@{dead}:22)" in r.stderr and "cannot connect" in r.stderr, _out(r)
    assert time.monotonic() - t0 < 60
    assert "info" not in r.stdout and "UNKNOWN" not in r.stdout, _out(r)
    assert fleet.leftovers() == []


def test_an_unknown_host_key_is_refused(fleet, tmp_path):
    hosts = fleet.hosts_toml(tmp_path / "hosts.toml")
    kh = tmp_path / "known_hosts"
    lines = fleet.known_hosts.read_text().splitlines()
    kh.write_text("\n".join(lines[:-1]) + "\n")          # n3's key is not known
    hosts.write_text(hosts.read_text().replace(str(fleet.known_hosts), str(kh)))
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(hosts), "--system",
                    "raft", "--time-limit", "2", "--store", str(tmp_path / "store"))
    assert r.returncode == 4, _out(r)
    assert "host n3" in r.stderr and "not found in known_hosts" in r.stderr, _out(r)
    assert fleet.leftovers() == []


def test_keys_from_the_agent(fleet, tmp_path):
    """No identity file named: the key comes from the SSH agent ($SSH_AUTH_SOCK), with a hosts
    file or --host arguments; without the agent the same hosts refuse us (exit 4 naming the
    first host)."""
    import shutil
    require(shutil.which("ssh-agent") is not None and shutil.which("ssh-add") is not None,
            "ssh-agent (apt-get install openssh-client)")
    hosts = fleet.hosts_toml(tmp_path / "hosts.toml")
    hosts.write_text("\n".join(x for x in hosts.read_text().splitlines()
                               if not x.startswith("identity")))
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait(sock.exists, 10, "the agent's socket")
        env = {**_env(tmp_path), "SSH_AUTH_SOCK": str(sock), "HOME": str(tmp_path)}
        subprocess.run(["ssh-add", str(fleet.key)], env=env, check=True, capture_output=True)
        r = _splitbrain(tmp_path, "cleanup", "--hosts", str(hosts), env=env)
        assert r.returncode == 0 and "removed 0 run(s) on 3 host(s)" in r.stdout, _out(r)
        # --host NODE=USER@ADDRESS: the agent's keys and ~/.ssh/known_hosts.
        (tmp_path / ".ssh").mkdir()
        shutil.copy(fleet.known_hosts, tmp_path / ".ssh" / "known_hosts")
        args = [a for n in fleet.nodes for a in ("--host", f"{n}=root@{fleet.addresses[n]}")]
        r = _splitbrain(tmp_path, "cleanup", *args, env=env)
        assert r.returncode == 0 and "removed 0 run(s) on 3 host(s)" in r.stdout, _out(r)
        env.pop("SSH_AUTH_SOCK")
        r = _splitbrain(tmp_path, "cleanup", "--hosts", str(hosts), env=env)
        assert r.returncode == 4 and "host n1 (root@" in r.stderr, _out(r)
        assert "Authentication failed" in r.stderr or "authentication" in r.stderr.lower(), \
            _out(r)
    finally:
        agent.kill()
        agent.wait(timeout=10)


# ---- a killed controller's leftovers ----------------------------------------------------------

def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _host_iptables(fleet, n: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", fleet.ns[n], "iptables", "-w", *args], check=True,
                   capture_output=True)


def test_cleanup_hosts_removes_a_sigkilled_controllers_leftovers(fleet, tmp_path):
    hosts = str(fleet.hosts_toml())
    env = _env(tmp_path)
    for n in fleet.nodes:        # the host's own chain and rule, which must survive
        _host_iptables(fleet, n, "-N", "HOSTOWN")
        _host_iptables(fleet, n, "-A", "HOSTOWN", "-p", "tcp", "--dport", "9999", "-j", "DROP")
        _host_iptables(fleet, n, "-A", "INPUT", "-j", "HOSTOWN")
    try:
        _cleanup_scenario(fleet, tmp_path, hosts, env)
        for n in fleet.nodes:
            saved = fleet.iptables_save(n)
            assert "-A INPUT -j HOSTOWN" in saved and "--dport 9999 -j DROP" in saved, saved
    finally:
        for n in fleet.nodes:
            _host_iptables(fleet, n, "-D", "INPUT", "-j", "HOSTOWN")
            _host_iptables(fleet, n, "-F", "HOSTOWN")
            _host_iptables(fleet, n, "-X", "HOSTOWN")


def _cleanup_scenario(fleet, tmp_path: Path, hosts: str, env: dict) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "splitbrain", "test", "--backend", "ssh",
                             "--hosts", hosts, "--system", "raft", "--nemesis", "partition",
                             "--time-limit", "60", "--opt", "harness.nemesis_interval_s=1",
                             "--store", str(tmp_path / "store")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # The run is up when every host has its node's pid file and its chain holds a rule.
        _wait(lambda: all(list(Path(fleet.dirs[n]).glob("run-*/node.pid")) for n in fleet.nodes),
              60, "the nodes to start")
        _wait(lambda: any("-j DROP" in fleet.iptables_save(n) for n in fleet.nodes), 30,
              "a partition rule")
        # One SSH connection per host, however many operations the run has done.
        for n in fleet.nodes:
            est = subprocess.run(["ss", "-Htn", "state", "established", "dst",
                                  f"{fleet.addresses[n]}:22"], capture_output=True,
                                 text=True).stdout.strip().splitlines()
            assert len(est) == 1, (n, est)
        # A live run is left alone by cleanup (its controller is alive).
        r = _splitbrain(tmp_path, "cleanup", "--hosts", hosts, env=env)
        assert r.returncode == 0 and "removed 0 run(s)" in r.stdout, _out(r)
        assert r.stdout.count("owner pid") == 3, _out(r)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(0.5)
    left = fleet.leftovers(settle_s=0)
    kinds = {x.split(": ")[1].split(" ")[0] for x in left}
    assert {"process", "iptables", "file"} <= kinds, left
    r = _splitbrain(tmp_path, "cleanup", "--hosts", hosts, "--dry-run", env=env)
    assert r.returncode == 0 and "would remove 3 run(s)" in r.stdout, _out(r)
    r = _splitbrain(tmp_path, "cleanup", "--hosts", hosts, env=env)
    assert r.returncode == 0 and "removed 3 run(s)" in r.stdout, _out(r)
    assert fleet.leftovers() == []


# ---- slow tier --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_raft_bug_is_caught_over_ssh(fleet, tmp_path):
    """stale-reads: a deposed leader answers reads from its own state (as
    test_real_network_cli.py on netns/docker: real time decides, so up to three seeds)."""
    outputs = []
    for seed in ("1", "2", "3"):
        r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(fleet.hosts_toml()),
                        "--system", "raft", "--bug", "stale-reads", "--workload", "kv",
                        "--nemesis", "partition-leader", "--time-limit", "8", "--opt",
                        "check-quorum=false", "--opt", "harness.nemesis_interval_s=1.5",
                        "--opt", "harness.client_timeout_s=0.5", "--seed", seed, "--store",
                        str(tmp_path / "store"))
        assert r.returncode in (0, 1), _out(r)
        outputs.append(r.stdout)
        if r.returncode == 1:
            assert "linearizable: INVALID" in r.stdout
            break
    else:
        raise AssertionError("stale-reads was not found in 3 runs:\n" + "\n".join(outputs)[-3000:])
    assert fleet.leftovers() == []


@pytest.mark.slow
def test_pause_clock_lost_writes_loss_and_latency_over_ssh(fleet, tmp_path):
    """Every other fault the in-house runtime takes, overlapping, on SSH hosts: the clock file
    and the lost-writes cut are done on the host (through the uploaded runtime)."""
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(fleet.hosts_toml()),
                    "--system", "raft", "--workload", "lin-kv", "--nemesis",
                    "pause,clock,lost-writes,loss,latency", "--opt",
                    "harness.nemesis_overlap=true", "--time-limit", "10", "--seed", "5",
                    "--opt", "harness.reports=false", "--json", "--store",
                    str(tmp_path / "store"))
    assert r.returncode == 0, _out(r)
    summary = json.loads(r.stdout)
    assert summary["valid"] is True, summary
    hist = [json.loads(x) for x in
            (Path(summary["run_dir"]) / "history.jsonl").read_text().splitlines()]
    faults = {h["f"] for h in hist if h["process"] == "nemesis"}
    # The SSH-specific paths (the clock file and the lost-writes cut on the host) ran, and most
    # of the other families (each family's schedule is drawn: one may not start in 10 s).
    assert {"clock-skew", "kill"} <= faults, faults
    assert len({"pause", "start-loss", "start-latency"} & faults) >= 2, faults
    assert fleet.leftovers() == []


@pytest.mark.slow
@pytest.mark.parametrize("node", ["linkv.py", "python3 linkv.py"])
def test_a_maelstrom_binary_runs_over_ssh(fleet, tmp_path, node):
    """--bin: the program (a path) or the script an interpreter named on PATH runs (an
    argument naming a local file) is uploaded to each host and runs behind the TCP shim."""
    *interp, script = node.split()
    r = _splitbrain(tmp_path, "test", "--backend", "ssh", "--hosts", str(fleet.hosts_toml()),
                    "--bin", *interp, str(REPO / "tests" / "nodes" / script), "--workload",
                    "lin-kv", "--nemesis", "partition", "--time-limit", "6", "--seed", "1",
                    "--opt", "harness.reports=false", "--json", "--store",
                    str(tmp_path / "store"))
    assert r.returncode == 0, _out(r)
    summary = json.loads(r.stdout)
    assert summary["valid"] is True and summary["history_ops"] > 200, summary
    assert fleet.leftovers() == []


@pytest.mark.slow
def test_a_session_lost_mid_run_is_exit_4_naming_the_host(fleet, tmp_path):
    hosts = str(fleet.hosts_toml())
    env = _env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "splitbrain", "test", "--backend", "ssh",
                             "--hosts", hosts, "--system", "raft", "--time-limit", "30",
                             "--store", str(tmp_path / "store")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait(lambda: all(list(Path(fleet.dirs[n]).glob("run-*/node.pid")) for n in fleet.nodes),
              60, "the nodes to start")
        time.sleep(1.0)
        # Cut n2's SSH session: end its sshd session processes (not the listener).
        for pid in fleet.ns_pids("n2"):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd:"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 4, out[-2000:] + err[-2000:]
    assert "host n2 (root@" in err and "SSH session was lost" in err, err[-2000:]
    assert "UNKNOWN" not in out
    # The run could not tear down n2 (its node still runs there); its controller has exited,
    # so cleanup --hosts removes it.
    r = _splitbrain(tmp_path, "cleanup", "--hosts", hosts, env=env)
    assert r.returncode == 0, _out(r)
    assert fleet.leftovers() == []


@pytest.mark.slow
@pytest.mark.timeout(1800)     # the first run builds the node image (debootstrap) over SSH
def test_the_docker_backend_runs_on_a_remote_engine_over_ssh(fleet, tmp_path):
    """DOCKER_HOST=ssh://root@<an sshd of the fleet>: the docker SDK connects with paramiko
    (known-hosts checked from ~/.ssh/known_hosts, the key from ~/.ssh/config) and runs
    `docker system dial-stdio` on the host. The namespace shares this machine's filesystem, so
    the engine there is this machine's (its socket and the docker CLI are visible)."""
    import shutil
    require(docker_available(), "a Docker engine")
    require(shutil.which("debootstrap") is not None, "debootstrap (the node image)")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    addr = fleet.addresses["n1"]
    (home / ".ssh" / "config").write_text(f"Host {addr}\n  User root\n  IdentityFile "
                                          f"{fleet.key}\n")
    shutil.copy(fleet.known_hosts, home / ".ssh" / "known_hosts")
    env = {**_env(tmp_path), "HOME": str(home), "DOCKER_HOST": f"ssh://root@{addr}"}
    env.pop("SSH_AUTH_SOCK", None)
    r = _splitbrain(tmp_path, "test", "--backend", "docker", "--system", "raft", "--nodes", "3",
                    "--nemesis", "partition", "--time-limit", "5", "--json", "--store",
                    str(tmp_path / "store"), env=env, timeout_s=1800)
    assert r.returncode == 0, _out(r)
    summary = json.loads(r.stdout)
    assert summary["valid"] is True and summary["history_ops"] > 100, summary
    # The engine was reached over SSH: the fleet's sshd on n1 served `docker system dial-stdio`.
    # (A wrong known_hosts makes the same run fail: host keys are checked.)
    (home / ".ssh" / "known_hosts").write_text("")
    r = _splitbrain(tmp_path, "test", "--backend", "docker", "--system", "raft", "--nodes", "3",
                    "--time-limit", "2", "--store", str(tmp_path / "store"), env=env)
    assert r.returncode != 0 and "not found in known_hosts" in r.stderr, _out(r)
    assert fleet.leftovers() == []
