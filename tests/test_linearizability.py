"""The linearizability checker: models, Jepsen semantics, counterexamples, the Porcupine corpus.

Property tests (Hypothesis) live in tests/test_lin_properties.py.
"""

from __future__ import annotations

import os
import time

import pytest

from splitbrain.checkers import registry
from splitbrain.checkers.linearizability import (MODELS, UNKNOWN, Model, check_linearizable,
                                                 make_checker)
from splitbrain.checkers.linearizability import checker as checker_mod
from splitbrain.history import HistoryError, Op
from splitbrain.history.porcupine import read_etcd_log, read_kv_log


class H:
    """A tiny history builder: h.inv(p, f, v); h.ok(p, v); ... -> h.ops."""

    def __init__(self):
        self.ops: list[Op] = []
        self.f: dict = {}

    def _add(self, p, typ, f, value, key=None, error=None):
        self.ops.append(Op(index=len(self.ops), time=len(self.ops) * 1000, process=p, type=typ,
                           f=f, value=value, key=key, error=error))
        return self

    def inv(self, p, f, value=None, key=None):
        self.f[p] = (f, key)
        return self._add(p, "invoke", f, value, key)

    def ok(self, p, value=None):
        f, key = self.f[p]
        return self._add(p, "ok", f, value, key)

    def fail(self, p, value=None, error=None):
        f, key = self.f[p]
        return self._add(p, "fail", f, value, key, error)

    def info(self, p, value=None, error="timeout"):
        f, key = self.f[p]
        return self._add(p, "info", f, value, key, error)

    def call(self, p, f, value=None, result=None, key=None):
        return self.inv(p, f, value, key).ok(p, value if result is None else result)


def lin(ops, model="cas-register", **kw):
    return check_linearizable(ops, model, **kw)


# --- the basics ---------------------------------------------------------------------------------

def test_empty_history_is_valid():
    r = lin([])
    assert r.valid is True and r.checker == "linearizable" and r.anomalies == []


def test_sequential_register():
    h = (H().call(0, "write", 1).call(1, "read", None, 1)
         .call(0, "write", 2).call(1, "read", None, 2))
    assert lin(h.ops, "register").valid is True


def test_stale_read_is_invalid_with_counterexample(tmp_path):
    h = H().call(0, "write", 1).call(0, "write", 2).call(1, "read", None, 1)
    r = lin(h.ops, "register", out_dir=str(tmp_path))
    assert r.valid is False
    [a] = r.anomalies
    assert a.name == "nonlinearizable"
    assert a.ops[:2] == [4, 5]  # the read's invoke and completion
    assert "cannot linearize" in a.message and "read -> 1" in a.message
    assert "states possible just before it: 2" in a.message
    assert a.details["linearization"] == [0, 2]
    [path] = r.files
    assert path == os.path.join(str(tmp_path), "linearizability", "history.html")
    html = open(path, encoding="utf-8").read()
    assert "<svg" in html and "#e6550d" in html and "process 1" in html and "<script" not in html


def test_concurrent_write_read_either_order():
    h = H().inv(0, "write", 1).inv(1, "read").ok(1, 1).ok(0, 1)
    assert lin(h.ops, "register").valid is True
    h = H().inv(0, "write", 1).inv(1, "read").ok(1, None).ok(0, 1)
    assert lin(h.ops, "register").valid is True


def test_real_time_order_is_respected():
    # The write completed before the read began: the read must see it.
    h = H().call(0, "write", 1).call(1, "read", None, None)
    assert lin(h.ops, "register").valid is False


# --- Jepsen's info / fail semantics ----------------------------------------------------------

def test_info_write_may_happen_later():
    h = (H().inv(0, "write", 1).info(0, 1)
         .call(1, "read", None, None).call(1, "read", None, 1).call(1, "read", None, 1))
    assert lin(h.ops).valid is True


def test_info_write_cannot_happen_before_its_invoke():
    h = H().call(1, "read", None, 1).inv(0, "write", 1).info(0, 1)
    assert lin(h.ops).valid is False


def test_info_write_happens_at_most_once():
    h = (H().inv(0, "write", 1).info(0, 1).call(1, "read", None, 1).call(1, "write", 2)
         .call(1, "read", None, 1))
    assert lin(h.ops).valid is False


def test_missing_completion_is_like_info():
    h = H().inv(0, "write", 1).call(1, "read", None, 1)
    assert lin(h.ops).valid is True


def test_failed_write_did_not_happen():
    h = H().inv(0, "write", 1).fail(0, 1, "temporarily-unavailable").call(1, "read", None, 1)
    assert lin(h.ops).valid is False


def test_failed_cas_is_an_observation():
    # The register holds 1; a cas [1 2] that "failed its precondition" cannot be linearized.
    h = H().call(0, "write", 1).inv(1, "cas", [1, 2]).fail(1, [1, 2], "precondition-failed")
    assert lin(h.ops).valid is False
    h = H().call(0, "write", 3).inv(1, "cas", [1, 2]).fail(1, [1, 2], "precondition-failed")
    assert lin(h.ops).valid is True
    h = H().call(0, "write", 3).inv(1, "cas", [1, 2]).fail(1, [1, 2], "key-does-not-exist")
    assert lin(h.ops).valid is False
    h = H().inv(1, "cas", [1, 2]).fail(1, [1, 2], "key-does-not-exist").call(0, "write", 3)
    assert lin(h.ops).valid is True


def test_info_read_constrains_nothing():
    h = H().call(0, "write", 1).inv(1, "read").info(1, 7)
    r = lin(h.ops)
    assert r.valid is True and r.stats["dropped_calls"] == 1


def test_nemesis_ops_are_ignored():
    h = H()
    h._add("nemesis", "invoke", "start-partition", "majority")
    h.call(0, "write", 1)
    h._add("nemesis", "info", "start-partition", {"n1": ["n2"]})
    h.call(1, "read", None, 1)
    assert lin(h.ops).valid is True


def test_bad_histories_raise_history_error():
    with pytest.raises(HistoryError, match="no invocation"):
        lin([Op(0, 0, 0, "ok", "read", 1)])
    h = H().inv(0, "write", 1)
    h._add(0, "invoke", "write", 2)
    with pytest.raises(HistoryError, match="still outstanding"):
        lin(h.ops)
    with pytest.raises(HistoryError, match="no operation 'cas'"):
        lin(H().call(0, "cas", [1, 2]).ops, "register")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        lin([], "nope")


# --- every model --------------------------------------------------------------------------------

@pytest.mark.parametrize("model, good, bad", [
    ("cas-register",
     H().call(0, "write", 1).call(0, "cas", [1, 2]).call(1, "read", None, 2).ops,
     H().call(0, "write", 1).call(0, "cas", [3, 2]).ops),
    ("arith",
     H().call(0, "add", 2).call(0, "mul", 3).call(1, "read", None, 6).ops,
     H().call(0, "add", 2).call(0, "mul", 3).call(1, "read", None, 5).ops),
    ("set",
     H().call(0, "add", 1).call(1, "add", 2).call(0, "read", None, [2, 1]).ops,
     H().call(0, "add", 1).call(0, "read", None, []).ops),
    ("fifo-queue",
     H().call(0, "enqueue", 1).call(0, "enqueue", 2).call(1, "dequeue", None, 1)
        .call(1, "dequeue", None, 2).call(1, "dequeue", None, None).ops,
     H().call(0, "enqueue", 1).call(0, "enqueue", 2).call(1, "dequeue", None, 2).ops),
    ("mutex",
     H().call(0, "acquire").call(0, "release").call(1, "acquire").ops,
     H().call(0, "acquire").call(1, "acquire").ops),
    ("append-log",
     H().call(0, "append", "a").call(1, "append", "b", {"value": "b", "offset": 1})
        .call(0, "read", None, ["a", "b"]).ops,
     H().call(0, "append", "a").call(1, "append", "b").call(0, "read", None, ["b", "a"]).ops),
    ("register",
     H().call(0, "write", "x").call(0, "read", None, "x").ops,
     H().call(0, "read", None, "x").ops),
])
def test_models(model, good, bad):
    assert lin(good, model).valid is True
    r = lin(bad, model)
    assert r.valid is False and len(r.anomalies) == 1


def test_arith_order_matters():
    # add 1 and mul 2 concurrent from 0: (0+1)*2 = 2 or 0*2+1 = 1, never 0 or 3. `mul 2` is a
    # no-op on 0 but not later: it must not be linearized early just because of that.
    for seen, valid in ((2, True), (1, True), (0, False), (3, False)):
        h = H().inv(0, "add", 1).inv(1, "mul", 2).ok(0, 1).ok(1, 2).call(2, "read", None, seen)
        assert lin(h.ops, "arith").valid is valid, seen


def test_kv_partitions_per_key_and_reads_empty_string_as_absent():
    h = (H().call(0, "read", None, "", key="a").call(0, "append", "x", key="a")
         .call(1, "append", "y", key="a").call(1, "read", None, "xy", key="a")
         .call(0, "write", 1, key="b").call(0, "cas", [1, 5], key="b")
         .call(1, "read", None, 5, key="b").call(1, "read", None, None, key="c"))
    r = lin(h.ops, "kv")
    assert r.valid is True and r.stats["keys"] == 3
    h.call(2, "read", None, 1, key="b")
    r = lin(h.ops, "kv")
    assert r.valid is False and r.anomalies[0].details["key"] == "b"
    assert r.anomalies[0].message.startswith("key 'b'")


def test_append_log_offsets_are_checked():
    h = H().call(0, "append", "a", {"value": "a", "offset": 1})
    assert lin(h.ops, "append-log").valid is False
    h = H().call(0, "append", "a", {"value": "a", "offset": 0}).inv(1, "status").ok(1, {})
    assert lin(h.ops, "append-log").valid is True


def test_mutex_crashed_acquire_may_hold_the_lock():
    h = H().inv(0, "acquire").info(0).call(1, "acquire").call(1, "release")
    assert lin(h.ops, "mutex").valid is True


def test_user_model_from_the_docstring():
    def step(state, call):
        if call.f == "incr":
            return True, state + call.value
        if call.f == "read":
            return call.result == state, state
        raise ValueError(f"counter: unknown operation {call.f!r}")

    counter = Model("counter", init=0, step=step, read_only={"read"})
    h = H().inv(0, "incr", 2).info(0).call(1, "incr", 1).call(1, "read", None, 3)
    assert lin(h.ops, counter).valid is True
    h = H().call(1, "incr", 1).call(1, "read", None, 3)
    assert lin(h.ops, counter).valid is False


def test_crashed_calls_see_unknown():
    seen = []

    def step(state, call):
        if call.f == "incr":
            seen.append(call.result)
            return True, state + 1
        return call.result == state, state

    h = H().inv(0, "incr", 1).info(0).call(1, "read", None, 1)
    assert lin(h.ops, Model("c", init=0, step=step)).valid is True
    assert seen and all(r is UNKNOWN for r in seen)


def test_all_models_listed():
    assert set(MODELS) == {"register", "cas-register", "kv", "arith", "set", "fifo-queue",
                           "mutex", "append-log"}


# --- time limit, registry, workers --------------------------------------------------------------

def _hard_history(n=10):
    # n concurrent appends, then a read no order explains: every order of every subset is a
    # distinct state, so proving it invalid means visiting sum(n!/k!) configurations.
    h = H()
    for p in range(n):
        h.inv(p, "append", f"<{p}>")
    for p in range(n):
        h.ok(p, f"<{p}>")
    h.call(100, "read", None, "impossible")
    return h.ops


def test_time_limit_gives_unknown_never_a_pass():
    start = time.monotonic()
    r = lin(_hard_history(), "kv", time_limit=0.05)
    assert r.valid == "unknown"
    assert "time limit" in r.error
    assert time.monotonic() - start < 5


def test_registry_factory():
    c = registry.make_checker("linearizable", {"model": "register"})
    h = H().call(0, "write", 1).call(1, "read", None, 2)
    r = c.check(h.ops, {})
    assert r.valid is False and r.checker == "linearizable"
    assert make_checker({}).check(H().call(0, "cas", [None, 1]).ops, {}).valid is True
    with pytest.raises(ValueError):
        make_checker({"model": "no-such"})


def test_many_keys_on_several_workers(monkeypatch):
    monkeypatch.setattr(checker_mod, "PARALLEL_CALLS_MIN", 0)
    monkeypatch.setattr(checker_mod, "KEY_STEPS_FIRST", 0)  # defer every key to the pool
    h = H()
    for k in range(6):
        h.call(0, "write", k, key=k).call(1, "read", None, k, key=k)
    h.call(1, "read", None, 99, key=3)
    r = lin(h.ops, "kv", workers=2)
    assert r.valid is False
    assert [a.details["key"] for a in r.anomalies] == [3]
    assert lin(h.ops, "kv", workers=1).valid is False


def test_undecided_keys_when_another_key_is_invalid(monkeypatch):
    monkeypatch.setattr(checker_mod, "KEY_STEPS_FIRST", 1)
    monkeypatch.setattr(checker_mod, "AFTER_INVALID_S", 0.0)   # no time left for the hard key
    ops = [Op(o.index, o.time, o.process, o.type, o.f, o.value, key="hard")
           for o in _hard_history(7)]
    h = H()
    h.ops = list(ops)
    h.call(500, "write", 1, key="easy").call(501, "read", None, 2, key="easy")
    r = lin(h.ops, "kv")
    assert r.valid is False
    assert [a.details["key"] for a in r.anomalies] == ["easy"]
    assert r.stats["undecided_keys"] == ["hard"]


def test_every_invalid_key_gets_its_counterexample(monkeypatch, tmp_path):
    """Not only the first invalid key (Porcupine's stop): after one key is invalid, the keys
    deferred by the first pass are searched too, each invalid one with its HTML file."""
    # Every key to the pool of 2 workers, which stops at the first invalid key.
    monkeypatch.setattr(checker_mod, "PARALLEL_CALLS_MIN", 0)
    monkeypatch.setattr(checker_mod, "KEY_STEPS_FIRST", 0)
    h = H()
    for k in ("a", "b", "c", "d"):
        h.call(0, "write", 1, key=k).call(1, "read", None, 1 if k == "c" else 2, key=k)
    r = lin(h.ops, "kv", out_dir=str(tmp_path), workers=2)
    assert r.valid is False
    assert sorted(a.details["key"] for a in r.anomalies) == ["a", "b", "d"]
    assert "undecided_keys" not in r.stats and r.stats["invalid_keys"] == 3
    assert sorted(os.path.basename(f) for f in r.files) == ["a.html", "b.html", "d.html"]
    assert all(os.path.isfile(f) for f in r.files)


# --- the Porcupine corpus -----------------------------------------------------------------------

def _expectations(porcupine_dir):
    rows = []
    with open(porcupine_dir / "expectations.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            name, want = line.rstrip("\n").split("\t")
            rows.append((name, want))
    return rows


def test_porcupine_corpus_verdicts(porcupine_dir):
    rows = _expectations(porcupine_dir)
    assert len(rows) == 109
    wrong = []
    for name, want in rows:
        path = str(porcupine_dir / name)
        if name.startswith("kv/"):
            r = check_linearizable(read_kv_log(path), "kv")
        else:
            r = check_linearizable(read_etcd_log(path), "cas-register")
        if want.startswith("skipped"):
            # etcd_095.log is empty: an empty history contradicts nothing.
            assert os.path.getsize(path) == 0
            assert r.valid is True and r.stats["calls"] == 0
            continue
        if str(r.valid).lower() != want:
            wrong.append((name, r.valid, want))
    assert wrong == []


def test_porcupine_invalid_etcd_counterexample(porcupine_dir, tmp_path):
    r = check_linearizable(read_etcd_log(str(porcupine_dir / "jepsen/etcd_000.log")),
                           "cas-register", out_dir=str(tmp_path))
    assert r.valid is False
    [a] = r.anomalies
    assert "states possible just before it" in a.message
    assert "longest linearizable prefix found" in a.message
    assert len(r.files) == 1 and os.path.getsize(r.files[0]) > 1000


# --- the growth guards (Model.monotone / may_grow_into) -----------------------------------------

def _concurrent_appends(n: int, read_result: str) -> H:
    """n appends all open at once, completing one by one, then a read of `read_result`."""
    h = H()
    for p in range(n):
        h.inv(p, "append", f"<{p}>")
    for p in range(n):
        h.ok(p, f"<{p}>")
    return h.call(n, "read", None, read_result)


def test_growth_guards_cut_the_orders_of_concurrent_appends():
    from splitbrain.checkers.linearizability import get_model
    from splitbrain.checkers.linearizability.prepare import partition_history
    from splitbrain.checkers.linearizability.search import search

    n = 7
    # The read shows the appends in reverse order of completion: the last order tried.
    h = _concurrent_appends(n, "".join(f"<{p}>" for p in reversed(range(n))))
    m = get_model("kv")
    (part,) = partition_history(h.ops, m).values()
    guarded, plain = search(m, part), search(m, part, prune=False)
    assert guarded.valid and plain.valid
    assert guarded.stats["pruned"] > 0
    assert guarded.stats["steps"] * 10 < plain.stats["steps"]


def test_growth_guards_keep_the_failing_read_and_every_possible_state():
    n = 4
    h = _concurrent_appends(n, "<0><1><9>")  # <9> was never appended
    r = lin(h.ops, "kv")
    assert r.valid is False
    (a,) = r.anomalies
    assert "read -> <0><1><9>" in a.message
    # All 4! orders of the appends are possible just before the read (none can grow into it).
    assert "(24 in all)" in a.message


def test_a_put_between_turns_the_guard_off():
    # append a, (write b concurrent with append c), read "bc": the write must come between.
    h = (H().call(0, "append", "a").inv(1, "write", "b").inv(2, "append", "c").ok(1, "b")
         .ok(2, "c").call(3, "read", None, "bc"))
    assert lin(h.ops, "kv").valid is True


def test_a_user_model_may_give_the_growth_hint():
    class Counter(Model):
        """An increment-only counter: it can only grow, so a read bounds every state before."""
        name = "grow-counter"
        init = 0
        read_only = frozenset({"read"})
        monotone = frozenset({"incr"})
        grow_checked = frozenset({"read"})

        def step(self, state, call):
            if call.f == "incr":
                return True, state + 1
            return call.result == state, state

        def may_grow_into(self, state, call):
            return state <= call.result

    h = H()
    for p in range(6):
        h.inv(p, "incr")
    for p in range(6):
        h.ok(p)
    h.call(9, "read", None, 6)
    assert lin(h.ops, Counter()).valid is True
    h.call(9, "read", None, 5)
    assert lin(h.ops, Counter()).valid is False


def test_first_invalid_stops_at_the_first_invalid_key_like_porcupine():
    """first_invalid: one anomaly, the other keys left undecided (none searched after it).
    (1 is written twice per key: the keys go to the search, not the polynomial method, whose
    keys cost microseconds and are all reported.)"""
    h = H()
    for k in ("a", "b", "c", "d"):
        h.call(0, "write", 1, key=k).call(2, "write", 1, key=k)
        h.call(1, "read", None, 1 if k == "c" else 2, key=k)
    r = lin(h.ops, "kv", first_invalid=True, workers=1)
    assert r.valid is False
    assert [a.details["key"] for a in r.anomalies] == ["a"]
    assert r.stats["invalid_keys"] == 1
    assert r.stats["undecided_keys"] == ["b", "c", "d"]
    # The default looks for every invalid key.
    full = lin(h.ops, "kv", workers=1)
    assert sorted(a.details["key"] for a in full.anomalies) == ["a", "b", "d"]
    # A valid history is searched to the end either way.
    ok = H()
    for k in ("a", "b"):
        ok.call(0, "write", 1, key=k).call(2, "write", 1, key=k)
        ok.call(1, "read", None, 1, key=k)
    assert lin(ok.ops, "kv", first_invalid=True).valid is True


def test_first_invalid_skips_searched_keys_once_a_unique_key_is_invalid():
    """A key decided by the polynomial method is invalid: with first_invalid the keys that need
    the search are not searched at all."""
    h = H()
    h.call(0, "write", 1, key="u").call(1, "read", None, 7, key="u")      # unique values
    h.call(2, "write", 1, key="s").call(3, "write", 1, key="s")           # 1 written twice
    h.call(4, "read", None, 1, key="s")
    r = lin(h.ops, "kv", first_invalid=True, workers=1)
    assert r.valid is False
    assert [a.details["key"] for a in r.anomalies] == ["u"]
    assert r.stats["undecided_keys"] == ["s"]


def test_after_invalid_budget_grows_with_the_time_the_verdict_took():
    b = checker_mod.after_invalid_budget
    assert b(0.0) == checker_mod.AFTER_INVALID_MIN_S           # a quick verdict: 1 s more
    assert b(0.5) == 10 * 0.5                                   # 10x the time spent
    assert b(60.0) == checker_mod.AFTER_INVALID_S              # never more than 10 s


def test_a_hard_key_after_a_quick_invalid_one_costs_about_a_second_not_ten(monkeypatch):
    """Porcupine's kv/c50-bad shape: an easy invalid key, then a key whose search is long. The
    verdict took milliseconds, so the hard key gets AFTER_INVALID_MIN_S, not AFTER_INVALID_S."""
    monkeypatch.setattr(checker_mod, "KEY_STEPS_FIRST", 1)
    monkeypatch.setattr(checker_mod, "AFTER_INVALID_MIN_S", 0.3)
    monkeypatch.setattr(checker_mod, "AFTER_INVALID_S", 30.0)
    ops = [Op(o.index, o.time, o.process, o.type, o.f, o.value, key="hard")
           for o in _hard_history(9)]
    h = H()
    h.ops = list(ops)
    h.call(500, "write", 1, key="easy").call(501, "read", None, 2, key="easy")
    r = lin(h.ops, "kv", workers=1)
    assert r.valid is False
    assert [a.details["key"] for a in r.anomalies] == ["easy"]
    # With the flat AFTER_INVALID_S the hard key (5 s of search) would be decided invalid.
    assert r.stats["undecided_keys"] == ["hard"]


@pytest.mark.parametrize("completion", ["fail", "info", None])
def test_an_operation_the_model_lacks_is_refused_even_when_it_never_took_effect(completion):
    """A cas under the register model (which has none) is bad input whatever its fate: a failed
    or crashed one is never stepped by the search, and used to pass silently."""
    h = H().inv(0, "cas", [None, 1])
    if completion == "fail":
        h.fail(0, [None, 1])
    elif completion == "info":
        h.info(0, [None, 1])
    h.call(1, "read", None, None)
    with pytest.raises(HistoryError, match="model 'register' has no operation 'cas'"):
        lin(h.ops, "register")
    assert lin(h.ops, "cas-register").valid is True
