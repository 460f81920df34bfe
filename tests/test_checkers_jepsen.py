"""Jepsen's everyday checkers: set (set-full), counter, stats, unique-ids, and compose."""

from __future__ import annotations

import pytest

from splitbrain.checkers import registry
from splitbrain.checkers.compose import Compose, make_checker as make_compose
from splitbrain.checkers.counter import CounterChecker
from splitbrain.checkers.result import FunctionChecker, Result
from splitbrain.checkers.set_full import SetFullChecker
from splitbrain.checkers.stats import StatsChecker
from splitbrain.checkers.unique_ids import UniqueIdsChecker
from splitbrain.history.op import Op


class H:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p, typ, f, value=None, node=None, error=None) -> int:
        self.ops.append(Op(len(self.ops), len(self.ops), p, typ, f, value, None, node, error))
        return len(self.ops) - 1

    def call(self, p, f, arg, typ, result=None, node=None) -> int:
        self.op(p, "invoke", f, arg, node)
        return self.op(p, typ, f, result if result is not None else arg, node)


def names(r: Result) -> set[str]:
    return {a.name for a in r.anomalies}


def test_every_registry_checker_builds():
    for name in ("log", "convergence", "set", "counter", "stats", "unique-ids", "kafka"):
        c = registry.make_checker(name, {"model": "x", "out_dir": None})
        assert c.name == name and callable(c.check)


# ---------------------------------------------------------------------------------- set-full
def test_set_stable_and_recovered_are_valid():
    h = H()
    h.call(0, "add", 1, "ok")
    h.call(1, "add", 2, "info")              # unknown outcome ...
    h.call(2, "add", 3, "fail")              # ... certainly not added
    h.call(3, "read", None, "ok", [1, 2])    # ... and 2 was there after all: recovered
    h.call(3, "read", None, "ok", [1, 2])
    r = SetFullChecker().check(h.ops)
    assert r.valid is True and r.stats["recovered"] == 1 and r.stats["stable"] == 2


def test_set_lost():
    h = H()
    ack = h.call(0, "add", 1, "ok")
    h.call(1, "read", None, "ok", [1])
    last = h.call(1, "read", None, "ok", [])
    r = SetFullChecker().check(h.ops)
    assert r.valid is False and names(r) == {"lost"}
    (a,) = r.anomalies
    assert a.details["element"] == 1 and a.details["known"] == ack
    assert a.details["last_absent"] == last


def test_set_stale():
    h = H()
    h.call(0, "add", 1, "ok")
    absent = h.call(1, "read", None, "ok", [])   # began after the add was acknowledged
    h.call(1, "read", None, "ok", [1])
    r = SetFullChecker().check(h.ops)
    assert names(r) == {"stale"} and r.anomalies[0].details["absent_in"] == absent
    r = SetFullChecker(linearizable=False).check(h.ops)
    assert r.valid is True and r.stats["stale"] == 1


def test_set_concurrent_read_may_miss_an_element():
    h = H()
    h.op(0, "invoke", "add", 1)
    h.op(1, "invoke", "read")
    h.op(0, "ok", "add", 1)
    h.op(1, "ok", "read", [])                    # concurrent with the add: fine
    h.call(1, "read", None, "ok", [1])
    assert SetFullChecker().check(h.ops).valid is True


def test_set_unexpected_never_added_or_failed():
    h = H()
    h.call(0, "add", 1, "fail")
    rd = h.call(1, "read", None, "ok", [1, 7])
    r = SetFullChecker().check(h.ops)
    assert names(r) == {"unexpected"}
    assert sorted(a.details["element"] for a in r.anomalies) == [1, 7]
    assert all(rd in a.ops for a in r.anomalies)


def test_set_without_reads_is_unknown():
    h = H()
    h.call(0, "add", 1, "ok")
    assert SetFullChecker().check(h.ops).valid == "unknown"


# ---------------------------------------------------------------------------------- counter
def test_counter_reads_within_bounds():
    h = H()
    h.call(0, "add", 1, "ok")
    h.call(1, "add", 2, "info")          # may or may not have happened
    h.call(2, "read", None, "ok", 1)
    h.call(2, "read", None, "ok", 3)
    h.call(3, "add", 5, "fail")          # certainly not
    h.call(2, "read", None, "ok", 3)
    r = CounterChecker().check(h.ops)
    assert r.valid is True and r.stats["reads"] == 3


def test_counter_out_of_bounds():
    h = H()
    h.call(0, "add", 1, "ok")
    low = h.call(1, "read", None, "ok", 0)      # the ok add is certain: at least 1
    h.call(2, "add", 5, "fail")
    high = h.call(1, "read", None, "ok", 6)     # the failed add cannot count
    r = CounterChecker().check(h.ops)
    assert r.valid is False and names(r) == {"out-of-bounds-read"}
    got = {a.ops[-1]: (a.details["lower"], a.details["upper"]) for a in r.anomalies}
    assert got == {low: (1, 1), high: (1, 1)}


def test_counter_concurrent_add_and_negative_adds():
    h = H()
    h.op(0, "invoke", "add", -2)
    h.op(1, "invoke", "read")
    h.op(1, "ok", "read", -2)                   # the pending -2 may be in
    h.op(0, "ok", "add", -2)
    h.call(1, "read", None, "ok", -2)
    assert CounterChecker().check(h.ops).valid is True
    h.call(1, "read", None, "ok", 0)            # now -2 is certain
    assert CounterChecker().check(h.ops).valid is False


# ---------------------------------------------------------------------------------- stats
def test_stats_counts_and_never_succeeded_is_unknown():
    h = H()
    h.call(0, "write", 1, "ok")
    h.call(0, "write", 2, "fail")
    h.call(1, "cas", [1, 2], "info")
    h.op("nemesis", "invoke", "kill", ["n1"])
    h.op("nemesis", "info", "kill", ["n1"])
    h.op(2, "invoke", "read")                   # never completed
    r = StatsChecker().check(h.ops)
    assert r.valid == "unknown" and names(r) == {"never-succeeded"}
    assert {a.details["f"] for a in r.anomalies} == {"cas", "read"}
    assert r.stats["by-f"]["write"] == {"ok": 1, "fail": 1, "info": 0, "pending": 0, "count": 2}
    assert "kill" not in r.stats["by-f"] and r.stats["count"] == 4
    h.call(3, "cas", [1, 2], "ok")
    h.call(3, "read", None, "ok", 2)
    assert StatsChecker().check(h.ops).valid is True


# ---------------------------------------------------------------------------------- unique ids
def test_unique_ids():
    h = H()
    h.call(0, "generate", None, "ok", "a")
    first = len(h.ops) - 1
    h.call(1, "generate", None, "ok", "b", node="n2")
    assert UniqueIdsChecker().check(h.ops).valid is True
    again = h.call(2, "generate", None, "ok", "a", node="n3")
    r = UniqueIdsChecker().check(h.ops)
    assert r.valid is False and names(r) == {"duplicate-id"}
    assert r.anomalies[0].ops == [first, again] and "node n3" in r.anomalies[0].message
    assert UniqueIdsChecker().check([]).valid == "unknown"


# ---------------------------------------------------------------------------------- compose
def _fixed(name: str, valid) -> FunctionChecker:
    return FunctionChecker(name, lambda h, t: Result(valid=valid, checker=name))


def _raises(h, t):
    raise RuntimeError("boom")


def test_compose_merges_false_over_unknown_over_true():
    assert Compose({"a": _fixed("a", True), "b": _fixed("b", True)}).check([]).valid is True
    assert Compose({"a": _fixed("a", True), "b": _fixed("b", "unknown")}).check([]).valid \
        == "unknown"
    r = Compose({"a": _fixed("a", "unknown"), "b": _fixed("b", False),
                 "c": _fixed("c", True)}).check([])
    assert r.valid is False and set(r.children) == {"a", "b", "c"}


def test_compose_a_raising_checker_is_unknown_never_a_pass():
    r = Compose({"ok": _fixed("ok", True), "bad": FunctionChecker("bad", _raises)}).check([])
    assert r.valid == "unknown"
    assert r.children["bad"].valid == "unknown" and "boom" in r.children["bad"].error
    assert "boom" in r.error
    r = Compose({"no": _fixed("no", False), "bad": FunctionChecker("bad", _raises)}).check([])
    assert r.valid is False


def test_compose_by_names_collects_anomalies_of_children():
    h = H()
    h.call(0, "generate", None, "ok", 1)
    h.call(1, "generate", None, "ok", 1)
    c = make_compose({"checkers": ["unique-ids", "stats"]})
    r = c.check(iter(h.ops))
    assert r.valid is False
    assert {a.name for a in r.all_anomalies()} == {"duplicate-id"}
    assert r.to_json()["anomaly_names"] == ["duplicate-id"]
    with pytest.raises(ValueError):
        make_compose({})
