"""Issue 12's run-trust items: cut-short runs (Ctrl-C, SIGTERM, SIGKILL) re-checked with
`analyze`, orphaned node processes, a full disk, owner-aware `cleanup`, Docker --bin mounts and
limits. Processes a test starts are named with "h12b" or found through the run's pids.jsonl, and
every one is ended in `finally`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from splitbrain.checkers.log import LogChecker
from splitbrain.harness import ownership
from splitbrain.history.op import Op

from conftest import REPO, default_sigint, docker_available, require

WAIT_S = 60.0             # generous: 2 cores shared by many test runs


# ---- helpers ---------------------------------------------------------------------------------------

def _env(state_dir: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "SPLITBRAIN_STATE_DIR": str(state_dir),
            **extra}


def _cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitbrain.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    st = ownership._state_pgid(pid)
    return st is not None and st[0] != "Z"


def _wait(cond, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _run_dir(store: Path) -> Path:
    dirs = [p.parent for p in store.glob("*/*/test.json") if not p.parent.is_symlink()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


STUBBORN_NODE = textwrap.dedent('''\
    #!/usr/bin/env python3
    # A lin-kv node (Maelstrom protocol; each node keeps its own map, fine for one node) that
    # ignores stdin EOF: it stays alive until killed.
    import json, sys, time
    me, kv = None, {}
    for line in sys.stdin:
        msg = json.loads(line)
        body = msg["body"]
        reply = {"in_reply_to": body.get("msg_id")}
        t = body["type"]
        k = json.dumps(body.get("key"))
        if t == "init":
            me = body["node_id"]
            reply["type"] = "init_ok"
        elif t == "write":
            kv[k] = body["value"]
            reply["type"] = "write_ok"
        elif t == "read" and k in kv:
            reply.update(type="read_ok", value=kv[k])
        elif t == "cas" and k in kv and kv[k] == body["from"]:
            kv[k] = body["to"]
            reply["type"] = "cas_ok"
        else:
            reply.update(type="error", code=20 if k not in kv else 22, text="no")
        sys.stdout.write(json.dumps({"src": me, "dest": msg["src"], "body": reply}) + "\\n")
        sys.stdout.flush()
    while True:                       # h12b-stubborn: EOF is ignored
        time.sleep(1)
    ''')


def _node_script(tmp_path: Path, text: str, name: str = "node-h12b.py") -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(0o755)
    return p


# ---- item 2: the log checker's unconfirmed appends --------------------------------------------------

class _H:
    def __init__(self):
        self.ops: list[Op] = []

    def add(self, p, typ, f, value=None, node=None):
        self.ops.append(Op(len(self.ops), len(self.ops) * 1000, p, typ, f, value, None, node,
                           None))


def test_appends_acknowledged_after_the_last_read_are_unconfirmed_not_lost():
    h = _H()
    h.add(0, "invoke", "append", 1); h.add(0, "ok", "append", 1)
    h.add(1, "invoke", "read"); h.add(1, "ok", "read", [1])
    h.add(0, "invoke", "append", 2)
    h.add(2, "invoke", "read")          # began before append 2 was acknowledged
    h.add(0, "ok", "append", 2)
    h.add(2, "ok", "read", [1])
    h.add(0, "invoke", "append", 3); h.add(0, "ok", "append", 3)   # no read after it
    r = LogChecker().check(h.ops, {})
    assert r.valid == "unknown", r.to_json()
    assert not r.anomalies
    assert r.stats["unconfirmed"] == 2 and r.stats["lost"] == 0
    assert "no read could confirm" in r.error


def test_an_append_acknowledged_before_a_final_read_began_is_still_lost():
    h = _H()
    h.add(0, "invoke", "append", 1); h.add(0, "ok", "append", 1)
    h.add(0, "invoke", "append", 2); h.add(0, "ok", "append", 2)
    h.add(1, "invoke", "read"); h.add(1, "ok", "read", [1])     # began after 2 was acknowledged
    h.add(0, "invoke", "append", 3); h.add(0, "ok", "append", 3)
    r = LogChecker().check(h.ops, {})
    assert r.valid is False
    lost = [a for a in r.anomalies if a.name == "lost-append"]
    assert [a.details["value"] for a in lost] == [2]
    assert r.stats["unconfirmed"] == 1


# ---- item 2: analyze on synthetic run directories ------------------------------------------------

def _fake_run(tmp_path: Path, test_extra: dict, marker_owner: dict | None = None) -> Path:
    """A stored append-log run whose last append came after the last read (as when cut short)."""
    run = tmp_path / "store" / "t" / "20260101T000000.000Z"
    run.mkdir(parents=True)
    h = _H()
    h.add(0, "invoke", "append", 1); h.add(0, "ok", "append", 1)
    h.add(1, "invoke", "read"); h.add(1, "ok", "read", [1])
    h.add(0, "invoke", "append", 2); h.add(0, "ok", "append", 2)
    with open(run / "history.jsonl", "w") as fh:
        for op in h.ops:
            fh.write(json.dumps(op.to_dict()) + "\n")
    test = {"name": "t", "backend": "local", "system": "raft", "workload": "append-log",
            "nemesis": [], "seed": 1, **test_extra}
    (run / "test.json").write_text(json.dumps(test))
    if marker_owner is not None:
        (run / ownership.RUN_MARKER).write_text(json.dumps({"owner": marker_owner,
                                                            "run_dir": str(run)}))
    return run


def _dead_owner() -> dict:
    p = subprocess.Popen(["true"])
    p.wait()
    return {**ownership.me(), "pid": p.pid, "start": 1}


@pytest.mark.parametrize("extra, marker, expect", [
    ({"phase": "safety", "interrupted": True, "interrupted_at": "safety",
      "interrupted_by": "SIGTERM"}, None, "incomplete run (interrupted at safety by SIGTERM)"),
    ({"phase": "heal"}, "dead", "incomplete run (interrupted at heal: the harness died"),
    ({}, None, "incomplete run (interrupted at an unknown phase"),
    ({"phase": "safety"}, "alive", "incomplete run (still in progress at phase safety"),
])
def test_analyze_says_a_cut_short_run_is_incomplete_and_unknown(tmp_path, extra, marker, expect):
    owner = {"dead": _dead_owner(), "alive": ownership.me(), None: None}[marker]
    run = _fake_run(tmp_path, extra, owner)
    r = _cli(["analyze", str(run)], _env(tmp_path / "state"))
    assert r.returncode == 3, (r.stdout, r.stderr)
    verdict = next(line for line in r.stdout.splitlines() if "verdict:" in line)
    assert "verdict: UNKNOWN, " + expect in verdict, r.stdout
    assert "lost-append" not in r.stdout
    data = json.loads((run / "results.json").read_text())
    assert data["incomplete"].startswith(expect[:30])
    assert data["children"]["run"]["valid"] == "unknown"


def test_analyze_of_a_finished_run_is_not_incomplete(tmp_path):
    run = _fake_run(tmp_path, {"phase": "done", "interrupted": False, "valid": False})
    r = _cli(["analyze", "--json", str(run)], _env(tmp_path / "state"))
    data = json.loads(r.stdout)
    assert "incomplete" not in data and "run" not in data["results"]["children"]
    # the last append came after the last read: unconfirmed (unknown), not lost
    assert r.returncode == 3 and data["results"]["children"]["log"]["stats"]["unconfirmed"] == 1


# ---- item 2: real runs cut short by SIGINT, SIGTERM and SIGKILL ------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_run_cut_short_is_reported_incomplete_by_analyze(tmp_path, sig):
    store = tmp_path / "store"
    env = _env(tmp_path / "state")
    p = subprocess.Popen(
        [sys.executable, "-m", "splitbrain.cli", "test", "--system", "raft", "--workload",
         "append-log", "--nodes", "3", "--time-limit", "60", "--seed", "3", "--store",
         str(store)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint)
    try:
        def enough():
            assert p.poll() is None, p.communicate()
            h = list(store.glob("*/*/history.jsonl"))
            return bool(h) and h[0].stat().st_size > 20_000
        _wait(enough, "the run's history")
        run = _run_dir(store)
        p.send_signal(sig)
        _, err = p.communicate(timeout=WAIT_S)
        test = json.loads((run / "test.json").read_text())
        assert test["phase"] == "safety"
        if sig == signal.SIGKILL:
            assert p.returncode == -signal.SIGKILL
            assert (run / ownership.RUN_MARKER).is_file()       # nobody cleared the marker
            assert "interrupted" not in test
        else:
            assert p.returncode == 130, err
            assert "Traceback" not in err
            assert f"the run so far is in {run}" in err            # Ctrl-C prints the store path
            assert test["interrupted"] is True and test["interrupted_at"] == "safety"
            assert not (run / ownership.RUN_MARKER).exists()
        # in-house nodes exit when their stdin closes: wait for them before analyzing
        pids = [rec["pid"] for rec in ownership.read_ledger(run)]
        assert len(pids) >= 3
        _wait(lambda: not any(_alive(x) for x in pids), "the nodes to exit")
        r = _cli(["analyze", str(run)], env)
        assert r.returncode == 3, (r.stdout, r.stderr)
        assert "verdict: UNKNOWN, incomplete run (interrupted at safety" in r.stdout
        assert "lost-append" not in r.stdout
        results = json.loads((run / "results.json").read_text())
        assert results["children"]["log"]["stats"]["lost"] == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for run in store.glob("*/*"):
            _kill_all(rec["pid"] for rec in ownership.read_ledger(run))


# ---- item 7: orphans --------------------------------------------------------------------------------

FORKING_NODE = textwrap.dedent('''\
    #!/usr/bin/env python3
    # Starts a child (in its own process group), answers init, then exits: the child lives on.
    import json, subprocess, sys
    out = subprocess.DEVNULL if sys.argv[2] == "devnull" else None   # None: holds the pipe
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "h12b"],
                             stdin=subprocess.DEVNULL, stdout=out)
    open(sys.argv[1], "a").write(f"{child.pid}\\n")
    msg = json.loads(sys.stdin.readline())
    body = {"type": "init_ok", "in_reply_to": msg["body"]["msg_id"]}
    sys.stdout.write(json.dumps({"src": msg["dest"], "dest": msg["src"], "body": body}) + "\\n")
    sys.stdout.flush()
    ''')


@pytest.mark.parametrize("child_out", ["devnull", "pipe"])
def test_a_node_that_forks_a_child_and_exits_leaves_nothing_running(tmp_path, child_out):
    """devnull: the leader's exit closes the node's stdout, and the rest of its group is killed
    right then. pipe: the child keeps the stdout open, the node looks alive, and teardown kills
    the whole group although its leader is gone."""
    from splitbrain.harness.backends.local import LocalBackend, bin_command
    children = tmp_path / "children.txt"
    children.touch()
    script = _node_script(tmp_path, FORKING_NODE)
    backend = LocalBackend(["n1", "n2"], bin_command(str(script), [str(children), child_out]),
                           tmp_path / "run", in_house=False)
    pids: list[int] = []
    try:
        backend.start()
        _wait(lambda: len(children.read_text().split()) == 2, "the children")
        pids = [int(x) for x in children.read_text().split()]
        leaders = [rec["pid"] for rec in ownership.read_ledger(tmp_path / "run")]
        assert len(leaders) == 2 and not set(leaders) & set(pids)
        if child_out == "devnull":
            _wait(lambda: not any(_alive(x) for x in pids), "the children to be killed", 10)
        else:
            _wait(lambda: not any(_alive(x) for x in leaders), "the leaders to exit")
            time.sleep(0.5)
            assert all(_alive(x) for x in pids)
            backend.teardown()
            _wait(lambda: not any(_alive(x) for x in pids), "the children to be killed", 10)
    finally:
        backend.teardown()
        _kill_all(pids)


def _start_stubborn_run(tmp_path: Path, env: dict, name: str) -> tuple[subprocess.Popen, Path]:
    script = _node_script(tmp_path, STUBBORN_NODE, f"stubborn-h12b-{name}.py")
    store = tmp_path / f"store-{name}"
    p = subprocess.Popen(
        [sys.executable, "-m", "splitbrain.cli", "test", "--bin", str(script), "--workload",
         "lin-kv", "--nodes", "2", "--time-limit", "120", "--rate", "20", "--store", str(store)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def up():
        assert p.poll() is None, p.communicate()
        runs = [r for r in store.glob("*/*/pids.jsonl") if not r.parent.is_symlink()]
        return bool(runs) and len(ownership.read_ledger(runs[0].parent)) >= 2 and \
            json.loads((runs[0].parent / "test.json").read_text()).get("phase") == "safety"
    _wait(up, "the run's nodes")
    return p, _run_dir(store)


def test_cleanup_ends_only_the_nodes_of_a_dead_harness(tmp_path):
    """SIGKILLed harness, nodes that ignore EOF, no PR_SET_PDEATHSIG: the nodes live on and
    `cleanup` ends them; a live run's nodes and a process whose pid was reused are left."""
    state = tmp_path / "state"
    env = _env(state, SPLITBRAIN_NO_PDEATHSIG="1")
    dead, live = None, None
    decoy = subprocess.Popen(["sleep", "600"])    # stands for an unrelated process
    pids: list[int] = []
    try:
        dead, dead_run = _start_stubborn_run(tmp_path, env, "dead")
        live, live_run = _start_stubborn_run(tmp_path, env, "live")
        dead_pids = [r["pid"] for r in ownership.read_ledger(dead_run)]
        live_pids = [r["pid"] for r in ownership.read_ledger(live_run)]
        pids = dead_pids + live_pids
        # a record of the dead run naming the decoy's pid with another start time (pid reuse)
        with open(dead_run / ownership.PIDS_FILE, "a") as fh:
            fh.write(json.dumps({"node": "n9", "pid": decoy.pid, "pgid": decoy.pid,
                                 "start": ownership.start_time(decoy.pid) - 1}) + "\n")
        dead.kill()
        dead.wait()
        time.sleep(1.0)
        assert all(_alive(x) for x in dead_pids), "nodes ignoring EOF outlive a killed harness"
        dry = _cli(["cleanup", "--dry-run"], env)
        assert dry.returncode == 0 and "would end node n1" in dry.stdout, dry.stdout
        assert all(_alive(x) for x in dead_pids)
        r = _cli(["cleanup"], env)
        assert r.returncode == 0, r.stderr
        assert f"ended node n1 of {dead_run}" in r.stdout, r.stdout
        assert f"left run {live_run}: owner pid {live.pid} is alive" in r.stdout, r.stdout
        _wait(lambda: not any(_alive(x) for x in dead_pids), "the dead run's nodes to end", 10)
        assert all(_alive(x) for x in live_pids) and live.poll() is None
        assert _alive(decoy.pid)
        assert (dead_run / ownership.RUN_MARKER).is_file()      # analyze still sees the cut
    finally:
        for p in (dead, live):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        decoy.kill()
        decoy.wait()
        _kill_all(pids)


def test_nodes_die_with_a_killed_harness_through_pdeathsig(tmp_path):
    env = _env(tmp_path / "state")
    p, run = _start_stubborn_run(tmp_path, env, "pdeath")
    pids = [r["pid"] for r in ownership.read_ledger(run)]
    try:
        p.kill()
        p.wait()
        _wait(lambda: not any(_alive(x) for x in pids), "the nodes to die with the harness", 10)
    finally:
        _kill_all(pids)


def test_the_preexec_fallback_of_pdeathsig_kills_the_child_with_its_parent(tmp_path):
    """Where there is no setpriv: the ctypes prctl preexec, from a thread of the parent."""
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''\
        import subprocess, threading, time
        from splitbrain.harness.ownership import pdeathsig_preexec
        def spawn():
            p = subprocess.Popen(["sleep", "600"], preexec_fn=pdeathsig_preexec())
            open({str(pidfile)!r}, "w").write(str(p.pid))
            time.sleep(600)
        threading.Thread(target=spawn, daemon=True).start()
        time.sleep(600)
        ''')], env=_env(tmp_path / "state"))
    child = None
    try:
        _wait(lambda: pidfile.exists() and pidfile.read_text(), "the child")
        child = int(pidfile.read_text())
        assert _alive(child)
        parent.kill()
        parent.wait()
        _wait(lambda: not _alive(child), "the child to die with its parent", 10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child:
            _kill_all([child])


# ---- item 8: a full disk --------------------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    require(os.geteuid() == 0, "root (to mount a tmpfs)")
    mnt = tmp_path / "tmpfs-h12b"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs-h12b", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


KV_NODE = STUBBORN_NODE.split("while True:")[0]      # the same node, exiting at EOF


@pytest.mark.root
def test_a_full_disk_exits_4_naming_the_file_and_the_kept_prefix(tmp_path, tiny_tmpfs):
    script = _node_script(tmp_path, KV_NODE)
    env = _env(tmp_path / "state")
    r = _cli(["test", "--bin", str(script), "--workload", "lin-kv", "--nodes", "1",
              "--time-limit", "60", "--rate", "2000", "--store", str(tiny_tmpfs)], env,
             timeout=180)
    assert r.returncode == 4, (r.stdout, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "No space left on device (ENOSPC)" in line, line
    assert "cannot write " in line and str(tiny_tmpfs) in line
    run = _run_dir(tiny_tmpfs)
    hist = run / "history.jsonl"
    assert "kept the first" in line
    kept = int(line.split("kept the first ")[1].split()[0])
    text = hist.read_bytes()
    assert kept > 100 and text.count(b"\n") == kept and text.endswith(b"\n")
    for raw in text.splitlines():
        json.loads(raw)                       # whole lines only


@pytest.mark.root
def test_results_on_a_full_disk_exit_4_naming_results_json(tiny_tmpfs):
    from splitbrain.harness.store import RunStore, StoreWriteError
    store = RunStore.create(tiny_tmpfs, "full")
    filler = tiny_tmpfs / "filler"
    with pytest.raises(OSError):
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"x" * 4096)
                fh.flush()
    with pytest.raises(StoreWriteError) as e:
        store.write_results({"valid": True, "big": "y" * 100_000})
    assert e.value.exit_code == 4
    assert str(store.results_path) in e.value.format_message()
    store.finish()


# ---- item 9: cleanup leaves what splitbrain did not make ------------------------------------------

@pytest.mark.root
def test_cleanup_leaves_a_namespace_it_did_not_make_and_removes_a_dead_runs(tmp_path):
    require(os.geteuid() == 0, "root (network namespaces)")
    state = tmp_path / "state"
    state.mkdir()
    mine, notmine = "sb-h12bdead-n1", "sb-h12bnotmine"
    try:
        for ns in (mine, notmine):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        (state / "netns-h12b.json").write_text(json.dumps({
            "id": "h12b", "owner": _dead_owner(), "namespaces": [mine], "links": []}))
        live = {"id": "h12c", "owner": ownership.me(), "namespaces": ["sb-h12blive-n1"],
                "links": []}
        (state / "netns-h12c.json").write_text(json.dumps(live))
        dry = _cli(["cleanup", "--all", "--dry-run"], _env(state))     # the old sweep, listed
        assert f"would remove namespace {notmine}" in dry.stdout, dry.stdout
        r = _cli(["cleanup"], _env(state))
        assert r.returncode == 0, r.stderr
        names = subprocess.run(["ip", "netns", "list"], capture_output=True,
                               text=True).stdout.split()
        assert notmine in names and mine not in names
        assert f"removed namespace {mine}" in r.stdout
        assert f"left namespace {notmine}: no splitbrain run recorded it" in r.stdout
        assert "left netns run h12c" in r.stdout and "is alive" in r.stdout
        assert not (state / "netns-h12b.json").exists() and (state / "netns-h12c.json").exists()
    finally:
        for ns in (mine, notmine):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# ---- item 11: Docker --bin mounts and limits ------------------------------------------------------

def test_docker_bin_mounts_only_the_program_and_named_files(tmp_path):
    from splitbrain.harness.backends.docker import bin_mounts
    prog = _node_script(tmp_path, KV_NODE)
    conf = tmp_path / "conf.json"
    conf.write_text("{}")
    (tmp_path / "secret.txt").write_text("not for the container")
    argv, mounts = bin_mounts(prog, ["--config", str(conf), "-v"])
    assert argv == ["/opt/node/node-h12b.py", "--config", "/opt/node/args/1/conf.json", "-v"]
    assert mounts == {str(prog): {"bind": "/opt/node/node-h12b.py", "mode": "ro"},
                      str(conf): {"bind": "/opt/node/args/1/conf.json", "mode": "ro"}}
    assert str(tmp_path) not in mounts
    argv, mounts = bin_mounts(prog, [str(conf), str(conf), str(prog)])
    assert argv[1:] == ["/opt/node/args/0/conf.json"] * 2 + ["/opt/node/node-h12b.py"]
    assert len(mounts) == 2
    # an interpreter named on PATH is the image's own; only the script is mounted
    argv, mounts = bin_mounts("python3", [str(prog)])
    assert argv == ["python3", "/opt/node/args/0/node-h12b.py"]
    assert list(mounts) == [str(prog)]


@pytest.mark.docker
def test_docker_containers_get_the_file_mount_limits_and_owner(tmp_path):
    require(docker_available(), "a Docker engine")
    import io
    import tarfile
    import docker
    from splitbrain.harness.backends.docker import DockerBackend
    client = docker.from_env()
    # An empty image is enough: the containers are created and inspected, never started.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    image = "splitbrain-h12b-empty:test"
    client.api.import_image_from_data(buf.getvalue(), repository=image.split(":")[0],
                                      tag="test")
    prog = _node_script(tmp_path, KV_NODE)
    backend = DockerBackend(["n1"], lambda n: [], tmp_path / "run", in_house=False,
                            bin_path=str(prog), image=image, memory="96m", pids_max=64)
    try:
        backend._setup_infra()
        c = backend.containers["n1"]
        c.reload()
        hc = c.attrs["HostConfig"]
        assert hc["Binds"] == [f"{prog.resolve()}:/opt/node/node-h12b.py:ro"]
        assert hc["Memory"] == 96 * 1024 * 1024 and hc["PidsLimit"] == 64
        owner = ownership.parse_owner_id(c.labels[ownership.OWNER_LABEL])
        assert owner["pid"] == os.getpid()
        assert "/opt/node/node-h12b.py" in c.attrs["Args"]
    finally:
        backend._teardown_infra()
        try:
            client.images.remove(image, force=True)
        except docker.errors.APIError:
            pass


@pytest.mark.docker
def test_docker_cleanup_removes_only_a_dead_owners_networks(tmp_path):
    require(docker_available(), "a Docker engine")
    import docker
    from splitbrain.harness.backends.docker import LABEL, cleanup_docker
    client = docker.from_env()
    labels = {"dead": {LABEL: "h12bdead", ownership.OWNER_LABEL:
                       ownership.owner_id(_dead_owner())},
              "live": {LABEL: "h12blive", ownership.OWNER_LABEL: ownership.owner_id()},
              "none": {LABEL: "h12bnone"}}
    nets = {}
    try:
        for k, lab in labels.items():
            nets[k] = client.networks.create(f"splitbrain-h12b-{k}", labels=lab)
        left: list[str] = []
        said: list[str] = []
        cleanup_docker(log=said.append, all_=False, left=left)
        names = {n.name for n in client.networks.list(filters={"label": LABEL})}
        assert "splitbrain-h12b-dead" not in names
        assert {"splitbrain-h12b-live", "splitbrain-h12b-none"} <= names
        assert "removed network splitbrain-h12b-dead" in said
        assert any(x.startswith("network splitbrain-h12b-live: owner pid") for x in left)
        assert "network splitbrain-h12b-none: no owner recorded (--all removes it)" in left
    finally:
        for n in nets.values():
            try:
                n.remove()
            except docker.errors.APIError:
                pass
