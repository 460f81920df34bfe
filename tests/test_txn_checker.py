"""The transactional checker (splitbrain/checkers/transactions): one hand-made history per
anomaly with its minimal cycle, valid histories under every model, Elle's documented example,
Hypothesis properties of serial executions, and the lattice's not / also-not."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.registry import make_checker
from splitbrain.checkers.transactions import TxnChecker, infer_kind, models
from splitbrain.checkers.transactions.synth import simulate
from splitbrain.history.op import Op


def concurrent(*txns, fail=(), info=()):
    """A history in which every transaction is invoked before any completes (so no real-time
    or process order between them); `txns` are the completions' micro-ops; indices in `fail`
    complete `fail`, in `info` never complete."""
    ops: list[Op] = []
    for p, t in enumerate(txns):
        inv = [[f, k, None if f == "r" else v] for f, k, v in t]
        ops.append(Op(len(ops), len(ops) * 1000, p, "invoke", "txn", inv))
    for p, t in enumerate(txns):
        if p in info:
            continue
        ops.append(Op(len(ops), len(ops) * 1000, p, "fail" if p in fail else "ok", "txn", t))
    return ops


def sequence(*steps):
    """A history from ("invoke"|"ok"|"fail", process, micro-ops) steps, in order."""
    ops = []
    for typ, p, t in steps:
        v = [[f, k, None if f == "r" else x] for f, k, x in t] if typ == "invoke" else t
        ops.append(Op(len(ops), len(ops) * 1000, p, typ, "txn", v))
    return ops


def check(kind, ops, models_=None, **kw):
    return TxnChecker(kind, models_, **kw).check(ops, {})


def names(result):
    return {a.name for a in result.anomalies}


def cycle_len(result, name):
    cycles = [a for a in result.anomalies if a.name == name]
    assert cycles, (name, names(result))
    return min(len(a.details["cycle"]) for a in cycles)


# ---- one history per anomaly ---------------------------------------------------------------

LA_CASES = {
    # write cycle: x says T0 < T1, y says T1 < T0
    "G0": (concurrent([["append", "x", 1], ["append", "y", 2]],
                      [["append", "x", 2], ["append", "y", 1]],
                      [["r", "x", [1, 2]], ["r", "y", [1, 2]]]), 2),
    # Elle's README example: T1 saw T2's append to y, but T2's append to x came after T1's
    "G1c": (concurrent([["append", "x", 1], ["r", "y", [1]]],
                       [["append", "x", 2], ["append", "y", 1]],
                       [["r", "x", [1, 2]]]), 2),
    # read skew: T1 saw T0's append to x but not its append to y
    "G-single": (concurrent([["append", "x", 1], ["append", "y", 1]],
                            [["r", "x", [1]], ["r", "y", []]],
                            [["r", "y", [1]]]), 2),
    # T0 -rw-> T1 -wr-> T2 -rw-> T3 -wr-> T0
    "G-nonadjacent": (concurrent([["r", "x", []], ["r", "y", [1]]],
                                 [["append", "x", 1]],
                                 [["r", "x", [1]], ["r", "y", []]],
                                 [["append", "y", 1]]), 4),
    # write skew: each read what the other then wrote over
    "G2-item": (concurrent([["r", "x", []], ["append", "y", 1]],
                           [["r", "y", []], ["append", "x", 1]],
                           [["r", "x", [1]], ["r", "y", [1]]]), 2),
}


@pytest.mark.parametrize("name", list(LA_CASES))
def test_each_cycle_anomaly_is_reported_alone_with_its_minimal_cycle(name):
    ops, size = LA_CASES[name]
    r = check("list-append", ops)
    assert r.valid is False
    assert names(r) == {name}, r.to_json()["anomalies"]
    assert cycle_len(r, name) == size


def test_g_single_explanation_names_the_edges_in_words(tmp_path):
    ops, _ = LA_CASES["G-single"]
    r = check("list-append", ops, out_dir=str(tmp_path))
    text = r.anomalies[0].message
    assert "T1 read key 'y' as empty, without 1, which T0 appended next" in text
    assert "T1 read key 'x' as [1], whose last element 1 T0 appended" in text
    steps = r.anomalies[0].details["cycle"]
    assert [s["edge"] for s in steps] == ["wr", "rw"]
    (html,) = r.files
    page = open(html, encoding="utf-8").read()
    assert "<svg" in page and "T0" in page and "rw" in page and "G-single" in page


def test_realtime_variant_needs_strict_serializability():
    # T0 appended 1 and completed; T1 began afterwards and still read x empty
    ops = sequence(("invoke", 0, [["append", "x", 1]]), ("ok", 0, [["append", "x", 1]]),
                   ("invoke", 1, [["r", "x", None]]), ("invoke", 2, [["r", "x", None]]),
                   ("ok", 1, [["r", "x", []]]), ("ok", 2, [["r", "x", [1]]]))
    r = check("list-append", ops)
    assert names(r) == {"G-single-realtime"} and cycle_len(r, "G-single-realtime") == 2
    assert r.stats["not"] == ["strong-snapshot-isolation"]
    ser = check("list-append", ops, ["serializable"])
    assert ser.valid is True and ser.stats["allowed_anomalies"] == ["G-single-realtime"]


def test_process_variant_is_reported_as_process_not_realtime():
    ops = sequence(("invoke", 0, [["append", "x", 1]]), ("ok", 0, [["append", "x", 1]]),
                   ("invoke", 0, [["r", "x", None]]), ("invoke", 2, [["r", "x", None]]),
                   ("ok", 0, [["r", "x", []]]), ("ok", 2, [["r", "x", [1]]]))
    r = check("list-append", ops)
    assert names(r) == {"G-single-process"}
    assert check("list-append", ops, ["strong-session-serializable"]).valid is False
    assert check("list-append", ops, ["serializable"]).valid is True


NON_CYCLE = {
    "G1a": (concurrent([["append", "x", 1]], [["r", "x", [1]]], fail={0}), {"G1a"}),
    "G1b": (concurrent([["append", "x", 1], ["append", "x", 2]], [["r", "x", [1]]],
                       [["r", "x", [1, 2]]]), {"G1b"}),
    # a committed append on top of an aborted one: its read is an aborted read as well
    "dirty-update": (concurrent([["append", "x", 1]], [["append", "x", 2]],
                                [["r", "x", [1, 2]]], fail={0}), {"dirty-update", "G1a"}),
    "duplicate-elements": (concurrent([["append", "x", 1]], [["r", "x", [1, 1]]]),
                           {"duplicate-elements"}),
    "internal": (concurrent([["r", "x", []], ["append", "x", 1], ["r", "x", []]]),
                 {"internal"}),
    "lost-update": (concurrent([["append", "x", 1]], [["r", "x", [1]], ["append", "x", 2]],
                               [["r", "x", [1]], ["append", "x", 3]]), {"lost-update"}),
    "incompatible-order": (concurrent([["append", "x", 1]], [["append", "x", 2]],
                                      [["r", "x", [1, 2]]], [["r", "x", [2, 1]]]),
                           {"incompatible-order"}),
    "garbage-read": (concurrent([["r", "x", [7]]]), {"garbage-read"}),
}


@pytest.mark.parametrize("name", list(NON_CYCLE))
def test_each_non_cycle_anomaly_is_reported(name):
    ops, expected = NON_CYCLE[name]
    r = check("list-append", ops)
    assert r.valid is False
    assert names(r) == expected, r.to_json()["anomalies"]
    a = next(a for a in r.anomalies if a.name == name)
    assert a.ops and a.message


RW_CASES = {
    "G1a": (concurrent([["w", "x", 1]], [["r", "x", 1]], fail={0}), {"G1a"}),
    "G1b": (concurrent([["w", "x", 1], ["w", "x", 2]], [["r", "x", 1]]), {"G1b"}),
    "garbage-read": (concurrent([["r", "x", 5]]), {"garbage-read"}),
    "internal": (concurrent([["w", "x", 1], ["r", "x", 2]]), {"internal"}),
    "G-single": (concurrent([["w", "x", 1], ["w", "y", 1]], [["r", "x", 1], ["r", "y", None]]),
                 {"G-single"}),
    "lost-update": (concurrent([["r", "x", None], ["w", "x", 1]],
                               [["r", "x", None], ["w", "x", 2]]), {"lost-update", "G2-item"}),
}


@pytest.mark.parametrize("name", list(RW_CASES))
def test_rw_register_anomalies(name):
    ops, expected = RW_CASES[name]
    r = check("rw-register", ops)
    assert r.valid is False
    assert names(r) == expected, r.to_json()["anomalies"]


def test_rw_register_cyclic_versions():
    ops = concurrent([["r", "x", 1], ["w", "x", 2]], [["r", "x", 2], ["w", "x", 1]])
    r = check("rw-register", ops)
    assert "cyclic-versions" in names(r) and r.valid is False


def test_rw_register_write_follows_read_orders_versions():
    # T1 read T0's 1 and wrote 2; T2 read 1 (stale) after T1 completed: G-single-realtime
    ops = sequence(("invoke", 0, [["w", "x", 1]]), ("ok", 0, [["w", "x", 1]]),
                   ("invoke", 1, [["r", "x", None], ["w", "x", 2]]),
                   ("ok", 1, [["r", "x", 1], ["w", "x", 2]]),
                   ("invoke", 2, [["r", "x", None]]), ("ok", 2, [["r", "x", 1]]))
    r = check("rw-register", ops)
    assert names(r) == {"G-single-realtime"}
    assert "read key 'x' as 1" in r.anomalies[0].message


# ---- valid histories -----------------------------------------------------------------------

@pytest.mark.parametrize("model", models.model_names())
def test_serializable_database_histories_are_valid_under_every_model(model):
    for kind in ("list-append", "rw-register"):
        ops = simulate(400, kind=kind, seed=3, active_keys=3, writes_per_key=8, fail_p=0.1)
        r = check(kind, ops, [model])
        assert r.valid is True, (kind, model, r.to_json()["anomalies"][:2])
        assert r.stats["committed"] > 300


def test_info_transactions_may_or_may_not_have_happened():
    # T0 never completed; T1 saw its append: fine. T2's append was never seen: fine too.
    ops = concurrent([["append", "x", 1]], [["r", "x", [1]]], [["append", "x", 2]],
                     info={0, 2})
    assert check("list-append", ops).valid is True


def test_no_committed_transaction_is_unknown():
    ops = concurrent([["append", "x", 1]], fail={0})
    r = check("list-append", ops)
    assert r.valid == "unknown"


def test_malformed_micro_ops_are_named():
    ops = [Op(0, 0, 0, "invoke", "txn", [["append", "x"]]),
           Op(1, 1, 0, "ok", "txn", [["append", "x"]])]
    with pytest.raises(ValueError, match="op 1: micro-op"):
        check("list-append", ops)
    ops = concurrent([["append", "x", 1]], [["append", "x", 1]])
    with pytest.raises(ValueError, match="appended twice"):
        check("list-append", ops)


def test_json_identity_true_is_not_one():
    # 1 was appended; a read of [true] is not a read of it
    ops = concurrent([["append", "x", 1]], [["r", "x", [1]]], [["r", "x", [True]]])
    r = check("list-append", ops)
    assert r.valid is False and names(r) & {"incompatible-order", "garbage-read"}
    ops = concurrent([["append", "x", 1]], [["r", "x", [1.0]]])
    assert check("list-append", ops).valid is True


# ---- the lattice ---------------------------------------------------------------------------

def test_lattice_not_and_also_not():
    b = models.boundary({"G-single"})
    assert b["not"] == ["snapshot-isolation"]
    assert "serializable" in b["also-not"] and "strict-serializable" in b["also-not"]
    assert "read-committed" not in b["also-not"]
    assert models.boundary({"G1a"})["not"] == ["read-committed"]
    assert models.boundary({"G0"})["not"] == ["read-uncommitted"]
    assert models.boundary({"G2-item-realtime"})["not"] == ["strict-serializable"]
    assert models.still_possible(set()) == ["strict-serializable"]
    assert "G-single" in models.prohibited(["snapshot-isolation"])
    assert "G2-item" not in models.prohibited(["snapshot-isolation"])
    assert "G-single-realtime" not in models.prohibited(["serializable"])
    assert "G-single-realtime" in models.prohibited(["strict-serializable"])
    with pytest.raises(ValueError, match="unknown consistency model"):
        models.canonical("linearizable-ish")


def test_registry_and_kind_inference():
    ops, _ = LA_CASES["G1c"]
    assert infer_kind(ops) == "list-append"
    assert infer_kind(RW_CASES["G1a"][0]) == "rw-register"
    c = make_checker("list-append", {"consistency_models": ["read-uncommitted"]})
    assert c.check(ops, {}).valid is True
    assert make_checker("rw-register", {}).models == ["strict-serializable"]


# ---- properties ----------------------------------------------------------------------------

@st.composite
def serial_histories(draw):
    """A serial execution: each transaction invoked and completed before the next."""
    n = draw(st.integers(2, 25))
    procs = draw(st.integers(1, 4))
    db: dict[int, list] = {}
    counter = 0
    ops: list[Op] = []
    for i in range(n):
        txn = []
        for _ in range(draw(st.integers(1, 4))):
            k = draw(st.integers(0, 2))
            if draw(st.booleans()):
                txn.append(["r", k, None])
            else:
                counter += 1
                txn.append(["append", k, counter])
        p = i % procs
        ops.append(Op(len(ops), len(ops), p, "invoke", "txn", txn))
        done = []
        for f, k, v in txn:
            if f == "r":
                done.append(["r", k, list(db.get(k, []))])
            else:
                db.setdefault(k, []).append(v)
                done.append([f, k, v])
        ops.append(Op(len(ops), len(ops), p, "ok", "txn", done))
    return ops


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(serial_histories())
def test_serial_executions_are_strict_serializable(ops):
    assert check("list-append", ops).valid is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(serial_histories(), st.randoms(use_true_random=False))
def test_one_swapped_read_is_invalid_with_a_named_anomaly(ops, rnd):
    # swap two adjacent elements appended by different transactions in one read
    writer = {}
    for op in ops:
        if op.type == "ok":
            for f, k, v in op.value:
                if f == "append":
                    writer[(k, v)] = op.index
    candidates = []
    for op in ops:
        if op.type == "ok":
            for j, (f, k, v) in enumerate(op.value):
                if f == "r":
                    for i in range(len(v) - 1):
                        if writer[(k, v[i])] != writer[(k, v[i + 1])]:
                            candidates.append((op.index, j, i))
    assume(candidates)
    idx, j, i = rnd.choice(candidates)
    old = ops[idx]
    value = json.loads(json.dumps(old.value))
    r = value[j][2]
    r[i], r[i + 1] = r[i + 1], r[i]
    bad = list(ops)
    bad[idx] = Op(old.index, old.time, old.process, old.type, old.f, value)
    result = check("list-append", bad)
    assert result.valid is False
    assert names(result), result.to_json()
    assert names(result) <= models.prohibited(["strict-serializable"])


def test_rw_register_real_time_version_order_only_under_strict_serializability():
    # T0 wrote 1, then T1 blindly wrote 2, then T2 (after both) read 1: with linearizable
    # keys 1 < 2, so T2 missed T1's write although T1 had completed
    ops = sequence(("invoke", 0, [["w", "x", 1]]), ("ok", 0, [["w", "x", 1]]),
                   ("invoke", 1, [["w", "x", 2]]), ("ok", 1, [["w", "x", 2]]),
                   ("invoke", 2, [["r", "x", None]]), ("ok", 2, [["r", "x", 1]]))
    r = check("rw-register", ops)
    assert names(r) == {"G-single-realtime"} and r.stats["linearizable_keys"] is True
    # under serializable the same data says nothing (the versions 1 and 2 are unordered)
    r = check("rw-register", ops, ["serializable"])
    assert r.valid is True and r.stats["linearizable_keys"] is False
    assert r.stats["anomaly_counts"] == {}


@st.composite
def serial_register_histories(draw):
    """A serial execution of read / write transactions on registers (values unique per key)."""
    n = draw(st.integers(2, 20))
    db: dict[int, int] = {}
    counter = 0
    ops: list[Op] = []
    for i in range(n):
        txn = []
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.integers(0, 2))
            if draw(st.booleans()):
                txn.append(["r", k, None])
            else:
                counter += 1
                txn.append(["w", k, counter])
        p = i % 3
        ops.append(Op(len(ops), len(ops), p, "invoke", "txn", txn))
        done = []
        for f, k, v in txn:
            if f == "r":
                done.append(["r", k, db.get(k)])
            else:
                db[k] = v
                done.append([f, k, v])
        ops.append(Op(len(ops), len(ops), p, "ok", "txn", done))
    return ops


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(serial_register_histories())
def test_serial_register_executions_are_valid_under_every_model(ops):
    assert check("rw-register", ops).valid is True
    assert check("rw-register", ops, ["serializable"]).valid is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(serial_register_histories(), st.randoms(use_true_random=False))
def test_a_stale_register_read_after_a_newer_write_is_caught(ops, rnd):
    # a read that returns the initial state although a committed write to the key came before
    # it: the write's transaction -rt-> the reader -rw-> the writer
    cands = []
    written: set = set()
    for op in ops:
        if op.type != "ok":
            continue
        for j, (f, k, v) in enumerate(op.value):
            if f == "r" and k in written and v is not None and \
                    all(m[1] != k for m in op.value[:j]):
                cands.append((op.index, j))
        written |= {k for f, k, _ in op.value if f == "w"}
    assume(cands)
    idx, j = rnd.choice(cands)
    old = ops[idx]
    value = json.loads(json.dumps(old.value))
    value[j][2] = None
    bad = list(ops)
    bad[idx] = Op(old.index, old.time, old.process, old.type, old.f, value)
    r = check("rw-register", bad)
    assert r.valid is False and names(r), r.to_json()


def test_check_pauses_the_garbage_collector_and_restores_its_state():
    """The checker turns the cyclic GC off while it runs (speed) and leaves it as it found it,
    also when the check raises."""
    import gc
    ops = simulate(50, seed=3)
    was = gc.isenabled()
    seen = []

    class Spy(list):
        """A history that records whether the GC was on while the checker read it."""

        def __iter__(self):
            seen.append(gc.isenabled())
            return super().__iter__()

    try:
        gc.enable()
        assert TxnChecker("list-append").check(Spy(ops)).valid is True
        assert seen and not any(seen) and gc.isenabled()
        gc.disable()
        assert TxnChecker("list-append").check(ops).valid is True
        assert not gc.isenabled()
        gc.enable()
        bad = ops[:1] + [Op(1, 1, ops[0].process, "ok", "txn", "not a list")]
        with pytest.raises(ValueError):
            TxnChecker("list-append").check(bad)
        assert gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()
