"""Workloads: generation from a seed, Maelstrom encoding, and the ok/fail/info decoding rules."""

from __future__ import annotations

import random

import pytest

from splitbrain.harness.workloads import (FAIL, INFO, OK, Invocation, make_workload,
                                          workload_names)
from splitbrain.systems.machines import make_machine


def test_every_workload_generates_the_same_ops_from_the_same_seed():
    for name in workload_names():
        a, b = make_workload(name), make_workload(name)
        ra, rb = random.Random(3), random.Random(3)
        assert [a.next_invocation(ra) for _ in range(50)] == [b.next_invocation(rb)
                                                              for _ in range(50)]


@pytest.mark.parametrize("name,f", [("append-log", "append"), ("set", "add")])
def test_unique_values_are_unique(name, f):
    w = make_workload(name)
    rng = random.Random(0)
    values = [inv.value for inv in (w.next_invocation(rng) for _ in range(500)) if inv.f == f]
    assert len(values) > 100
    assert len(values) == len(set(values))


def test_kv_uses_a_few_keys_at_a_time():
    # One group of workers (10 workers, 5 nodes: 2 x nodes per key) on key_count keys at a time;
    # each key takes at most ops_per_key ops (tests/test_independent_keys.py has the rest).
    w = make_workload("kv", {"key_count": "2", "ops_per_key": "50"})
    w.bind_clients(10, 5)
    rng = random.Random(1)
    keys = [w.prepare(i % 10, w.next_invocation(rng)).key for i in range(200)]
    assert set(keys) == set(range(max(keys) + 1)) and 4 <= len(set(keys)) <= 6
    assert all(keys.count(k) <= 50 for k in set(keys))


def test_requests_run_on_the_in_house_machine():
    # Every in-house workload's requests are ops its machine understands (no "not supported").
    for name in workload_names():
        w = make_workload(name)
        if w.machine is None:
            continue
        machine = make_machine(w.machine)
        rng = random.Random(5)
        for i in range(100):
            inv = w.prepare(i % 10, w.next_invocation(rng))
            reply = machine.apply(w.request(inv))
            c = w.completion(inv, reply)
            assert c.type in (OK, FAIL), (name, inv, reply)
            if c.type == FAIL:
                assert c.error in ("precondition-failed", "key-does-not-exist"), c


def test_decoding_rules():
    w = make_workload("register")
    cas = Invocation("cas", [1, 2])
    assert w.completion(cas, {"type": "cas_ok"}).value == [1, 2]
    c = w.completion(cas, {"type": "error", "code": 22})
    assert (c.type, c.error, c.value) == (FAIL, "precondition-failed", [1, 2])
    c = w.completion(cas, {"type": "error", "code": 13})
    assert (c.type, c.error) == (INFO, "crash")
    c = w.completion(cas, {"type": "error", "code": 11, "leader": "n2"})
    assert (c.type, c.error) == (FAIL, "temporarily-unavailable")
    assert w.timeout(cas).type == INFO
    assert w.completion(Invocation("read"), {"type": "read_ok", "value": 4}) == \
        type(c)(OK, 4)
    # An unknown custom code is indefinite.
    assert w.completion(cas, {"type": "error", "code": 1234}).type == INFO


def test_lin_kv_missing_key_read_is_ok_null_but_cas_fails():
    w = make_workload("lin-kv")
    missing = {"type": "error", "code": 20}
    assert w.completion(Invocation("read", None, 1), missing).type == OK
    assert w.completion(Invocation("read", None, 1), missing).value is None
    c = w.completion(Invocation("cas", [1, 2], 1), missing)
    assert (c.type, c.error) == (FAIL, "key-does-not-exist")


def test_append_offset_and_final_ops():
    w = make_workload("append-log")
    assert w.completion(Invocation("append", 7), {"type": "append_ok", "offset": 3}).value == \
        {"value": 7, "offset": 3}
    final = w.final_invocations(["n1", "n2"])
    assert [(f.node, f.inv.f) for f in final] == [("n1", "read"), ("n2", "read"),
                                                  ("n1", "status"), ("n2", "status")]


def test_counter_encodes_delta():
    w = make_workload("g-counter")
    assert w.request(Invocation("add", 3)) == {"type": "add", "delta": 3}


def test_bad_workload_names_and_options():
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("nope")
    with pytest.raises(ValueError, match="unknown option"):
        make_workload("kv", {"colour": 1})
    with pytest.raises(ValueError, match="integer"):
        make_workload("kv", {"key_count": "many"})


def test_workloads_command_lists_every_workload():
    import json as _json

    from click.testing import CliRunner

    from splitbrain.commands.workloads import command
    out = CliRunner().invoke(command, ["--json"])
    assert out.exit_code == 0
    names = {w["name"] for w in _json.loads(out.output)}
    assert names == set(workload_names())
    table = CliRunner().invoke(command, [])
    # the words of the cells, without the borders (a description may wrap anywhere)
    flat = " ".join(w for w in table.output.split() if w.strip("│┃┆") != "")
    assert "cas [from," in flat and "append-log" in table.output
    assert "kafka" in table.output and "send poll assign commit" in table.output
