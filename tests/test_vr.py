"""Viewstamped Replication scenarios that read like the paper, the bug switches, and a
randomized run. Quotes are from Liskov & Cowling, "Viewstamped Replication Revisited" (2012).
"""

from __future__ import annotations

import random

import pytest

from splitbrain.systems.core import ProtocolError
from splitbrain.systems.testing import ScenarioCluster, assert_append_logs_agree
from splitbrain.systems.vr import VrCore


def cluster(n=3, machine="kv", bugs=(), seed=0):
    return ScenarioCluster("vr", n=n, machine=machine, bugs=bugs, seed=seed)




def settle(c, ms=1500):
    c.run_until(lambda: False, max_ms=ms)


def test_registered_and_listed():
    assert VrCore.MODEL == "consensus" and VrCore.LOGS == "inputs"
    assert {"highest-view-log", "recover-without-primary"} <= set(VrCore.BUGS)


def test_the_primary_commits_after_f_prepare_oks():
    """'The primary waits for f PREPAREOK messages from different backups; at this point it
    considers the operation (and all earlier ones) to be committed.'"""
    c = cluster(n=5)
    assert c.leader() == "n1"                 # view 0: the primary is replica 0
    mid = c.write("n1", "x", 1)
    assert len(c.matching(src="n1", type="prepare")) == 4
    c.deliver(src="n1", dest="n2", type="prepare")
    c.deliver(type="prepare_ok")
    assert c.reply("c1", mid) is None         # f = 2: one PREPARE-OK is not enough
    c.deliver(src="n1", dest="n3", type="prepare")
    c.deliver(type="prepare_ok")
    assert c.reply("c1", mid)["type"] == "write_ok"
    c.drop(type="prepare")
    assert c.nodes["n1"].commit == 1
    assert c.nodes["n2"].commit == 0          # learns it from the next PREPARE or COMMIT
    c.advance(60, nodes=["n1"])
    c.stabilize()
    assert c.nodes["n2"].commit == 1 and c.nodes["n2"].machine.applied_index == 1


def test_a_backup_processes_prepares_in_order():
    """'a backup won't accept a PREPARE with op-number n until it has entries for all earlier
    requests in its log' -- it gets the missing ones by state transfer."""
    c = cluster()
    c.write("n1", "x", 1)
    c.drop(src="n1", dest="n3")               # n3 misses op 1
    c.write("n1", "x", 2)
    c.deliver(src="n1", dest="n3", type="prepare")
    assert c.nodes["n3"].op_number == 0       # op 2 refused: op 1 is missing
    c.stabilize()                             # the refusal makes the primary resend from op 1
    assert c.nodes["n3"].op_number == 2
    assert [e["op"]["value"] for e in c.nodes["n3"].log] == [1, 2]


def test_non_primary_refuses_with_the_primary_named():
    c = cluster()
    mid = c.write("n2", "x", 1)
    reply = c.reply("c1", mid)
    assert reply["code"] == 11 and reply["leader"] == "n1"


def test_a_view_change_keeps_committed_operations():
    c = cluster()
    mid = c.write("n1", "x", 1)
    c.stabilize()
    assert c.reply("c1", mid)["type"] == "write_ok"
    c.crash("n1")
    c.run_until(lambda: c.leader() is not None, max_ms=5000)
    assert c.leader() == "n2"                 # view 1: replica 1
    assert c.nodes["n2"].view == 1
    assert c.read_value("n2", "x") == 1


def test_the_new_primary_selects_the_log_with_the_largest_op_number_among_the_latest_view():
    """'it selects as the new log the one contained in the message with the largest v'; if
    several messages have the same v' it selects the one among them with the largest n.'"""
    c = cluster()
    c.write("n1", "x", 1)
    c.stabilize()
    mid = c.write("n1", "x", 2)
    c.drop(src="n1", dest="n2")               # only n3 gets op 2
    c.deliver(src="n1", dest="n3")
    c.deliver(type="prepare_ok")
    assert c.reply("c1", mid)["type"] == "write_ok"
    c.crash("n1")
    c.run_until(lambda: c.leader() is not None, max_ms=5000)
    assert c.leader() == "n2"
    assert c.read_value("n2", "x") == 2


def _stale_minority_then_heal(c: ScenarioCluster):
    """n3 is cut off and keeps timing out up to view 4 while n1, n2 commit in view 0; then the
    partition heals and n3's START-VIEW-CHANGE(5) drags everyone into view 5, led by n3."""
    c.partition(["n1", "n2"], ["n3"])
    mids = [c.write("n1", "x", v) for v in (1, 2)]
    c.stabilize()
    assert all(c.reply("c1", m)["type"] == "write_ok" for m in mids)
    for _ in range(4):
        view = c.nodes["n3"].view
        while c.nodes["n3"].view == view:
            c.advance(10, nodes=["n3"])
        c.drop(src="n3")
    assert c.nodes["n3"].view == 4 and c.nodes["n3"].last_normal == 0
    c.heal()
    while c.nodes["n3"].view == 4:
        c.advance(10, nodes=["n3"])
    c.stabilize()
    assert c.leader() == "n3" and c.nodes["n3"].view == 5


def test_the_view_change_takes_the_log_of_the_latest_normal_view_not_the_highest_view():
    c = cluster()
    _stale_minority_then_heal(c)
    assert c.read_value("n3", "x") == 2


def test_bug_highest_view_log_loses_committed_writes():
    c = cluster(bugs={"highest-view-log"})
    _stale_minority_then_heal(c)
    assert c.read_value("n3", "x") is None


def test_a_restarted_replica_recovers_before_taking_part():
    """'the recovering replica ... sends a RECOVERY message to all other replicas ... waits to
    receive at least f + 1 RECOVERYRESPONSE messages from different replicas, all containing the
    nonce it sent, including one from the primary of the latest view'."""
    c = cluster()
    for v in range(3):
        c.write("n1", "x", v)
    c.stabilize()
    c.crash("n3")
    c.write("n1", "x", 3)
    c.stabilize()
    c.restart("n3")
    n3 = c.nodes["n3"]
    assert n3.vr_status == "recovering" and n3.op_number == 3     # its disk kept ops 1-3
    nonce = c.matching(src="n3", type="recovery")[0].body["x"]
    c.deliver(src="n3", dest="n2")
    c.deliver(src="n2", dest="n3")            # a backup's answer alone is not enough
    assert n3.vr_status == "recovering"
    c.deliver(src="n3", dest="n1")
    response = c.matching(src="n1", dest="n3")[0].body
    assert response["x"] == nonce and response["primary"]
    c.deliver(src="n1", dest="n3")
    assert n3.vr_status == "normal" and n3.op_number == 4 and n3.commit == 4
    assert n3.machine.applied_index == 4


def _recovery_with_a_lagging_backup(c: ScenarioCluster):
    """5 replicas. Op 1 is committed by n1, n2, n3 (n4 and n5 missed it). n2 restarts and gets
    RECOVERY-RESPONSEs from n3, n4 and n5 but not yet from the primary n1. Then n1 and n3 crash."""
    mid = c.write("n1", "x", "committed")
    c.drop(src="n1", dest="n4")
    c.drop(src="n1", dest="n5")
    c.deliver(src="n1")
    c.deliver(type="prepare_ok")
    assert c.reply("c1", mid)["type"] == "write_ok"
    c.crash("n2")
    c.restart("n2")
    c.drop(src="n2", dest="n1")
    c.deliver(src="n2")
    for backup in ("n4", "n5", "n3"):
        c.deliver(src=backup, dest="n2")
    c.crash("n1")
    c.crash("n3")
    c.run_until(lambda: c.leader() is not None, max_ms=10_000)


def test_recovery_waits_for_the_primary_of_the_latest_view():
    c = cluster(n=5)
    _recovery_with_a_lagging_backup(c)
    assert c.read_value(c.leader(), "x") == "committed"


def test_bug_recover_without_primary_loses_a_committed_write():
    c = cluster(n=5, bugs={"recover-without-primary"})
    _recovery_with_a_lagging_backup(c)
    assert c.read_value(c.leader(), "x") is None


def test_every_replica_crashing_at_once_keeps_committed_operations():
    c = cluster(machine="arith")
    mids = [c.request("n1", {"type": "add", "value": 2}) for _ in range(3)]
    mids.append(c.request("n1", {"type": "mul", "value": 5}))
    c.stabilize()
    assert all(c.reply("c1", m)["type"] in ("add_ok", "mul_ok") for m in mids)
    for n in c.node_ids:
        c.crash(n)
    for n in c.node_ids:
        c.restart(n)
    assert all(core.vr_status == "recovering" for core in c.nodes.values())
    assert c.run_until(lambda: c.leader() is not None, max_ms=10_000)
    assert c.read_value(c.leader(), None) == 30


def test_duplicated_client_request_runs_once():
    c = cluster(machine="arith")
    for _ in range(2):
        c._handle("n1", c.nodes["n1"].step("c9", {"type": "add", "value": 5, "msg_id": 1}, 0))
    c.stabilize()
    assert c.read_value("n1", None) == 5


# ---- randomized: committed prefixes agree, acknowledged appends survive ----------------------

def random_run(seed: int, bugs=(), steps: int = 1500, n: int = 3):
    """Random deliveries, drops, duplicates, crashes, restarts and clock advances; then heal and
    settle. Returns (acknowledged appends, final logs, committed-prefix conflicts seen, cluster).
    """
    rng = random.Random(seed)
    c = ScenarioCluster("vr", n=n, machine="append-log", bugs=bugs, seed=seed)
    committed: dict[int, str] = {}
    conflicts = []

    checked: dict[str, tuple[int, int]] = {}   # node -> (id of its core, ops checked)

    def observe():
        for node, core in c.nodes.items():
            ident, upto = checked.get(node, (0, 0))
            if ident != id(core):
                upto = 0                  # a restarted replica: check what it re-executed
            for i in range(upto, core.applied):
                e = repr(core.log[i]) if i < len(core.log) else "missing"
                if committed.setdefault(i, e) != e:
                    conflicts.append((i, node))
            checked[node] = (id(core), core.applied)

    sent = c.random_appends(rng, steps, observe)
    settle(c)
    observe()
    return c.acknowledged(sent), c.final_logs(), conflicts, c


@pytest.mark.parametrize("seed", range(12))
def test_random_schedules_keep_agreement_and_durability(seed):
    acked, logs, conflicts, _ = random_run(seed)
    assert not conflicts
    assert_append_logs_agree(acked, logs)


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="unknown option"):
        ScenarioCluster("vr", n=3, options={"nope": 1})


def test_protocol_error_is_an_assertion():
    assert issubclass(ProtocolError, AssertionError)


def _violated(seed, bugs, n=3):
    try:
        acked, logs, conflicts, _ = random_run(seed, bugs=bugs, n=n)
    except ProtocolError:
        return True
    longest = max(logs.values(), key=len)
    diverged = any(log != longest[:len(log)] for log in logs.values())
    return bool(conflicts or diverged or not acked <= set(longest))


@pytest.mark.parametrize("bug", ["highest-view-log", "recover-without-primary", "commit-on-f"])
def test_random_schedules_find_each_bug(bug):
    assert any(_violated(seed, {bug}) for seed in range(150)), f"{bug} not found in 150 runs"


def test_bug_commit_on_f_acknowledges_an_op_only_the_primary_holds():
    for bugs, expect_ok in (((), False), (("commit-on-f",), True)):
        c = cluster(bugs=bugs)
        mid = c.write("n1", "x", 1)
        c.drop(type="prepare")
        assert (c.reply("c1", mid) is not None) == expect_ok
        c.crash("n1")
        c.run_until(lambda: c.leader() is not None, max_ms=5000)
        assert c.read_value(c.leader(), "x") is None   # never reached a backup


# ---- the simulator (splitbrain test --backend sim --system vr --workload W --seed N) -----------

SIM_PASSING = [("append-log", 0), ("append-log", 1), ("kv", 3)]
SIM_FINDINGS = [("highest-view-log", 1), ("recover-without-primary", 3), ("commit-on-f", 1)]


def _sim(workload: str, seed: int, bugs: tuple[str, ...] = ()):
    from splitbrain.harness.sim import SimConfig, check_run, simulate
    return check_run(simulate(SimConfig(system="vr", workload=workload, seed=seed, bugs=bugs)))


@pytest.mark.parametrize("workload,seed", SIM_PASSING)
def test_the_simulator_passes_the_correct_core(workload, seed):
    result = _sim(workload, seed)
    assert result.valid is True, result


@pytest.mark.parametrize("bug,seed", SIM_FINDINGS)
def test_the_simulator_finds_and_names_each_bug(bug, seed):
    result = _sim("append-log", seed, (bug,))
    assert result.valid is False
    names = {a.name for a in result.all_anomalies()}
    assert names & {"lost-append", "divergent-logs", "state-divergence"}, names
    assert _sim("append-log", seed).valid is True   # the same schedule without the bug passes
