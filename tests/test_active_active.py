"""Active-active (state-machine model) scenarios, named after the seed's sentences."""

from __future__ import annotations

import pytest

from splitbrain.systems.active_active import ActiveActiveCore
from splitbrain.systems.core import ProtocolError
from splitbrain.systems.machines import canonical_json
from splitbrain.systems.testing import ScenarioCluster
from test_primary_backup import fuzz

X = canonical_json(None)   # the arith machine's default key


def cluster(n: int = 3, machine: str = "arith", **kw) -> ScenarioCluster:
    return ScenarioCluster("active-active", n=n, machine=machine, **kw)


def settle(c: ScenarioCluster) -> None:
    c.run_until(lambda: len({(k.commit, len(k.log)) for k in c.nodes.values()}) == 1
                and all(k.commit == len(k.log) for k in c.nodes.values()))


def test_all_replicas_receive_the_same_log_of_inputs_and_end_in_the_same_state():
    c = cluster()
    c.elect("n1")
    ids = []
    for node, (t, v) in zip(("n2", "n3", "n1"), (("add", 1), ("mul", 2), ("add", 3))):
        ids.append(c.request(node, {"type": t, "value": v}))
        c.stabilize()
    settle(c)
    # Inputs are logged, not results: every replica executed +1, *2, +3 itself and holds 5.
    logged = [e["in"]["op"] for e in c.nodes["n3"].log if not e.get("noop")]
    assert logged == [{"type": "add", "value": 1}, {"type": "mul", "value": 2},
                      {"type": "add", "value": 3}]
    assert {k.machine.values[X] for k in c.nodes.values()} == {5}
    assert [c.reply("c1", i)["type"] for i in ids] == ["add_ok", "mul_ok", "add_ok"]


def test_the_receiving_replica_answers_after_executing_the_input_at_its_number():
    c = cluster()
    c.elect("n1")
    mid = c.request("n3", {"type": "add", "value": 4})
    c.deliver(dest="n1")                      # the sequencer numbers the forwarded input
    assert c.reply("c1", mid) is None
    settle(c)
    assert c.reply("c1", mid)["type"] == "add_ok"


def test_a_replica_that_knows_no_sequencer_refuses_definitely():
    c = cluster()
    r = c.reply("c1", c.request("n2", {"type": "add", "value": 1}))
    assert r["type"] == "error" and r["code"] == 11


def test_a_duplicated_submit_refused_after_the_first_copy_was_numbered_is_no_definite_error():
    # Simulator seed 664 (set, kill+clock): the network duplicated n4's submit of `add 476`; the
    # sequencer numbered the first copy, stepped down, refused the second copy, and n4 answered
    # error 11 (definite) for an add that the next sequencer then committed.
    c = cluster(machine="set")
    c.elect("n1")
    mid = c.request("n2", {"type": "add", "value": 476})
    [submit] = c.matching(src="n2", dest="n1", type="submit")
    c.inflight.append(type(submit)(submit.src, submit.dest, dict(submit.body)))  # duplicated
    c.deliver(dest="n1", type="submit")           # both copies: the second one is deduplicated
    c.inflight.append(type(submit)(submit.src, submit.dest, dict(submit.body)))  # a late copy
    late = c.inflight.pop()
    c.deliver(src="n1", dest="n2", type="append")  # n2 holds the input: a majority with n1
    c.drop()                                       # n3 never sees it; acks are lost
    # n1 loses its majority and steps down (check quorum) before the late copy arrives.
    c.partition(["n1"], ["n2", "n3"])
    c.advance(1_000, nodes=["n1"])
    assert not c.nodes["n1"].is_leader()
    c.heal()
    c.inflight.append(late)
    c.deliver(dest="n1", type="submit")
    assert len(c.matching(src="n1", dest="n2", type="submit_nack")) == 1
    c.deliver(type="submit_nack")
    assert c.reply("c1", mid) is None             # not a definite error: the outcome is open
    c.elect("n2")                                  # the most up-to-date log wins and commits it
    settle(c)
    assert {tuple(k.machine.state()) for k in c.nodes.values()} == {(476,)}
    assert c.reply("c1", mid)["type"] == "add_ok"


def test_a_sequencer_that_stepped_down_vouches_for_submits_it_never_numbered():
    c = cluster()
    c.elect("n1")
    c.partition(["n1"], ["n2", "n3"])
    c.advance(1_000, nodes=["n1"])                # check quorum: n1 steps down; n2 does not know
    assert not c.nodes["n1"].is_leader() and c.nodes["n2"].leader_id == "n1"
    c.heal()
    mid = c.request("n2", {"type": "add", "value": 1})
    c.deliver(dest="n1", type="submit")
    r = c.reply("c1", c.stabilize() or mid)
    assert r["type"] == "error" and r["code"] == 11     # definite, and rightly so
    assert all(k.machine.values.get(X, 0) == 0 for k in c.nodes.values())


def test_a_restarted_node_cannot_vouch_for_what_it_numbered_before_the_crash():
    c = cluster()
    c.elect("n1")
    c.crash("n1")
    c.restart("n1")                               # n2 still believes n1 is the sequencer
    mid = c.request("n2", {"type": "add", "value": 1})
    c.deliver(dest="n1", type="submit")
    assert len(c.matching(src="n1", dest="n2", type="submit_nack")) == 1
    c.stabilize()
    assert c.reply("c1", mid) is None             # the client times out: indefinite


def test_a_duplicated_client_request_is_not_refused_while_its_input_is_ordered():
    c = cluster()
    c.elect("n1")
    body = {"type": "add", "value": 5, "msg_id": 77}
    c._handle("n2", c.nodes["n2"].step("c1", body, c.now_ms["n2"]))
    c.deliver(dest="n1", type="submit")           # numbered; n2 holds it, n3 does not
    c.deliver(src="n1", dest="n2", type="append")
    c.drop()
    # n3 stands for election: n2 adopts the higher epoch and no longer knows a sequencer ...
    c.advance(1_000, nodes=["n3"])
    c.deliver(src="n3", dest="n2", type="vote_req")
    assert c.nodes["n2"].leader_id is None
    c._handle("n2", c.nodes["n2"].step("c1", body, c.now_ms["n2"]))   # ... when the copy arrives
    assert c.reply("c1", 77) is None              # refusing the copy would deny the original
    c.drop()
    c.elect("n2")
    settle(c)
    assert {k.machine.values[X] for k in c.nodes.values()} == {5}
    assert c.reply("c1", 77)["type"] == "add_ok"


def test_simulator_seed_664_a_definite_error_for_an_add_that_took_effect_is_gone():
    from splitbrain.harness.sim import SimConfig, check_run, simulate
    # splitbrain test --backend sim --system active-active --workload set --nemesis kill,clock
    #   --time-limit 5 --seed 664: the set checker reported 476 `unexpected` before the fix.
    run = simulate(SimConfig(system="active-active", workload="set", seed=664, time_limit_s=5,
                             nemesis=("kill", "clock")))
    assert run.stats["duplicated"] > 0
    result = check_run(run)
    assert result.valid is True, result


def test_reads_through_the_log_are_linearizable_on_any_replica():
    c = cluster()
    c.elect("n1")
    w = c.request("n1", {"type": "add", "value": 7})
    c.stabilize()
    assert c.reply("c1", w)["type"] == "add_ok"
    assert c.nodes["n3"].machine.values.get(X, 0) == 0    # n3 has not executed it yet
    r = c.request("n3", {"type": "read"})
    settle(c)
    assert c.reply("c1", r)["value"] == 7


def test_local_reads_are_only_sequentially_consistent_a_partitioned_replica_reads_stale():
    c = cluster(options={"reads": "local"})
    c.elect("n1")
    c.partition(["n1", "n2"], ["n3"])
    w = c.request("n1", {"type": "add", "value": 7})
    c.stabilize()
    assert c.reply("c1", w)["type"] == "add_ok"
    # After the write was acknowledged, a read on n3 still sees 0: not linearizable.
    assert c.reply("c1", c.request("n3", {"type": "read"}))["value"] == 0
    c.heal()
    settle(c)
    assert c.reply("c1", c.request("n3", {"type": "read"}))["value"] == 7


def test_a_new_sequencer_recovers_the_committed_prefix_and_never_reuses_a_number():
    c = cluster(machine="append-log")
    c.elect("n1")
    for v in range(3):
        c.request("n2", {"type": "append", "value": v})
        c.stabilize()
    committed = [canonical_json(e) for e in c.nodes["n1"].log[:c.nodes["n1"].commit]]
    c.crash("n1")
    c.elect("n3")
    c.request("n3", {"type": "append", "value": 99})
    c.restart("n1")
    settle(c)
    for core in c.nodes.values():
        assert [canonical_json(e) for e in core.log[:len(committed)]] == committed
    assert {tuple(k.machine.entries) for k in c.nodes.values()} == {(0, 1, 2, 99)}


def test_bug_arrival_order_replicas_diverge_at_the_same_applied_index():
    for bugs, diverge in (((), False), (("arrival-order",), True)):
        c = cluster(bugs=bugs)
        c.elect("n1")
        c.request("n1", {"type": "add", "value": 1})
        c.request("n1", {"type": "mul", "value": 2})
        # The network reorders the sequencer's two messages to n3.
        to_n3 = c.matching(src="n1", dest="n3", type="append")
        assert len(to_n3) == 2
        c.inflight = [m for m in c.inflight if m not in to_n3] + to_n3[::-1]
        c.stabilize()
        settle(c)
        states = {(k.machine.applied_index, k.machine.digest()) for k in c.nodes.values()}
        assert {k.machine.applied_index for k in c.nodes.values()} == {2}
        assert (len(states) > 1) == diverge
        if diverge:
            assert c.nodes["n3"].machine.values[X] == 1 and c.nodes["n2"].machine.values[X] == 2


def test_bug_sequencer_forgets_reuses_numbers_after_a_restart():
    for bugs, diverge in (((), False), (("sequencer-forgets",), True)):
        c = cluster(machine="append-log", bugs=bugs)
        c.elect("n1")
        for v in range(3):
            c.request("n1", {"type": "append", "value": v})
        settle(c)
        c.crash("n1")
        c.restart("n1")                   # before anyone's election timer fires
        c.request("n1", {"type": "append", "value": 99})
        settle(c)
        logs = {tuple(k.machine.entries) for k in c.nodes.values()}
        assert (len(logs) > 1) == diverge
        if diverge:
            assert (99,) in {t[:1] for t in logs} and (0, 1, 2) in logs


@pytest.mark.parametrize("seed", range(25))
def test_random_schedules_keep_committed_prefixes_and_acknowledged_inputs(seed):
    agree, lost, converged = fuzz("active-active", seed)
    assert agree and not lost and converged


@pytest.mark.parametrize("seed", range(25))
def test_a_definite_error_means_the_input_is_never_executed_even_with_duplicated_submits(seed):
    refuted: set[int] = set()
    agree, lost, converged = fuzz("active-active", seed, dup_p=0.2, refuted=refuted)
    assert agree and not lost and converged
    assert not refuted


@pytest.mark.parametrize("bug", sorted(ActiveActiveCore.BUGS))
def test_random_schedules_expose_each_bug(bug):
    found = 0
    for seed in range(60):
        try:
            agree, lost, converged = fuzz("active-active", seed, bugs=(bug,))
        except ProtocolError:
            found += 1
            continue
        found += (not agree) or bool(lost) or (not converged)
    assert found > 0


def test_option_reads_is_validated():
    with pytest.raises(ValueError, match="reads"):
        cluster(options={"reads": "sometimes"})
