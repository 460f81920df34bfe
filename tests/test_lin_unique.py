"""The unique-values polynomial checker (unique.py) against the general search, and the search's
reduction of unobserved crashed writes against the unreduced search (Hypothesis).

1. Random register / cas-register / kv histories whose written values are unique: histories of
   the real object under a random schedule with crashes (valid), the same with one result or
   cas argument mutated (mostly invalid), and histories with arbitrary read results. The
   polynomial method and the search (without any reduction) must give the same verdict and, when
   invalid, the same failing call and the same set of states possible just before it; the
   polynomial method's linearization of the prefix is checked to be legal and in real-time
   order. CI runs DIFF_CI histories; `pytest -m slow` runs DIFF_SLOW (10,000).
2. The search with the reduction (prepare.reduce_unobserved) against the search without, on
   histories with and without unique values: same verdict, same failing call, the listed states
   a subset.
3. The search against the brute-force oracle of tests/test_lin_properties.py on small unique-value
   histories.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.linearizability import check_linearizable, get_model
from splitbrain.checkers.linearizability.prepare import partition_history, reduce_unobserved
from splitbrain.checkers.linearizability.search import search
from splitbrain.checkers.linearizability.unique import (METHOD_POLY, METHOD_SEARCH,
                                                        check_unique, stream_unique)
from splitbrain.history import Op

from test_lin_properties import oracle, random_history, simulate

MODELS = ["register", "cas-register", "kv"]
DIFF_CI = 1500
DIFF_SLOW = 10_000


def unique_history(model: str, seed: int, n_ops: int, n_procs: int, crash_p: float,
                   mode: str) -> list[Op]:
    """A history of a register whose written values are unique (a counter).

    mode "real": the real object under a random schedule (each op takes effect at a random
    moment within its interval; crashed ops took effect or not); "mutated": the same with one
    read result or one cas `from` changed; "arbitrary": reads return any value written so far
    (or null), whatever the schedule.
    """
    rng = random.Random(seed)
    keys = ["a", "b"] if model == "kv" else [None]
    state = {k: None for k in keys}
    written: dict = {k: [None] for k in keys}
    ops: list[Op] = []
    pending: dict = {}
    procs = list(range(n_procs))
    fresh = n_procs
    started = 0
    counter = [0]

    def emit(p, typ, f, value, key, error=None):
        ops.append(Op(index=len(ops), time=len(ops) * 10, process=p, type=typ, f=f, value=value,
                      key=key, error=error))

    def new_value():
        counter[0] += 1
        return counter[0] if model != "kv" else f"v{counter[0]}"

    while started < n_ops or pending:
        moves = []
        idle = [p for p in procs if p not in pending]
        if started < n_ops and idle:
            moves.append("invoke")
        if any(v[3] is None for v in pending.values()):
            moves.append("apply")
        if any(v[3] is not None for v in pending.values()):
            moves.append("complete")
        if pending and rng.random() < crash_p:
            moves = ["crash"]
        move = rng.choice(moves)
        if move == "invoke":
            p = rng.choice(idle)
            key = rng.choice(keys)
            roll = rng.random()
            if roll < 0.45:
                f, value = "read", None
            elif roll < 0.75 or model == "register":
                f, value = "write", new_value()
            else:
                # from: mostly the current value (a cas that succeeds), else an older one
                frm = state[key] if rng.random() < 0.7 else rng.choice(written[key])
                f, value = "cas", [frm, new_value()]
            started += 1
            pending[p] = [f, value, key, None]
            emit(p, "invoke", f, value, key)
        elif move == "apply":
            p = rng.choice([p for p, v in pending.items() if v[3] is None])
            f, value, key, _ = pending[p]
            pending[p][3] = _apply(state, written, f, value, key, rng, mode)
        elif move == "complete":
            p = rng.choice([p for p, v in pending.items() if v[3] is not None])
            f, value, key, (typ, result, error) = pending.pop(p)
            emit(p, typ, f, result, key, error)
        else:
            p = rng.choice(list(pending))
            f, value, key, outcome = pending.pop(p)
            if outcome is None and rng.random() < 0.5:
                _apply(state, written, f, value, key, rng, "real")
            if rng.random() < 0.7:
                emit(p, "info", f, value, key, "timeout")
            procs.remove(p)
            procs.append(fresh)
            fresh += 1
    if mode == "mutated":
        _mutate(ops, written, rng)
    return ops


def _apply(state, written, f, value, key, rng, mode):
    if f == "read":
        if mode == "arbitrary":
            return ("ok", rng.choice(written[key]), None)
        return ("ok", state[key], None)
    if f == "write":
        state[key] = value
        written[key].append(value)
        return ("ok", value, None)
    if state[key] != value[0]:
        # a failed cas: mostly an error that says only "it did not happen"
        err = "precondition-failed" if rng.random() < 0.2 else "unavailable"
        return ("fail", value, err)
    state[key] = value[1]
    written[key].append(value[1])
    return ("ok", value, None)


def _mutate(ops: list[Op], written, rng) -> None:
    cands = [o for o in ops if o.type == "ok" and o.f in ("read", "cas")]
    if not cands:
        return
    o = rng.choice(cands)
    other = rng.choice(written[o.key])
    if o.f == "read":
        ops[o.index] = Op(o.index, o.time, o.process, "ok", "read", other, o.key)
        return
    # the cas's argument changes: invoke and completion alike
    new = [other, o.value[1]]
    for i, x in enumerate(ops):
        if x.process == o.process and x.f == "cas" and x.value == o.value and x.index <= o.index:
            last_inv = i if x.type == "invoke" else None
            if last_inv is not None:
                inv_i = last_inv
    ops[inv_i] = Op(inv_i, ops[inv_i].time, o.process, "invoke", "cas", new, o.key)
    ops[o.index] = Op(o.index, o.time, o.process, "ok", "cas", new, o.key)


# --- the comparison ----------------------------------------------------------------------------

def _legal_prefix(model, part, failure) -> None:
    """The failure's linearization is legal for the model and respects real time."""
    s = model.init
    for cid, after in zip(failure.linearization, failure.prefix_states):
        legal, s = model.step(s, part.calls[cid])
        assert legal, f"call {cid} illegal in the reported linearization"
        assert s == after
    pos = {c: i for i, c in enumerate(failure.linearization)}
    for a in failure.linearization:
        for b in failure.linearization:
            ca = part.complete_index[a]
            if not part.crashed[a] and ca < part.invoke_index[b]:
                assert pos[a] < pos[b], "the reported linearization breaks real time"


def compare(ops: list[Op], model_name: str) -> tuple[int, int]:
    """Per key: the polynomial method (when its precondition holds) against the unreduced search.
    Returns (keys checked by both, invalid among them)."""
    m = get_model(model_name)
    parts = partition_history(ops, m)
    ukeys = {k: u for k, u in stream_unique(ops, m).items() if u.why is None and len(u)}
    both = bad = 0
    for k, part in parts.items():
        u = ukeys.get(k)
        if u is None:
            continue
        assert len(u) == len(part.calls)
        both += 1
        slow = search(m, part)
        valid, failure = check_unique(u)
        assert valid is slow.valid, (k, ops)
        if not valid:
            bad += 1
            assert failure.call == slow.failure.call, (k, ops)
            assert failure.event == slow.failure.event
            assert set(failure.states) == set(slow.failure.states), (k, ops)
            assert sorted(failure.open_calls) == sorted(slow.failure.open_calls)
            _legal_prefix(m, part, failure)
    return both, bad


def _case(n: int, seed: int, model: str) -> list[Op]:
    rng = random.Random(seed)
    mode = ("real", "mutated", "mutated", "arbitrary")[n % 4]
    return unique_history(model, seed, rng.randint(1, 30), rng.randint(1, 6),
                          rng.choice([0, 0.05, 0.15]), mode)


def _run_many(count: int) -> None:
    totals = [0, 0]
    for n in range(count):
        model = MODELS[n % 3]
        both, bad = compare(_case(n, 1_000_003 * n + 17, model), model)
        totals[0] += both
        totals[1] += bad
    # the generator must exercise both verdicts through the polynomial method
    assert totals[0] > count // 2 and totals[1] > count // 10, totals


def test_polynomial_agrees_with_the_search_ci_tier():
    _run_many(DIFF_CI)


@pytest.mark.slow
def test_polynomial_agrees_with_the_search_10000():
    _run_many(DIFF_SLOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), seed=st.integers(0, 2**32 - 1),
       n_ops=st.integers(1, 14), n_procs=st.integers(1, 6),
       crash_p=st.sampled_from([0, 0.05, 0.2]),
       mode=st.sampled_from(["real", "mutated", "arbitrary"]))
def test_polynomial_agrees_with_the_search_hypothesis(model, seed, n_ops, n_procs, crash_p, mode):
    compare(unique_history(model, seed, n_ops, n_procs, crash_p, mode), model)


def test_the_checker_says_which_method_it_used():
    ops = unique_history("cas-register", 5, 10, 3, 0.0, "real")
    ops = [o for o in ops if o.error != "precondition-failed"]
    r = check_linearizable(ops, "register" if not any(o.f == "cas" for o in ops)
                           else "cas-register")
    assert r.valid is True and r.stats["method"] == METHOD_POLY
    # a value written twice: the search, and the reason is given
    h = [Op(0, 0, 0, "invoke", "write", 1), Op(1, 1, 0, "ok", "write", 1),
         Op(2, 2, 0, "invoke", "write", 1), Op(3, 3, 0, "ok", "write", 1),
         Op(4, 4, 0, "invoke", "read", None), Op(5, 5, 0, "ok", "read", 2)]
    r = check_linearizable(h, "register")
    assert r.valid is False and r.stats["method"] == METHOD_SEARCH
    assert r.stats["search_reasons"] == {"a value is written twice": 1}
    # the same invalid history with unique values: the counterexample comes from the polynomial
    h = h[:2] + [Op(2, 2, 0, "invoke", "write", 3), Op(3, 3, 0, "ok", "write", 3)] + h[4:]
    r = check_linearizable(h, "register")
    assert r.valid is False and r.stats["method"] == METHOD_POLY
    a = r.anomalies[0]
    assert a.details["method"] == METHOD_POLY and a.details["op"]["invoke_index"] == 4
    assert a.details["states_possible"] == ["3"]
    assert "cannot linearize  process 0: read -> 2" in a.message


def test_a_crashed_write_that_is_read_took_effect_one_never_read_is_left_out():
    # write 1 crashes (never completes); a later read sees 1: valid, the write took effect
    h = [Op(0, 0, 0, "invoke", "write", 1), Op(1, 1, 1, "invoke", "read", None),
         Op(2, 2, 1, "ok", "read", 1)]
    assert check_linearizable(h, "register").valid is True
    # the read completes before the crashed write is invoked: invalid
    h = [Op(0, 0, 1, "invoke", "read", None), Op(1, 1, 1, "ok", "read", 1),
         Op(2, 2, 0, "invoke", "write", 1)]
    r = check_linearizable(h, "register")
    assert r.valid is False and r.stats["method"] == METHOD_POLY
    # a crashed cas [1, 2] never observed, between write 1 and a read of 1: left out, valid
    h = [Op(0, 0, 0, "invoke", "write", 1), Op(1, 1, 0, "ok", "write", 1),
         Op(2, 2, 1, "invoke", "cas", [1, 2]), Op(3, 3, 1, "info", "cas", [1, 2]),
         Op(4, 4, 0, "invoke", "read", None), Op(5, 5, 0, "ok", "read", 1)]
    assert check_linearizable(h, "cas-register").valid is True
    # two successful cas from the same value: invalid
    h = [Op(0, 0, 0, "invoke", "write", 1), Op(1, 1, 0, "ok", "write", 1),
         Op(2, 2, 1, "invoke", "cas", [1, 2]), Op(3, 3, 1, "ok", "cas", [1, 2]),
         Op(4, 4, 0, "invoke", "cas", [1, 3]), Op(5, 5, 0, "ok", "cas", [1, 3])]
    r = check_linearizable(h, "cas-register")
    assert r.valid is False and r.stats["method"] == METHOD_POLY


# --- the reduction against the unreduced search ------------------------------------------------

def _reduction_agrees(ops: list[Op], model_name: str) -> int:
    m = get_model(model_name)
    removed_total = 0
    for part in partition_history(ops, m).values():
        small, removed = reduce_unobserved(m, part)
        removed_total += removed
        a, b = search(m, small), search(m, part)
        assert a.valid is b.valid
        if not a.valid:
            assert small.invoke_index[a.failure.call] == part.invoke_index[b.failure.call]
            assert set(a.failure.states) <= set(b.failure.states)
    return removed_total


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), seed=st.integers(0, 2**32 - 1),
       n_ops=st.integers(1, 14), n_procs=st.integers(1, 5),
       kind=st.sampled_from(["unique-real", "unique-mutated", "unique-arbitrary", "simulated",
                             "random"]))
def test_the_reduction_keeps_the_verdict_and_the_failing_call(model, seed, n_ops, n_procs, kind):
    if kind.startswith("unique"):
        ops = unique_history(model, seed, n_ops, n_procs, 0.2, kind.split("-")[1])
    elif kind == "simulated":
        ops = simulate(model, seed, n_ops, n_procs, 0.2)
    else:
        ops = random_history(model, seed, min(n_ops, 8), n_procs)
    _reduction_agrees(ops, model)


def test_the_reduction_removes_something_on_crash_heavy_histories():
    removed = sum(_reduction_agrees(unique_history(m, s, 12, 4, 0.3, "real"), m)
                  for s in range(60) for m in MODELS)
    assert removed > 20


# --- the search against the brute-force oracle on small unique-value histories ----------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), seed=st.integers(0, 2**32 - 1),
       n_ops=st.integers(1, 6), n_procs=st.integers(1, 4),
       mode=st.sampled_from(["real", "mutated", "arbitrary"]))
def test_the_search_and_the_polynomial_agree_with_the_oracle(model, seed, n_ops, n_procs, mode):
    ops = unique_history(model, seed, n_ops, n_procs, 0.15, mode)
    want = oracle(ops, model)
    assert check_linearizable(ops, model, method="search").valid is want
    assert check_linearizable(ops, model).valid is want


# --- the memo table bound ----------------------------------------------------------------------

def test_a_full_memo_table_gives_unknown_with_the_reason():
    from test_linearizability import _hard_history
    ops = _hard_history(7)
    r = check_linearizable(ops, "kv", memo_max=500)
    assert r.valid == "unknown"
    assert "memo table is full (500 configurations" in r.error and "memo_max" in r.error
    assert r.stats["memo_full_keys"] == [None] and r.stats["unknown_keys"] == 1
    # the same history with room enough is decided (invalid)
    r = check_linearizable(ops, "kv", memo_max=10_000_000)
    assert r.valid is False


def test_check_command_memo_max(tmp_path):
    import subprocess
    import sys

    from splitbrain.history.jsonl import write_jsonl
    from test_linearizability import _hard_history
    path = tmp_path / "h.jsonl"
    write_jsonl(str(path), _hard_history(7))
    cmd = [sys.executable, "-m", "splitbrain", "check", str(path), "--model", "kv"]
    p = subprocess.run(cmd + ["--memo-max", "500"], capture_output=True, text=True)
    assert p.returncode == 3, p.stderr
    assert "memo table is full" in p.stdout
    p = subprocess.run(cmd + ["--memo-max", "0"], capture_output=True, text=True)
    assert p.returncode == 2 and "--memo-max must be at least 1" in p.stderr


def test_keys_checked_by_the_polynomial_method_on_several_workers(monkeypatch):
    from splitbrain.checkers.linearizability import checker as checker_mod
    monkeypatch.setattr(checker_mod, "PARALLEL_CALLS_MIN", 0)
    ops: list[Op] = []

    def call(p, f, value, result, key):
        ops.append(Op(len(ops), len(ops), p, "invoke", f, value, key))
        ops.append(Op(len(ops), len(ops), p, "ok", f, result, key))

    for k in range(6):
        call(0, "write", f"v{k}", f"v{k}", k)
        call(1, "read", None, f"v{k}" if k != 4 else "v3", k)  # key 4 reads another key's value
    one = check_linearizable(ops, "kv", workers=1)
    many = check_linearizable(ops, "kv", workers=2)
    for r in (one, many):
        assert r.valid is False and r.stats["method"] == METHOD_POLY
        assert [a.details["key"] for a in r.anomalies] == [4]
    assert one.anomalies[0].message == many.anomalies[0].message


def test_the_harness_option_checker_workers(tmp_path):
    import subprocess
    import sys

    from splitbrain.harness.runner import with_checker_workers
    t = with_checker_workers({"harness_opts": {"checker_workers": "1"},
                              "checker_options": {"linearizable": {"time_limit": 60.0}}})
    assert t["checker_options"]["linearizable"] == {"time_limit": 60.0, "workers": 1}
    assert with_checker_workers({"x": 1}) == {"x": 1}
    with pytest.raises(ValueError, match="need at least 1"):
        with_checker_workers({"harness_opts": {"checker_workers": 0}})
    cmd = [sys.executable, "-m", "splitbrain", "test", "--system", "raft", "--backend", "sim",
           "--workload", "register", "--time-limit", "1", "--seed", "3", "--store",
           str(tmp_path / "store"), "--json"]
    p = subprocess.run(cmd + ["--opt", "harness.checker_workers=0"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "checker_workers=0" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(cmd + ["--opt", "harness.checker_workers=1"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
