"""The harness side of third-party Maelstrom nodes (issue 13; issue 12 item 6): services, protocol
fidelity (src kept, no probes), node-crashed, the bounded final phase, Maelstrom's command line,
messages.jsonl and network statistics, and bad node output. Test nodes: tests/nodes/*.py on
tests/nodes/strictnode.py (which, like Maelstrom's Ruby and Go libraries, exits on a message type it
has no handler for)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splitbrain.harness.backends.wire import LINE_BYTES_MAX, LineReader, parse_envelope
from splitbrain.harness.msglog import MessageLog
from splitbrain.harness.services import SEQ_WINDOW, Services

NODES = Path(__file__).parent / "nodes"
REPO = Path(__file__).resolve().parent.parent


# ---- services (unit) ------------------------------------------------------------------------

def _rpc(s: Services, name: str, body: dict, src: str = "n1", _ids=iter(range(1, 10**9))) -> dict:
    return s.handle(name, src, {**body, "msg_id": next(_ids)})


@pytest.mark.parametrize("name", ["lin-kv", "seq-kv", "lww-kv"])
def test_kv_service_api_and_error_codes(name):
    s = Services(seed=1)
    r = _rpc(s, name, {"type": "read", "key": "a"})
    assert r["type"] == "error" and r["code"] == 20 and "in_reply_to" in r
    assert _rpc(s, name, {"type": "cas", "key": "a", "from": 1, "to": 2})["code"] == 20
    assert _rpc(s, name, {"type": "cas", "key": "a", "from": 1, "to": 2,
                          "create_if_not_exists": True})["type"] == "cas_ok"
    assert _rpc(s, name, {"type": "write", "key": "b", "value": [1, 2]})["type"] == "write_ok"
    assert _rpc(s, name, {"type": "bogus"})["code"] == 10
    assert _rpc(s, name, {"type": "write", "key": "b"})["code"] == 12
    assert _rpc(s, name, {"type": "cas", "key": "b", "to": 3})["code"] == 12
    if name == "lin-kv":
        assert s.handle(name, "n1", {"type": "read", "key": "a", "msg_id": 77}) == {
            "type": "read_ok", "value": 2, "in_reply_to": 77}
        assert _rpc(s, name, {"type": "cas", "key": "a", "from": 5, "to": 6})["code"] == 22
        # JSON value identity: true is not 1 (neither as key nor in cas's from).
        _rpc(s, name, {"type": "write", "key": 1, "value": True})
        assert _rpc(s, name, {"type": "read", "key": True})["code"] == 20
        assert _rpc(s, name, {"type": "cas", "key": 1, "from": 1, "to": 0})["code"] == 22
        assert _rpc(s, name, {"type": "cas", "key": 1, "from": True, "to": 0})["type"] == "cas_ok"


def test_lin_tso_is_monotonic_and_refuses_kv_requests():
    s = Services(seed=2)
    ts = [_rpc(s, "lin-tso", {"type": "ts"}, src=f"n{i % 3}")["ts"] for i in range(50)]
    assert ts == list(range(50))
    assert _rpc(s, "lin-tso", {"type": "read", "key": 1})["code"] == 10


def test_seq_kv_reads_go_stale_but_never_back_for_one_client():
    """Sequential consistency: a client's reads never observe an older state than it already
    saw, every write is applied to the newest state, and stale reads do happen."""
    s = Services(seed=3)
    rng = random.Random(3)
    last_seen = {}      # client -> highest value it read
    stale = 0
    written = 0
    for _ in range(3000):
        client = f"n{rng.randrange(3)}"
        if rng.random() < 0.3:
            written += 1
            assert _rpc(s, "seq-kv", {"type": "write", "key": "k", "value": written},
                        src=client)["type"] == "write_ok"
            last_seen[client] = written     # its own write is in its past now
        else:
            r = _rpc(s, "seq-kv", {"type": "read", "key": "k"}, src=client)
            if r["type"] == "error":
                assert written == 0 or last_seen.get(client, 0) == 0
                continue
            v = r["value"]
            assert v >= last_seen.get(client, 0), "a client's view went back in time"
            assert v >= written - SEQ_WINDOW
            stale += v < written
            last_seen[client] = v
    assert stale > 100
    # A cas may fail on a stale state (sequential consistency allows it), but one that succeeds
    # was applied to the newest state, and its client never reads anything older afterwards.
    for _ in range(200):
        if _rpc(s, "seq-kv", {"type": "cas", "key": "k", "from": written, "to": -1},
                src="n9")["type"] == "cas_ok":
            break
    else:
        pytest.fail("a cas from the newest value never succeeded")
    assert all(_rpc(s, "seq-kv", {"type": "read", "key": "k"}, src="n9")["value"] == -1
               for _ in range(50))


def test_lww_kv_loses_concurrent_writes_and_reads_stale():
    s = Services(seed=4)
    stale = 0
    for i in range(1, 400):
        _rpc(s, "lww-kv", {"type": "write", "key": "k", "value": i})
        r = _rpc(s, "lww-kv", {"type": "read", "key": "k"})
        stale += r.get("value") != i
    assert stale > 50                # another replica answered: an older (or no) value


# ---- wire: untrusted node output (unit) ------------------------------------------------------

def test_line_reader_bounds_what_it_buffers():
    r = LineReader(line_bytes_max=1000)
    assert r.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert r.feed(b":2}\n") == [b'{"b":2}']
    # An endless line is discarded as it comes: never more than the bound is held.
    for _ in range(50):
        assert r.feed(b"x" * 700) == []
        assert len(r.buf) <= 1000
    assert r.feed(b"tail\nok\n") == [b"ok"]
    assert r.discarded == 1 and r.bytes > 35000
    assert r.feed(b"y" * 1500 + b"\nz\n") == [b"z"]
    assert r.discarded == 2


@pytest.mark.parametrize("line,why", [
    (b"garbage", "not JSON"), (b"\xff\xfe{}", "not"), (b"[1]", "not a JSON object"),
    (b'{"src":"n1","dest":["n2"],"body":{}}', "dest"),
    (b'{"src":7,"dest":"n2","body":{}}', "src"),
    (b'{"src":"n1","dest":"n2","body":[]}', "body"),
    (b'{"src":"n1","dest":"c1","body":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deep"),
])
def test_parse_envelope_names_what_is_wrong_and_never_raises(line, why):
    env, reason = parse_envelope(line)
    assert env is None and why in reason


# ---- the message log (unit) -------------------------------------------------------------------

def test_message_log_fates_stats_truncation_and_pending(tmp_path):
    path = tmp_path / "messages.jsonl"
    log = MessageLog(path, max_lines=3)
    m0, s0 = log.send()
    log.record(m0, s0, "c0", "n1", {"type": "init"}, "delivered", control=True)
    time.sleep(0.01)
    log.set_t0(time.monotonic_ns())          # the history clock starts later
    m1, s1 = log.send()
    log.record(m1, s1, "c1", "n1", {"type": "read"}, "delivered", op=0)
    m2, s2 = log.send()
    log.record(m2, s2, "n1", "n2", {"type": "gossip"}, "dropped")
    m3, s3 = log.send()
    log.hold(m3, s3, "n1", "lin-kv", {"type": "read"})
    m4, s4 = log.send()
    log.record(m4, s4, "n2", "nowhere", {"type": "x"}, "unknown-dest")
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x.get("id") for x in lines[:3]] == [0, 1, 2]
    assert lines[0]["sent"] < 0 and lines[0]["control"] is True     # before t0: negative
    assert lines[1]["op"] == 0 and lines[1]["recv"] >= lines[1]["sent"] >= 0
    assert lines[2]["fate"] == "dropped" and lines[2]["recv"] is None
    assert lines[3] == {"truncated": True, "logged": 3}
    st = log.stats(op_count=2)
    assert st["all"]["msg-count"] == 5 and st["all"]["recv-count"] == 2
    assert st["clients"]["msg-count"] == 2 and st["servers"]["msg-count"] == 3
    assert st["servers"]["msgs-per-op"] == 1.5
    assert st["fates"] == {"delivered": 2, "dropped": 1, "unknown-dest": 1, "pending": 1}
    assert st["truncated"] is True


# ---- end to end with small Python nodes ------------------------------------------------------

def _test(tmp_path, *args, timeout=120) -> tuple[subprocess.CompletedProcess, dict | None, float]:
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "test", "--store",
                        str(tmp_path / "store"), "--json", "--opt", "harness.reports=false",
                        "--opt", "harness.recovery_s=0.3", *args],
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    elapsed = time.monotonic() - t
    try:
        out = json.loads(p.stdout[p.stdout.index("{\n"):])
    except ValueError:
        out = None
    return p, out, elapsed


def _messages(out: dict) -> list[dict]:
    return [json.loads(x) for x in
            (Path(out["run_dir"]) / "messages.jsonl").read_text().splitlines()]


def _history(out: dict) -> list[dict]:
    return [json.loads(x) for x in
            (Path(out["run_dir"]) / "history.jsonl").read_text().splitlines()]


def test_forwarding_keeps_src_and_the_leader_answers_the_client(tmp_path):
    """The Raft idiom: followers forward client requests unchanged (src = the client) to n1,
    which answers the client directly. Maelstrom's command line, with `--bin PROGRAM ARGS`."""
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", sys.executable,
                      str(NODES / "forwarder.py"), "--node-count", "3", "--time-limit", "3",
                      "--rate", "100", "--concurrency", "2n", "--seed", "3")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    hist = _history(out)
    invokes = [o for o in hist if o["type"] == "invoke"]
    answered = [o for o in hist if o["type"] in ("ok", "fail")]
    assert len(invokes) > 150 and len(answered) >= 0.9 * len(invokes)
    msgs = _messages(out)
    forwarded = [m for m in msgs if m.get("src", "").startswith("c") and m["dest"] == "n1"
                 and "op" not in m and m["body"].get("type") != "init"]
    assert forwarded, "no forwarded request kept its client src"
    # n1 answered requests that clients sent to n2 and n3.
    by_op = {}
    for m in msgs:
        if "op" in m:
            by_op.setdefault(m["op"], []).append(m)
    relayed = [ms for ms in by_op.values()
               if any(m["dest"] in ("n2", "n3") for m in ms if m["src"].startswith("c"))
               and any(m["src"] == "n1" for m in ms)]
    assert len(relayed) > 50
    assert out["stats"]["net"]["clients"]["msg-count"] > 300
    test_json = json.loads((Path(out["run_dir"]) / "test.json").read_text())
    assert test_json["concurrency"] == 6 and test_json["bin_args"][-1].endswith("forwarder.py")


def test_bin_nodes_are_never_probed_under_leader_targeted_faults(tmp_path):
    """strictnode.py exits on any message type it has no handler for (as Maelstrom's Ruby and Go
    libraries do): with pause (which targets "the leader" too) and partitions the nodes must
    get nothing but init and the workload's requests, and nobody crashes."""
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", f"{sys.executable} "
                      f"{NODES / 'forwarder.py'}", "--node-count", "3", "--time-limit", "4",
                      "--rate", "50", "--nemesis", "pause", "--nemesis", "partition",
                      "--nemesis-interval", "0.4", "--seed", "11")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert out["results"]["children"]["nodes"]["valid"] is True
    types = {m["body"].get("type") for m in _messages(out) if m["dest"].startswith("n")}
    assert types <= {"init", "read", "write", "cas"}, types
    log = (Path(out["run_dir"]) / "splitbrain.log").read_text()
    assert "never probed" in log


def test_node_that_exits_by_itself_is_node_crashed_and_invalid(tmp_path):
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "crasher.py"),
                      "--node-count", "3", "--time-limit", "3", "--rate", "100", "--seed", "1")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    nodes = out["results"]["children"]["nodes"]
    assert nodes["valid"] is False
    crash = next(a for a in nodes["anomalies"] if a["name"] == "node-crashed")
    assert crash["details"]["node"] == "n2" and crash["details"]["code"] == 3
    assert any("assertion failed" in line for line in crash["details"]["last_lines"])
    # Only the nemesis restarts nodes: n2 booted once.
    log = (Path(out["run_dir"]) / "splitbrain.log").read_text()
    assert log.count("n2: started") == 1
    # Re-checking the stored run keeps what the run observed: still INVALID, node-crashed.
    a = subprocess.run([sys.executable, "-m", "splitbrain.cli", "analyze", out["run_dir"],
                        "--json"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert a.returncode == 1, a.stdout[-2000:] + a.stderr[-2000:]
    again = json.loads(a.stdout[a.stdout.index("{\n"):])
    assert "node-crashed" in again["results"]["children"]["nodes"]["anomaly_names"]
    assert again["results"]["net"] == out["results"]["net"]


def test_no_run_ends_valid_with_every_node_down(tmp_path):
    p, out, elapsed = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "crasher.py"), "all",
                            "--node-count", "2", "--time-limit", "3", "--rate", "100",
                            "--opt", "harness.final_deadline_s=3")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    names = [a["message"] for a in out["results"]["children"]["nodes"]["anomalies"]]
    assert "every node was down at the end of the run" in names
    assert len(names) == 3
    assert elapsed < 40


@pytest.mark.parametrize("service,valid", [
    ("lin-kv", True), ("lww-kv", False), pytest.param("seq-kv", False, marks=pytest.mark.slow)])
def test_node_built_on_a_service(tmp_path, service, valid):
    """kvproxy.py serves lin-kv from a service: linearizable on lin-kv, stale reads (INVALID)
    on lww-kv. Service traffic is in messages.jsonl and counted as server traffic."""
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "kvproxy.py"), service,
                      "--node-count", "2", "--time-limit", "3", "--rate", "100", "--seed", "2")
    assert p.returncode == (0 if valid else 1), p.stdout[-3000:] + p.stderr[-3000:]
    assert out["results"]["children"]["linearizable"]["valid"] is valid
    msgs = _messages(out)
    to = [m for m in msgs if m["dest"] == service]
    back = [m for m in msgs if m["src"] == service]
    assert len(to) > 100 and len(back) == len(to)
    assert all(m["fate"] == "delivered" for m in to + back)
    assert {m["body"]["in_reply_to"] for m in back} == {m["body"]["msg_id"] for m in to
                                                        if m["src"] == to[0]["src"]} | {
        m["body"]["msg_id"] for m in to if m["src"] != to[0]["src"]}
    assert out["stats"]["net"]["servers"]["msg-count"] == len(to) + len(back)


def test_message_to_an_unknown_destination_is_logged_and_counted(tmp_path):
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "badout.py"), "wrong-ids",
                      "--node-count", "1", "--time-limit", "1", "--rate", "50")
    # (3, unknown, when so short a run saw no cas succeed: the stats checker's rule)
    assert p.returncode in (0, 3), p.stdout[-3000:] + p.stderr[-3000:]
    assert out["results"]["children"]["linearizable"]["valid"] is True
    unknown = [m for m in _messages(out) if m["fate"] == "unknown-dest"]
    assert unknown and unknown[0]["dest"] == "nowhere"
    assert out["results"]["net"]["unknown_dest"] == len(unknown)
    assert "unknown destination 'nowhere'" in (Path(out["run_dir"]) / "splitbrain.log").read_text()


MIXED = "irt-list,dest-list,deep,garbage,wrong-ids,huge-line"


@pytest.mark.parametrize("mode", [
    MIXED, "endless",
    *(pytest.param(m, marks=pytest.mark.slow) for m in MIXED.split(",")),
    pytest.param("no-newline", marks=pytest.mark.slow)])
def test_bad_node_output_never_crashes_or_stalls_the_harness(tmp_path, mode):
    """Issue 12 item 6: a node's bad output is counted and logged; the run goes on and ends in
    time. Modes whose correct replies still arrive stay VALID."""
    p, out, elapsed = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "badout.py"), mode,
                            "--node-count", "1", "--time-limit", "1", "--rate", "50",
                            "--opt", "harness.final_deadline_s=2")
    assert p.returncode in (0, 1, 3), p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert elapsed < 45
    if mode in ("no-newline", "endless"):
        assert p.returncode != 0          # nothing it said arrived: never VALID
        assert out["results"]["children"]["stats"]["valid"] != True  # noqa: E712
    else:
        assert p.returncode in (0, 3), p.stdout[-3000:]
        assert out["results"]["children"]["linearizable"]["valid"] is True
    if {"dest-list", "deep", "garbage"} & set(mode.split(",")):
        assert out["results"]["net"]["malformed"] > 0
    if {"huge-line", "endless"} & set(mode.split(",")):
        assert out["stats"]["output"]["discarded"] >= 1


def test_silent_cluster_final_phase_is_bounded(tmp_path):
    """A cluster that never answers: the run ends within a few seconds of the final deadline
    (today's default 10 s; here 3 s), and the verdict is not VALID."""
    p, out, elapsed = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "silent.py"),
                            "--node-count", "3", "--time-limit", "1", "--rate", "20",
                            "--opt", "harness.final_deadline_s=3")
    assert p.returncode == 3, p.stdout[-3000:] + p.stderr[-3000:]
    assert elapsed < 25
    finals = [o for o in _history(out) if o["type"] != "invoke" and o["time"] > 1.5e9]
    assert finals and all(o["type"] in ("info", "fail") for o in finals)


# ---- the command line ------------------------------------------------------------------------

def test_bin_program_found_on_path_and_quoted_form(tmp_path):
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", f"python3 {NODES / 'forwarder.py'}",
                      "--node-count", "1", "--time-limit", "1", "--rate", "20")
    assert p.returncode in (0, 3), p.stdout[-3000:] + p.stderr[-3000:]
    assert out["results"]["children"]["linearizable"]["valid"] is True
    assert out["history_ops"] > 20
    assert "--bin 'python3 " in out["replay"]


@pytest.mark.parametrize("args,needle", [
    (["--bin", "no-such-program-h13h"], "no such program on PATH"),
    (["--bin", str(NODES / "strictnode.py")], "not an executable"),
    (["--bin", str(NODES / "forwarder.py"), "--concurrency", "xn"], "--concurrency"),
    (["--bin", str(NODES / "forwarder.py"), "--availability", "2"], "--availability"),
    (["stray-argument", "--system", "raft"], "unexpected argument"),
    (["--bin", str(NODES / "forwarder.py"), "--time-limt", "3"], "did you mean --time-limit"),
    # an option splitbrain does not know is never handed to the node silently
    (["--bin", "python3", str(NODES / "forwarder.py"), "--log-net-send"], "no such option"),
    (["--bin", str(NODES / "forwarder.py"), "--consistency-models", "serializable"],
     "unknown option 'consistency_models'"),          # lin-kv is checked for linearizability
])
def test_bad_command_lines_are_one_line_usage_errors(tmp_path, args, needle):
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "test", "-w", "lin-kv",
                        "--store", str(tmp_path), *args], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2 and needle in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


# ---- the TCP shim (netns/docker --bin) routes by dest --------------------------------------

def _free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_tcp_shim_sends_replies_and_service_requests_to_the_harness(tmp_path):
    """Two shims on localhost running forwarder.py: a request to n2 is forwarded to n1 with the
    client's src kept, and n1's reply reaches the harness on n1's connection (the shim sends
    every non-peer envelope to the harness); kvproxy.py's service request does too."""
    ports = _free_ports(3)
    peers = [f"--peer=n{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports)]
    progs = [[str(NODES / "forwarder.py")], [str(NODES / "forwarder.py")],
             [str(NODES / "kvproxy.py"), "lin-kv"]]
    ids = ["n1", "n2", "n3"]
    procs = []
    try:
        for i, port in enumerate(ports):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "splitbrain.systems.tcp_shim", f"--listen=127.0.0.1:{port}",
                 *peers, "--", sys.executable, *progs[i]],
                stdin=subprocess.DEVNULL, stderr=open(tmp_path / f"n{i + 1}.log", "wb"),
                env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True))
        conns = []
        for i, port in enumerate(ports):
            deadline = time.monotonic() + 20
            while True:
                try:
                    conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                    break
                except OSError:
                    assert time.monotonic() < deadline, "shim did not listen"
                    time.sleep(0.1)
        files = [c.makefile("rwb") for c in conns]

        def send(i, env):
            files[i].write(json.dumps(env).encode() + b"\n")
            files[i].flush()

        for i in range(3):
            send(i, {"src": "c0", "dest": ids[i], "body": {"type": "init", "msg_id": 1,
                     "node_id": ids[i], "node_ids": ids}})
            assert json.loads(files[i].readline())["body"]["type"] == "init_ok"
        send(1, {"src": "c7", "dest": "n2", "body": {"type": "write", "key": 1, "value": 5,
                                                     "msg_id": 9}})
        reply = json.loads(files[0].readline())         # from n1, on n1's connection
        assert reply == {"src": "n1", "dest": "c7", "body": {"type": "write_ok",
                                                            "in_reply_to": 9}}
        send(2, {"src": "c8", "dest": "n3", "body": {"type": "read", "key": 1, "msg_id": 3}})
        req = json.loads(files[2].readline())           # n3's request to the service
        assert req["dest"] == "lin-kv" and req["src"] == "n3"
        assert req["body"]["type"] == "read"
        send(2, {"src": "lin-kv", "dest": "n3", "body": {"type": "read_ok", "value": 4,
                                                         "in_reply_to": req["body"]["msg_id"]}})
        assert json.loads(files[2].readline()) == {"src": "n3", "dest": "c8", "body": {
            "type": "read_ok", "value": 4, "in_reply_to": 3}}
    finally:
        for pr in procs:
            try:
                os.killpg(pr.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pr.wait(timeout=10)
    assert all(pr.poll() is not None for pr in procs)


# ---- latency, stderr, and the netns backend -----------------------------------------------

def test_latency_delays_messages_between_servers_and_log_stderr_copies_node_logs(tmp_path):
    """--latency 50: every node->node and node<->service message takes >= 50 ms (client traffic
    is not delayed: Jepsen's clients sit next to the nodes); --log-stderr copies the nodes'
    stderr to ours."""
    p, out, _ = _test(tmp_path, "-w", "lin-kv", "--bin", str(NODES / "forwarder.py"),
                      "--node-count", "2", "--time-limit", "2", "--rate", "50", "--latency", "50",
                      "--log-stderr")
    assert p.returncode in (0, 3), p.stdout[-3000:] + p.stderr[-3000:]
    assert "n2 | init n2" in p.stderr
    msgs = _messages(out)
    peer = [m for m in msgs if m["fate"] == "delivered" and m["dest"] == "n1"
            and "op" not in m and m["body"].get("type") != "init"]
    assert peer and all(m["recv"] - m["sent"] >= 49e6 for m in peer)
    client = [m for m in msgs if "op" in m and m["fate"] == "delivered"]
    assert client and max(m["recv"] - m["sent"] for m in client) < 40e6
    assert "--latency 50" in out["replay"]


@pytest.mark.root
def test_netns_bin_nodes_forward_use_services_and_crash(tmp_path):
    """On the netns backend (TCP shim): kvproxy.py on lin-kv is VALID through the shim's route
    to the harness; crasher.py's n2 is node-crashed."""
    import shutil
    from conftest import require
    require(os.geteuid() == 0 and shutil.which("ip") and shutil.which("iptables"),
            "root, ip and iptables")
    p, out, _ = _test(tmp_path, "--backend", "netns", "--name", "h13h-netns", "-w", "lin-kv",
                      "--bin", str(NODES / "kvproxy.py"), "lin-kv", "--node-count", "2",
                      "--time-limit", "2", "--rate", "50")
    assert p.returncode in (0, 3), p.stdout[-3000:] + p.stderr[-3000:]
    assert out["results"]["children"]["linearizable"]["valid"] is True
    assert out["stats"]["net"]["servers"]["msg-count"] > 50
    p, out, _ = _test(tmp_path, "--backend", "netns", "--name", "h13h-netns", "-w", "lin-kv",
                      "--bin", str(NODES / "crasher.py"), "--node-count", "3",
                      "--time-limit", "3", "--rate", "50")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    crash = out["results"]["children"]["nodes"]["anomalies"][0]
    assert crash["details"]["node"] == "n2" and crash["details"]["code"] == 3
