"""Hypothesis fault search: strategies for fault schedules and workloads, and the property
"with no bug switched on: linearizable, logs agree, replicas converge" for every system.

A case is plain data: (system, workload, seed, schedule, bugs, time limit). The seed fixes the
network settings, the clients' operations and every core's rng; the schedule is an explicit list
of Fault intervals that Hypothesis builds and shrinks (fewer faults, shorter, earlier, fewer
nodes). When a case fails, Hypothesis shrinks it and `search` returns a Finding with the minimal
schedule and the exact `splitbrain test --backend sim ... --schedule '...'` command that replays it.

    finding = search("raft", bugs=("commit-old-term",), max_examples=300)
    if finding: print(finding.report())

pytest runs the property briefly (tests/test_fault_search.py); benchmarks/sim_campaign.py runs it
for minutes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..checkers.result import Result
from .sim import SimConfig, check_run, schedule_to_json, simulate
from .sim.schedule import CLOCK_JUMP_MAX_MS, FAULT_MAX_MS, KINDS, SHAPES, Fault

WORKLOADS = ("register", "append-log", "kv", "arith", "set")
SEED_MAX = 2**31 - 1
# Options that keep checking tractable: arith with info ops is the hardest search of all, so the
# search spreads it over independent integers (linearizability is compositional).
WORKLOAD_OPTIONS: dict[str, dict[str, Any]] = {"arith": {"key_count": 3}}
SCHEDULE_FAULTS_MAX = 8
# The checker options of the search: one process, and never hang on one hard history.
CHECKER_OPTIONS = {"linearizable": {"time_limit": 20.0, "workers": 1}}


def node_ids(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


# ---- strategies -------------------------------------------------------------------------------

def node_subsets(nodes: list[str], *, min_size: int = 1,
                 max_size: int | None = None) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(nodes), min_size=min_size, max_size=max_size or len(nodes),
                    unique=True).map(lambda xs: tuple(sorted(xs)))


def faults(nodes: list[str], time_limit_ms: int,
           kinds: Iterable[str] = KINDS) -> st.SearchStrategy[Fault]:
    """One Fault of an enabled kind, starting within the safety phase."""
    kinds = [k for k in KINDS if k in set(kinds)]
    at = st.integers(0, max(0, time_limit_ms - 1))
    # Short faults first: they shrink towards 1 ms, and leader churn needs them.
    dur = st.one_of(st.integers(1, 500), st.integers(1, FAULT_MAX_MS))
    by_kind = {
        "partition": st.one_of(
            st.builds(lambda a, d, ns: Fault("partition", a, d, nodes=ns, shape="split"),
                      at, dur, node_subsets(nodes, max_size=max(1, len(nodes) // 2))),
            st.builds(lambda a, d, perm, shape: Fault("partition", a, d, nodes=tuple(perm),
                                                      shape=shape),
                      at, dur, st.permutations(nodes), st.sampled_from(("ring", "bridge"))),
            st.builds(lambda a, d: Fault("partition", a, d, shape="leader"), at, dur)),
        "kill": st.one_of(
            st.builds(lambda a, d, ns, lose, lead: Fault(
                          "kill", a, d, nodes=() if lead else ns, lose_unsynced=lose,
                          shape="leader" if lead else ""),
                      at, dur, node_subsets(nodes), st.booleans(), st.booleans()),
            st.builds(lambda a, d, p, lose: Fault("kill", a, d, shape="storm", p=p,
                                                  lose_unsynced=lose),
                      at, dur, st.sampled_from((0.01, 0.02, 0.05)), st.booleans())),
        "pause": st.builds(lambda a, d, ns, lead: Fault("pause", a, d, nodes=() if lead else ns,
                                                        shape="leader" if lead else ""),
                           at, dur, node_subsets(nodes), st.booleans()),
        "clock": st.builds(lambda a, d, ns, js: Fault("clock", a, d,
                                                      deltas=tuple(zip(ns, js))),
                           at, dur, node_subsets(nodes),
                           st.lists(st.integers(-CLOCK_JUMP_MAX_MS, CLOCK_JUMP_MAX_MS),
                                    min_size=len(nodes), max_size=len(nodes))),
        "loss": st.builds(lambda a, d, p: Fault("loss", a, d, p=p), at, dur,
                          st.sampled_from((0.05, 0.1, 0.3, 0.5, 0.9))),
    }
    assert all(s in SHAPES for s in ("split", "ring", "bridge", "leader"))
    return st.one_of([by_kind[k] for k in kinds])


def schedules(nodes: list[str], time_limit_ms: int, kinds: Iterable[str] = KINDS,
              max_faults: int = SCHEDULE_FAULTS_MAX) -> st.SearchStrategy[list[Fault]]:
    """A fault schedule: up to `max_faults` intervals, sorted by start (shrinks to [])."""
    return st.lists(faults(nodes, time_limit_ms, kinds), max_size=max_faults).map(
        lambda fs: sorted(fs, key=lambda f: (f.at_ms, KINDS.index(f.kind))))


@dataclass(frozen=True)
class Case:
    """One simulated test, as data."""

    system: str
    workload: str
    seed: int
    schedule: tuple[Fault, ...]
    bugs: tuple[str, ...] = ()
    time_limit_s: float = 3.0
    nodes: int = 5
    concurrency: int = 5
    rate: float = 200.0
    workload_opts: tuple[tuple[str, Any], ...] = ()

    def config(self) -> SimConfig:
        return SimConfig(system=self.system, workload=self.workload, seed=self.seed,
                         nodes=self.nodes, concurrency=self.concurrency, rate=self.rate,
                         time_limit_s=self.time_limit_s, bugs=self.bugs, nemesis=(),
                         schedule=list(self.schedule),
                         workload_options=dict(self.workload_opts))

    def test(self) -> dict:
        """The `splitbrain test` options dict that replays this case."""
        return {"backend": "sim", "system": self.system, "bin": None, "workload": self.workload,
                "nemesis": [], "time_limit": self.time_limit_s, "nodes": self.nodes,
                "concurrency": self.concurrency, "rate": self.rate, "seed": self.seed,
                "bugs": list(self.bugs), "opts": {}, "workload_opts": dict(self.workload_opts),
                "sim_opts": {}, "schedule": schedule_to_json(self.schedule)}

    def replay(self) -> str:
        from ..commands.test import replay_command
        return replay_command(self.test())


def cases(system: str, *, bugs: tuple[str, ...] = (), workloads: Iterable[str] = WORKLOADS,
          kinds: Iterable[str] = KINDS, time_limit_s: float = 3.0, nodes: int = 5,
          concurrency: int = 5, rate: float = 200.0) -> st.SearchStrategy[Case]:
    ids = node_ids(nodes)
    return st.builds(
        lambda wl, seed, sched: Case(system, wl, seed, tuple(sched), tuple(bugs), time_limit_s,
                                     nodes, concurrency, rate,
                                     tuple(sorted(WORKLOAD_OPTIONS.get(wl, {}).items()))),
        st.sampled_from(tuple(workloads)), st.integers(0, SEED_MAX),
        schedules(ids, int(time_limit_s * 1000), kinds))


def nemesis_for(seed: int) -> tuple[str, ...]:
    """The fault kinds of seeded schedule `seed` (campaigns): every kind half the time, else a
    random non-empty subset.

    A mix of every kind dilutes each one; some bugs need many faults of one kind (Raft's
    figure 8 needs leader crashes and partitions, not pauses and clock jumps).
    """
    import random
    rng = random.Random(f"{seed}/nemesis")
    if rng.random() < 0.5:
        return KINDS
    kinds = tuple(k for k in KINDS if rng.random() < 0.5)
    return kinds or (rng.choice(KINDS),)


def seeded_config(system: str, seed: int, *, bugs: tuple[str, ...] = (),
                  time_limit_s: float = 5.0, workloads: tuple[str, ...] = WORKLOADS,
                  workload: str | None = None) -> SimConfig:
    """Seeded schedule `seed` of a campaign: workloads in rotation, kinds from nemesis_for."""
    wl = workload or workloads[seed % len(workloads)]
    return SimConfig(system=system, workload=wl, seed=seed, time_limit_s=time_limit_s,
                     nemesis=nemesis_for(seed), bugs=bugs,
                     workload_options=dict(WORKLOAD_OPTIONS.get(wl, {})))


# ---- the property -----------------------------------------------------------------------------

def run_case(case: Case) -> Result:
    """Simulate a case and check it (workload checkers + liveness)."""
    run = simulate(case.config())
    return check_run(run, {"checker_options": CHECKER_OPTIONS})


def violations(result: Result) -> list[tuple[str, str]]:
    """(checker, anomaly name) of every anomaly of an invalid child result."""
    out = []
    for name, child in result.children.items():
        if child.valid is False:
            for a in child.all_anomalies() or [None]:
                out.append((name, a.name if a else "invalid"))
    return sorted(set(out))


class Violation(AssertionError):
    """Raised by the property for an invalid case; carries the case and what was violated."""

    def __init__(self, case: Case, found: list[tuple[str, str]]):
        self.case = case
        self.found = found
        super().__init__(f"{case.system} {case.workload} seed {case.seed}: "
                         + ", ".join(f"{c}/{a}" for c, a in found))


@dataclass
class Finding:
    """A shrunk failing case: what failed, after how many schedules, and how to replay it."""

    case: Case
    found: list[tuple[str, str]]
    examples_to_first_failure: int
    first_case: Case | None = None
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        sched = json.dumps(schedule_to_json(self.case.schedule), indent=None)
        return "\n".join([
            f"{self.case.system} bugs={list(self.case.bugs) or 'none'}: violation after "
            f"{self.examples_to_first_failure} schedule(s): "
            + ", ".join(f"{c}/{a}" for c, a in self.found),
            f"  minimal case: workload {self.case.workload}, seed {self.case.seed}, "
            f"{len(self.case.schedule)} fault(s): {sched}",
            f"  replay: {self.case.replay()}",
        ])


def search(system: str, *, bugs: tuple[str, ...] = (), max_examples: int = 100,
           workloads: Iterable[str] = WORKLOADS, kinds: Iterable[str] = KINDS,
           time_limit_s: float = 3.0, nodes: int = 5, shrink: bool = True,
           seed: int | None = 0, on_case: Callable[[Case, Result], None] | None = None
           ) -> Finding | None:
    """Run the property over up to `max_examples` cases; a Finding (shrunk) or None if all pass.

    `seed` seeds Hypothesis itself (None: random), so a campaign is reproducible.
    """
    counter = {"n": 0, "first": None, "first_case": None}

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              print_blob=False)
    @given(cases(system, bugs=bugs, workloads=workloads, kinds=kinds, time_limit_s=time_limit_s,
                 nodes=nodes))
    def prop(case: Case) -> None:
        counter["n"] += 1
        result = run_case(case)
        if on_case is not None:
            on_case(case, result)
        found = violations(result)
        if found:
            if counter["first"] is None:
                counter["first"] = counter["n"]
                counter["first_case"] = case
            raise Violation(case, found)

    if seed is not None:
        prop = __import__("hypothesis").seed(seed)(prop)
    try:
        prop()
    except Violation as v:
        return Finding(v.case, v.found, counter["first"] or counter["n"], counter["first_case"])
    return None
