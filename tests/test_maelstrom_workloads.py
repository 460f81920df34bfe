"""Maelstrom's workloads (echo, unique-ids, broadcast, g-set, g-counter, pn-counter), their
checkers on hand-written histories, the availability goal, and end-to-end runs of small Python
Maelstrom nodes (tests/nodes/*.py): correct ones VALID with and without partitions, broken ones
INVALID with the anomaly that names their bug."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.availability import AvailabilityChecker, parse_goal
from splitbrain.checkers.echo import EchoChecker
from splitbrain.checkers.eventual_set import EventualSetChecker, frequency_distribution
from splitbrain.checkers.pn_counter import PnCounterChecker, add_delta, contains
from splitbrain.checkers.registry import make_checker
from splitbrain.commands.check import infer_checkers
from splitbrain.harness.maelstrom_workloads import topology
from splitbrain.harness.workloads import Invocation, make_workload
from splitbrain.history.op import Op

NODES = Path(__file__).parent / "nodes"
MS = 1_000_000


class H:
    """A hand-written history: invoke/complete by process, times in ms, indexes dense."""

    def __init__(self):
        self.ops: list[Op] = []
        self.t = 0
        self._open: dict = {}

    def _add(self, process, type_, f, value, node=None, t=None, error=None):
        self.t = self.t + 1 if t is None else t
        op = Op(len(self.ops), self.t * MS, process, type_, f, value, None, node, error)
        self.ops.append(op)
        return op.index

    def invoke(self, p, f, value=None, node=None, t=None):
        self._open[p] = f
        return self._add(p, "invoke", f, value, node, t)

    def done(self, p, type_, value=None, node=None, t=None, error=None):
        return self._add(p, type_, self._open.pop(p), value, node, t, error)

    def op(self, p, f, value, result, type_="ok", node=None):
        self.invoke(p, f, value)
        self.done(p, type_, result, node=node)

    def final_read(self, p, node, result):
        self.invoke(p, "read", None, node=node)
        self.done(p, "ok", result, node=node)

    def nemesis(self, f):
        self._add("nemesis", "info", f, None)


# ---- workloads: Maelstrom's request and reply bodies ---------------------------------------

def test_request_bodies_are_maelstroms():
    cases = [
        ("echo", Invocation("echo", "Please echo 3"), {"type": "echo", "echo": "Please echo 3"}),
        ("unique-ids", Invocation("generate"), {"type": "generate"}),
        ("broadcast", Invocation("broadcast", 7), {"type": "broadcast", "message": 7}),
        ("broadcast", Invocation("read"), {"type": "read"}),
        ("g-set", Invocation("add", 7), {"type": "add", "element": 7}),
        ("g-set", Invocation("read"), {"type": "read"}),
        ("g-counter", Invocation("add", 3), {"type": "add", "delta": 3}),
        ("pn-counter", Invocation("add", -3), {"type": "add", "delta": -3}),
        ("pn-counter", Invocation("read"), {"type": "read"}),
        ("lin-kv", Invocation("cas", [1, 2], 0), {"type": "cas", "key": 0, "from": 1, "to": 2}),
        ("lin-kv", Invocation("write", 4, 0), {"type": "write", "key": 0, "value": 4}),
        ("lin-kv", Invocation("read", None, 0), {"type": "read", "key": 0}),
    ]
    for name, inv, body in cases:
        assert make_workload(name).request(inv) == body, name


def test_replies_decode_to_maelstroms_history_values():
    w = make_workload("broadcast")
    assert w.completion(Invocation("read"), {"type": "read_ok", "messages": [1, 2]}).value == [1, 2]
    assert w.completion(Invocation("broadcast", 5), {"type": "broadcast_ok"}).value == 5
    g = make_workload("g-set")
    assert g.completion(Invocation("read"), {"type": "read_ok", "value": [3]}).value == [3]
    c = make_workload("pn-counter")
    assert c.completion(Invocation("read"), {"type": "read_ok", "value": -4}).value == -4
    u = make_workload("unique-ids")
    assert u.completion(Invocation("generate"), {"type": "generate_ok", "id": [1, "a"]}).value \
        == [1, "a"]
    e = make_workload("echo")
    assert e.completion(Invocation("echo", "x"), {"type": "echo_ok", "echo": "x",
                                                   "in_reply_to": 3}).value == {"echo": "x"}
    # A definite error is fail, an indefinite one info (the same rules as every workload).
    assert e.completion(Invocation("echo", "x"), {"type": "error", "code": 11}).type == "fail"
    assert e.completion(Invocation("echo", "x"), {"type": "error", "code": 0}).type == "info"


def test_generators_match_maelstroms():
    import random
    rng = random.Random(4)
    g = make_workload("g-counter")
    pn = make_workload("pn-counter")
    gd = [i.value for i in (g.next_invocation(rng) for _ in range(400)) if i.f == "add"]
    pd = [i.value for i in (pn.next_invocation(rng) for _ in range(400)) if i.f == "add"]
    assert set(gd) == set(range(0, 5)) and set(pd) == set(range(-5, 5))
    b = make_workload("broadcast")
    msgs = [i.value for i in (b.next_invocation(rng) for _ in range(200)) if i.f == "broadcast"]
    assert len(msgs) == len(set(msgs)) > 50
    assert make_workload("echo").next_invocation(rng).value.startswith("Please echo ")


def test_final_reads_on_every_node_and_quiet_period():
    for name in ("broadcast", "g-set", "g-counter", "pn-counter"):
        w = make_workload(name)
        assert [(f.node, f.inv.f) for f in w.final_invocations(["n1", "n2"])] == \
            [("n1", "read"), ("n2", "read")]
        assert w.recovery_s == 10.0          # Maelstrom sleeps 10 s before its final reads
    assert make_workload("echo").final_invocations(["n1"]) == []


def _connected(topo):
    start = next(iter(topo))
    seen, todo = {start}, [start]
    while todo:
        for y in topo[todo.pop()]:
            if y not in seen:
                seen.add(y)
                todo.append(y)
    return seen == set(topo)


@pytest.mark.parametrize("kind", ["grid", "line", "total", "tree2", "tree3", "tree4"])
@pytest.mark.parametrize("n", [1, 2, 5, 25])
def test_topologies_are_symmetric_and_connected(kind, n):
    nodes = [f"n{i}" for i in range(n)]
    topo = topology(kind, nodes)
    assert set(topo) == set(nodes)
    for x, ys in topo.items():
        assert x not in ys and len(set(ys)) == len(ys)
        for y in ys:
            assert x in topo[y], (x, y)
    assert _connected(topo)
    if kind == "grid":
        assert max(len(v) for v in topo.values()) <= 4
    if kind == "line" and n > 2:
        assert sorted(len(v) for v in topo.values())[:2] == [1, 1]


def test_grid_is_maelstroms():
    # Maelstrom's grid-topology for 5 nodes (side 3): n0 n1 n2 / n3 n4; neighbours in the
    # order below, above, right, left.
    topo = topology("grid", ["n0", "n1", "n2", "n3", "n4"])
    assert topo == {"n0": ["n3", "n1"], "n1": ["n4", "n2", "n0"], "n2": ["n1"],
                    "n3": ["n0", "n4"], "n4": ["n1", "n3"]}


def test_broadcast_sends_topology_at_setup():
    w = make_workload("broadcast", {"topology": "line"})
    reqs = w.setup_requests(["n1", "n2", "n3"])
    assert [n for n, _ in reqs] == ["n1", "n2", "n3"]
    assert reqs[0][1] == {"type": "topology",
                          "topology": {"n1": ["n2"], "n2": ["n1", "n3"], "n3": ["n2"]}}
    assert make_workload("g-set").setup_requests(["n1"]) == []
    with pytest.raises(ValueError, match="topology must be one of"):
        make_workload("broadcast", {"topology": "star"})


def test_availability_option():
    assert parse_goal("total") == "total" and parse_goal(":total") == "total"
    assert parse_goal("0.9") == 0.9 and parse_goal(1) == 1.0 and parse_goal(None) is None
    for bad in ("most", "1.5", -0.1, True):
        with pytest.raises(ValueError, match="availability"):
            parse_goal(bad)
    with pytest.raises(ValueError, match="workload echo: availability"):
        make_workload("echo", {"availability": "lots"})
    w = make_workload("kafka", {"availability": "0.5"})
    assert ("availability", {"availability": 0.5}) in w.checker_plan()
    assert "availability" not in [n for n, _ in make_workload("echo").checker_plan()]
    # The test's own goal (the --availability option) is composed in too.
    assert ("availability", {"availability": "total"}) in \
        make_workload("echo").checker_plan({"availability": "total"})
    assert "availability" in make_workload("echo").describe()["options"]


# ---- the echo checker -----------------------------------------------------------------------

def test_echo_checker():
    h = H()
    h.op(0, "echo", "a", {"echo": "a"})
    h.op(1, "echo", {"x": [1, 2.0]}, {"echo": {"x": [1, 2]}})   # 2.0 is 2 in JSON
    assert EchoChecker().check(h.ops).valid is True
    h.op(0, "echo", 1, {"echo": True})                            # true is not 1
    h.op(1, "echo", "b", {})
    r = EchoChecker().check(h.ops)
    assert r.valid is False
    assert [a.name for a in r.anomalies] == ["wrong-echo", "missing-echo"]
    assert r.anomalies[0].ops == [4, 5]
    h2 = H()
    h2.invoke(0, "echo", "a")
    h2.done(0, "info", "a", error="timed-out")
    assert EchoChecker().check(h2.ops).valid == "unknown"


# ---- broadcast / g-set: Jepsen's set-full as Maelstrom runs it -----------------------------

def _checker(f="broadcast"):
    return EventualSetChecker(f, f if f == "broadcast" else "add")


def test_set_full_valid_with_stale_reads_and_latencies():
    h = H()
    h.invoke(0, "broadcast", 1, t=10)
    h.done(0, "ok", 1, t=20)                       # known at t=20
    h.invoke(1, "read", t=30)
    h.done(1, "ok", [], node="n2", t=31)           # stale: absent after it was known
    h.invoke(1, "read", t=70)
    h.done(1, "ok", [1], node="n2", t=71)
    h.invoke(0, "broadcast", 2, t=80)
    h.done(0, "ok", 2, t=81)
    h.final_read(0, "n1", [1, 2])
    h.final_read(1, "n2", [2, 1])
    r = _checker().check(h.ops)
    assert r.valid is True, r.anomalies
    s = r.stats
    assert s["attempt-count"] == 2 and s["stable-count"] == 2 and s["lost-count"] == 0
    assert s["stale-count"] == 1 and s["stale"] == [1]
    # element 1: last absent read invoked at 30 ms, known at 20 ms: 10 ms; element 2: 0 ms
    assert s["stable-latencies"] == {"0": 0, "0.5": 10, "0.95": 10, "0.99": 10, "1": 10}
    assert s["worst-stale"][0]["element"] == 1 and s["worst-stale"][0]["stable-latency"] == 10
    assert s["headline"].startswith("2 broadcasts: 2 stable, 0 lost, 1 stale, 0 never read; "
                                    "stable latency ms: median 10")


def test_set_full_lost_element_named_with_the_nodes_missing_it():
    h = H()
    h.op(0, "broadcast", 1, 1)
    h.op(0, "broadcast", 2, 2)
    h.invoke(1, "read")
    h.done(1, "ok", [1, 2], node="n1")
    h.final_read(1, "n1", [1])
    h.final_read(0, "n2", [1])
    r = _checker().check(h.ops)
    assert r.valid is False
    assert [a.name for a in r.anomalies] == ["lost"]
    a = r.anomalies[0]
    assert a.details["element"] == 2 and a.details["missing_on"] == ["n1", "n2"]
    assert r.stats["lost"] == [2] and r.stats["lost-count"] == 1
    assert "lost-latencies" in r.stats


def test_set_full_lost_on_one_nodes_final_read_although_a_later_read_has_it():
    # Set-full alone would call 2 stable (the latest-invoked read has it); every node must end
    # up with every element, so a final read without it is a lost element.
    h = H()
    h.op(0, "add", 1, 1)
    h.op(0, "add", 2, 2)
    h.final_read(1, "n2", [1])
    h.final_read(0, "n1", [1, 2])
    r = _checker("g-set").check(h.ops)
    assert r.valid is False and r.stats["lost"] == [2]
    assert "missing from the final read of n2" in r.anomalies[0].message


def test_set_full_unexpected_never_read_unknown_and_malformed():
    h = H()
    h.op(0, "add", 1, 1)
    h.invoke(1, "read")
    h.done(1, "ok", [1, 99], node="n1")            # 99 was never added
    r = _checker("g-set").check(h.ops)
    assert r.valid is False and [a.name for a in r.anomalies] == ["unexpected"]
    assert r.anomalies[0].details["element"] == 99

    h = H()
    h.invoke(0, "add", 1)
    h.done(0, "fail", 1, error="node-down")        # certainly not added ...
    h.final_read(1, "n1", [1])                     # ... yet read
    assert _checker("g-set").check(h.ops).anomalies[0].name == "unexpected"

    h = H()
    h.op(0, "add", 1, 1)                           # known, but no read after
    r = _checker("g-set").check(h.ops)
    assert r.valid == "unknown" and r.stats["never-read"] == [1]

    h = H()
    h.op(0, "add", 1, 1)
    h.final_read(1, "n1", {"1": True})
    r = _checker("g-set").check(h.ops)
    assert r.valid is False and r.anomalies[0].name == "malformed-read"


def test_set_full_indefinite_add_read_later_is_fine_and_json_identity():
    h = H()
    h.invoke(0, "add", 1)
    h.done(0, "info", 1, error="timed-out")        # indefinite: may or may not be there
    h.op(2, "add", True, True)
    h.final_read(1, "n1", [1.0, True])             # 1.0 is 1; true is its own element
    r = _checker("g-set").check(h.ops)
    assert r.valid is True and r.stats["stable-count"] == 2
    h2 = H()
    h2.op(0, "add", True, True)
    h2.final_read(1, "n1", [1])                    # 1 is not true: true lost, 1 unexpected
    assert {a.name for a in _checker("g-set").check(h2.ops).anomalies} == {"lost", "unexpected"}


def test_frequency_distribution_is_jepsens():
    assert frequency_distribution([]) is None
    assert frequency_distribution([5]) == {"0": 5, "0.5": 5, "0.95": 5, "0.99": 5, "1": 5}
    assert frequency_distribution(list(range(100))) == {"0": 0, "0.5": 50, "0.95": 95,
                                                        "0.99": 99, "1": 99}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sets(st.integers(0, 9))), min_size=1, max_size=12),
       st.integers(0, 3))
def test_set_full_property_converged_final_reads_are_never_invalid(steps, n_nodes):
    """Adds of 0..9 interleaved with mid-run reads of any subset of what was invoked; when every
    node's final read holds everything acknowledged, the verdict is never False; dropping one
    acknowledged element from one final read makes it False with that element lost."""
    h = H()
    added: list[int] = []
    for i, (is_add, sub) in enumerate(steps):
        if is_add and len(added) < 10:
            v = len(added)
            added.append(v)
            h.op(0, "add", v, v)
        else:
            h.invoke(1, "read")
            h.done(1, "ok", sorted(x for x in sub if x in added), node="n1")
    nodes = [f"n{i}" for i in range(n_nodes + 1)]
    ok = H()
    ok.ops = list(h.ops)
    ok.t = h.t
    for i, n in enumerate(nodes):
        ok.final_read(10 + i, n, list(added))
    r = _checker("g-set").check(ok.ops)
    assert r.valid is not False, r.anomalies
    if added:
        assert r.valid is True
        bad = H()
        bad.ops = list(h.ops)
        bad.t = h.t
        for i, n in enumerate(nodes):
            bad.final_read(10 + i, n, added[1:] if n == nodes[-1] else list(added))
        rb = _checker("g-set").check(bad.ops)
        assert rb.valid is False and added[0] in rb.stats["lost"]


# ---- g-counter / pn-counter: only the final reads are judged --------------------------------

def test_counter_with_stale_mid_run_reads_is_valid():
    h = H()
    h.op(0, "add", 5, 5)
    h.op(1, "add", -2, -2)
    h.op(2, "read", None, 0, node="n3")      # stale mid-run reads: not judged
    h.op(2, "read", None, 99, node="n3")     # nonsense mid-run read: not judged either
    h.nemesis("stop-partition")
    h.final_read(0, "n1", 3)
    h.final_read(1, "n2", 3.0)               # 3.0 is 3
    r = PnCounterChecker().check(h.ops)
    assert r.valid is True, r.anomalies
    assert r.stats["mid-run-reads"] == 2 and r.stats["final-reads"] == 2
    assert r.stats["acceptable"] == [[3, 3]]
    assert r.stats["headline"] == ("2 adds (0 indefinite); final reads n1 3, n2 3.0; the adds "
                                   "allow 3")


def test_counter_final_read_out_of_bounds_is_invalid():
    h = H()
    h.op(0, "add", 5, 5)
    h.final_read(0, "n1", 5)
    h.final_read(1, "n2", 4)
    r = PnCounterChecker().check(h.ops)
    assert r.valid is False
    assert [a.name for a in r.anomalies] == ["out-of-bounds-read"]
    assert r.anomalies[0].details["node"] == "n2" and r.anomalies[0].details["value"] == 4


def test_counter_indefinite_adds_allow_exactly_their_subset_sums():
    h = H()
    h.op(0, "add", 1, 1)
    h.invoke(1, "add", 4)
    h.done(1, "info", 4, error="timed-out")
    h.invoke(2, "add", 100)
    h.done(2, "fail", 100, error="node-down")   # certainly not applied
    h.invoke(3, "add", -1)                       # never completed: indefinite
    for v, ok in ((1, True), (5, True), (0, True), (4, True), (2, False), (3, False),
                  (101, False)):
        hh = H()
        hh.ops = list(h.ops)
        hh.t = h.t
        hh.final_read(9, "n1", v)
        assert PnCounterChecker().check(hh.ops).valid is ok, v
    hh = H()
    hh.ops = list(h.ops)
    hh.t = h.t
    hh.final_read(9, "n1", True)                 # true is not the number 1
    r = PnCounterChecker().check(hh.ops)
    assert r.valid is False and r.anomalies[0].name == "malformed-read"


def test_counter_without_final_read_is_unknown_and_import_fallback():
    h = H()
    h.op(0, "add", 2, 2)
    h.op(1, "read", None, 2)
    # No pinned read: the reads after the last add and the last nemesis event are final.
    r = PnCounterChecker().check(h.ops)
    assert r.valid is True and "after the last add" in r.stats["final-reads-by"]
    h.op(0, "add", 2, 2)
    assert PnCounterChecker().check(h.ops).valid == "unknown"


@settings(max_examples=100, deadline=None)
@given(st.integers(-20, 20), st.lists(st.integers(-6, 6), max_size=7), st.integers(-60, 60))
def test_acceptable_ranges_are_the_subset_sums(base, deltas, probe):
    ranges = [(base, base)]
    for d in deltas:
        ranges = add_delta(ranges, d)
    sums = {base + sum(c) for k in range(len(deltas) + 1)
            for c in itertools.combinations(deltas, k)}
    assert contains(ranges, probe) == (probe in sums)
    assert all(lo <= hi for lo, hi in ranges)
    assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:]))


# ---- availability ---------------------------------------------------------------------------

def test_availability_checker():
    h = H()
    h.op(0, "echo", "a", {"echo": "a"})
    h.op(0, "echo", "b", None, type_="fail")
    h.nemesis("start-partition")
    assert AvailabilityChecker().check(h.ops).valid is True
    assert AvailabilityChecker("0.5").check(h.ops).valid is True
    r = AvailabilityChecker("total").check(h.ops)
    assert r.valid is False and r.anomalies[0].name == "unavailable"
    assert r.stats["ok-fraction"] == 0.5 and r.stats["invoke-count"] == 2
    assert AvailabilityChecker(0.6).check(h.ops).valid is False
    # The goal may come from the test (the --availability option of `splitbrain test`).
    assert AvailabilityChecker().check(h.ops, {"availability": ":total"}).valid is False
    assert make_checker("availability", {}).check(
        h.ops, {"workload_opts": {"availability": "0.4"}}).valid is True


def test_check_infers_the_checker_from_the_ops():
    h = H()
    h.op(0, "broadcast", 1, 1)
    h.final_read(0, "n1", [1])
    assert infer_checkers(h.ops) == ["broadcast"]
    e = H()
    e.op(0, "echo", "a", {"echo": "a"})
    assert infer_checkers(e.ops) == ["echo"]
    g = H()
    g.op(0, "generate", None, 1)
    assert infer_checkers(g.ops) == ["unique-ids"]


def test_workloads_command_lists_maelstroms_workloads():
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "workloads", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    by = {w["name"]: w for w in json.loads(p.stdout)}
    for name in ("echo", "unique-ids", "broadcast", "g-set", "g-counter", "pn-counter",
                 "lin-kv", "kafka"):
        assert name in by and by[name]["description"]
    assert by["broadcast"]["checkers"] == ["broadcast", "stats"]
    assert "topology" in by["broadcast"]["options"]


# ---- end to end: real node processes --------------------------------------------------------

# (workload, node program, nemesis, expected validity, anomaly the checker must name)
E2E = [
    ("echo", "echo.py", "none", True, None),
    ("echo", "echo.py", "partition", True, None),
    ("echo", "echo-wrong.sh", "none", False, "missing-echo"),
    ("unique-ids", "unique_ids.py", "none", True, None),
    ("unique-ids", "unique_ids.py", "partition", True, None),
    ("unique-ids", "unique-ids-local.sh", "none", False, "duplicate-id"),
    ("broadcast", "broadcast.py", "none", True, None),
    ("broadcast", "broadcast.py", "partition", True, None),
    ("broadcast", "broadcast-no-gossip.sh", "none", False, "lost"),
    ("g-set", "gset.py", "none", True, None),
    ("g-set", "gset.py", "partition", True, None),
    ("g-set", "gset-local.sh", "none", False, "lost"),
    ("g-counter", "counter.py", "none", True, None),
    ("g-counter", "counter.py", "partition", True, None),
    ("counter", "counter.py", "partition", True, None),
    ("pn-counter", "counter.py", "none", True, None),
    ("pn-counter", "counter.py", "partition", True, None),
    ("pn-counter", "counter-local.sh", "none", False, "out-of-bounds-read"),
]


def _cmd(store, workload, program, nemesis, *extra):
    return [sys.executable, "-m", "splitbrain.cli", "test", "--bin", str(NODES / program),
            "--workload", workload, "--nodes", "3", "--time-limit", "2.5", "--rate", "60",
            "--seed", "3", "--store", str(store), "--json", "--nemesis", nemesis,
            "--opt", "harness.reports=false", "--opt", "harness.recovery_s=1.5",
            "--opt", "harness.nemesis_interval_s=0.4", *extra]


E2E_PARALLEL_MAX = 6      # runs at once (each is mostly waiting; the machine may be shared)


@pytest.fixture(scope="module")
def e2e_runs(tmp_path_factory):
    """Every run of E2E, a few at a time, then their (returncode, stdout, stderr)."""
    store = tmp_path_factory.mktemp("maelstrom-e2e")
    out: list = [None] * len(E2E)
    running: dict = {}
    todo = list(enumerate(E2E))
    try:
        while todo or running:
            while todo and len(running) < E2E_PARALLEL_MAX:
                i, (w, prog, nem, _, _) = todo.pop(0)
                running[i] = subprocess.Popen(_cmd(store / str(i), w, prog, nem),
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)
            i = next(iter(running))
            so, se = running[i].communicate(timeout=180)
            out[i] = (running.pop(i).returncode, so, se)
    finally:
        for p in running.values():
            p.kill()
            p.wait()
    return out


@pytest.mark.parametrize("i", range(len(E2E)), ids=[f"{w}-{p}-{n}" for w, p, n, _, _ in E2E])
def test_maelstrom_node_end_to_end(e2e_runs, i):
    workload, program, nemesis, valid, anomaly = E2E[i]
    rc, so, se = e2e_runs[i]
    assert rc == (0 if valid else 1), so[-2000:] + se[-2000:]
    out = json.loads(so)
    assert out["valid"] is valid
    checker = {"counter": "g-counter"}.get(workload, workload)
    child = out["results"]["children"][checker]
    assert child["valid"] is valid
    if anomaly:
        assert anomaly in child["anomaly_names"]
    hist = [json.loads(line) for line in
            (Path(out["run_dir"]) / "history.jsonl").read_text().splitlines()]
    assert sum(1 for o in hist if o["type"] == "ok") > 20     # about 150 when not loaded
    if nemesis == "partition":
        assert any(o["f"] == "start-partition" for o in hist)
    if workload in ("broadcast", "g-set", "g-counter", "pn-counter"):
        finals = sorted(o["node"] for o in hist if o["type"] == "invoke" and o.get("node"))
        assert finals == ["n1", "n2", "n3"]


def test_availability_goal_end_to_end(tmp_path):
    """A node that answers every third echo with error 11: echo is right, availability 0.9 is
    missed (INVALID `unavailable`), availability 0.5 is met."""
    runs = [subprocess.Popen(_cmd(tmp_path / g, "echo", "echo-flaky.sh", "none", "--opt",
                                  f"workload.availability={g}"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for g in ("0.9", "0.5")]
    (so9, se9), (so5, se5) = (p.communicate(timeout=120) for p in runs)
    assert runs[0].returncode == 1, so9[-2000:] + se9[-2000:]
    out = json.loads(so9)
    assert out["results"]["children"]["echo"]["valid"] is True
    av = out["results"]["children"]["availability"]
    assert av["valid"] is False and av["anomaly_names"] == ["unavailable"]
    assert 0.6 < av["stats"]["ok-fraction"] < 0.7
    assert runs[1].returncode == 0, so5[-2000:] + se5[-2000:]


def test_a_node_that_refuses_the_topology_stops_the_run_with_a_clear_error(tmp_path):
    p = subprocess.run(_cmd(tmp_path, "broadcast", "echo.py", "none"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 4, p.stdout[-2000:] + p.stderr[-2000:]
    assert "topology" in p.stderr and "n1" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_node_without_a_final_read_is_never_a_pass():
    """A node down at the end (its final read failed) leaves the verdict unknown, never VALID."""
    for f, checker, good in (("add", _checker("g-set"), [1]),
                             ("add", PnCounterChecker(), 1)):
        h = H()
        h.op(0, "add", 1, 1)
        h.final_read(1, "n1", good)
        h.invoke(2, "read", None, node="n2")
        h.done(2, "fail", None, node="n2", error="node-down")
        r = checker.check(h.ops)
        assert r.valid == "unknown" and "n2" in r.error, (checker, r)


def _jepsen_set_full(ops):
    """A direct transcription of Jepsen's set-full reduction (for the property below): elements
    tracked from their add's invoke, every ok read updates every tracked element."""
    elements: dict = {}
    invokes: dict = {}
    for op in ops:
        if op.f == "add":
            if op.type == "invoke":
                elements[op.value] = {"known": None, "lp": None, "la": None}
            elif op.type == "ok" and elements[op.value]["known"] is None:
                elements[op.value]["known"] = op
        elif op.f == "read":
            if op.type == "invoke":
                invokes[op.process] = op
                continue
            iop = invokes.pop(op.process)
            if op.type != "ok":
                continue
            for v, e in elements.items():
                if v in op.value:
                    e["known"] = e["known"] or op
                    if e["lp"] is None or e["lp"].index < iop.index:
                        e["lp"] = iop
                elif e["la"] is None or e["la"].index < iop.index:
                    e["la"] = iop
    out = {}
    for v, e in elements.items():
        kn, lp, la = e["known"], e["lp"], e["la"]
        stable = lp is not None and (la.index if la else -1) < lp.index
        lost = (kn is not None and la is not None and (lp.index if lp else -1) < la.index
                and kn.index < la.index)
        lat = None
        if stable:
            lat = int(max(0, (la.time + 1 if la else 0) - kn.time) / 1e6)
        out[v] = ("stable" if stable else "lost" if lost else "never-read", lat)
    return out


# A read that missed an element, followed by a newer read that saw it but missed elements added
# later (the newer read's absences must not hide the older one's: a bug once).
STALE_BEHIND_NEWER_ABSENCES = [(0, 0, set(), 0)] * 4 + [(0, 1, set(), 0), (1, 0, set(), 0),
                                                      (2, 0, set(), 0)] + \
    [(0, 0, set(), 0)] * 7 + [(1, 0, set(), 0)] * 2 + [(0, 0, set(), 0), (0, 0, {0}, 0)]


@settings(max_examples=100, deadline=None)
@example(steps=STALE_BEHIND_NEWER_ABSENCES)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.sets(st.integers(0, 7)),
                          st.integers(0, 5)), min_size=4, max_size=40))
def test_set_full_matches_jepsens_reduction(steps):
    """Random interleavings of concurrent adds (ok, fail, info, pending) and reads of random
    subsets of the values invoked so far: the outcomes, stale elements and stable latencies are
    exactly Jepsen's (reads pinned to no node, so splitbrain's final-phase rule stays out)."""
    h = H()
    open_ops: dict = {}
    invoked: list = []
    proc = {i: i for i in range(4)}          # worker -> its current process (a new one after info)
    for w, kind, sub, how in steps:
        p = proc[w]
        if p in open_ops:
            f, v = open_ops.pop(p)
            t = ("ok", "ok", "ok", "ok", "fail", "info")[how] if f == "add" else "ok"
            if t == "info":
                proc[w] = p + 4
            h.done(p, t, sorted(x for x in sub if x in invoked) if f == "read" else v)
        elif kind == 0 and len(invoked) < 8:
            v = len(invoked)
            invoked.append(v)
            h.invoke(p, "add", v)
            open_ops[p] = ("add", v)
        else:
            h.invoke(p, "read")
            open_ops[p] = ("read", None)
    # Failed adds whose element is read are splitbrain's `unexpected`, outside set-full.
    failed = {op.value for op in h.ops if op.f == "add" and op.type == "fail"}
    if any(op.f == "read" and op.type == "ok" and failed & set(op.value) for op in h.ops):
        return
    want = _jepsen_set_full(h.ops)
    r = _checker("g-set").check(h.ops)
    got = {}
    for v in r.stats["lost"]:
        got[v] = "lost"
    for v in r.stats["never-read"]:
        got[v] = "never-read"
    stable = {v for v in want if v not in got}
    assert {v: o for v, (o, _) in want.items()} == {**{v: "stable" for v in stable}, **got}
    assert sorted(r.stats["stale"]) == sorted(v for v, (o, lat) in want.items()
                                              if o == "stable" and lat > 0)
    lats = [lat for o, lat in want.values() if o == "stable"]
    assert r.stats.get("stable-latencies") == frequency_distribution(lats)
    assert (r.valid is False) == any(o == "lost" for o, _ in want.values())
