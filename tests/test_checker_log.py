"""The log checker: one hand-written history per anomaly, generated valid histories, injected
faults, witnesses, streaming input and the `splitbrain check --checker log --json` command."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.log import LogChecker, make_checker
from splitbrain.history.jsonl import write_jsonl
from splitbrain.history.op import Op
from splitbrain.history.validate import validate_history

from conftest import REPO
from strategies_log import inject_drop, inject_duplicate, inject_swap, log_histories


class H:
    """A tiny history builder: each call appends an invoke and its completion."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p, typ, f, value=None, node=None, key=None, error=None) -> int:
        self.ops.append(Op(len(self.ops), len(self.ops) * 1000, p, typ, f, value, key, node,
                           error))
        return len(self.ops) - 1

    def append(self, p, v, typ="ok", offset=None, node=None, key=None) -> int:
        self.op(p, "invoke", "append", v, node, key)
        ok_value = {"value": v, "offset": offset} if offset is not None and typ == "ok" else v
        return self.op(p, typ, "append", ok_value, node, key,
                       None if typ == "ok" else "timeout")

    def read(self, p, log, node=None, key=None) -> int:
        self.op(p, "invoke", "read", None, node, key)
        return self.op(p, "ok", "read", log, node, key)


def check(ops):
    return LogChecker().check(ops, {})


def names(result) -> list[str]:
    return sorted(a.name for a in result.anomalies)


def only(result, name):
    assert result.valid is False
    assert {a.name for a in result.anomalies} == {name}, [a.message for a in result.anomalies]
    return [a for a in result.anomalies if a.name == name]


# ------------------------------------------------------------------------ hand-written histories
def test_valid_history_with_lagging_replica_and_info_append():
    h = H()
    h.append(0, "a")
    h.append(1, "b", typ="info")           # may be present (recovered) or absent
    h.append(2, "c", typ="fail")           # absent: fine
    h.append(3, "d")
    h.read(4, ["a"], node="n2")
    h.read(5, ["a", "b", "d"], node="n1")  # final of n1
    h.read(4, ["a", "b"], node="n2")       # final of n2: lagging, a prefix
    r = check(h.ops)
    assert r.valid is True, [a.message for a in r.anomalies]
    assert r.stats["recovered"] == 1 and r.stats["lost"] == 0 and r.stats["final-logs"] == 2


def test_divergent_logs_names_offset_entries_and_ops():
    h = H()
    for p, v in enumerate("abc"):
        h.append(p, v)
    r1 = h.read(3, ["a", "b", "c"], node="n1")
    r2 = h.read(4, ["a", "c"], node="n2")
    r3 = h.read(5, ["a", "b", "c"], node="n3")
    # r2 = [a, c]: offset 1 holds b on n1 and c on n2; c is also later on n1: no cycle
    (a,) = only(check(h.ops), "divergent-logs")
    assert a.details["offset"] == 1 and a.details["entries"] == ["b", "c"]
    assert a.ops == [r1, r2]
    assert a.details["logs"] == [{"index": r1, "process": 3, "node": "n1"},
                                 {"index": r2, "process": 4, "node": "n2"}]
    assert "offset 1" in a.message and f"op {r1} (process 3, node n1)" in a.message
    assert r3 not in a.ops


def test_order_cycle_has_the_cycle_as_witness():
    h = H()
    for p, v in enumerate([1, 2, 3]):
        h.append(p, v)
    r1 = h.read(5, [1, 2])
    r2 = h.read(6, [2, 3])
    r3 = h.read(7, [3, 1, 2])
    (a,) = only(check(h.ops), "order-cycle")
    cyc = a.details["cycle"]
    assert len(cyc) >= 2 and set(cyc) <= {1, 2, 3}
    # every edge of the cycle is shown by a named read at two offsets
    for e in a.details["edges"]:
        assert e["op"]["index"] in (r1, r2, r3) and e["op"]["process"] in (5, 6, 7)
        assert len(e["offsets"]) == 2 and e["offsets"][0] < e["offsets"][1]
    assert " -> " in a.message
    # the cycle closes
    befores = [e["before"] for e in a.details["edges"]]
    afters = [e["after"] for e in a.details["edges"]]
    assert afters == befores[1:] + befores[:1]


def test_order_cycle_of_two_replicas_is_not_also_reported_as_divergence():
    h = H()
    h.append(0, "x")
    h.append(1, "y")
    h.read(2, ["x", "y"], node="n1")
    h.read(3, ["y", "x"], node="n2")
    (a,) = only(check(h.ops), "order-cycle")
    assert set(a.details["cycle"]) == {"x", "y"}


def test_lost_append_names_the_ack_and_the_final_logs():
    h = H()
    h.append(0, 1)
    ack = h.append(1, 2, node="n2")
    h.append(2, 3, typ="info")            # absent: not lost, it may never have happened
    seen = h.read(3, [1, 2], node="n1")   # seen once ...
    f1 = h.read(4, [1], node="n1")        # ... then gone from every final log
    f2 = h.read(5, [1], node="n2")
    h.read(3, [1], node="n3")
    # process 3 read [1, 2] then [1] on n3: exempt, a final read of another node
    f3 = len(h.ops) - 1
    (a,) = only(check(h.ops), "lost-append")
    assert a.details["value"] == 2
    assert a.details["append"] == {"index": ack, "process": 1, "node": "n2"}
    assert {o["index"] for o in a.details["final_logs"]} == {f1, f2, f3}
    assert a.details["seen_at"] == {"offset": 1, "op": {"index": seen, "process": 3,
                                                         "node": "n1"}}


def test_failed_append_visible():
    h = H()
    h.append(0, 1)
    failed = h.append(1, 2, typ="fail")
    rd = h.read(2, [1, 2], node="n1")
    (a,) = only(check(h.ops), "failed-append-visible")
    assert a.ops == [failed, rd] and a.details["offset"] == 1


def test_duplicate_in_one_log():
    h = H()
    h.append(0, 1)
    h.append(1, 2)
    h.read(2, [1, 2], node="n1")
    rd = h.read(3, [1, 2, 1], node="n2")
    (a,) = only(check(h.ops), "duplicate")
    assert a.details["offsets"] == [0, 2] and a.details["value"] == 1
    assert a.details["read"] == {"index": rd, "process": 3, "node": "n2"}


def test_duplicate_inside_a_replica_log_is_not_also_a_divergence():
    h = H()
    for p, v in enumerate([1, 2, 3]):
        h.append(p, v)
    h.read(5, [1, 2, 3], node="n1")
    h.read(6, [1, 2, 2, 3], node="n2")
    (a,) = only(check(h.ops), "duplicate")
    assert a.details["offsets"] == [1, 2]


def test_inconsistent_offset_between_two_acks():
    h = H()
    a1 = h.append(0, "a", offset=0)
    a2 = h.append(1, "b", offset=0)
    (a,) = only(check(h.ops), "inconsistent-offset")
    assert a.ops == [a1, a2] and a.details["reported_offset"] == 0


def test_inconsistent_offset_between_ack_and_read():
    h = H()
    h.append(0, "a")
    ack = h.append(1, "b", offset=0)
    rd = h.read(2, ["a", "b"], node="n1")
    (a,) = only(check(h.ops), "inconsistent-offset")
    assert a.details["reported_offset"] == 0 and a.details["observed_offset"] == 1
    assert a.ops == [ack, rd]


def test_nonmonotonic_read():
    h = H()
    h.append(0, 1)
    h.append(1, 2)
    e = h.read(2, [1, 2], node="n1")
    later = h.read(2, [1], node="n2")
    h.read(3, [1, 2], node="n2")           # the final log of n2 is complete: nothing lost
    h.read(4, [1, 2], node="n1")
    (a,) = only(check(h.ops), "nonmonotonic-read")
    assert a.ops == [e, later] and a.details["lengths"] == [2, 1] and a.details["process"] == 2


def test_unexpected_value():
    h = H()
    h.append(0, 1)
    rd = h.read(1, [1, 99], node="n1")
    (a,) = only(check(h.ops), "unexpected-value")
    assert a.details["value"] == 99 and a.ops == [rd]


def test_no_read_is_unknown_and_keys_are_independent():
    h = H()
    h.append(0, 1, key="k1")
    r = check(h.ops)
    assert r.valid == "unknown" and "no read" in r.error
    h.read(1, [1], node="n1", key="k1")
    h.append(2, 1, key="k2")               # the same value in another key's log
    h.read(3, [1], node="n1", key="k2")
    assert check(h.ops).valid is True
    h.read(3, [1, 1], node="n1", key="k2")
    (a,) = only(check(h.ops), "duplicate")
    assert a.details["key"] == "k2"


def test_unhashable_values_and_streamed_input_give_the_same_result():
    h = H()
    h.append(0, [1, "x"])
    h.append(1, {"k": 2})
    h.read(2, [[1, "x"], {"k": 2}], node="n1")
    h.read(3, [{"k": 2}, [1, "x"]], node="n2")
    listed = check(h.ops)
    streamed = LogChecker().check(iter(h.ops), {})
    assert names(listed) == names(streamed) == ["order-cycle"]
    assert listed.to_json()["anomalies"] == streamed.to_json()["anomalies"]


def test_malformed_read_value_is_a_history_error():
    from splitbrain.history.errors import HistoryError
    h = H()
    h.op(0, "invoke", "read")
    h.op(0, "ok", "read", "not a list")
    with pytest.raises(HistoryError, match="op 1"):
        check(h.ops)


def test_anomalies_are_capped_but_counted():
    h = H()
    for v in range(30):
        h.append(v, v)
    h.read(99, [], node="n1")
    r = make_checker({"anomalies_per_name_max": 5}).check(h.ops, {})
    assert len(r.anomalies) == 5 and r.stats["anomaly-counts"]["lost-append"] == 30
    assert r.stats["lost"] == 30
    with pytest.raises(ValueError):
        make_checker({"anomalies_per_name_max": -1})


# ------------------------------------------------------------------------ generated histories
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(log_histories())
def test_generated_histories_are_valid(h):
    validate_history(h.ops)          # Jepsen's operation semantics hold
    r = check(h.ops)
    assert r.valid is True, [a.message for a in r.anomalies]
    assert r.stats["acknowledged"] == len(h.acknowledged)


@SETTINGS
@given(log_histories(), st.integers(0, 2**32 - 1))
def test_injected_drop_is_a_lost_append(h, seed):
    got = inject_drop(h, random.Random(seed))
    if got is None:
        return
    ops, info = got
    r = check(ops)
    found = set(names(r))
    assert "lost-append" in found
    lost = [a.details["value"] for a in r.anomalies if a.name == "lost-append"]
    assert lost == [info["value"]]
    if info["offsets_shifted"]:
        assert found <= {"lost-append", "inconsistent-offset"}
    else:
        assert found == {"lost-append"}


@SETTINGS
@given(log_histories(), st.integers(0, 2**32 - 1))
def test_injected_swap_is_an_order_cycle(h, seed):
    got = inject_swap(h, random.Random(seed))
    if got is None:
        return
    ops, info = got
    r = check(ops)
    found = set(names(r))
    # another log holds both entries at their true offsets: it confirms any reported offset,
    # so the swap shows as exactly one anomaly
    assert found == {"order-cycle"}, info
    i, j = info["positions"]
    (a,) = [a for a in r.anomalies if a.name == "order-cycle"]
    assert {h.order[i], h.order[j]} <= set(a.details["component"])
    assert set(a.details["cycle"]) <= set(a.details["component"])


@SETTINGS
@given(log_histories(), st.integers(0, 2**32 - 1))
def test_injected_duplicate_is_a_duplicate(h, seed):
    got = inject_duplicate(h, random.Random(seed))
    if got is None:
        return
    ops, info = got
    r = check(ops)
    found = set(names(r))
    assert "duplicate" in found
    if info["offsets_shifted"]:
        assert found <= {"duplicate", "inconsistent-offset"}
    else:
        assert found == {"duplicate"}
    (a,) = [a for a in r.anomalies if a.name == "duplicate"]
    assert a.details["value"] == info["value"] and a.details["read"]["node"] == info["node"]


# ------------------------------------------------------------------------ the command line
def _run_check(path) -> tuple[int, dict]:
    p = subprocess.run([sys.executable, "-m", "splitbrain", "check", str(path), "--checker", "log",
                        "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.stderr == "" or p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def test_check_command_json_lists_every_anomaly_and_exit_codes(tmp_path):
    import importlib.util
    if importlib.util.find_spec("splitbrain.commands.check") is None:
        pytest.skip("splitbrain check is not there yet")
    h = H()
    for p, v in enumerate([1, 2, 3, 4]):
        h.append(p, v)
    h.append(9, 5, typ="fail")
    h.read(10, [1, 2, 3, 4], node="n1")
    h.read(11, [1, 3, 2, 4, 5], node="n2")     # a swap and a failed append
    h.read(12, [1, 2], node="n3")
    h.read(12, [1], node="n3")                 # nonmonotonic on one node
    bad = tmp_path / "bad.jsonl"
    write_jsonl(str(bad), h.ops)
    rc, doc = _run_check(bad)
    assert rc == 1 and doc["valid"] is False
    got = sorted(a["name"] for a in doc["anomalies"])
    assert got == ["failed-append-visible", "nonmonotonic-read", "order-cycle"], got
    for a in doc["anomalies"]:
        assert a["checker"] == "log" and a["message"] and a["ops"]

    good = H()
    good.append(0, 1)
    good.append(1, 2)
    good.read(2, [1, 2], node="n1")
    good.read(3, [1], node="n2")
    ok = tmp_path / "good.jsonl"
    write_jsonl(str(ok), good.ops)
    rc, doc = _run_check(ok)
    assert rc == 0 and doc["valid"] is True and doc["anomalies"] == []


def test_final_logs_without_nodes_are_the_reads_after_the_last_append():
    h = H()
    h.append(0, 1)
    h.append(1, 2)
    h.append(2, 3)
    h.read(3, [1, 2])
    h.read(4, [1, 3])               # two node-less reads after every append: both final
    (a,) = only(check(h.ops), "divergent-logs")
    h = H()
    h.append(0, 1)
    h.read(3, [1])
    h.append(1, 2)                  # acknowledged after the only read: never observed
    h.read(3, [1])                  # the final phase: 2 is lost
    (a,) = only(check(h.ops), "lost-append")
    assert a.details["value"] == 2
    h = H()
    h.append(0, 1)
    h.append(1, 2)
    h.read(2, [1, 2])
    h.read(2, [1])                  # no node: the final logs are both reads; 2 is not lost
    only(check(h.ops), "nonmonotonic-read")
