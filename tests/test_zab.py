"""ZAB scenarios, named after the sentences of the Zab paper (Junqueira et al., DSN 2011)."""

from __future__ import annotations

import pytest

from splitbrain.systems.machines import canonical_json
from splitbrain.systems.testing import ScenarioCluster
from splitbrain.systems.zab import ZabCore
from test_primary_backup import fuzz


def cluster(n: int = 3, machine: str = "kv", **kw) -> ScenarioCluster:
    return ScenarioCluster("zab", n=n, machine=machine, **kw)


def lead(c: ScenarioCluster) -> str:
    assert c.run_until(lambda: c.leader() is not None)
    return c.leader()


def write(c: ScenarioCluster, node: str, key, value) -> int:
    return c.request(node, {"type": "write", "key": key, "value": value})


def test_election_prefers_the_highest_last_zxid_then_the_highest_id():
    c = cluster()
    assert lead(c) == "n3"                    # equal (epoch, zxid): the highest id
    write(c, "n3", "a", 1)
    c.deliver(src="n3", dest="n1", type="proposal")   # only n1 gets the txn
    c.drop(type="proposal")
    c.crash("n3")
    assert lead(c) == "n1"                    # n1's last zxid beats n2's


def test_discovery_proposes_an_epoch_higher_than_every_accepted_epoch_of_a_quorum():
    c = cluster()
    lead(c)
    first = c.nodes["n3"].accepted_epoch
    c.crash("n3")
    leader = lead(c)
    e = c.nodes[leader].accepted_epoch
    assert e > first
    follower = next(n for n in c.nodes if n != leader)
    assert c.nodes[follower].accepted_epoch == e == c.nodes[follower].current_epoch
    assert {"t": "accepted", "epoch": e, "leader": leader} in c.disk[follower]


def test_a_txn_is_committed_once_a_quorum_acknowledges_the_proposal():
    c = cluster()
    L = lead(c)
    mid = write(c, L, "a", 1)
    assert c.reply("c1", mid) is None
    (p, *_) = c.matching(src=L, type="proposal")
    c.drop(src=L, dest=[n for n in c.node_ids if n not in (L, p.dest)][0])
    c.deliver(src=L, dest=p.dest, type="proposal")
    assert c.reply("c1", mid) is None         # the follower logged it; its ACK is in flight
    c.deliver(src=p.dest, dest=L, type="ack")
    assert c.reply("c1", mid)["type"] == "write_ok"
    z = c.nodes[L].history[-1]["z"]
    assert z == [c.nodes[L].current_epoch, 1]  # zxid = (epoch, counter)


def test_the_leader_synchronizes_followers_before_proposing_anything_new():
    c = cluster()
    L = lead(c)
    others = [n for n in c.node_ids if n != L]
    write(c, L, "a", 1)
    c.stabilize()
    c.crash(others[0])
    for v in range(3):                        # txns the crashed follower misses
        write(c, L, "b", v)
        c.stabilize()
    c.restart(others[0])
    c.run_until(lambda: c.nodes[others[0]].phase == "broadcast"
                and c.nodes[others[0]].commit == len(c.nodes[L].history))
    # The DIFF brought its history to the leader's: same zxids, same state.
    assert c.nodes[others[0]].history == c.nodes[L].history
    assert c.nodes[others[0]].machine.digest() == c.nodes[L].machine.digest()


def test_a_follower_truncates_txns_of_its_epoch_that_the_new_leader_never_had():
    c = cluster()
    L = lead(c)
    write(c, L, "a", 1)
    c.stabilize()
    c.partition([L], [n for n in c.node_ids if n != L])
    lost = write(c, L, "a", "uncommitted")    # only the old leader logs it
    others = [n for n in c.node_ids if n != L]
    assert c.run_until(lambda: any(c.nodes[n].is_leader() for n in others))
    new = next(n for n in others if c.nodes[n].is_leader())
    ok = write(c, new, "a", 2)
    c.stabilize()
    assert c.reply("c1", ok)["type"] == "write_ok"
    c.heal()
    c.run_until(lambda: c.nodes[L].state == "following" and c.nodes[L].phase == "broadcast"
                and c.nodes[L].commit == len(c.nodes[new].history))
    assert c.nodes[L].history == c.nodes[new].history   # TRUNC, then DIFF
    assert c.reply("c1", lost) is None or c.reply("c1", lost)["type"] == "error"
    assert {n.machine.data[canonical_json("a")] for n in c.nodes.values()} == {2}


def test_committed_txns_survive_a_crash_of_every_node():
    c = cluster(machine="append-log")
    L = lead(c)
    ids = [c.request(L, {"type": "append", "value": v}) for v in range(4)]
    c.stabilize()
    assert all(c.reply("c1", i)["type"] == "append_ok" for i in ids)
    for n in list(c.nodes):
        c.crash(n)
    for n in c.node_ids:
        c.restart(n)
    L = lead(c)
    r = c.request(L, {"type": "read"})
    c.stabilize()
    assert c.reply("c1", r)["value"] == [0, 1, 2, 3]


def test_an_old_leader_cannot_commit_or_serve_reads_once_a_quorum_moved_on():
    c = cluster()
    L = lead(c)
    c.partition([L], [n for n in c.node_ids if n != L])
    w = write(c, L, "a", 1)
    r = c.request(L, {"type": "read", "key": "a"})
    c.stabilize()
    assert c.reply("c1", w) is None and c.reply("c1", r) is None


def test_a_follower_acknowledges_a_proposal_only_once_it_is_on_disk():
    # "a follower ... writes the proposal to stable storage and then sends an ACK" (DSN 2011).
    for bugs in ((), ("ack-before-fsync",)):
        c = cluster(bugs=bugs)
        L = lead(c)
        c.stabilize()
        write(c, L, "a", 1)
        (p, *_) = c.matching(src=L, type="proposal")
        c.inflight.remove(p)
        ready = c.nodes[p.dest].step(L, p.body, c.now_ms[p.dest])
        assert any(r["t"] == "hist" for r in ready.persist)
        assert any(e.body["type"] == "ack" for e in ready.messages)
        # The durability order holds only when the records are fsynced before the ACK leaves.
        assert ready.sync is (not bugs)


def test_a_new_leader_has_every_txn_that_a_quorum_acknowledged():
    # Election picks the vote with the highest (currentEpoch, last zxid) before the server id,
    # and discovery refuses to lead a quorum holding a newer history: a committed txn survives.
    values = {}
    for bugs in ((), ("election-ignores-zxid",)):
        c = cluster(bugs=bugs)
        assert lead(c) == "n3"
        write(c, "n3", "a", 1)
        c.stabilize()
        c.crash("n3")
        L = lead(c)
        assert L == "n2"
        ok = write(c, L, "b", 2)              # committed by n2 and n1 while n3 is down
        c.stabilize()
        assert c.reply("c1", ok)["type"] == "write_ok"
        c.crash("n2")
        c.restart("n3")                        # n3 lags behind n1 but has the highest id
        assert c.run_until(lambda: c.leader() is not None and c.nodes[c.leader()].is_leader())
        L = c.leader()
        r = c.request(L, {"type": "read", "key": "b"})
        c.stabilize()
        values[bugs] = (L, c.reply("c1", r)["value"])
    assert values[()] == ("n1", 2)
    assert values[("election-ignores-zxid",)] == ("n3", None)   # the acknowledged write is gone


@pytest.mark.parametrize("seed", range(20))
def test_random_schedules_keep_committed_prefixes_and_acknowledged_txns(seed):
    agree, lost, converged = fuzz("zab", seed)
    assert agree and not lost and converged


def test_bug_switches_are_declared():
    assert set(ZabCore.BUGS) == {"ack-before-fsync", "election-ignores-zxid"}


# Simulator seeds (splitbrain test --backend sim --system zab --workload append-log --seed N):
# each bug is caught and named by the checkers at these seeds; these no-bug seeds pass.
SIM_FINDINGS = [("ack-before-fsync", 1), ("election-ignores-zxid", 1)]
SIM_PASSING_SEEDS = (0, 1, 2)


def _sim(seed: int, bugs: tuple[str, ...] = ()):
    from splitbrain.harness.sim import SimConfig, check_run, simulate
    run = simulate(SimConfig(system="zab", workload="append-log", seed=seed, bugs=bugs))
    return check_run(run)


@pytest.mark.parametrize("bug,seed", SIM_FINDINGS)
def test_the_simulator_finds_and_names_each_bug(bug, seed):
    result = _sim(seed, (bug,))
    assert result.valid is False
    names = {a.name for a in result.all_anomalies()}
    assert names & {"lost-append", "divergent-logs", "inconsistent-offset", "state-divergence"}, \
        names
    assert _sim(seed).valid is True            # the same schedule without the bug passes


@pytest.mark.parametrize("seed", SIM_PASSING_SEEDS)
def test_the_simulator_passes_without_bugs(seed):
    result = _sim(seed)
    assert result.valid is True, [a.name for a in result.all_anomalies()]
