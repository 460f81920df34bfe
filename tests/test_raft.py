"""Raft scenarios that read like the paper (Ongaro & Ousterhout 2014), driven by ScenarioCluster.

Each test names the sentence of the paper it checks. Bug switches are shown misbehaving in the
same scenario where the correct code does not.
"""

from __future__ import annotations

import random

import pytest

from splitbrain.systems.core import ProtocolError
from splitbrain.systems.machines import make_machine
from splitbrain.systems.raft import CANDIDATE, RaftCore
from splitbrain.systems.testing import ScenarioCluster


# ---- helpers ---------------------------------------------------------------------------------

def campaign(c: ScenarioCluster, node: str, max_ms: int = 2_000) -> int:
    """Advance only `node`'s clock until it starts an election; returns the new term."""
    core = c.nodes[node]
    term0 = core.term
    for _ in range(max_ms // 10):
        c.advance(10, nodes=[node])
        if c.nodes[node].role == CANDIDATE and c.nodes[node].term > term0:
            return c.nodes[node].term
    raise AssertionError(f"{node} did not campaign within {max_ms} ms")


def run_election(c: ScenarioCluster, node: str, attempts_max: int = 5) -> None:
    """Campaign with `node` and deliver only the vote traffic, until it leads (no appends leave)."""
    for _ in range(attempts_max):
        c.drop(src=node)
        campaign(c, node)
        c.deliver(src=node, type="rv")
        c.deliver(dest=node, type="rv_r")
        if c.nodes[node].is_leader():
            return
    raise AssertionError(f"{node} was not elected in {attempts_max} attempts")



def read(c: ScenarioCluster, node: str, key, client: str = "c1") -> int:
    return c.request(node, {"type": "read", "key": key}, client=client)


def committed(c: ScenarioCluster, node: str) -> list:
    return c.nodes[node].committed_ops()


# ---- elections -------------------------------------------------------------------------------

def test_a_server_that_times_out_becomes_candidate_and_wins_with_a_majority():
    c = ScenarioCluster("raft", n=5)
    c.elect("n3")
    assert c.leaders() == ["n3"]
    assert all(core.term == 1 for core in c.nodes.values())
    assert all(core.leader_id == "n3" for core in c.nodes.values())


def test_election_safety_at_most_one_leader_can_be_elected_in_a_given_term():
    # Split vote: n1 and n2 campaign in term 1 at once; n3 can vote for only one of them.
    c = ScenarioCluster("raft", n=3)
    campaign(c, "n1")
    campaign(c, "n2")
    assert c.nodes["n1"].term == c.nodes["n2"].term == 1
    c.deliver(src="n1", dest="n3", type="rv")   # n3 votes for n1 first
    c.deliver(src="n2", dest="n3", type="rv")   # ... and must refuse n2 in the same term
    c.deliver(src="n1", dest="n2", type="rv")
    c.deliver(src="n2", dest="n1", type="rv")
    c.deliver(type="rv_r")
    assert c.leaders() == ["n1"]
    assert c.nodes["n3"].voted_for == "n1"
    c.stabilize()
    assert c.leaders() == ["n1"]


def test_each_server_will_vote_for_at_most_one_candidate_in_a_given_term_even_after_a_restart():
    c = ScenarioCluster("raft", n=3)
    campaign(c, "n1")
    c.drop(dest="n3")
    c.deliver(src="n1", dest="n2", type="rv")
    c.deliver(type="rv_r")
    assert c.leaders() == ["n1"]
    c.drop(src="n1")
    c.crash("n2")
    c.restart("n2")
    assert c.nodes["n2"].term == 1 and c.nodes["n2"].voted_for == "n1"
    campaign(c, "n3")                            # n3 also campaigns in term 1
    assert c.nodes["n3"].term == 1
    c.deliver(src="n3", dest="n2", type="rv")
    assert c.matching(src="n2", dest="n3", type="rv_r")[0].body["granted"] is False
    c.deliver(type="rv_r")
    assert c.leaders() == ["n1"]


def test_bug_vote_not_persisted_a_restarted_server_votes_twice_and_two_leaders_share_a_term():
    c = ScenarioCluster("raft", n=3, bugs=["vote-not-persisted"])
    campaign(c, "n1")
    c.drop(dest="n3")
    c.deliver(src="n1", dest="n2", type="rv")
    c.deliver(type="rv_r")
    assert c.leaders() == ["n1"]
    c.drop(src="n1")
    c.crash("n2")
    c.restart("n2")
    assert c.nodes["n2"].term == 1 and c.nodes["n2"].voted_for is None   # the vote was lost
    campaign(c, "n3")
    c.deliver(src="n3", dest="n2", type="rv")
    c.deliver(type="rv_r")
    assert sorted(c.leaders()) == ["n1", "n3"]
    assert c.nodes["n1"].term == c.nodes["n3"].term == 1
    # Both leaders replicate to n2 and both commit a different entry at index 2: the logs and
    # the replicas' states diverge at the same applied index.
    a = c.write("n1", "x", "from-n1")
    b = c.write("n3", "x", "from-n3")
    c.stabilize()
    assert c.reply("c1", a)["type"] == "write_ok"
    assert c.reply("c1", b)["type"] == "write_ok"
    s1, s3 = c.nodes["n1"].status(), c.nodes["n3"].status()
    assert s1["applied_index"] == s3["applied_index"] == 1
    assert s1["state_digest"] != s3["state_digest"]
    assert c.nodes["n2"].violations                 # n2 saw Log Matching broken


def test_the_vote_is_persisted_in_the_same_ready_as_the_grant():
    core = RaftCore("n2", ["n1", "n2", "n3"], make_machine("kv"), random.Random(0))
    core.recover([], 0)
    ready = core.step("n1", {"type": "rv", "term": 4, "li": 0, "lt": 0, "pre": False}, 0)
    assert ready.sync
    assert {"k": "hs", "term": 4, "vote": "n1"} in ready.persist
    assert [m.body["granted"] for m in ready.messages] == [True]


def test_a_voter_denies_its_vote_if_its_own_log_is_more_up_to_date():
    c = ScenarioCluster("raft", n=3)
    c.elect("n1")
    c.partition(["n1", "n2"], ["n3"])
    mid = c.write("n1", "k", 1)
    c.stabilize()
    assert c.reply("c1", mid)["type"] == "write_ok"
    c.heal()
    c.crash("n1")
    campaign(c, "n3")                           # n3 missed index 2
    c.deliver(src="n3", type="rv")
    assert c.matching(src="n2", type="rv_r")[0].body["granted"] is False
    c.stabilize()
    assert c.leaders() == []
    c.elect("n2")
    assert c.leaders() == ["n2"]
    c.stabilize()
    mid = read(c, "n2", "k")
    c.stabilize()
    assert c.reply("c1", mid)["value"] == 1


def test_pre_vote_a_partitioned_server_does_not_raise_its_term():
    for pre_vote, expect_disruption in ((False, True), (True, False)):
        c = ScenarioCluster("raft", n=3, options={"pre-vote": pre_vote})
        c.elect("n1")
        term = c.nodes["n1"].term
        c.partition(["n1", "n2"], ["n3"])
        c.advance(3_000, nodes=["n3"])           # n3 times out again and again, alone
        c.stabilize()
        c.heal()
        c.advance(3_000, nodes=["n3"])           # ...and once healed asks the others
        c.stabilize()
        if expect_disruption:
            assert c.nodes["n3"].term > term
            assert c.nodes["n1"].term > term     # the leader was deposed by the higher term
        else:
            assert c.nodes["n3"].term == term
            assert c.leaders() == ["n1"] and c.nodes["n1"].term == term


# ---- log replication -------------------------------------------------------------------------

def test_a_new_leader_appends_a_no_op_entry_of_its_term_and_commits_it():
    c = ScenarioCluster("raft", n=3)
    c.elect("n2")
    c.stabilize()
    c.advance(60, nodes=["n2"])                  # followers learn the commit index from a heartbeat
    c.stabilize()
    for node in c.node_ids:
        core = c.nodes[node]
        assert core.log[1] == {"t": 1, "op": None}
        assert core.commit_index == 1


def test_log_matching_an_append_is_refused_when_the_previous_entry_does_not_match():
    core = RaftCore("n2", ["n1", "n2", "n3"], make_machine("kv"), random.Random(0))
    core.recover([{"k": "hs", "term": 2, "vote": None},
                  {"k": "ents", "at": 1, "e": [{"t": 1, "op": None}, {"t": 1, "op": None}]}], 0)
    ready = core.step("n1", {"type": "ae", "term": 3, "prev": 2, "pt": 2,
                             "ents": [{"t": 3, "op": None}], "commit": 0}, 0)
    [resp] = [m.body for m in ready.messages]
    assert resp["ok"] is False and resp["hint"] == 1     # skip the whole conflicting term 1
    assert core.last_index == 2
    # The leader retries from the hint; the follower truncates its conflicting suffix, persisting
    # the truncation and the new entries before the acknowledgement.
    ready = core.step("n1", {"type": "ae", "term": 3, "prev": 0, "pt": 0,
                             "ents": [{"t": 2, "op": None}, {"t": 3, "op": None}], "commit": 0}, 0)
    assert ready.persist == [{"k": "trunc", "from": 1},
                             {"k": "ents", "at": 1, "e": [{"t": 2, "op": None},
                                                          {"t": 3, "op": None}]}]
    [resp] = [m.body for m in ready.messages]
    assert resp == {"type": "ae_r", "term": 3, "ok": True, "match": 2}
    # A duplicate of an older, shorter append must not truncate what follows it.
    ready = core.step("n1", {"type": "ae", "term": 3, "prev": 0, "pt": 0,
                             "ents": [{"t": 2, "op": None}], "commit": 0}, 0)
    assert ready.persist == [] and core.last_index == 2


def test_a_follower_never_truncates_a_committed_entry():
    core = RaftCore("n2", ["n1", "n2", "n3"], make_machine("kv"), random.Random(0))
    core.recover([], 0)
    core.step("n1", {"type": "ae", "term": 1, "prev": 0, "pt": 0,
                     "ents": [{"t": 1, "op": None}], "commit": 1}, 0)
    assert core.commit_index == 1
    with pytest.raises(ProtocolError, match="committed"):
        core.step("n3", {"type": "ae", "term": 2, "prev": 0, "pt": 0,
                         "ents": [{"t": 2, "op": None}], "commit": 0}, 0)


def test_a_follower_that_missed_entries_catches_up_with_fast_back_off():
    c = ScenarioCluster("raft", n=3, options={"append-entries-max": 4})
    c.elect("n1")
    c.stabilize()
    c.crash("n3")
    mids = [c.write("n1", "k", v) for v in range(30)]
    c.stabilize()
    assert all(c.reply("c1", m)["type"] == "write_ok" for m in mids)
    c.restart("n3")
    assert c.nodes["n3"].last_index == 1 and c.nodes["n3"].commit_index == 0
    assert c.run_until(lambda: c.nodes["n3"].applied == c.nodes["n1"].applied, max_ms=2_000)
    assert committed(c, "n3") == committed(c, "n1")
    assert c.nodes["n3"].status()["state_digest"] == c.nodes["n1"].status()["state_digest"]


def test_when_every_server_restarts_committed_entries_survive_and_are_reapplied():
    c = ScenarioCluster("raft", n=3, machine="arith")
    c.elect("n1")
    c.stabilize()
    for op in ({"type": "add", "value": 1}, {"type": "mul", "value": 5}, {"type": "add", "value": 2}):
        c.request("n1", op)
        c.stabilize()
    digest = c.nodes["n1"].status()["state_digest"]
    for node in c.node_ids:
        c.crash(node)
    for node in c.node_ids:
        c.restart(node)
        # Memory is gone; the log and a commit hint are not: each server re-applies what it
        # recorded as committed before any leader exists, and the rest once one commits.
        assert c.nodes[node].machine.applied_index >= 2
    c.elect("n2")
    c.stabilize()
    c.advance(100)
    c.stabilize()
    mid = c.request("n2", {"type": "read"})
    c.stabilize()
    assert c.reply("c1", mid)["value"] == (0 + 1) * 5 + 2
    for node in c.node_ids:
        st = c.nodes[node].status()
        assert st["applied_index"] == 3 and st["state_digest"] == digest


# ---- figure 8 --------------------------------------------------------------------------------

X = {"type": "write", "key": "x", "value": "X"}


def figure_8(bugs: list[str]) -> tuple[ScenarioCluster, int, int]:
    """Figure 8 of the paper, with each new leader's no-op (absent under commit-old-term).

    (a) n1 leads term 1 and replicates X (index ix) to n2 only. (b) n1 is cut off; n5 is elected
    for term 2 with votes of n3, n4 and itself, accepts a client's Y, and crashes: its log ends
    with term 2 at index ix. (c) n1 is elected for term 3 and replicates X to n3 and n4 (one entry
    per message) but nothing of term 3: X is now on a majority. Then n1 crashes. (d) n5 restarts
    and can be elected (its last term 2 beats X's term 1) and overwrites index ix everywhere.
    Returns the cluster, the msg_id of the client's write of X, and ix.
    """
    c = ScenarioCluster("raft", n=5, bugs=bugs, options={"append-entries-max": 1})
    c.elect("n1")
    c.stabilize()
    x = c.write("n1", "x", "X")                  # (a)
    ix = c.nodes["n1"].last_index
    c.deliver(src="n1", dest="n2", type="ae")
    c.drop(src="n1")
    c.deliver(dest="n1")
    assert c.nodes["n2"].log[ix]["op"] == X and c.nodes["n3"].last_index == ix - 1
    c.partition(["n1"], ["n2", "n3", "n4", "n5"])  # (b)
    run_election(c, "n5")
    c.write("n5", "x", "Y", client="c2")
    assert c.nodes["n5"].term == 2 and c.nodes["n5"].log[ix]["t"] == 2
    c.drop(src="n5")
    c.crash("n5")
    # n1, alone, notices it lost its quorum and steps down (check-quorum), then campaigns.
    campaign(c, "n1")
    c.drop(src="n1")
    c.heal()
    run_election(c, "n1")                         # (c)
    assert c.nodes["n1"].term == 3
    c.drop(src="n1", dest="n2")                   # n2 keeps X but sees nothing of term 3
    c.deliver(src="n1", dest="n3", type="ae")     # rejected: n3 lacks index ix
    c.deliver(src="n1", dest="n4", type="ae")
    c.deliver(dest="n1", type="ae_r")             # n1 backs off and sends X alone
    c.deliver(src="n1", dest="n3", type="ae")
    c.deliver(src="n1", dest="n4", type="ae")
    c.deliver(dest="n1", type="ae_r")
    for node in ("n3", "n4"):
        assert c.nodes[node].log[ix]["op"] == X and c.nodes[node].last_index == ix
    return c, x, ix


def finish_figure_8(c: ScenarioCluster) -> None:
    c.drop(src="n1")                              # nothing of term 3 leaves n1
    c.crash("n1")
    c.restart("n5")                               # (d)
    run_election(c, "n5")
    assert c.nodes["n5"].term == 4
    c.stabilize()
    c.advance(100, nodes=["n5"])
    c.stabilize()


def test_figure_8_a_leader_cannot_conclude_an_entry_of_an_earlier_term_is_committed():
    c, x, ix = figure_8(bugs=[])
    assert c.nodes["n1"].commit_index == ix - 1     # X is on a majority but not committed
    assert c.reply("c1", x) is None
    finish_figure_8(c)
    for node in ("n2", "n3", "n4", "n5"):
        assert c.nodes[node].log[ix]["t"] == 2      # X was overwritten: never acknowledged
    mid = read(c, "n5", "x")
    c.stabilize()
    assert c.reply("c1", mid)["value"] == "Y"


def test_bug_commit_old_term_commits_by_counting_replicas_and_then_loses_the_entry():
    c, x, ix = figure_8(bugs=["commit-old-term"])
    assert c.nodes["n1"].commit_index == ix         # the bug: X counted as committed
    assert c.reply("c1", x)["type"] == "write_ok"   # ... and acknowledged to the client
    assert c.nodes["n1"].committed_ops()[ix - 1] == X
    finish_figure_8(c)
    assert c.nodes["n5"].committed_ops()[ix - 1] != X   # another entry committed at index ix
    mid = read(c, "n5", "x")
    c.stabilize()
    assert c.reply("c1", mid)["value"] == "Y"       # the acknowledged write of X is lost


def test_older_entries_commit_indirectly_once_an_entry_of_the_current_term_is_on_a_majority():
    c, x, ix = figure_8(bugs=[])
    c.stabilize()                                   # n1's no-op of term 3 reaches the majority
    c.advance(100, nodes=["n1"])
    c.stabilize()
    assert c.nodes["n1"].commit_index == ix + 1
    assert c.reply("c1", x)["type"] == "write_ok"   # X commits with it
    c.crash("n1")
    c.restart("n5")
    c.stabilize()
    c.elect("n2")
    c.stabilize()
    mid = read(c, "n2", "x")
    c.stabilize()
    assert c.reply("c1", mid)["value"] == "X"


# ---- clients and reads -----------------------------------------------------------------------

def test_a_server_that_is_not_the_leader_answers_error_11_naming_the_leader():
    c = ScenarioCluster("raft", n=3)
    mid = c.write("n2", "k", 1)
    assert c.reply("c1", mid)["code"] == 11 and "leader" not in c.reply("c1", mid)
    c.elect("n1")
    mid = c.write("n2", "k", 1)
    assert c.reply("c1", mid) == {"type": "error", "code": 11, "text": "not the leader",
                                  "leader": "n1", "in_reply_to": mid}


def test_a_deposed_leader_cannot_serve_a_read_without_a_majority():
    c = ScenarioCluster("raft", n=3)
    c.elect("n1")
    c.stabilize()
    c.write("n1", "x", 1)
    c.stabilize()
    c.partition(["n1"], ["n2", "n3"])
    c.elect("n2")
    c.stabilize()
    c.write("n2", "x", 2, client="c2")
    c.stabilize()
    assert c.nodes["n1"].is_leader()                # n1 has not noticed yet
    mid = read(c, "n1", "x")
    c.stabilize()
    assert c.reply("c1", mid) is None               # no majority confirms its leadership
    c.heal()
    c.advance(100, nodes=["n2"])
    c.stabilize()
    assert c.reply("c1", mid)["code"] == 11 and c.reply("c1", mid)["leader"] == "n2"


def test_bug_stale_reads_a_deposed_leader_serves_a_stale_value():
    c = ScenarioCluster("raft", n=3, bugs=["stale-reads"])
    c.elect("n1")
    c.stabilize()
    c.write("n1", "x", 1)
    c.stabilize()
    c.partition(["n1"], ["n2", "n3"])
    c.elect("n2")
    c.stabilize()
    w = c.write("n2", "x", 2, client="c2")
    c.stabilize()
    assert c.reply("c2", w)["type"] == "write_ok"
    mid = read(c, "n1", "x")                        # invoked after the write of 2 completed
    assert c.reply("c1", mid)["value"] == 1         # ... and returns 1: not linearizable


def test_check_quorum_an_isolated_leader_steps_down_and_redirects_clients():
    c = ScenarioCluster("raft", n=3)
    c.elect("n1")
    c.stabilize()
    c.partition(["n1"], ["n2", "n3"])
    c.advance(1_000, nodes=["n1"])
    assert not c.nodes["n1"].is_leader()
    mid = c.write("n1", "k", 1)
    assert c.reply("c1", mid)["code"] == 11


@pytest.mark.parametrize("reads", ["read-index", "log"])
def test_reads_observe_every_write_acknowledged_before_them(reads):
    c = ScenarioCluster("raft", n=3, options={"reads": reads})
    c.elect("n1")
    for v in range(5):
        w = c.write("n1", "k", v)
        r = read(c, "n1", "k", client="c2")
        c.stabilize()
        assert c.reply("c1", w)["type"] == "write_ok"
        assert c.reply("c2", r)["value"] == v
    if reads == "log":
        assert any(e["op"] and e["op"]["type"] == "read" for e in c.nodes["n1"].log)
    else:
        assert not any(e["op"] and e["op"]["type"] == "read" for e in c.nodes["n1"].log)


def test_a_read_before_the_leaders_no_op_commits_waits_for_it():
    c = ScenarioCluster("raft", n=3)
    run_election(c, "n1")                           # the no-op is in flight, not committed
    r = read(c, "n1", "k")
    c.deliver(type="hb")
    c.deliver(type="hb_r")
    assert c.reply("c1", r) is None                 # leadership confirmed, but not caught up
    c.stabilize()
    assert c.reply("c1", r)["value"] is None and c.nodes["n1"].commit_index == 1


def test_a_duplicate_request_is_appended_once():
    c = ScenarioCluster("raft", n=3, machine="append-log")
    c.elect("n1")
    c.stabilize()
    body = {"type": "append", "value": "a", "msg_id": 99}
    c._handle("n1", c.nodes["n1"].step("c1", body, c.now_ms["n1"]))
    c._handle("n1", c.nodes["n1"].step("c1", body, c.now_ms["n1"]))
    c.stabilize()
    assert c.nodes["n1"].machine.entries == ["a"]


@pytest.mark.parametrize("machine,ops,expect", [
    ("kv", [{"type": "write", "key": 1, "value": 2}, {"type": "cas", "key": 1, "from": 2, "to": 3},
            {"type": "cas", "key": 1, "from": 2, "to": 4}], {"key": 1, "value": 3}),
    ("arith", [{"type": "add", "value": 1}, {"type": "mul", "value": 2}], {"value": 2}),
    ("append-log", [{"type": "append", "value": "a"}, {"type": "append", "value": "b"}],
     {"value": ["a", "b"]}),
    ("set", [{"type": "add", "value": 3}, {"type": "add", "value": 1}], {"value": [1, 3]}),
])
def test_every_state_machine_is_replicated(machine, ops, expect):
    c = ScenarioCluster("raft", n=3, machine=machine)
    c.elect("n1")
    for op in ops:
        c.request("n1", op)
        c.stabilize()
    r = c.request("n1", {"type": "read", **({"key": expect["key"]} if "key" in expect else {})})
    c.stabilize()
    assert c.reply("c1", r)["value"] == expect["value"]
    c.advance(100)
    c.stabilize()
    digests = {c.nodes[n].status()["state_digest"] for n in c.node_ids}
    assert len(digests) == 1


def test_a_one_server_cluster_elects_itself_and_commits_alone():
    c = ScenarioCluster("raft", n=1)
    c.elect("n1")
    w = c.write("n1", "k", 1)
    r = read(c, "n1", "k")
    assert c.reply("c1", w)["type"] == "write_ok" and c.reply("c1", r)["value"] == 1


def test_bad_options_and_unknown_requests_are_refused():
    with pytest.raises(ValueError, match="reads"):
        ScenarioCluster("raft", n=3, options={"reads": "lease"})
    with pytest.raises(ValueError, match="election-timeout-ms"):
        ScenarioCluster("raft", n=3, options={"election-timeout-ms": 0})
    c = ScenarioCluster("raft", n=3)
    c.elect("n1")
    mid = c.request("n1", {"type": "append", "value": 1})
    assert c.reply("c1", mid)["code"] == 10


def test_a_clock_that_jumps_back_does_not_break_the_core():
    c = ScenarioCluster("raft", n=3)
    c.elect("n1")
    c.now_ms["n2"] -= 100_000
    c.advance(2_000)
    c.stabilize()
    assert len(c.leaders()) == 1
