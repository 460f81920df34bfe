"""The deterministic simulator backend (`splitbrain test --backend sim`).

    from splitbrain.harness.sim import SimConfig, simulate, run_sim_test
    run = simulate(SimConfig(system="raft", workload="append-log", seed=7))   # in memory
    summary = run_sim_test(test)   # the `splitbrain test` path: store, checkers, reports

From the command line (the same checkers and store as every backend):

    splitbrain test --backend sim --system raft --workload append-log --nemesis all --seed 7
    splitbrain test --backend sim --system raft --bug stale-reads --workload register --seed 25
    python benchmarks/sim_campaign.py --systems raft --schedules 1000   # many seeds, every bug

Every run prints its seed, the settings drawn from it and the command that replays it exactly;
a shrunk Hypothesis schedule replays with `--schedule '<json>'` (harness/fault_search.py).

Everything about one run follows from its seed (engine.py): the network's settings (delays,
reorder, duplication, base loss), the client timeout, the nodes' clock offsets, the fault schedule
(schedule.py) unless one is given explicitly, the clients' operations, and every core's rng. The
same seed gives the same history byte for byte. See engine.py for the phases (safety with
faults, heal, liveness, final reads and status) and the client semantics.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from ..store import RunStore, RunSummary
from ..workloads import check_history, make_workload
from .engine import SimConfig, SimRun, Simulator, simulate
from .schedule import (KINDS, Fault, Settings, random_schedule, schedule_from_json,
                       schedule_to_json)

__all__ = ["SimConfig", "SimRun", "Simulator", "simulate", "run_sim_test", "config_from_test",
           "check_run", "Fault", "Settings", "KINDS", "random_schedule", "schedule_from_json",
           "schedule_to_json"]

SIM_DEFAULTS = {"time_limit": 10.0, "rate": 500.0, "nodes": 5, "concurrency": 10}
# A simulated history must never hang the run: past this the linearizability verdict is unknown.
DEFAULT_CHECKER_OPTIONS = {"linearizable": {"time_limit": 60.0}}
SIM_OPTIONS = {"liveness_ms": ("virtual ms after the heal within which the cluster must converge",
                               10_000),
               "ops_max": ("stop issuing client ops after this many invocations", None)}


def config_from_test(test: dict) -> SimConfig:
    """A SimConfig from the `splitbrain test` options dict (see commands/test.py)."""
    sim_opts = dict(test.get("sim_opts") or {})
    unknown = set(sim_opts) - set(SIM_OPTIONS)
    if unknown:
        raise ValueError(f"unknown sim option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(SIM_OPTIONS)})")
    from ..runner import with_checker_workers
    with_checker_workers(test)  # --opt harness.checker_workers=N: validated here (ValueError)
    nodes = int(test.get("nodes") or SIM_DEFAULTS["nodes"])
    schedule = test.get("schedule")
    node_ids = [f"n{i}" for i in range(1, nodes + 1)]
    return SimConfig(
        system=test["system"], workload=test.get("workload") or "register",
        seed=int(test["seed"]), nodes=nodes,
        concurrency=int(test.get("concurrency") or SIM_DEFAULTS["concurrency"]),
        rate=float(test.get("rate") or SIM_DEFAULTS["rate"]),
        time_limit_s=float(test.get("time_limit") or SIM_DEFAULTS["time_limit"]),
        nemesis=tuple(test.get("nemesis") or ()),
        bugs=tuple(test.get("bugs") or ()), options=dict(test.get("opts") or {}),
        workload_options=dict(test.get("workload_opts") or {}),
        schedule=None if schedule is None else schedule_from_json(schedule, node_ids),
        liveness_ms=int(sim_opts.get("liveness_ms") or SIM_OPTIONS["liveness_ms"][1]),
        ops_max=None if sim_opts.get("ops_max") is None else int(sim_opts["ops_max"]),
    )


def check_run(run: SimRun, test: dict | None = None):
    """The composed Result of a simulated run: the workload's checkers, liveness (the cluster
    converged after the heal) and replicas (equal applied_index -> equal state, every node)."""
    workload = make_workload(run.config.workload, run.config.workload_options)
    t = dict(test or {})
    t.setdefault("nodes", run.config.node_ids())
    t.setdefault("checker_options", DEFAULT_CHECKER_OPTIONS)
    from ..runner import with_checker_workers  # --opt harness.checker_workers=N
    t = with_checker_workers(t)
    extra = [run.liveness] + ([run.replicas] if run.replicas is not None else [])
    result = check_history(workload, run.history, t, extra=extra)
    if test is not None and "checkers" in t:
        test.setdefault("checkers", t["checkers"])   # recorded in test.json (check_history)
    return result


def run_sim_test(test: dict, log: Callable[[str], None] | None = None) -> RunSummary:
    """Run one simulated test the way `splitbrain test` does: store, history, checkers, reports.

    `test["store"]` is the store root (None: keep nothing on disk). The returned summary's
    `replay` is filled in by the command (it knows the command line).
    """
    config = config_from_test(test)
    sim = Simulator(config)  # validates the config and draws settings and schedule from the seed
    record: dict[str, Any] = dict(test)
    record["backend"] = "sim"
    record["node_ids"] = config.node_ids()
    record["sim"] = {"settings": sim.settings.to_json(),
                     "schedule": schedule_to_json(sim.schedule)}
    notes = [f"seed {config.seed}: {sim.settings.describe()}",
             f"faults: {describe_schedule(sim.schedule)}"]
    store = None
    if test.get("store"):
        store = RunStore.create(test["store"], test.get("name") or
                                f"{config.system}-{config.workload}")
        record["out_dir"] = str(store.run_dir)
        store.write_test(record)
        for line in notes:
            store.log(line)
        # Each fault's start and stop, in virtual time (the history has them as nemesis ops).
        for fault, js in zip(sim.schedule, schedule_to_json(sim.schedule)):
            store.log(f"nemesis start-{fault.kind} at {fault.at_ms / 1000:.3f} s, stop-"
                      f"{fault.kind} at {(fault.at_ms + fault.for_ms) / 1000:.3f} s (virtual): "
                      f"{json.dumps(js, separators=(',', ':'))}")
    try:
        if store is not None:
            sim.recorder = store.recorder()
        run = sim.run()
        if store is not None:
            sim.recorder.close()
            store.log(f"simulated: {run.stats}")
            _write_nodes(store, sim)
        result = check_run(run, record)
        summary = RunSummary(valid=result.valid, results=result.to_json(), test=record,
                             replay="", run_dir=str(store.run_dir) if store else None,
                             history_ops=len(run.history), notes=notes, stats=run.stats)
        if store is not None:
            store.write_results(result)
            record["valid"] = result.valid
            record["stats"] = run.stats
            store.write_test(record)
            store.write_reports(run.history, record)
        return summary
    finally:
        if store is not None:
            sim.recorder.close()
            store.finish()


def _write_nodes(store: RunStore, sim: Simulator) -> None:
    """nodes/<node>/records.jsonl (what the node persisted, after the run's crashes) and
    status.json (its final protocol state), for a person debugging a failure."""
    import json
    for n in sim.node_ids:
        node = sim.nodes[n]
        d = store.node_dir(n)
        with open(d / "records.jsonl", "w", encoding="utf-8") as fh:
            for rec in node.disk:
                fh.write(json.dumps(rec, separators=(",", ":"), default=str) + "\n")
        status = node.core.status() if node.up and node.core is not None else {"down": True}
        status["incarnation"] = node.incarnation
        status["records_synced"] = node.synced
        with open(d / "status.json", "w", encoding="utf-8") as fh:
            json.dump(status, fh, indent=2, default=str)


def describe_schedule(schedule: list[Fault]) -> str:
    if not schedule:
        return "none"
    counts: dict[str, int] = {}
    for f in schedule:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())
