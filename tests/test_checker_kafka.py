"""The kafka checker and workload: one hand-written history per anomaly, the consumer's client
state, and the command line (`splitbrain check --checker kafka`)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from splitbrain.checkers.kafka import KafkaChecker
from splitbrain.checkers.result import Result
from splitbrain.history.errors import HistoryError
from splitbrain.history.op import Op
from splitbrain.harness.workloads import Completion, Invocation, KafkaWorkload, make_workload


class H:
    """A history under construction: sequential calls of processes."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p, typ, f, value=None, key=None, error=None) -> int:
        self.ops.append(Op(len(self.ops), len(self.ops), p, typ, f, value, key, None, error))
        return len(self.ops) - 1

    def send(self, p, key, msg, offset=None, typ="ok") -> int:
        self.op(p, "invoke", "send", msg, key)
        return self.op(p, typ, "send", [offset, msg] if typ == "ok" else msg, key)

    def poll(self, p, asked, msgs) -> int:
        self.op(p, "invoke", "poll", asked)
        return self.op(p, "ok", "poll", msgs)

    def assign(self, p, keys, committed=None) -> int:
        self.op(p, "invoke", "assign", keys)
        return self.op(p, "ok", "assign", committed or {})


def check(h: H) -> Result:
    return KafkaChecker().check(h.ops, {})


def names(r: Result) -> set[str]:
    return {a.name for a in r.anomalies}


def test_a_consistent_history_is_valid():
    h = H()
    h.send(0, "k0", 1, 0)
    h.send(1, "k0", 2, 1)
    h.send(0, "k1", 3, 0)
    h.send(2, "k0", 4, typ="info")              # unknown outcome, later read: fine
    h.assign(3, ["k0", "k1"])
    h.poll(3, {"k0": 0, "k1": 0}, {"k0": [[0, 1], [1, 2]], "k1": [[0, 3]]})
    h.poll(3, {"k0": 2, "k1": 1}, {"k0": [[2, 4]]})
    h.send(1, "k1", 5, 3)                       # sparse offsets are allowed
    h.poll(3, {"k0": 3, "k1": 1}, {"k1": [[3, 5]]})
    h.send(0, "k0", 6, 3)                       # acknowledged, never polled: unseen
    r = check(h)
    assert r.valid is True, [a.message for a in r.anomalies]
    assert r.stats["unseen"] == 1 and r.stats["messages_read"] == 5


def test_no_poll_is_unknown():
    h = H()
    h.send(0, "k0", 1, 0)
    r = check(h)
    assert r.valid == "unknown" and "no poll" in r.error


def test_inconsistent_offsets():
    h = H()
    a = h.send(0, "k0", 1, 0)
    b = h.send(1, "k0", 2, 0)
    h.poll(2, {"k0": 0}, {"k0": [[0, 1]]})
    r = check(h)
    assert names(r) == {"inconsistent-offsets"}
    (x,) = r.anomalies
    assert x.ops == [a, b] and x.details["offset"] == 0 and sorted(x.details["messages"]) == [1, 2]


def test_duplicate():
    h = H()
    h.send(0, "k0", 1, 0)
    h.send(0, "k0", 2, 1)
    p = h.poll(2, {"k0": 0}, {"k0": [[0, 1], [1, 2], [2, 1]]})
    r = check(h)
    assert names(r) == {"duplicate"}
    (x,) = r.anomalies
    assert x.details["offsets"] == [0, 2] and p in x.ops


def test_lost_write():
    h = H()
    ack = h.send(0, "k0", 1, 0)
    h.send(0, "k0", 2, 1)
    last = h.poll(1, {"k0": 1}, {"k0": [[1, 2]]})    # someone read past offset 0 ...
    h.poll(2, {"k0": 1}, {"k0": [[1, 2]]})           # ... and nobody ever read offset 0
    r = check(h)
    assert names(r) == {"lost-write"}
    (x,) = r.anomalies
    assert x.details == {"key": "k0", "message": 1, "offset": 0} and ack in x.ops
    assert last in x.ops


def test_poll_skip_inside_one_answer_and_at_its_start():
    h = H()
    for i in range(4):
        h.send(0, "k0", i + 10, i)
    h.poll(1, {"k0": 0}, {"k0": [[0, 10], [1, 11], [3, 13]]})   # jumps over offset 2
    h.poll(2, {"k0": 0}, {"k0": [[1, 11], [2, 12], [3, 13]]})   # asked 0, starts at 1
    r = check(h)
    assert names(r) == {"poll-skip"}
    assert sorted(a.details["skipped"] for a in r.anomalies) == [0, 2]


def test_poll_skip_between_polls_of_one_process():
    h = H()
    for i in range(3):
        h.send(0, "k0", i + 10, i)
    h.poll(1, {}, {"k0": [[0, 10]]})           # a foreign history: no offsets asked
    h.poll(1, {}, {"k0": [[2, 12]]})           # offset 1 exists and was skipped
    r = check(h)
    assert names(r) == {"poll-skip", "lost-write"}   # and nobody else read offset 1
    by = {a.name: a for a in r.anomalies}
    assert by["poll-skip"].details["skipped"] == 1 and by["lost-write"].details["offset"] == 1


def test_nonmonotonic_poll_inside_and_across_polls():
    h = H()
    for i in range(3):
        h.send(0, "k0", i + 10, i)
    h.poll(1, {"k0": 0}, {"k0": [[0, 10], [2, 12], [1, 11]]})   # inside one answer
    h.poll(2, {"k0": 2}, {"k0": [[1, 11]]})                     # below the offset asked
    h.poll(3, {}, {"k0": [[0, 10], [1, 11]]})
    h.poll(3, {}, {"k0": [[1, 11]]})                            # back below its last poll
    r = check(h)
    assert names(r) == {"nonmonotonic-poll"}
    assert len(r.anomalies) == 3


def test_rewind_and_assign_reset_the_position():
    h = H()
    for i in range(2):
        h.send(0, "k0", i + 10, i)
    h.poll(1, {"k0": 0}, {"k0": [[0, 10], [1, 11]]})
    h.poll(1, {"k0": 0}, {"k0": [[0, 10], [1, 11]]})           # asked from 0 again: a rewind
    h.poll(2, {}, {"k0": [[0, 10], [1, 11]]})
    h.assign(2, ["k0"])
    h.poll(2, {}, {"k0": [[0, 10]]})                           # after an assign: allowed
    assert check(h).valid is True


def test_nonmonotonic_send():
    h = H()
    h.send(0, "k0", 1, 5)
    h.send(0, "k0", 2, 3)
    h.poll(1, {"k0": 0}, {"k0": [[3, 2], [5, 1]]})
    r = check(h)
    assert names(r) == {"nonmonotonic-send"}
    assert r.anomalies[0].details["offsets"] == [5, 3]


def test_unexpected_message_and_failed_send_visible():
    h = H()
    h.send(0, "k0", 1, 0)
    fail = h.send(0, "k0", 2, typ="fail")
    h.poll(1, {"k0": 0}, {"k0": [[0, 1], [1, 2], [2, 99]]})
    r = check(h)
    assert names(r) == {"unexpected-message", "failed-send-visible"}
    by = {a.name: a for a in r.anomalies}
    assert by["unexpected-message"].details["message"] == 99
    assert fail in by["failed-send-visible"].ops


def test_malformed_values_are_history_errors():
    h = H()
    h.op(0, "invoke", "send", 1, "k0")
    h.op(0, "ok", "send", 7, "k0")
    with pytest.raises(HistoryError, match="ok send must have value"):
        check(h)
    h = H()
    h.poll(0, {"k0": 0}, {"k0": [[0]]})
    with pytest.raises(HistoryError, match="key 'k0' of an ok poll"):
        check(h)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 60), loss=st.booleans())
def test_random_histories_of_one_true_log_are_valid_and_a_dropped_ack_is_lost(seed, n, loss):
    """Sequential processes against one correct log: always valid. Remove an acknowledged
    message (not the last of its log) before the final poll: `lost-write` when nobody had read
    it, else a `poll-skip` of the final poll."""
    rng = random.Random(seed)
    wl = KafkaWorkload({"key_count": 2})
    logs: dict[str, list] = {k: [] for k in wl.keys()}
    committed: dict[str, int] = {}
    h = H()
    acked: list[tuple[str, int, int]] = []
    for _ in range(n):
        p = rng.randrange(3)
        inv = wl.prepare(p, wl.next_invocation(rng))
        h.op(p, "invoke", inv.f, inv.value, inv.key)
        reply: dict
        if inv.f == "send":
            logs[inv.key].append(inv.value)
            reply = {"type": "send_ok", "offset": len(logs[inv.key]) - 1}
            acked.append((inv.key, len(logs[inv.key]) - 1, inv.value))
        elif inv.f == "poll":
            reply = {"type": "poll_ok", "msgs": {
                k: [[o, logs[k][o]] for o in range(o0, len(logs[k]))]
                for k, o0 in inv.value.items() if o0 < len(logs[k])}}
        elif inv.f == "assign":
            reply = {"type": "list_committed_offsets_ok",
                     "offsets": {k: committed[k] for k in inv.value if k in committed}}
        else:
            for k, o in inv.value.items():
                committed[k] = max(committed.get(k, -1), o)
            reply = {"type": "commit_offsets_ok"}
        c = wl.completion(inv, reply)
        assert c.type == "ok", (inv, reply, c)
        h.op(p, c.type, inv.f, c.value, inv.key)
        wl.observe(p, inv, c)
    # The final poll of every log from 0, as the workload's final phase does.
    lost = None
    if loss and any(o + 1 < len(logs[k]) for k, o, _ in acked):
        lost = next((k, o, m) for k, o, m in acked if o + 1 < len(logs[k]))
        logs[lost[0]][lost[1]] = None
    for fin in wl.final_invocations(["n1"]):
        h.op(9, "invoke", "poll", fin.inv.value)
        h.op(9, "ok", "poll", {k: [[o, m] for o, m in enumerate(logs[k]) if m is not None]
                               for k in fin.inv.value})
    r = check(h)
    if lost is None:
        assert r.valid in (True, "unknown"), [a.message for a in r.anomalies]
    else:
        # Never read before: a lost write; read before: the final poll skipped over it.
        seen = any(lost[2] in [m for _, m in pairs] for op in h.ops[:-2]
                   if op.f == "poll" and op.type == "ok" for pairs in op.value.values())
        assert r.valid is False
        if seen:
            assert names(r) == {"poll-skip"} and r.anomalies[0].details["skipped"] == lost[1]
        else:
            assert "lost-write" in names(r)
            assert any(a.details.get("message") == lost[2] for a in r.anomalies)


# ---------------------------------------------------------------------------------- workload
def test_workload_consumer_state():
    wl = make_workload("kafka", {"key_count": 2})
    assert wl.keys() == ["k0", "k1"]
    # A fresh process assigns all keys before it polls or commits.
    first = wl.prepare(0, Invocation("poll"))
    assert first == Invocation("assign", ["k0", "k1"])
    assert wl.request(first) == {"type": "list_committed_offsets", "keys": ["k0", "k1"]}
    c = wl.completion(first, {"type": "list_committed_offsets_ok", "offsets": {"k1": 4}})
    assert c == Completion("ok", {"k1": 4})
    wl.observe(0, first, c)
    poll = wl.prepare(0, Invocation("poll"))
    assert poll == Invocation("poll", {"k0": 0, "k1": 5})     # committed 4 -> read from 5
    # Nothing polled yet: a commit is a poll instead.
    assert wl.prepare(0, Invocation("commit")).f == "poll"
    c = wl.completion(poll, {"type": "poll_ok", "msgs": {"k1": [[5, 10], [7, 11]]}})
    assert c.type == "ok" and c.value == {"k1": [[5, 10], [7, 11]]}
    wl.observe(0, poll, c)
    assert wl.prepare(0, Invocation("poll")).value == {"k0": 0, "k1": 8}
    commit = wl.prepare(0, Invocation("commit"))
    assert commit == Invocation("commit", {"k1": 7})
    assert wl.request(commit) == {"type": "commit_offsets", "offsets": {"k1": 7}}
    # A crashed process is replaced; its successor starts over with an assign.
    wl.observe(0, poll, wl.timeout(poll))
    assert wl.prepare(0, Invocation("poll")).f == "assign"
    # Another process has its own position.
    assert wl.prepare(1, Invocation("poll")).f == "assign"


def test_workload_decodes_replies():
    wl = make_workload("kafka")
    send = Invocation("send", 3, "k0")
    assert wl.request(send) == {"type": "send", "key": "k0", "msg": 3}
    assert wl.completion(send, {"type": "send_ok", "offset": 9}) == Completion("ok", [9, 3])
    assert wl.completion(send, {"type": "send_ok"}) == Completion("info", 3, "malformed-reply")
    assert wl.completion(send, {"type": "error", "code": 11}).type == "fail"
    assert wl.completion(send, {"type": "error", "code": 13}).type == "info"
    poll = Invocation("poll", {"k0": 0})
    assert wl.completion(poll, {"type": "poll_ok", "msgs": {"k0": [[0]]}}).type == "info"
    assert wl.completion(poll, {"type": "poll_ok"}) == Completion("ok", {})
    assert [f.inv for f in wl.final_invocations(["n1", "n2"])] == \
        [Invocation("poll", {"k0": 0, "k1": 0, "k2": 0})] * 2
    assert [n for n, _ in wl.checker_names()] == ["kafka", "stats"]


def test_check_command_runs_the_kafka_checker(tmp_path):
    h = H()
    h.send(0, "k0", 1, 0)
    h.send(1, "k0", 2, 0)
    h.poll(2, {"k0": 0}, {"k0": [[0, 1]]})
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(op.to_dict()) + "\n" for op in h.ops))
    for extra in (["--checker", "kafka"], []):      # without --checker: inferred from send/poll
        p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "check", str(path),
                            "--json", *extra], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, p.stderr
        out = json.loads(p.stdout)
        assert [a["name"] for a in out["anomalies"]] == ["inconsistent-offsets"]
        assert out["anomalies"][0]["checker"] == "kafka"
    bad = tmp_path / "bad.jsonl"
    h.ops[1] = Op(1, 1, 0, "ok", "send", 5, "k0")
    bad.write_text("".join(json.dumps(op.to_dict()) + "\n" for op in h.ops))
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "check", str(bad),
                        "--checker", "kafka"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "Traceback" not in p.stderr


MAELSTROM_EDN = """\
{:type :invoke, :f :send, :value [[:send "6" 664]], :time 1, :process 0, :index 0}
{:type :ok, :f :send, :value [[:send "6" [0 664]]], :time 2, :process 0, :index 1}
{:type :invoke, :f :send, :value [[:send "6" 665]], :time 3, :process 0, :index 2}
{:type :ok, :f :send, :value [[:send "6" [1 665]]], :time 4, :process 0, :index 3}
{:type :invoke, :f :assign, :value ["6"], :time 5, :process 1, :index 4}
{:type :ok, :f :assign, :value ["6"], :time 6, :process 1, :index 5}
{:type :invoke, :f :poll, :value [[:poll]], :time 7, :process 1, :index 6}
{:type :ok, :f :poll, :value [[:poll {"6" [POLLED]}]], :time 8, :process 1, :index 7}
"""


@pytest.mark.parametrize("polled,verdict,code", [("[0 664] [1 665]", "VALID", 0),
                                                 ("[1 665]", "INVALID", 1)])
def test_maelstrom_kafka_history_in_edn(tmp_path, polled, verdict, code):
    """A history as Maelstrom's kafka workload records it (micro-ops in EDN): the checker is
    picked from its send / poll ops; reading offset 1 but never 0 is a lost write."""
    path = tmp_path / "history.edn"
    path.write_text(MAELSTROM_EDN.replace("POLLED", polled))
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "check", str(path), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == code, p.stdout + p.stderr
    out = json.loads(p.stdout)
    names = [a["name"] for a in out["anomalies"]]
    assert names == ([] if code == 0 else ["lost-write"])   # where it polled from is not recorded
