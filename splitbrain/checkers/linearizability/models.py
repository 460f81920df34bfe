"""Sequential specifications ("models") for the linearizability checker.

A model describes ONE object (one register, one queue, ...). The checker partitions a history by
its `key` field (P-compositionality) and checks every key against a fresh copy of the model, so a
multi-key workload (kv, per-key arith) needs no special model.

Writing your own model
----------------------
A model is a name, a hashable initial state and a step function::

    from splitbrain.checkers.linearizability import Model, UNKNOWN, check_linearizable

    def counter_step(state, call):
        # call.f: the operation; call.value: its argument (from the invoke);
        # call.result: what the completion returned, or UNKNOWN for a crashed (info) op.
        if call.f == "incr":
            return True, state + call.value
        if call.f == "read":
            return call.result == state, state
        raise ValueError(f"counter: unknown operation {call.f!r}")

    counter = Model("counter", init=0, step=counter_step, read_only={"read"})
    result = check_linearizable(history, counter)

The contract of `step(state, call) -> (legal, next_state)`:
- it is pure: the same (state, call) always gives the same answer (the checker caches it);
- states are hashable and compare by value (ints, strings, tuples, frozensets);
- values are "frozen" before the model sees them, once, while the history is prepared
  (`canon` of splitbrain/history/values.py): JSON lists become tuples, objects become
  `FrozenDict` (a hashable, read-only dict), `true`/`false` become JSON_TRUE/JSON_FALSE (never
  equal to 1/0) and NaN becomes JSON_NAN (equal to itself), so that `==` on values and states
  is JSON identity; ints, strings, null and other floats are unchanged;
- `legal` False means the call cannot take effect in `state` with that result;
- for a crashed call (`call.result is UNKNOWN`) return the state after it takes effect, or
  `legal` False when it cannot take effect there (a crashed call is optional anyway, so "cannot"
  and "did not" are the same thing for the search);
- `read_only` names the operations that never change the state: a crashed one constrains nothing
  and is dropped before the search;
- `ignore` names operations the model does not describe at all (they are skipped);
- `fail_observation(f, value, error)` may turn a `fail` into an observation that must be
  linearized (the cas-register's failed precondition); by default a `fail` did not happen.

An optional pruning hint (it only makes the search faster; leaving it out is always correct):
- `monotone` names operations that can only make the state "grow" (string append, set add,
  log append);
- `grow_checked` names read-only operations that `may_grow_into` can judge;
- `may_grow_into(state, call) -> bool` (for a call whose f is in `grow_checked`) must return
  False ONLY when no sequence of `monotone` operations from `state` reaches a state in which
  `call` is legal ("'ab' can never grow into a read of 'xb'"). True is always safe.
The search then drops a configuration whose state cannot grow into the result of a read that must
still be linearized when no other state-changing operation can come in between (every such
operation already open is linearized, and none is invoked before the read completes).

Subclassing `Model` and overriding `step` (and `fail_observation`) works as well.

The built-in models (MODELS, by name)
-------------------------------------
- register: read -> v (None when never written), write v.
- cas-register: register plus cas [from, to]; a cas that failed with error
  "precondition-failed" is an observation that the register did not hold `from`, and one that failed
  with "key-does-not-exist" an observation that it held nothing.
- kv: the cas-register per key, plus `append s` (string concatenation; an absent key counts as "").
  Decision for Porcupine's kv logs, whose `get` of an absent key returns "": a read returning ""
  is also accepted when the key is absent (None). Nothing else conflates "" and absent.
- arith: one integer starting at 0; add n, mul n (order matters), read -> int.
- set: add v, read -> the list of elements (order ignored).
- fifo-queue: enqueue v, dequeue -> v (None when empty).
- mutex: acquire, release (an acquire of a held lock, or a release of a free one, is illegal).
- append-log: append v -> v or {"value": v, "offset": i} (i = position, 0-based), read -> the
  whole log oldest first; `status` is ignored (the convergence checker judges it).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Hashable, Iterable, NamedTuple

from ...history.values import JSON_NAN, FrozenDict, JsonAtom, canon


class _Unknown:
    """The result of a crashed (info) operation: it may have taken effect, result unseen."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self):
        return (_Unknown, ())


UNKNOWN = _Unknown()


def freeze(value: Any) -> Hashable:
    """JSON value -> its canonical hashable form (splitbrain/history/values.py `canon`): lists
    become tuples, objects FrozenDicts, true/false/NaN the singletons JSON_TRUE/JSON_FALSE/
    JSON_NAN, so that the models' `==` is JSON identity (true is not 1, NaN is NaN)."""
    return canon(value)


class Call(NamedTuple):
    """One operation as the model sees it: f, argument (invoke value), result (or UNKNOWN)."""

    f: str
    value: Any
    result: Any


class Model:
    """A sequential specification of one object; see the module docstring for the contract.

    Either pass `step` (and optionally `fail_observation`) to the constructor, or subclass and
    override the methods. `describe(state)` renders a state for counterexamples.
    """

    name: str = "model"
    init: Hashable = None
    read_only: frozenset = frozenset()
    ignore: frozenset = frozenset()
    monotone: frozenset = frozenset()      # the pruning hint: see the module docstring
    grow_checked: frozenset = frozenset()
    # The history's operations (`f`) the model describes, when it declares them (the built-in
    # models do): preparing a history then refuses any other f up front, even in a call that
    # failed or crashed and so might never be stepped. None: not declared (checked when stepped).
    operations: frozenset | None = None

    def __init__(self, name: str | None = None, init: Hashable = None,
                 step: Callable[[Any, Call], tuple[bool, Any]] | None = None, *,
                 read_only: Iterable[str] = (), ignore: Iterable[str] = (),
                 fail_observation: Callable[[str, Any, str | None], tuple[str, Any] | None]
                 | None = None):
        if name is not None:
            self.name = name
        if init is not None or not hasattr(type(self), "init"):
            self.init = init
        if step is not None:
            self.step = step  # type: ignore[method-assign]
        if fail_observation is not None:
            self.fail_observation = fail_observation  # type: ignore[method-assign]
        if read_only:
            self.read_only = frozenset(read_only)
        if ignore:
            self.ignore = frozenset(ignore)
        try:
            hash(self.init)
        except TypeError:
            raise ValueError(f"model {self.name!r}: the initial state must be hashable, "
                             f"got {type(self.init).__name__}") from None

    def step(self, state: Any, call: Call) -> tuple[bool, Any]:
        raise NotImplementedError(f"model {self.name!r} has no step function")

    def fail_observation(self, f: str, value: Any, error: str | None) -> tuple[str, Any] | None:
        """Turn a `fail` into (f, value) of an observation that must linearize, or None."""
        return None

    def may_grow_into(self, state: Any, call: Call) -> bool:
        """False only if no run of `monotone` operations from `state` makes `call` legal."""
        return True

    def describe(self, state: Any) -> str:
        return _show(state)

    def __repr__(self) -> str:
        return f"<Model {self.name}>"


_LOOKS_LITERAL = re.compile(r"^(true|false|nil|null|NaN|[-+]?(\d|\.\d|Infinity|inf))", re.I)


def _show(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, frozenset):
        return "#{" + " ".join(sorted(_show(x) for x in v)) + "}"
    if isinstance(v, tuple):
        return "[" + " ".join(_show(x) for x in v) + "]"
    if isinstance(v, str):
        # bare when unambiguous; quoted when empty, spaced, or looking like another value
        return repr(v) if v == "" or " " in v or _LOOKS_LITERAL.match(v) else v
    if isinstance(v, bool):
        return "held" if v else "free"
    return repr(v)


def _unknown_f(model: str, call: Call):
    raise ValueError(f"model {model!r} has no operation {call.f!r}")


class RegisterModel(Model):
    name = "register"
    operations = frozenset({"read", "write"})
    init = None
    read_only = frozenset({"read"})

    def step(self, state, call):
        f = call.f
        if f == "read":
            return call.result == state, state
        if f == "write":
            return True, call.value
        _unknown_f(self.name, call)


class CasRegisterModel(Model):
    name = "cas-register"
    operations = frozenset({"read", "write", "cas"})
    init = None
    read_only = frozenset({"read", "cas-failed", "absent"})

    def step(self, state, call):
        f = call.f
        if f == "read":
            return call.result == state, state
        if f == "write":
            return True, call.value
        if f == "cas":
            frm, to = _cas_args(self.name, call.value)
            return state == frm, to
        if f == "cas-failed":  # observation: a cas was evaluated and its `from` differed
            return state != call.value, state
        if f == "absent":      # observation: the register held nothing
            return state is None, state
        _unknown_f(self.name, call)

    def fail_observation(self, f, value, error):
        if f != "cas":
            return None
        if error == "precondition-failed":
            frm, _ = _cas_args(self.name, value)
            return ("cas-failed", frm)
        if error == "key-does-not-exist":
            return ("absent", None)
        return None


def _cas_args(model: str, value) -> tuple:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f"model {model!r}: cas takes [from, to], got {value!r}")
    return value


class KvModel(CasRegisterModel):
    """One key of a key-value store: the cas-register plus string append."""

    name = "kv"
    operations = frozenset({"read", "write", "cas", "append"})
    monotone = frozenset({"append"})
    grow_checked = frozenset({"read"})

    def may_grow_into(self, state, call):
        # Appends only extend a string (or a tuple); from None anything is possible.
        r = call.result
        if isinstance(state, str) and isinstance(r, str):
            return r.startswith(state)
        if isinstance(state, tuple) and isinstance(r, tuple):
            return r[:len(state)] == state
        return True

    def step(self, state, call):
        f = call.f
        if f == "read":
            r = call.result
            return r == state or (state is None and r == ""), state
        if f == "append":
            if state is None:
                return True, call.value
            if isinstance(state, str) and isinstance(call.value, str):
                return True, state + call.value
            if isinstance(state, tuple):
                return True, state + (call.value,)
            return False, state  # appending to a non-string value cannot succeed
        return CasRegisterModel.step(self, state, call)


def _number(model: str, call: Call) -> Any:
    """The numeric argument of an arith call (NaN as a float); ValueError for anything else."""
    v = call.value
    if v is JSON_NAN:
        return JSON_NAN.value
    if type(v) is JsonAtom or not isinstance(v, (int, float)):
        raise ValueError(f"model {model!r}: {call.f} takes a number, got {_show(v)}")
    return v


class ArithModel(Model):
    name = "arith"
    operations = frozenset({"read", "add", "mul"})
    init = 0
    read_only = frozenset({"read"})

    def step(self, state, call):
        f = call.f
        s = JSON_NAN.value if state is JSON_NAN else state
        if f == "read":
            return call.result == state, state
        if f == "add":
            return True, canon(s + _number(self.name, call))
        if f == "mul":
            return True, canon(s * _number(self.name, call))
        _unknown_f(self.name, call)


class SetModel(Model):
    name = "set"
    operations = frozenset({"add", "read"})
    init = frozenset()
    read_only = frozenset({"read"})
    monotone = frozenset({"add"})
    grow_checked = frozenset({"read"})

    def may_grow_into(self, state, call):
        r = call.result
        if r is None:
            return False  # a read -> null is never legal
        return state.issubset(r)

    def step(self, state, call):
        f = call.f
        if f == "add":
            return True, state | {call.value}
        if f == "read":
            r = call.result
            return (r is not None and len(r) == len(state) and frozenset(r) == state), state
        _unknown_f(self.name, call)


class FifoQueueModel(Model):
    name = "fifo-queue"
    operations = frozenset({"enqueue", "dequeue"})
    init = ()

    def step(self, state, call):
        f = call.f
        if f == "enqueue":
            return True, state + (call.value,)
        if f == "dequeue":
            r = call.result
            if r is UNKNOWN:
                return bool(state), state[1:]
            if not state:
                return r is None, state
            return r == state[0], state[1:]
        _unknown_f(self.name, call)


class MutexModel(Model):
    name = "mutex"
    operations = frozenset({"acquire", "release"})
    init = False

    def step(self, state, call):
        f = call.f
        if f == "acquire":
            return not state, True
        if f == "release":
            return state, False
        _unknown_f(self.name, call)


class AppendLogModel(Model):
    name = "append-log"
    operations = frozenset({"append", "read"})
    init = ()
    read_only = frozenset({"read"})
    ignore = frozenset({"status"})
    monotone = frozenset({"append"})
    grow_checked = frozenset({"read"})

    def may_grow_into(self, state, call):
        r = call.result
        if not isinstance(r, tuple):
            return False  # only a list can equal the log
        return r[:len(state)] == state

    def step(self, state, call):
        f = call.f
        if f == "append":
            v = call.value
            if isinstance(v, FrozenDict):  # the invoke may carry {"value": v} as well
                v = v.get("value")
            r = call.result
            if isinstance(r, FrozenDict) and "offset" in r:
                return r["offset"] == len(state), state + (v,)
            return True, state + (v,)
        if f == "read":
            return call.result == state, state
        _unknown_f(self.name, call)


MODELS: dict[str, type[Model]] = {
    "register": RegisterModel,
    "cas-register": CasRegisterModel,
    "kv": KvModel,
    "arith": ArithModel,
    "set": SetModel,
    "fifo-queue": FifoQueueModel,
    "mutex": MutexModel,
    "append-log": AppendLogModel,
}


def get_model(model: "str | Model") -> Model:
    """A Model instance from a name or a Model; ValueError naming the choices otherwise."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str) and model in MODELS:
        return MODELS[model]()
    raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
