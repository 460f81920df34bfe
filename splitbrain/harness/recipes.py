"""Short real runs that expose each bug switch of the in-house systems on the local backend.

One recipe per (system, bug): the workload, the faults and the settings of a run of real node
processes that the harness finds invalid, tried with seeds 1, 2, ... until one is. They are the
documentation of how to see each bug on real processes (`splitbrain systems --recipes` prints
them as commands), the cases of tests/test_local_backend.py (the `ci` ones run in CI, the others
in the slow tier) and the matrix of benchmarks/local_bug_matrix.py.

Most bugs fall to a storm of process faults. Four have windows a few milliseconds wide, which
random wall-clock kills rarely hit; the crash-point nemesis aims at them instead (the router
crashes a node right after or before it sends a given message; see harness/nemesis.py), with
the figures measured when each recipe was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every process fault, one family at a time or overlapping, a new one every 0.7 s.
STORM_FAULTS = ("partition", "partition-leader", "kill", "lost-writes", "pause", "clock")


@dataclass(frozen=True)
class Recipe:
    """The settings of one short real run; `why` says what the faults do to the bug."""

    workload: str
    nemesis: tuple[str, ...]
    why: str
    nodes: int = 5
    time_limit: float = 8.0
    interval: float = 1.0
    overlap: bool = False
    rate: float = 200.0
    concurrency: int = 20
    opts: dict[str, Any] = field(default_factory=dict)
    harness: dict[str, Any] = field(default_factory=dict)
    seeds: int = 3          # seeds the test tries before it calls the bug not found
    ci: bool = False        # short and reliable enough for the CI tier


def _storm(why: str, **kw: Any) -> Recipe:
    settings: dict[str, Any] = dict(workload="append-log", nemesis=STORM_FAULTS, time_limit=10.0,
                                    interval=0.7)
    settings.update(kw)
    return Recipe(why=why, **settings)


RECIPES: dict[tuple[str, str], Recipe] = {
    ("raft", "stale-reads"): Recipe(
        "kv", ("partition-leader",), nodes=3, time_limit=5, interval=1.5,
        opts={"check-quorum": False}, ci=True,
        why="isolate the leader and keep its clients: the deposed leader answers reads from its "
            "own state"),
    ("raft", "vote-not-persisted"): Recipe(
        "append-log", ("crash-point", "partition"), nodes=3, time_limit=20, interval=2.0,
        overlap=True, rate=20, concurrency=6, seeds=5, ci=True,
        opts={"election-timeout-ms": 150, "heartbeat-interval-ms": 25},
        harness={"crash_point_types": "rv_r.granted@1,hb@0.02", "crash_point_before_p": 0.0,
                 "partition_shapes": "bridge-leader"},
        why="the leader is the bridge of a partition (both halves stay in sync through it) and "
            "crashes after a heartbeat now and then; each half elects on its own and the voter in "
            "the middle crashes right after (never before: that would lose the vote) every "
            "granted vote, so it can grant the same term again; a low rate keeps both halves' "
            "logs up to date. Invalid in 4 of 5 and 5 of 5 seeds (1 of 5 when half the crashes "
            "came before the grant left)"),
    ("raft", "commit-old-term"): Recipe(
        "append-log", ("crash-point",), nodes=3, time_limit=30, interval=3.0, rate=60,
        concurrency=10, seeds=8, ci=True,
        opts={"election-timeout-ms": 150, "heartbeat-interval-ms": 25},
        harness={"crash_point_types": "ae.own@0.7,hb@0.05", "crash_point_before_p": 1.0,
                 "crash_point_down_ms": "500-1500", "crash_point_down_max": 2},
        why="figure 8 in three nodes: a leader crashes before its new entry leaves, so does the "
            "next one with a higher term; the first comes back while the second is still down, "
            "commits its old entry by counting and crashes before an entry of its own term "
            "reaches the third node, which then elects the second: the committed entry is "
            "overwritten. About half the runs: invalid in 5 of 5, 0 of 5, 2 of 3 and, with "
            "ae.own@1, 2 of 4 batches of seeds, hence 8 seeds"),
    ("raft", "txn-local-reads"): Recipe(
        "txn-list-append", ("partition",), nodes=3, time_limit=4, interval=1.5, rate=150,
        concurrency=10, ci=True,
        why="no fault is needed: with ten clients, transactions whose reads were answered on "
            "arrival commit after others that wrote the same keys; the list-append checker "
            "finds the read skew (G-single), lost updates and non-prefix reads"),
    ("raft", "ack-before-persist"): _storm(
        "followers acknowledge entries they have not fsynced: a machine crash of the leader "
        "and of those followers together loses them (overlapping faults make that likely)",
        overlap=True),
    ("multi-paxos", "forget-promise"): Recipe(
        "append-log", ("crash-point", "partition"), nodes=3, time_limit=15, interval=1.5,
        overlap=True, seeds=5, ci=True,
        opts={"election_timeout_ms": 150, "heartbeat_ms": 25},
        harness={"crash_point_types": "promise", "crash_point_p": 1.0, "crash_point_before_p": 0.0,
                 "partition_shapes": "bridge"},
        why="a bridge partition keeps a proposer alive on either side of the acceptor in the "
            "middle, which crashes right after (never before) each promise and then accepts the "
            "deposed proposer's lower ballot: two values chosen for one slot. Invalid in 5 of 5 "
            "seeds (4 of 6 and 4 of 5 when half the crashes came before the promise left)"),
    ("multi-paxos", "no-reproposal"): _storm(
        "a new leader after a crash or partition overwrites chosen slots it has not learned"),
    ("zab", "ack-before-fsync"): _storm(
        "followers ack proposals before fsync: lost writes on a quorum lose committed txns; "
        "overlapping faults (a kill that loses unsynced writes during a partition) make that "
        "likely. Invalid with seeds 1-3 (3 of 3); one fault at a time found it in none",
        overlap=True),
    ("zab", "election-ignores-zxid"): Recipe(
        "append-log", ("crash-point",), nodes=3, time_limit=10, interval=2.0, ci=True,
        harness={"crash_point_types": "proposal@0.2", "crash_point_down_ms": "500-1500",
                 "crash_point_down_max": 2},
        why="leaders crash as they propose and stay down long enough for the others to elect "
            "and commit without them; when the highest id comes back first, lagging, to a "
            "lone survivor, the bully election makes it leader and it truncates the committed "
            "txns. Invalid with seeds 1-3 (3 of 3); the storm of process faults found it in "
            "none"),
    ("vr", "recover-without-primary"): Recipe(
        "append-log", ("crash-point", "latency"), nodes=3, time_limit=15, interval=1.5,
        overlap=True, harness={"crash_point_p": 0.3}, seeds=5, ci=True,
        why="backups crash right after a prepare-ok (and primaries after a prepare) while "
            "latency lets the other backup lag: the recovering replica takes the lagging "
            "backup's log and drops ops it had acknowledged. Invalid in 4 of 4 and 5 of 5 seeds"),
    ("vr", "highest-view-log"): Recipe(
        "append-log", ("kill", "partition", "partition-leader"), nodes=3,
        why="a replica cut off in a minority keeps raising its view; the view change takes "
            "its stale log"),
    ("vr", "commit-on-f"): Recipe(
        "append-log", ("kill", "partition-leader"), nodes=3,
        why="three nodes (f = 1): the primary commits on itself alone and is killed or cut off"),
    ("primary-backup", "ack-before-replicate"): _storm(
        "the primary acknowledges before a majority holds the change: killed, it loses it"),
    ("primary-backup", "no-fencing"): _storm(
        "an old primary that was partitioned away keeps serving"),
    ("active-active", "arrival-order"): _storm(
        "replicas apply inputs in arrival order, which differs between replicas"),
    ("active-active", "sequencer-forgets"): _storm(
        "a restarted sequencer reuses sequence numbers"),
}


def recipe(system: str, bug: str) -> Recipe:
    """The recipe of a bug switch; KeyError when there is none."""
    return RECIPES[(system, bug)]


def run_config(system: str, bug: str, seed: int, store: str, *,
                bugs: list[str] | None = None) -> dict:
    """The `run_test` dict of a recipe's run (`bugs=[]`: the same settings without the bug)."""
    return _config(system, recipe(system, bug), seed, store, [bug] if bugs is None else bugs)


def storm_config(system: str, seed: int, store: str) -> dict:
    """The `run_test` dict of the storm recipes' run without any bug (every system passes)."""
    return _config(system, _storm("no bug: must pass"), seed, store, [])


def _config(system: str, r: Recipe, seed: int, store: str, bugs: list[str]) -> dict:
    return {"backend": "local", "system": system, "workload": r.workload,
            "nemesis": list(r.nemesis), "time_limit": r.time_limit, "nodes": r.nodes,
            "concurrency": r.concurrency, "rate": r.rate, "seed": seed,
            "bugs": list(bugs), "opts": dict(r.opts), "store": store,
            "harness_opts": {"nemesis_interval_s": r.interval, "client_timeout_s": 0.5,
                             "recovery_s": 0.5, "reports": False, "nemesis_overlap": r.overlap,
                             **r.harness}}


def command(system: str, bug: str, seed: int = 1) -> str:
    """The `splitbrain test` command line of a recipe's run (with the reports on)."""
    from ..commands.test import replay_command
    t = run_config(system, bug, seed, "store")
    for k in ("reports", "recovery_s"):
        t["harness_opts"].pop(k)
    return replay_command(t)
