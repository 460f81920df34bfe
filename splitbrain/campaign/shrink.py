"""Hypothesis shrinking of a failing simulated run to a minimal fault schedule.

A seeded sim run draws its fault schedule from the seed (sim/schedule.py random_schedule). The
seed also fixes the network settings, the clients' operations and every core's rng, and a run
given that same schedule explicitly (`--schedule`) is the same run. So the search space is the
sub-schedules of the failing one, with the seed held: Hypothesis draws which faults to keep
(three in four kept while generating, so that failures are found; "drop" is what a keep flag
shrinks to, so the shrinker removes faults one by one) and `hypothesis.find` returns the minimal
sub-schedule on which the run still shows one of the original (checker, anomaly) violations.

The result names the faults kept and the exact `splitbrain test --backend sim ... --schedule
'[...]'` command that replays the minimal failure. A time budget bounds the search: past it no
further candidate is accepted and the smallest failing schedule found so far is returned.
"""

from __future__ import annotations

import time
from typing import Any


def shrink_failure(test: dict, *, max_examples: int = 60, time_budget_s: float = 120.0,
                   seed: int = 0) -> dict[str, Any]:
    """Shrink the failing sim run `test` (a `splitbrain test` dict, seeded schedule).

    Returns {"status": "shrunk" | "not-reproduced", "faults_before", "faults", "schedule",
    "found": [[checker, anomaly], ...], "replay", "examples", "duration_s"}."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Flaky, NoSuchExample

    from ..commands.test import replay_command
    from ..harness.fault_search import CHECKER_OPTIONS, violations
    from ..harness.sim import Simulator, check_run, config_from_test, schedule_to_json, simulate

    t0 = time.perf_counter()
    base = dict(test)
    base["schedule"] = None
    full = list(Simulator(config_from_test(base)).schedule)
    examples = {"n": 0}

    def found_on(schedule) -> list[tuple[str, str]]:
        t = dict(base)
        t["schedule"] = schedule_to_json(schedule)
        examples["n"] += 1
        run = simulate(config_from_test(t))
        return violations(check_run(run, {"checker_options": CHECKER_OPTIONS}))

    original = found_on(full)

    def result(status: str, schedule, found) -> dict[str, Any]:
        t = dict(base)
        t["schedule"] = schedule_to_json(schedule)
        t["nemesis"] = []
        t["store"] = None
        return {"status": status, "faults_before": len(full), "faults": len(schedule),
                "schedule": schedule_to_json(schedule), "found": [list(x) for x in found],
                "replay": replay_command(t), "examples": examples["n"],
                "duration_s": round(time.perf_counter() - t0, 3)}

    if not original:
        return result("not-reproduced", full, [])
    wanted = set(original)
    deadline = t0 + time_budget_s
    best = {"schedule": full, "found": original}

    seen: dict[tuple[int, ...], bool] = {}

    def still_fails(keep: list[bool]) -> bool:
        key = tuple(i for i, k in enumerate(keep) if k)
        if key in seen:          # a schedule asked again gets the same answer (never "flaky")
            return seen[key]
        if time.perf_counter() > deadline:
            return False         # past the budget: no new candidate is accepted
        sched = [full[i] for i in key]
        found = found_on(sched)
        seen[key] = bool(wanted & set(found))
        if seen[key] and len(sched) < len(best["schedule"]):
            best["schedule"], best["found"] = sched, sorted(wanted & set(found))
        return seen[key]

    # Three in four faults kept while generating; a flag shrinks to 0, i.e. "drop".
    keep_flag = st.integers(0, 3).map(lambda x: x != 0)
    strategy = st.lists(keep_flag, min_size=len(full), max_size=len(full))
    try:
        find(strategy, still_fails,
             settings=settings(max_examples=max_examples, deadline=None, database=None,
                               phases=[Phase.generate, Phase.shrink],
                               suppress_health_check=list(HealthCheck)),
             random=__import__("random").Random(seed))
    except (NoSuchExample, Flaky):
        # Flaky: a candidate's verdict changed between two runs of it (a checker that reached its
        # time limit once); the smallest schedule seen failing is still the answer.
        pass
    return result("shrunk", best["schedule"], best["found"])
