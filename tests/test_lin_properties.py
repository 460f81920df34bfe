"""Property tests of the linearizability checker (Hypothesis).

1. Histories made by running the real sequential object under a random concurrent schedule (each
   op takes effect at a random moment between its invoke and completion; random crashes become
   `info` or a missing completion, taking effect or not) are always linearizable.
2. Small random histories, and valid ones with one result mutated, get the verdict of a brute-force
   oracle that tries every subset of the crashed ops in every order the real-time order allows.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.linearizability import (UNKNOWN, Call, check_linearizable, freeze,
                                                 get_model)
from splitbrain.history import Op

MODEL_NAMES = ["register", "cas-register", "kv", "arith", "set", "fifo-queue", "mutex",
               "append-log"]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --- the real objects ---------------------------------------------------------------------------

def random_call(model: str, rng: random.Random, uid: int):
    """(f, value, key) of a random operation for `model`."""
    key = rng.choice(["a", "b"]) if model == "kv" else None
    small = rng.randrange(3)
    choices = {
        "register": [("read", None), ("write", small)],
        "cas-register": [("read", None), ("write", small), ("cas", [small, rng.randrange(3)])],
        "kv": [("read", None), ("write", f"w{small}"), ("cas", [f"w{small}", f"w{uid}"]),
               ("append", f"<{uid}>")],
        "arith": [("read", None), ("add", rng.randrange(1, 4)), ("mul", rng.randrange(0, 3))],
        "set": [("read", None), ("add", uid)],
        "fifo-queue": [("enqueue", uid), ("dequeue", None)],
        "mutex": [("acquire", None), ("release", None)],
        "append-log": [("read", None), ("append", uid)],
    }[model]
    f, value = rng.choice(choices)
    return f, value, key


def execute(model: str, state, f: str, value):
    """Run one op on the real object: (type, result, error, new state)."""
    if f == "read":
        if model == "set":
            return "ok", sorted(state), None, state
        if model == "append-log":
            return "ok", list(state), None, state
        if model == "kv" and state is None:
            return "ok", None, None, state
        return "ok", state, None, state
    if f == "write":
        return "ok", value, None, value
    if f == "cas":
        if state is None and model == "kv":
            return "fail", value, "key-does-not-exist", state
        if state != value[0]:
            return "fail", value, "precondition-failed", state
        return "ok", value, None, value[1]
    if f == "append":
        if model == "kv":
            return "ok", value, None, (state or "") + value
        return "ok", {"value": value, "offset": len(state)}, None, state + (value,)
    if f == "add":
        if model == "set":
            return "ok", value, None, state | {value}
        return "ok", value, None, state + value
    if f == "mul":
        return "ok", value, None, state * value
    if f == "enqueue":
        return "ok", value, None, state + (value,)
    if f == "dequeue":
        return ("ok", state[0], None, state[1:]) if state else ("ok", None, None, state)
    if f == "acquire":
        return ("fail", None, "locked", state) if state else ("ok", None, None, True)
    if f == "release":
        return ("ok", None, None, False) if state else ("fail", None, "not-held", state)
    raise AssertionError(f)


def initial(model: str):
    return {"register": None, "cas-register": None, "kv": None, "arith": 0, "set": frozenset(),
            "fifo-queue": (), "mutex": False, "append-log": ()}[model]


def simulate(model: str, seed: int, n_ops: int, n_procs: int, crash_p: float) -> list[Op]:
    """A history of the real object under a random schedule (always linearizable)."""
    rng = random.Random(seed)
    states: dict = {}
    ops: list[Op] = []
    procs = list(range(n_procs))
    next_proc = n_procs
    pending: dict = {}   # process -> [f, value, key, applied outcome or None]
    started = 0

    def emit(p, typ, f, value, key, error=None):
        ops.append(Op(index=len(ops), time=len(ops) * 10, process=p, type=typ, f=f, value=value,
                      key=key, error=error))

    while started < n_ops or pending:
        moves = []
        if started < n_ops and any(p not in pending for p in procs):
            moves.append("invoke")
        if any(v[3] is None for v in pending.values()):
            moves.append("apply")
        if any(v[3] is not None for v in pending.values()):
            moves.append("complete")
        if pending and rng.random() < crash_p:
            moves = ["crash"]
        if not moves:
            break
        move = rng.choice(moves)
        if move == "invoke":
            p = rng.choice([p for p in procs if p not in pending])
            f, value, key = random_call(model, rng, started)
            started += 1
            pending[p] = [f, value, key, None]
            emit(p, "invoke", f, value, key)
        elif move == "apply":
            p = rng.choice([p for p, v in pending.items() if v[3] is None])
            f, value, key, _ = pending[p]
            state = states.get(key, initial(model))
            typ, result, error, new = execute(model, state, f, value)
            states[key] = new
            pending[p][3] = (typ, result, error)
        elif move == "complete":
            p = rng.choice([p for p, v in pending.items() if v[3] is not None])
            f, value, key, (typ, result, error) = pending.pop(p)
            emit(p, typ, f, result, key, error)
        else:  # crash: took effect or not; an info completion, or none at all
            p = rng.choice(list(pending))
            f, value, key, outcome = pending.pop(p)
            if outcome is None and rng.random() < 0.5:
                state = states.get(key, initial(model))
                states[key] = execute(model, state, f, value)[3]
            if rng.random() < 0.7:
                emit(p, "info", f, value, key, "timeout")
            procs.remove(p)
            procs.append(next_proc)
            next_proc += 1
            started = started  # the worker goes on under a fresh process id
    return ops


@SETTINGS
@given(model=st.sampled_from(MODEL_NAMES), seed=st.integers(0, 2**32 - 1),
       n_ops=st.integers(1, 30), n_procs=st.integers(1, 5), crash_p=st.sampled_from([0, .05, .2]))
def test_histories_of_the_real_object_are_linearizable(model, seed, n_ops, n_procs, crash_p):
    ops = simulate(model, seed, n_ops, n_procs, crash_p)
    r = check_linearizable(ops, model)
    assert r.valid is True, "\n".join(a.message for a in r.anomalies)


# --- the brute-force oracle ---------------------------------------------------------------------

def oracle(ops: list[Op], model_name: str) -> bool:
    """Linearizable? By trying every subset of crashed ops in every real-time-respecting order,
    per key. Independent of the checker's preparation and search (it shares only the model)."""
    model = get_model(model_name)
    by_key: dict = {}
    pending: dict = {}
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = op
            continue
        inv = pending.pop(op.process)
        by_key.setdefault(freeze(inv.key), []).append((inv, op))
    for inv in pending.values():
        by_key.setdefault(freeze(inv.key), []).append((inv, None))

    for pairs in by_key.values():
        required, optional = [], []
        for inv, comp in pairs:
            value = freeze(inv.value)
            if comp is not None and comp.type == "ok":
                required.append((Call(inv.f, value, freeze(comp.value)), inv.index, comp.index))
            elif comp is not None and comp.type == "fail":
                obs = model.fail_observation(inv.f, value, comp.error)
                if obs is not None:
                    required.append((Call(obs[0], obs[1], None), inv.index, comp.index))
            elif inv.f not in model.read_only:  # a crashed read could return anything
                optional.append((Call(inv.f, value, UNKNOWN), inv.index, None))
        if not _some_order(model, required, optional):
            return False
    return True


def _some_order(model, required, optional) -> bool:
    n_opt = len(optional)
    for mask in range(1 << n_opt):
        calls = required + [optional[i] for i in range(n_opt) if mask >> i & 1]
        if _dfs(model, calls, model.init, frozenset()):
            return True
    return False


def _dfs(model, calls, state, done) -> bool:
    if len(done) == len(calls):
        return True
    for i, (call, inv, _) in enumerate(calls):
        if i in done:
            continue
        # i may go next only if no other remaining call completed before i was invoked.
        if any(j not in done and j != i and c[2] is not None and c[2] < inv
               for j, c in enumerate(calls)):
            continue
        legal, nxt = model.step(state, call)
        if legal and _dfs(model, calls, nxt, done | {i}):
            return True
    return False


def random_history(model: str, seed: int, n_calls: int, n_procs: int) -> list[Op]:
    """Any small history (well formed, results arbitrary): mostly invalid ones."""
    rng = random.Random(seed)
    ops: list[Op] = []
    pending: dict = {}
    procs = list(range(n_procs))
    fresh = n_procs
    started = 0

    def emit(p, typ, f, value, key, error=None):
        ops.append(Op(index=len(ops), time=len(ops), process=p, type=typ, f=f, value=value,
                      key=key, error=error))

    while started < n_calls or pending:
        idle = [p for p in procs if p not in pending]
        if started < n_calls and idle and (not pending or rng.random() < 0.5):
            p = rng.choice(idle)
            f, value, key = random_call(model, rng, started % 3)
            started += 1
            pending[p] = (f, value, key)
            emit(p, "invoke", f, value, key)
            continue
        p = rng.choice(list(pending))
        f, value, key = pending.pop(p)
        roll = rng.random()
        if roll < 0.15:
            emit(p, "info", f, value, key, "timeout")
            procs.remove(p)
            procs.append(fresh)
            fresh += 1
        elif roll < 0.25 and f == "cas":
            emit(p, "fail", f, value, key, rng.choice(["precondition-failed",
                                                         "key-does-not-exist"]))
        elif roll < 0.3:
            emit(p, "fail", f, value, key, "temporarily-unavailable")
        else:
            emit(p, "ok", f, _random_result(model, f, value, rng), key)
    return ops


def _random_result(model, f, value, rng):
    if f == "read":
        return {"set": sorted(rng.sample(range(3), rng.randrange(3))),
                "append-log": list(rng.sample(range(3), rng.randrange(3))),
                "arith": rng.randrange(6),
                "kv": rng.choice([None, "", "w0", "w1", "<0>", "<1>", "w0<1>"])}.get(
            model, rng.choice([None, 0, 1, 2]))
    if f == "dequeue":
        return rng.choice([None, 0, 1, 2])
    if f == "append" and model == "append-log":
        return {"value": value, "offset": rng.randrange(3)} if rng.random() < .5 else value
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODEL_NAMES), seed=st.integers(0, 2**32 - 1),
       n_calls=st.integers(0, 6), n_procs=st.integers(1, 4))
def test_small_random_histories_agree_with_the_oracle(model, seed, n_calls, n_procs):
    ops = random_history(model, seed, n_calls, n_procs)
    assert check_linearizable(ops, model).valid is oracle(ops, model)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODEL_NAMES), seed=st.integers(0, 2**32 - 1),
       n_ops=st.integers(1, 7), n_procs=st.integers(1, 3), which=st.integers(0, 100))
def test_mutated_valid_histories_agree_with_the_oracle(model, seed, n_ops, n_procs, which):
    ops = simulate(model, seed, n_ops, n_procs, 0.1)
    oks = [o for o in ops if o.type == "ok"]
    if oks:
        victim = oks[which % len(oks)]
        rng = random.Random(seed ^ which)
        mutated = _random_result(model, victim.f, victim.value, rng)
        ops[victim.index] = Op(victim.index, victim.time, victim.process, "ok", victim.f,
                               mutated, victim.key)
    assert check_linearizable(ops, model).valid is oracle(ops, model)


# --- the growth guards (the models' pruning hint) change nothing but the time taken -------------

GROWING_MODELS = ["kv", "set", "append-log"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(GROWING_MODELS), seed=st.integers(0, 2**32 - 1),
       n_ops=st.integers(1, 24), n_procs=st.integers(1, 5), which=st.integers(0, 100),
       mutate=st.booleans())
def test_growth_guards_keep_the_verdict_and_the_exact_failure(model, seed, n_ops, n_procs, which,
                                                              mutate):
    """With and without the guards: the same verdict, failing call, step and possible states."""
    from splitbrain.checkers.linearizability.prepare import partition_history
    from splitbrain.checkers.linearizability.search import search

    ops = simulate(model, seed, n_ops, n_procs, 0.05)
    oks = [o for o in ops if o.type == "ok"]
    if mutate and oks:
        victim = oks[which % len(oks)]
        rng = random.Random(seed ^ which)
        ops[victim.index] = Op(victim.index, victim.time, victim.process, "ok", victim.f,
                               _random_result(model, victim.f, victim.value, rng), victim.key)
    m = get_model(model)
    for part in partition_history(ops, m).values():
        fast = search(m, part, prune=True)
        slow = search(m, part, prune=False)
        assert fast.valid is slow.valid
        if not fast.valid:
            assert (fast.failure.call, fast.failure.event) == (slow.failure.call,
                                                               slow.failure.event)
            assert set(fast.failure.states) == set(slow.failure.states)


# --- JSON value identity: 6,000 small register histories with mixed JSON types ---------------
#
# The oracle here shares nothing with the checker but the contract of splitbrain/history/values.py
# (`json_equal`): its states are the raw JSON values, compared with json_equal, never with the
# models' canonical forms. Values mix the ones Python confuses: true/1, false/0, 1/1.0, NaN,
# "1", null, [1]/[true], {"a": 1}/{"a": true}.

MIXED_VALUES = [True, False, 1, 0, 1.0, 0.0, -0.0, 2, "1", "true", "", None, float("nan"),
                float("inf"), [1], [True], [1.0], {"a": 1}, {"a": True}, [], {}]
DIFFERENTIAL_HISTORIES = 6000


def _mixed_history(seed: int, model: str) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    written: list = []
    pending: dict = {}
    procs = list(range(rng.randint(1, 3)))
    fresh = len(procs)
    n_calls = rng.randint(1, 5)
    started = 0

    def pick():
        # mostly a value written already, or a twin Python would confuse with one
        if written and rng.random() < 0.7:
            return rng.choice(written)
        return rng.choice(MIXED_VALUES)

    def emit(p, typ, f, value, error=None):
        ops.append(Op(index=len(ops), time=len(ops), process=p, type=typ, f=f, value=value,
                      error=error))

    while started < n_calls or pending:
        idle = [p for p in procs if p not in pending]
        if started < n_calls and idle and (not pending or rng.random() < 0.5):
            p = rng.choice(idle)
            roll = rng.random()
            if roll < 0.4:
                f, v = "read", None
            elif roll < 0.75 or model == "register":
                f, v = "write", rng.choice(MIXED_VALUES)
                written.append(v)
            else:
                f, v = "cas", [pick(), rng.choice(MIXED_VALUES)]
                written.append(v[1])
            started += 1
            pending[p] = (f, v)
            emit(p, "invoke", f, v)
            continue
        p = rng.choice(list(pending))
        f, v = pending.pop(p)
        roll = rng.random()
        if roll < 0.12:
            emit(p, "info", f, v, "timeout")
            procs.remove(p)
            procs.append(fresh)
            fresh += 1
        elif roll < 0.25 and f == "cas":
            emit(p, "fail", f, v, rng.choice(["precondition-failed", "key-does-not-exist"]))
        elif f == "read":
            emit(p, "ok", f, pick())
        else:
            emit(p, "ok", f, v)
    return ops


def _register_oracle(ops: list[Op]) -> bool:
    """Brute force over raw JSON values with json_equal: some subset of the crashed calls and
    some real-time-respecting order of them and the ok calls explains every result."""
    from splitbrain.history.values import json_equal

    pending: dict = {}
    calls = []   # (f, value, result, observation, invoke index, completion index or None)
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = op
            continue
        inv = pending.pop(op.process)
        if op.type == "ok":
            calls.append((inv.f, inv.value, op.value, None, inv.index, op.index))
        elif op.type == "fail" and inv.f == "cas" and op.error in ("precondition-failed",
                                                                    "key-does-not-exist"):
            calls.append(("cas-failed", inv.value, None, op.error, inv.index, op.index))
        elif op.type == "info" and inv.f != "read":
            calls.append((inv.f, inv.value, None, "crashed", inv.index, None))
    for inv in pending.values():
        if inv.f != "read":
            calls.append((inv.f, inv.value, None, "crashed", inv.index, None))
    required = [c for c in calls if c[3] != "crashed"]
    optional = [c for c in calls if c[3] == "crashed"]

    def step(state, c):
        f, v, r, obs = c[0], c[1], c[2], c[3]
        if f == "read":
            return json_equal(r, state), state
        if f == "write":
            return True, v
        if f == "cas":
            return json_equal(state, v[0]), v[1]
        if obs == "precondition-failed":       # a failed cas: the value was not `from`
            return not json_equal(state, v[0]), state
        return state is None, state            # key-does-not-exist: nothing there

    def dfs(chosen, state, done) -> bool:
        if len(done) == len(chosen):
            return True
        for i, c in enumerate(chosen):
            if i in done or any(j not in done and j != i and d[5] is not None and d[5] < c[4]
                                for j, d in enumerate(chosen)):
                continue
            legal, nxt = step(state, c)
            if legal and dfs(chosen, nxt, done | {i}):
                return True
        return False

    for mask in range(1 << len(optional)):
        chosen = required + [optional[i] for i in range(len(optional)) if mask >> i & 1]
        if dfs(chosen, None, frozenset()):
            return True
    return False


def test_mixed_json_register_histories_agree_with_a_json_oracle():
    verdicts = {True: 0, False: 0}
    for seed in range(DIFFERENTIAL_HISTORIES):
        model = "register" if seed % 2 else "cas-register"
        ops = _mixed_history(seed, model)
        expected = _register_oracle(ops)
        got = check_linearizable(ops, model).valid
        assert got is expected, (seed, model, [o.to_dict() for o in ops])
        verdicts[expected] += 1
    # both verdicts are well represented (the generator is not degenerate)
    assert min(verdicts.values()) > DIFFERENTIAL_HISTORIES // 10, verdicts
