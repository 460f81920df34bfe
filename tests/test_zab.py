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



def test_election_prefers_the_highest_last_zxid_then_the_highest_id():
    c = cluster()
    assert lead(c) == "n3"                    # equal (epoch, zxid): the highest id
    c.write("n3", "a", 1)
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
    mid = c.write(L, "a", 1)
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
    c.write(L, "a", 1)
    c.stabilize()
    c.crash(others[0])
    for v in range(3):                        # txns the crashed follower misses
        c.write(L, "b", v)
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
    c.write(L, "a", 1)
    c.stabilize()
    c.partition([L], [n for n in c.node_ids if n != L])
    lost = c.write(L, "a", "uncommitted")    # only the old leader logs it
    others = [n for n in c.node_ids if n != L]
    assert c.run_until(lambda: any(c.nodes[n].is_leader() for n in others))
    new = next(n for n in others if c.nodes[n].is_leader())
    ok = c.write(new, "a", 2)
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
    w = c.write(L, "a", 1)
    r = c.request(L, {"type": "read", "key": "a"})
    c.stabilize()
    assert c.reply("c1", w) is None and c.reply("c1", r) is None


def test_a_follower_acknowledges_a_proposal_only_once_it_is_on_disk():
    # "a follower ... writes the proposal to stable storage and then sends an ACK" (DSN 2011).
    for bugs in ((), ("ack-before-fsync",)):
        c = cluster(bugs=bugs)
        L = lead(c)
        c.stabilize()
        c.write(L, "a", 1)
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
        c.write("n3", "a", 1)
        c.stabilize()
        c.crash("n3")
        L = lead(c)
        assert L == "n2"
        ok = c.write(L, "b", 2)              # committed by n2 and n1 while n3 is down
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


def test_a_follower_that_rejoins_its_leader_is_synchronized_again_even_if_the_sync_is_lost():
    # "The leader ... sends NEWLEADER to a follower once it has acked the epoch" (DSN 2011): a
    # follower that went back to election while the leader still counted it as synchronized
    # rejoins through FOLLOWERINFO/NEWEPOCH/ACKEPOCH. Its ACKEPOCH is lost here; it must not
    # wait in SYNC forever (the leader's PINGs keep it from timing out), and the leader must not
    # take the follower's currentEpoch (already the leader's) for a newer history and step down.
    c = cluster()
    L = lead(c)
    epoch = c.nodes[L].current_epoch
    c.write(L, "a", 1)
    c.stabilize()
    F = "n1"
    c.advance(1_000, nodes=[F])                 # F hears nothing from L and times out
    assert c.nodes[F].state == "looking"
    for _ in range(100):                        # it rejoins; its ACKEPOCH is lost
        c.drop(src=F, type="ackepoch")
        if c.nodes[F].phase == "sync":
            break
        c.deliver()
    assert (c.nodes[F].state, c.nodes[F].phase, c.nodes[F].leader_id) == ("following", "sync", L)
    assert F in c.nodes[L].synced               # the leader did not notice
    ok = c.write(L, "a", 2)                    # a txn that F must learn too
    assert c.run_until(lambda: c.nodes[F].phase == "broadcast"
                       and c.nodes[F].commit == len(c.nodes[L].history) == 2, 3_000)
    assert c.reply("c1", ok)["type"] == "write_ok"
    assert c.nodes[L].is_leader() and c.nodes[L].current_epoch == epoch
    assert c.nodes[F].history == c.nodes[L].history
    assert c.nodes[F].machine.digest() == c.nodes[L].machine.digest()


@pytest.mark.parametrize("seed", range(20))
def test_random_schedules_keep_committed_prefixes_and_acknowledged_txns(seed):
    agree, lost, converged = fuzz("zab", seed)
    assert agree and not lost and converged


def test_bug_switches_are_declared():
    assert set(ZabCore.BUGS) == {"ack-before-fsync", "election-ignores-zxid"}


# Simulator schedules (fault_search.seeded_config: the campaign's settings, kinds and faults from
# the seed): each bug is caught and named by the append-log checker at its recorded seed, where
# the same schedule without the bug passes. The core and the simulator still change: when a
# recorded seed stops failing, the test scans up to RESCAN_SEEDS_MAX further seeds first.
SIM_FINDINGS = [("ack-before-fsync", 1), ("election-ignores-zxid", 8)]
RESCAN_SEEDS_MAX = 40
SIM_PASSING_SEEDS = (0, 1, 2)
# The campaign (benchmarks/sim_campaign.py --skip-bugs --systems zab) found these schedules not
# converging with no bug: a follower that had gone back to election rejoined while the leader
# still counted it as synchronized, its ACKEPOCH was lost, and it waited in SYNC forever, kept
# alive by the leader's PINGs (the leader never re-sent a NEWLEADER).
SIM_STUCK_IN_SYNC_SEEDS = (396, 440, 554, 698)


def _sim(seed: int, bugs: tuple[str, ...] = (), workload: str | None = "append-log"):
    from splitbrain.harness.fault_search import CHECKER_OPTIONS, seeded_config
    from splitbrain.harness.sim import check_run, simulate
    cfg = seeded_config("zab", seed, bugs=bugs, workload=workload)
    return check_run(simulate(cfg), {"checker_options": CHECKER_OPTIONS})


@pytest.mark.parametrize("bug,seed", SIM_FINDINGS)
def test_the_simulator_finds_and_names_each_bug(bug, seed):
    tried = []
    for s in [seed] + [x for x in range(RESCAN_SEEDS_MAX) if x != seed]:
        result = _sim(s, (bug,))
        if result.valid is not False:
            tried.append(s)
            continue
        names = {a.name for a in result.all_anomalies()}
        assert names & {"lost-append", "divergent-logs", "inconsistent-offset",
                        "state-divergence"}, names
        assert _sim(s).valid is True         # the same schedule without the bug passes
        return
    pytest.fail(f"zab --bug {bug}: no violation on seeds {tried}; rerun "
                f"benchmarks/sim_campaign.py --skip-clean --systems zab and update SIM_FINDINGS")


@pytest.mark.parametrize("seed", SIM_PASSING_SEEDS)
def test_the_simulator_passes_without_bugs(seed):
    result = _sim(seed)
    assert result.valid is True, [a.name for a in result.all_anomalies()]


@pytest.mark.parametrize("seed", SIM_STUCK_IN_SYNC_SEEDS)
def test_the_campaign_schedules_that_left_a_follower_in_sync_now_converge(seed):
    result = _sim(seed, workload=None)       # the campaign's workload rotation
    assert result.valid is True, [a.name for a in result.all_anomalies()]
