"""Primary-backup scenarios, named after the sentences of the model they check."""

from __future__ import annotations

import random

import pytest

from splitbrain.systems.core import ProtocolError
from splitbrain.systems.machines import canonical_json
from splitbrain.systems.primary_backup import PrimaryBackupCore
from splitbrain.systems.testing import ScenarioCluster


def cluster(n: int = 3, machine: str = "arith", **kw) -> ScenarioCluster:
    return ScenarioCluster("primary-backup", n=n, machine=machine, **kw)


def test_the_leader_logs_state_changes_not_the_original_requests():
    c = cluster()
    c.elect("n1")
    ids = [c.request("n1", {"type": t, "value": v}) for t, v in (("add", 1), ("mul", 2), ("add", 3))]
    c.stabilize()
    assert [c.reply("c1", i)["type"] for i in ids] == ["add_ok", "mul_ok", "add_ok"]
    # The seed's example: +1, *2, +3 is logged as the results 1, 2, 5.
    logged = [e["c"]["value"] for e in c.nodes["n2"].log if not e.get("noop")]
    assert logged == [1, 2, 5]
    c.advance(100)
    c.stabilize()
    digests = {n.status()["state_digest"] for n in c.nodes.values()}
    assert len(digests) == 1
    assert all(n.machine.applied_index == 3 for n in c.nodes.values())


def test_followers_cannot_process_writes():
    c = cluster()
    c.elect("n1")
    mid = c.request("n2", {"type": "add", "value": 1})
    r = c.reply("c1", mid)
    assert r["type"] == "error" and r["code"] == 11 and r["leader"] == "n1"


def test_the_primary_answers_only_once_a_majority_has_the_change():
    c = cluster()
    c.elect("n1")
    c.crash("n2")
    c.crash("n3")
    mid = c.request("n1", {"type": "add", "value": 1})
    c.advance(200, nodes=["n1"])
    c.stabilize()
    assert c.reply("c1", mid) is None    # only the primary has the change
    c.restart("n2")
    c.advance(60, nodes=["n1"])          # a heartbeat brings n2 up to date
    c.stabilize()
    assert any(e.get("c") for e in c.nodes["n2"].log)
    assert c.reply("c1", mid)["type"] == "add_ok"


def test_a_failed_cas_is_not_logged_but_observed_linearizably():
    c = cluster(machine="kv")
    c.elect("n1")
    c.request("n1", {"type": "write", "key": "x", "value": 1})
    c.stabilize()
    before = len(c.nodes["n1"].log)
    mid = c.request("n1", {"type": "cas", "key": "x", "from": 7, "to": 8})
    assert c.reply("c1", mid) is None    # waits for a confirmation round
    c.stabilize()
    assert c.reply("c1", mid)["code"] == 22
    assert len(c.nodes["n1"].log) == before


def test_a_new_primary_is_chosen_by_a_majority_with_a_higher_epoch():
    c = cluster()
    c.elect("n1")
    c.partition(["n1"], ["n2", "n3"])
    c.elect("n2")
    assert c.nodes["n2"].epoch > c.nodes["n1"].epoch
    assert c.nodes["n1"].is_leader()     # it does not know yet


def test_an_old_primary_is_fenced_it_acknowledges_nothing_after_failover():
    c = cluster()
    c.elect("n1")
    c.partition(["n1"], ["n2", "n3"])
    c.elect("n2")
    old_w = c.request("n1", {"type": "add", "value": 10})
    old_r = c.request("n1", {"type": "read"})
    new_w = c.request("n2", {"type": "add", "value": 1})
    c.stabilize()
    assert c.reply("c1", new_w)["type"] == "add_ok"
    c.heal()
    c.advance(60, nodes=["n1"])
    c.stabilize()
    # Backups refused the old epoch; the old primary stepped down without acknowledging.
    assert not c.nodes["n1"].is_leader()
    assert c.reply("c1", old_r)["type"] == "error"
    assert c.reply("c1", old_w) is None or c.reply("c1", old_w)["type"] == "error"
    c.run_until(lambda: all(n.commit == len(c.nodes["n2"].log) for n in c.nodes.values()))
    assert {n.machine.values.get(canonical_json(None)) for n in c.nodes.values()} == {1}


def test_the_candidate_with_the_most_up_to_date_change_log_wins():
    c = cluster()
    c.elect("n1")
    c.request("n1", {"type": "add", "value": 1})
    c.deliver(src="n1", dest="n2")        # only n2 gets the change
    c.drop(src="n1", dest="n3")
    c.crash("n1")
    # n3 is behind: n2 refuses it its vote.
    c.advance(1000, nodes=["n3"])
    c.stabilize()
    assert not c.nodes["n3"].is_leader()
    c.elect("n2")
    c.run_until(lambda: c.nodes["n3"].commit == len(c.nodes["n2"].log))
    # The new primary brought the backup up to date with the change n3 never saw.
    assert c.nodes["n3"].machine.values[canonical_json(None)] == 1


def test_committed_changes_survive_a_crash_of_every_node():
    c = cluster(machine="append-log")
    c.elect("n1")
    ids = [c.request("n1", {"type": "append", "value": v}) for v in range(5)]
    c.stabilize()
    assert all(c.reply("c1", i)["type"] == "append_ok" for i in ids)
    for n in list(c.nodes):
        c.crash(n)
    for n in c.node_ids:
        c.restart(n)
    assert all(n.machine.applied_index == 0 for n in c.nodes.values())
    c.elect("n3")
    mid = c.request("n3", {"type": "read"})
    c.stabilize()
    assert c.reply("c1", mid)["value"] == [0, 1, 2, 3, 4]


def test_bug_ack_before_replicate_loses_an_acknowledged_write():
    for bugs, lost in (((), False), (("ack-before-replicate",), True)):
        c = cluster(bugs=bugs)
        c.elect("n1")
        mid = c.request("n1", {"type": "add", "value": 5})
        acked = c.reply("c1", mid) is not None
        c.crash("n1")                    # before any backup got the change
        c.elect("n2")
        rid = c.request("n2", {"type": "read"})
        c.stabilize()
        value = c.reply("c1", rid)["value"]
        assert acked == lost
        assert (acked and value == 0) == lost


def test_bug_no_fencing_lets_two_primaries_acknowledge_conflicting_writes():
    results = {}
    for bugs in ((), ("no-fencing",)):
        c = cluster(machine="kv", bugs=bugs)
        c.elect("n1")
        c.partition(["n1"], ["n2", "n3"])
        c.elect("n2")
        new_w = c.request("n2", {"type": "write", "key": "k", "value": "new"})
        c.stabilize()
        assert c.reply("c1", new_w)["type"] == "write_ok"
        old_w = c.request("n1", {"type": "write", "key": "k", "value": "old"})
        c.heal()
        c.advance(60, nodes=["n1"])
        c.stabilize()
        results[bugs] = c.reply("c1", old_w)
    assert results[()] is None or results[()]["type"] == "error"
    # The old primary overwrote the new primary's acknowledged write and acknowledged its own.
    assert results[("no-fencing",)] == {"type": "write_ok", "in_reply_to": 2}


# ---- randomized schedules on the hand-driven cluster ------------------------------------------

INDEFINITE_CODES = (0, 13)   # Maelstrom's timeout and crash: the op may or may not have happened


def fuzz(system, seed: int, bugs=(), steps: int = 600, n: int = 3, options=None, *,
         dup_p: float = 0.0, refuted: set | None = None):
    """Random deliveries (reordered), drops, crashes, restarts, partitions and clock advances.

    With `dup_p` > 0 a delivered message stays in flight with that probability (the network
    duplicates it). `refuted`, when given, receives every appended value that got a DEFINITE
    error yet is in the final state (a definite error must mean the op never happens).
    Returns (committed_prefixes_agree, lost_acknowledged_appends, final_states_equal)."""
    rng = random.Random(seed)
    c = ScenarioCluster(system, n=n, machine="append-log", bugs=bugs, seed=seed, options=options)
    chosen: dict[int, str] = {}
    agree = True
    acked: set[int] = set()
    sent: dict[int, int] = {}
    value = 0

    def check_prefixes():
        nonlocal agree
        for core in c.nodes.values():
            for i in range(1, core.commit + 1):
                e = canonical_json(core.log[i - 1])
                if chosen.setdefault(i, e) != e:
                    agree = False

    for _ in range(steps):
        r = rng.random()
        live = list(c.nodes)
        if r < 0.35 and c.inflight:
            m = c.inflight.pop(rng.randrange(len(c.inflight)))   # any order: reordering
            if dup_p and rng.random() < dup_p:
                c.inflight.append(m)                                # delivered twice
            if m.dest in c.nodes and c._connected(m.src, m.dest):
                c._handle(m.dest, c.nodes[m.dest].step(m.src, m.body, c.now_ms[m.dest]))
        elif r < 0.42 and c.inflight:
            c.inflight.pop(rng.randrange(len(c.inflight)))
        elif r < 0.6 and live:
            value += 1
            sent[c.request(rng.choice(live), {"type": "append", "value": value})] = value
        elif r < 0.85 and live:
            c.advance(rng.choice((10, 50, 200, 400)), nodes=rng.sample(live, rng.randint(1, len(live))))
        elif r < 0.9:
            down = [x for x in c.node_ids if x not in c.nodes]
            if down and rng.random() < 0.6:
                c.restart(rng.choice(down))
            elif len(live) > 1:
                c.crash(rng.choice(live))
        elif r < 0.95:
            ids = rng.sample(c.node_ids, len(c.node_ids))
            cut = rng.randint(1, len(ids) - 1)
            c.partition(ids[:cut], ids[cut:])
        else:
            c.heal()
        check_prefixes()
    c.heal()
    for x in c.node_ids:
        if x not in c.nodes:
            c.restart(x)

    def settled():
        cores = list(c.nodes.values())
        return (any(k.is_leader() for k in cores) and
                len({(k.machine.applied_index, k.machine.digest()) for k in cores}) == 1 and
                all(k.commit == len(k.log) for k in cores))

    c.run_until(settled, max_ms=10_000)
    check_prefixes()
    failed: set[int] = set()
    for body in c.client_inbox.get("c1", []):
        if body.get("type") == "append_ok":
            acked.add(sent[body["in_reply_to"]])
        elif body.get("type") == "error" and body.get("code") not in INDEFINITE_CODES:
            failed.add(sent[body["in_reply_to"]])
    states = {(k.machine.applied_index, k.machine.digest()) for k in c.nodes.values()}
    final = set(next(iter(c.nodes.values())).machine.entries)
    if refuted is not None:
        refuted |= failed & final
    return agree, acked - final, len(states) == 1


@pytest.mark.parametrize("seed", range(25))
def test_random_schedules_keep_committed_prefixes_and_acknowledged_changes(seed):
    agree, lost, converged = fuzz("primary-backup", seed)
    assert agree
    assert not lost
    assert converged


@pytest.mark.parametrize("seed", range(10))
def test_a_definite_error_means_the_change_never_happens_even_with_duplicated_messages(seed):
    refuted: set[int] = set()
    agree, lost, converged = fuzz("primary-backup", seed, dup_p=0.2, refuted=refuted)
    assert agree and not lost and converged
    assert not refuted


@pytest.mark.parametrize("bug", sorted(PrimaryBackupCore.BUGS))
def test_random_schedules_expose_each_bug(bug):
    found = 0
    for seed in range(60):
        try:
            agree, lost, converged = fuzz("primary-backup", seed, bugs=(bug,))
        except ProtocolError:
            found += 1
            continue
        found += (not agree) or bool(lost) or (not converged)
    assert found > 0
