"""An independent audit of the linearizability checker's verdicts (register, cas-register, kv).

Written without reading the checker's models: `oracle` below is a brute force straight from the
definitions (Herlihy & Wing, with Jepsen's completion semantics), and `histories` is a Hypothesis
generator that draws histories the way outsiders' logs look, not the way splitbrain's own
workloads produce them. The automatic method (the unique-values polynomial method where it
applies), the plain search and the oracle must agree on every history.

The oracle, per key (keys compare as JSON values: 1 == 1.0, "1" != 1, true != 1):
- ok: the call took effect once, between its invoke and its completion, with that result;
- fail: it did not take effect. Exceptions, as the README defines them for cas-register and kv:
  a cas failed with "precondition-failed" is the observation "the register did not hold
  `from`", one failed with "key-does-not-exist" the observation "the register held null"; both
  are read-only calls that must be placed inside their interval;
- info or no completion at all: a read is dropped; a write or cas took effect at some moment
  after its invoke (no upper bound), or never;
- every subset of the crashed writes/cas is tried, and for each every total order of the chosen
  calls in which x comes before y whenever x completed before y was invoked (history indices),
  replayed through a plain sequential object: register (read -> the state, null at first; write
  v), cas-register (+ cas [from to]: legal iff the state equals `from`, then `to`), kv (the
  cas-register, and a read returning "" is also legal when the key was never written / holds
  null: Porcupine's get of an absent key).
Values compare as JSON values (true is not 1, 1 == 1.0, lists element-wise).

The CI tier runs a few hundred histories; `pytest -m slow` many thousands. A third test writes
histories as JSONL and as Jepsen/Knossos EDN (plain and with `[k v]` tuples) and runs the real
`splitbrain check` command on them.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.linearizability import check_linearizable
from splitbrain.history import Op, write_jsonl

MODELS = ("register", "cas-register", "kv")
POLY = "unique-values polynomial"
# histories per tier (auto, search and the oracle on each)
CI_EXAMPLES = 1500
SLOW_EXAMPLES = 20_000
SLOW_ONE_KEY = 5_000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- JSON equality, written from the JSON data model ----------------------------------------


def jeq(a: Any, b: Any) -> bool:
    """Are a and b the same JSON value? (true is not 1; 1 == 1.0; lists element-wise.)"""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return False
        if a != a and b != b:
            return True          # NaN written is NaN read
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                and len(a) == len(b) and all(jeq(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(jeq(a[k], b[k]) for k in a)
    return a == b


def same_key_class(keys: list) -> list[list]:
    """Keys grouped by JSON equality (no hashing tricks: pairwise)."""
    groups: list[list] = []
    for k in keys:
        for g in groups:
            if jeq(g[0], k):
                g.append(k)
                break
        else:
            groups.append([k])
    return groups


# --- the oracle ------------------------------------------------------------------------------

INF = float("inf")


class Call:
    __slots__ = ("f", "arg", "result", "inv", "comp", "required", "kind")

    def __init__(self, f, arg, result, inv, comp, required, kind):
        self.f, self.arg, self.result = f, arg, result
        self.inv, self.comp, self.required, self.kind = inv, comp, required, kind


def calls_of(ops: list[Op]) -> list[tuple[Any, Call]]:
    """(key, Call) for every call that matters, paired by process."""
    open_: dict = {}
    pairs = []
    for op in ops:
        if op.process == "nemesis":
            continue
        if op.type == "invoke":
            assert op.process not in open_
            open_[op.process] = op
        else:
            pairs.append((open_.pop(op.process), op))
    pairs += [(inv, None) for inv in open_.values()]
    out = []
    for inv, comp in pairs:
        f = inv.f
        if comp is not None and comp.type == "ok":
            out.append((inv.key, Call(f, inv.value, comp.value, inv.index, comp.index, True,
                                      "ok")))
        elif comp is not None and comp.type == "fail":
            if f == "cas" and comp.error == "precondition-failed":
                out.append((inv.key, Call("not-from", inv.value, None, inv.index, comp.index,
                                          True, "obs")))
            elif f == "cas" and comp.error == "key-does-not-exist":
                out.append((inv.key, Call("is-null", inv.value, None, inv.index, comp.index,
                                          True, "obs")))
            # any other failure: it did not happen
        elif f != "read":
            out.append((inv.key, Call(f, inv.value, None, inv.index, INF, False, "crashed")))
    return out


def apply(model: str, state: Any, c: Call) -> tuple[bool, Any]:
    """One step of the sequential object: (legal, next state)."""
    if c.f == "read":
        if model == "kv" and state is None and jeq(c.result, ""):
            return True, state
        return jeq(c.result, state), state
    if c.f == "write":
        return True, c.arg
    if model == "register":
        raise ValueError(f"register has no {c.f}")
    frm, to = c.arg
    if c.f == "cas":
        return jeq(state, frm), to
    if c.f == "not-from":
        return not jeq(state, frm), state
    if c.f == "is-null":
        return state is None, state
    raise ValueError(c.f)


def linearizable_key(model: str, calls: list[Call]) -> bool:
    """Every subset of the crashed calls, every real-time-respecting order of the chosen ones."""
    required = [c for c in calls if c.required]
    optional = [c for c in calls if not c.required]
    for r in range(len(optional) + 1):
        for chosen in itertools.combinations(optional, r):
            if _some_order(model, required + list(chosen)):
                return True
    return False


def _some_order(model: str, calls: list[Call]) -> bool:
    n = len(calls)

    def go(left: tuple[int, ...], state: Any) -> bool:
        if not left:
            return True
        for i in left:
            c = calls[i]
            # c may come next iff no call still left completed before c was invoked
            if any(calls[j].comp < c.inv for j in left if j != i):
                continue
            legal, nxt = apply(model, state, c)
            if legal and go(tuple(j for j in left if j != i), nxt):
                return True
        return False

    return go(tuple(range(n)), None)


def linearizable_key_memo(model: str, calls: list[Call]) -> bool:
    """The same question by a memoized depth-first search (Wing & Gong): a configuration is the
    set of calls linearized so far and the state. A call may come next when every ok call that
    completed before its invoke is already linearized; done when every ok call is. For keys
    too long for the brute force (it agrees with it on every small key: see the tests)."""
    n = len(calls)
    must = sum(1 << i for i, c in enumerate(calls) if c.required)
    before = [sum(1 << j for j, d in enumerate(calls) if d.required and d.comp < c.inv)
              for c in calls]
    seen: dict = {}      # mask -> states already explored with it (compared as JSON)

    def visited(mask: int, state: Any) -> bool:
        states = seen.setdefault(mask, [])
        if any(jeq(s, state) for s in states):
            return True
        states.append(state)
        return False

    def go(mask: int, state: Any) -> bool:
        if mask & must == must:
            return True
        if visited(mask, state):
            return False
        for i in range(n):
            if mask >> i & 1 or before[i] & ~mask:
                continue
            legal, nxt = apply(model, state, calls[i])
            if legal and go(mask | 1 << i, nxt):
                return True
        return False

    return go(0, None)


def oracle_memo(ops: list[Op], model: str) -> bool:
    by_key = calls_of(ops)
    for g in same_key_class([k for k, _ in by_key]):
        if not linearizable_key_memo(model, [c for k, c in by_key if jeq(k, g[0])]):
            return False
    return True


def oracle(ops: list[Op], model: str) -> bool:
    by_key = calls_of(ops)
    groups = same_key_class([k for k, _ in by_key])
    for g in groups:
        calls = [c for k, c in by_key if jeq(k, g[0])]
        if not linearizable_key(model, calls):
            return False
    return True


# --- which keys qualify for the polynomial method (from the README's precondition) ----------

def eligible_keys(ops: list[Op], model: str) -> tuple[int, int]:
    """(keys the README says the polynomial method decides, keys with any call)."""
    open_: dict = {}
    pairs = []
    for op in ops:
        if op.process == "nemesis":
            continue
        if op.type == "invoke":
            open_[op.process] = op
        else:
            pairs.append((open_.pop(op.process), op))
    pairs += [(inv, None) for inv in open_.values()]
    keys = same_key_class([inv.key for inv, _ in pairs])
    n_poly = n_keys = 0
    for g in keys:
        mine = [(i, c) for i, c in pairs if jeq(i.key, g[0])]
        written: list = []
        ok = True
        counted = False
        for inv, comp in mine:
            failed = comp is not None and comp.type == "fail"
            crashed = comp is None or comp.type == "info"
            if inv.f == "read":
                counted |= not failed and not crashed
                continue
            if inv.f == "cas" and failed:
                if comp.error == "precondition-failed":
                    ok = False
                counted |= comp.error in ("precondition-failed", "key-does-not-exist")
                continue
            if failed:
                continue
            counted = True
            v = inv.value if inv.f == "write" else inv.value[1]
            if v is None or (model == "kv" and jeq(v, "")) or any(jeq(v, w) for w in written):
                ok = False
            written.append(v)
        if counted:
            n_keys += 1
            n_poly += ok
    return n_poly, n_keys


# --- the generator ---------------------------------------------------------------------------
#
# A history is drawn as a list of call specs; each has three times (invoke < effect <
# complete) drawn independently, a fate (ok / fail / info / never completed) and, for a read or
# cas, whether its result is the truth at its effect time or something else. The events are
# then sorted by time and processes assigned (reused after ok/fail, fresh after info, or
# reused after info too), and nemesis events are sprinkled in.

ODD_VALUES = [None, 0, 1, 1.0, True, False, "1", "", "a", [1], [1, 2], {"x": 1}, -1, 2.0,
              float("nan"), -0.0, 2 ** 64 + 1, float(2 ** 64), "\u00e9", {"x": [1, True]},
              [None], 1e300]


@st.composite
def histories(draw, model: str | None = None, max_calls: int = 8, keys: int | None = None,
              strict_processes: bool = False):
    model = model or draw(st.sampled_from(MODELS))
    n_keys = keys or draw(st.integers(1, 3))
    key_pool = [None] if n_keys == 1 and model != "kv" else ["1", 1, "k", 2, True][:max(2, n_keys)]
    key_list = draw(st.lists(st.sampled_from(key_pool), min_size=n_keys, max_size=n_keys))
    n = draw(st.integers(1, max_calls * len(set(map(repr, key_list)))))
    n = min(n, max_calls * 2)
    # fresh values per key: every key writes 100, 101, ... (unique per key, shared across keys)
    fresh_of: dict = {}
    specs = []
    fs = ["read", "write"] + (["cas"] if model != "register" else [])
    for _ in range(n):
        key = draw(st.sampled_from(key_list))
        fresh = fresh_of.setdefault(json.dumps(key), iter(range(100, 10_000)))
        f = draw(st.sampled_from(fs))
        t0 = draw(st.integers(0, 40))
        t1 = t0 + draw(st.integers(0, 20))
        t2 = t1 + draw(st.integers(0, 20))
        fate = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info", "missing"]))
        odd = draw(st.integers(0, 9)) == 0
        if f == "write":
            arg = draw(st.sampled_from(ODD_VALUES)) if odd else next(fresh)
        elif f == "cas":
            frm = draw(st.sampled_from(["prev", "prev", "odd", "stale"]))
            to = draw(st.sampled_from(ODD_VALUES)) if odd else next(fresh)
            arg = [frm, to]
        else:
            arg = None
        lie = draw(st.integers(0, 5)) == 0
        lie_value = draw(st.sampled_from(ODD_VALUES + ["stale", "future"]))
        specs.append(dict(key=key, f=f, t=(t0, t1, t2), fate=fate, arg=arg, lie=lie,
                          lie_value=lie_value, err=draw(st.sampled_from(
                              [None, "precondition-failed", "key-does-not-exist", "timeout"]))))
    # Effects in time order; a crashed call takes effect or not (drawn).
    state: dict = {}
    history_of: dict = {}
    for s in sorted(specs, key=lambda s: s["t"][1]):
        kk = json.dumps(s["key"])
        cur = state.get(kk)
        seen = history_of.setdefault(kk, [None])
        takes = s["fate"] == "ok" or (s["fate"] in ("info", "missing") and draw(st.booleans()))
        if s["f"] == "write":
            if s["fate"] == "fail":
                continue
            if takes:
                state[kk] = s["arg"]
                seen.append(s["arg"])
        elif s["f"] == "read":
            s["result"] = cur
            if s["lie"]:
                lv = s["lie_value"]
                s["result"] = (seen[0] if lv == "stale" else 999_999 if lv == "future" else lv)
        else:
            frm = s["arg"][0]
            if frm == "prev":
                frm = cur
            elif frm == "stale":
                frm = seen[-2] if len(seen) > 1 else 5
            else:
                frm = draw(st.sampled_from(ODD_VALUES))
            s["arg"][0] = frm
            if s["fate"] in ("ok", "fail") and not s["lie"]:
                if jeq(frm, cur):
                    s["fate"] = "ok"
                else:
                    s["fate"] = "fail"
                    s["err"] = "key-does-not-exist" if cur is None and model == "kv" and \
                        draw(st.booleans()) else "precondition-failed"
            if (s["fate"] == "ok" or (takes and s["fate"] != "fail")) and jeq(frm, cur):
                state[kk] = s["arg"][1]
                seen.append(s["arg"][1])
    # Events, processes, nemesis.
    events = []
    for i, s in enumerate(specs):
        events.append((s["t"][0], 0, i))
        if s["fate"] != "missing":
            events.append((s["t"][2], 1, i))
    for t in draw(st.lists(st.integers(0, 80), max_size=3)):
        events.append((t, 2, -1))
    # ties at equal times broken at random; a completion at time t sorts after the invokes at t
    tie = draw(st.permutations(range(len(events))))
    events = [e for _, e in sorted(zip(tie, events),
                                   key=lambda te: (te[1][0] + (0.5 if te[1][1] == 1 else 0),
                                                   te[0]))]
    # the API accepts a process reused after info; files are validated and refuse it
    reuse_after_info = not strict_processes and draw(st.booleans())
    free: list = []
    next_p = 0
    proc_of: dict = {}
    ops: list[Op] = []

    def emit(**kw):
        ops.append(Op(index=len(ops), time=len(ops) * 1000, **kw))

    for t, kind, i in events:
        if kind == 2:
            emit(process="nemesis", type="info", f=draw(st.sampled_from(["start", "stop"])),
                 value=None)
            continue
        s = specs[i]
        key = s["key"] if (model == "kv" or n_keys > 1) else None
        if kind == 0:
            p = free.pop(0) if free else next_p
            if p == next_p:
                next_p += 1
            proc_of[i] = p
            emit(process=p, type="invoke", f=s["f"], key=key,
                 value=list(s["arg"]) if s["f"] == "cas" else s["arg"])
            continue
        p = proc_of[i]
        fate = s["fate"]
        if fate == "ok":
            value = s["result"] if s["f"] == "read" else (
                list(s["arg"]) if s["f"] == "cas" else s["arg"])
            emit(process=p, type="ok", f=s["f"], key=key, value=value)
        elif fate == "fail":
            emit(process=p, type="fail", f=s["f"], key=key,
                 value=list(s["arg"]) if s["f"] == "cas" else s["arg"],
                 error=s["err"] if s["f"] == "cas" else "timeout")
        else:
            emit(process=p, type="info", f=s["f"], key=key,
                 value=list(s["arg"]) if s["f"] == "cas" else s["arg"])
        if fate != "info" or reuse_after_info:
            free.append(p)
    return model, ops


# --- the comparison --------------------------------------------------------------------------

def compare(model: str, ops: list[Op]) -> dict:
    want = oracle(ops, model)
    auto = check_linearizable(ops, model, workers=1)
    srch = check_linearizable(ops, model, workers=1, method="search")
    n_poly, n_keys = eligible_keys(ops, model)
    info = {"oracle": want, "auto": auto.valid, "search": srch.valid,
            "method": auto.stats["method"], "by_method": auto.stats["keys_by_method"],
            "poly_keys": n_poly, "keys": n_keys}
    assert auto.valid == want, (info, ops)
    assert srch.valid == want, (info, ops)
    assert auto.stats["keys_by_method"][POLY] == n_poly, (info, ops)
    assert srch.stats["keys_by_method"][POLY] == 0, (info, ops)
    by = [a.details["method"] for a in auto.anomalies]
    assert all(m == "search" for m in by) if not n_poly else True, (info, ops)
    assert all(m == POLY for m in by) if n_poly == n_keys else True, (info, ops)
    assert all(a.details["method"] == "search" for a in srch.anomalies), (info, ops)
    if n_poly == n_keys and n_keys:
        assert auto.stats["method"] == POLY, (info, ops)
    elif n_poly:
        assert auto.stats["method"] == POLY + " + search", (info, ops)
    elif n_keys:
        assert auto.stats["method"] == "search", (info, ops)
    return info


TALLY: dict = {}


def _tally(info: dict) -> None:
    TALLY["histories"] = TALLY.get("histories", 0) + 1
    TALLY["invalid"] = TALLY.get("invalid", 0) + (info["oracle"] is False)
    TALLY["poly_keys"] = TALLY.get("poly_keys", 0) + info["poly_keys"]
    TALLY["keys"] = TALLY.get("keys", 0) + info["keys"]


@settings(max_examples=CI_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(histories())
def test_auto_search_and_oracle_agree_ci_tier(mh):
    model, ops = mh
    _tally(compare(model, ops))


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(histories())
def test_auto_search_and_oracle_agree_slow_tier(mh):
    model, ops = mh
    _tally(compare(model, ops))


@pytest.mark.slow
@settings(max_examples=SLOW_ONE_KEY, deadline=None, suppress_health_check=list(HealthCheck))
@given(histories(keys=1, max_calls=8))
def test_one_key_eight_calls_slow_tier(mh):
    model, ops = mh
    _tally(compare(model, ops))


# --- the real command: JSONL and Jepsen/Knossos EDN ------------------------------------------

def edn(v: Any) -> str:
    """EDN text of a JSON value (our own writer, not splitbrain's)."""
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float) and v != v:
        return "##NaN"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + " ".join(edn(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{edn(k)} {edn(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def to_edn(ops: list[Op], style: str) -> str | None:
    """style "knossos": no :index/:time, keys as Jepsen [k v] tuples when keyed;
    "jepsen": with :index and :time, keys as :key entries. None when the history cannot be
    written in that style without ambiguity (see edn.py, rule 2)."""
    keyed = any(op.key is not None for op in ops)
    lines = []
    if style == "knossos" and keyed:
        if not all(type(op.key) in (int, str) for op in ops if op.process != "nemesis"):
            return None
    if style == "knossos" and not keyed:
        inv = [op for op in ops if op.process != "nemesis" and op.type == "invoke"]
        if inv and all(isinstance(op.value, list) and len(op.value) == 2
                       and type(op.value[0]) in (int, str) for op in inv):
            return None  # would read as an independent history (documented ambiguity)
    for op in ops:
        parts = []
        if style == "jepsen":
            parts += [f":index {op.index}", f":time {op.time}"]
        parts.append(":process " + (":nemesis" if op.process == "nemesis" else edn(op.process)))
        parts += [f":type :{op.type}", f":f :{op.f}"]
        value = op.value
        if style == "knossos" and keyed and op.process != "nemesis":
            value = [op.key, value]
        elif style == "jepsen" and op.key is not None:
            parts.append(":key " + edn(op.key))
        parts.append(":value " + edn(value))
        if op.error is not None:
            parts.append(f":error :{op.error}")
        lines.append("{" + ", ".join(parts) + "}")
    return "\n".join(lines) + "\n"


def run_check(paths: list[str], model: str) -> tuple[int, dict, str]:
    p = subprocess.run([sys.executable, "-m", "splitbrain", "check", "--json", "--model", model,
                        "--workers", "1", *paths], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=600)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = {}
    return p.returncode, doc, p.stderr


def cli_compare(cases: list[tuple[str, list[Op]]], tmp: str) -> int:
    """Every case as JSONL, Knossos EDN and Jepsen EDN through `splitbrain check`; returns the
    number of files checked."""
    files: dict[str, list[tuple[str, bool]]] = {}
    for n, (model, ops) in enumerate(cases):
        want = oracle(ops, model)
        path = os.path.join(tmp, f"h{n}.jsonl")
        write_jsonl(path, ops)
        files.setdefault(model, []).append((path, want))
        for style in ("knossos", "jepsen"):
            text = to_edn(ops, style)
            if text is None:
                continue
            path = os.path.join(tmp, f"h{n}-{style}.edn")
            with open(path, "w") as fh:
                fh.write(text)
            files[model].append((path, want))
    checked = 0
    for model, got in files.items():
        for i in range(0, len(got), 60):
            chunk = got[i:i + 60]
            rc, doc, err = run_check([p for p, _ in chunk], model)
            assert "Traceback" not in err, err
            by_path = {h["path"]: h for h in doc.get("histories", [])}
            for path, want in chunk:
                h = by_path.get(path)
                assert h is not None, (path, rc, err[-2000:])
                assert h["valid"] is want, (path, want, h["valid"], open(path).read())
                checked += 1
            assert rc == (0 if all(w for _, w in chunk) else 1), (rc, err[-2000:])
    return checked


@st.composite
def _batch(draw, size):
    return [draw(histories(max_calls=6, strict_processes=True)) for _ in range(size)]


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(_batch(40))
def test_the_command_agrees_with_the_oracle_ci_tier(tmp_path_factory, cases):
    assert cli_compare(cases, str(tmp_path_factory.mktemp("cli"))) >= len(cases)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(_batch(60))
def test_the_command_agrees_with_the_oracle_slow_tier(tmp_path_factory, cases):
    assert cli_compare(cases, str(tmp_path_factory.mktemp("cli"))) >= len(cases)


# --- hand-picked edge cases (each a semantic decision; oracle, auto and search must agree) ---

I, O, F, N = "invoke", "ok", "fail", "info"


def H(*rows) -> list[Op]:
    """rows: (process, type, f, value[, key[, error]]), indices and times by position."""
    ops = []
    for r in rows:
        p, typ, f, v = r[:4]
        ops.append(Op(index=len(ops), time=len(ops), process=p, type=typ, f=f, value=v,
                      key=r[4] if len(r) > 4 else None, error=r[5] if len(r) > 5 else None))
    return ops


def _w(p, v, key=None, typ=O):
    return [(p, I, "write", v, key), (p, typ, "write", v, key)]


def _r(p, v, key=None):
    return [(p, I, "read", None, key), (p, O, "read", v, key)]


EDGE = [
    # (name, model, history, linearizable?)
    ("a failed write is read", "register", H(*_w(0, 1, typ=F), *_r(1, 1)), False),
    ("a failed write is read while open", "register",
     H((0, I, "write", 1), *_r(1, 1), (0, F, "write", 1)), False),
    ("a read of a value never written", "cas-register", H(*_r(0, 7)), False),
    ("kv: '' read from an absent key", "kv", H(*_r(0, "", "a")), True),
    ("kv: '' read after a write", "kv", H(*_w(0, "x", "a"), *_r(1, "", "a")), False),
    ("kv: null read from an absent key", "kv", H(*_r(0, None, "a")), True),
    ("register: '' is not the initial value", "register", H(*_r(0, "")), False),
    ("cas-register: '' is not the initial value", "cas-register", H(*_r(0, "")), False),
    ("1 read as 1.0", "register", H(*_w(0, 1), *_r(1, 1.0)), True),
    ("1 read as true", "register", H(*_w(0, 1), *_r(1, True)), False),
    ("true read as 1", "register", H(*_w(0, True), *_r(1, 1)), False),
    ("0 read as false", "cas-register", H(*_w(0, 0), *_r(1, False)), False),
    ("1 and 1.0 are one value written twice", "register",
     H(*_w(0, 1), *_w(0, 1.0), *_r(1, 1)), True),
    ("[1] read as [1.0]", "register", H(*_w(0, [1]), *_r(1, [1.0])), True),
    ("[true] read as [1]", "register", H(*_w(0, [True]), *_r(1, [1])), False),
    ("an ok cas from a value never written", "cas-register",
     H((0, I, "cas", [5, 6]), (0, O, "cas", [5, 6])), False),
    ("a crashed cas from a value never written, unobserved", "cas-register",
     H((0, I, "cas", [5, 6]), (0, N, "cas", [5, 6])), True),
    ("a crashed cas from a value never written, its value read", "cas-register",
     H((0, I, "cas", [5, 6]), (0, N, "cas", [5, 6]), *_r(1, 6)), False),
    ("a never-completed cas from null, its value read", "cas-register",
     H((0, I, "cas", [None, 6]), *_r(1, 6)), True),
    ("kv: keys '1' and 1 differ", "kv", H(*_w(0, 5, "1"), *_r(1, 5, 1)), False),
    ("kv: keys 1 and 1.0 are one key", "kv", H(*_w(0, 5, 1), *_r(1, 5, 1.0)), True),
    ("kv: keys 1 and true differ", "kv", H(*_w(0, 5, 1), *_r(1, 5, True)), False),
    ("one value on two keys", "kv",
     H(*_w(0, 5, "a"), *_w(0, 5, "b"), *_r(1, 5, "a"), *_r(1, 5, "b")), True),
    ("a write of null read back", "register", H(*_w(0, 1), *_w(0, None), *_r(1, None)), True),
    ("a crashed write read before it was invoked", "register",
     H(*_r(1, 3), (0, I, "write", 3), (0, N, "write", 3)), False),
    ("cas [5 5] with nothing else", "cas-register",
     H((0, I, "cas", [5, 5]), (0, O, "cas", [5, 5])), False),
    ("write 5, cas [5 5]", "cas-register",
     H(*_w(0, 5), (0, I, "cas", [5, 5]), (0, O, "cas", [5, 5])), True),
    ("key-does-not-exist after a completed write", "cas-register",
     H(*_w(0, 5), (0, I, "cas", [5, 6]), (0, F, "cas", [5, 6], None, "key-does-not-exist")),
     False),
    ("kv: key-does-not-exist on an absent key", "kv",
     H((0, I, "cas", [5, 6], "a"), (0, F, "cas", [5, 6], "a", "key-does-not-exist")), True),
    ("kv: cas from '' on an absent key", "kv",
     H((0, I, "cas", ["", 6], "a"), (0, O, "cas", ["", 6], "a")), False),
    ("kv: cas from null on an absent key", "kv",
     H((0, I, "cas", [None, 6], "a"), (0, O, "cas", [None, 6], "a")), True),
    ("NaN read back", "register", H(*_w(0, float("nan")), *_r(1, float("nan"))), True),
    ("0 read as -0.0", "register", H(*_w(0, 0), *_r(1, -0.0)), True),
    ("2**53 + 1 read as the float 2**53", "register",
     H(*_w(0, 2 ** 53 + 1), *_r(1, float(2 ** 53))), False),
    ("a failed read of a value never written", "register",
     H((0, I, "read", None), (0, F, "read", 9)), True),
    ("a crashed read of a value never written", "register",
     H((0, I, "read", None), (0, N, "read", 9)), True),
    ("precondition-failed while the value was `from`", "cas-register",
     H(*_w(0, 5), (0, I, "cas", [5, 6]), (0, F, "cas", [5, 6], None, "precondition-failed")),
     False),
    ("precondition-failed explained by a crashed write", "cas-register",
     H(*_w(0, 5), (2, I, "write", 7), (0, I, "cas", [5, 6]),
       (0, F, "cas", [5, 6], None, "precondition-failed")), True),
    ("kv: '' written, then null read", "kv", H(*_w(0, ""), *_r(0, None)), False),
    ("kv: '' written, then '' read", "kv", H(*_w(0, ""), *_r(0, "")), True),
    ("kv: '' read while x is written", "kv",
     H((0, I, "write", "x", "a"), *_r(1, "", "a"), (0, O, "write", "x", "a")), True),
    ("kv: x read, then '' read, x's write crashed", "kv",
     H((0, I, "write", "x", "a"), *_r(1, "x", "a"), *_r(1, "", "a")), False),
    ("nemesis ops interleaved", "register",
     H((0, I, "write", 1), ("nemesis", I, "start", None), (0, O, "write", 1),
       ("nemesis", N, "start", None), *_r(1, 1)), True),
]


@pytest.mark.parametrize("name,model,ops,want", EDGE, ids=[e[0] for e in EDGE])
def test_edge_cases(name, model, ops, want):
    assert oracle(ops, model) is want
    assert oracle_memo(ops, model) is want
    for method in ("auto", "search"):
        assert check_linearizable(ops, model, method=method, workers=1).valid is want, method


# --- regressions found by this audit ---------------------------------------------------------

def test_a_crashed_cas_on_the_register_model_is_an_unknown_operation():
    """The register model has no cas. An ok cas was reported (HistoryError), but a crashed one
    whose value nobody read was silently dropped by reduce_unobserved (prepare.py), which treated
    it as a cas-register cas, so the history passed as VALID with the cas ignored."""
    from splitbrain.history import HistoryError

    ops = H((0, I, "cas", [None, 1]), (0, N, "cas", [None, 1]), *_w(1, 2), *_r(1, 2))
    for method in ("auto", "search"):
        with pytest.raises(HistoryError, match="no operation 'cas'"):
            check_linearizable(ops, "register", method=method, workers=1)
    # the same history is fine for a model that has cas
    assert check_linearizable(ops, "cas-register", workers=1).valid is True


# --- many keys at once: each invalid key found, no other ------------------------------------

@st.composite
def _many_keys(draw, n_keys: int):
    model = draw(st.sampled_from(("cas-register", "kv")))
    parts = [draw(histories(model=model, max_calls=6, keys=1)) for _ in range(n_keys)]
    return model, [ops for _, ops in parts]


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(_many_keys(60))
def test_every_invalid_key_and_no_other_is_reported(mk):
    """Small histories joined one after another, each on its own key (processes renumbered):
    the anomalies name exactly the keys the oracle finds invalid, for both methods."""
    model, subs = mk
    ops: list[Op] = []
    want_bad = set()
    for n, sub in enumerate(subs):
        key = f"k{n}"
        if not oracle(sub, model):
            want_bad.add(key)
        for op in sub:
            p = op.process if op.process == "nemesis" else f"{n}.{op.process}"
            ops.append(Op(index=len(ops), time=len(ops), process=p, type=op.type, f=op.f,
                          value=op.value, key=key, error=op.error))
    for method in ("auto", "search"):
        r = check_linearizable(ops, model, method=method, workers=1)
        got = {a.details["key"] for a in r.anomalies}
        undecided = set(r.stats.get("undecided_keys", ()))
        assert got <= want_bad and want_bad - got <= undecided, (method, got ^ want_bad)
        assert r.valid is (not want_bad)


def _joined(subs: list[list[Op]], keyless: int) -> list[Op]:
    """Small histories one after another, each on its own key (the first `keyless` on no key,
    so that those form one key together); processes renumbered."""
    ops: list[Op] = []
    for n, sub in enumerate(subs):
        key = None if n < keyless else (n if n % 2 else f"k{n}")
        for op in sub:
            p = op.process if op.process == "nemesis" else n * 1000 + op.process
            ops.append(Op(index=len(ops), time=len(ops), process=p, type=op.type, f=op.f,
                          value=op.value, key=None if op.process == "nemesis" else key,
                          error=op.error))
    return ops


def _bad_keys(ops: list[Op], model: str) -> set:
    by_key: dict = {}
    for op in ops:
        if op.process != "nemesis":
            by_key.setdefault(json.dumps(op.key), []).append(op)
    bad = set()
    for k, mine in by_key.items():
        # the completions follow their invocations' keys (same process, same key here)
        if not oracle_memo(mine, model):
            bad.add(k)
    return bad


def random_history(rng: random.Random, model: str, key: Any = "k") -> list[Op]:
    """A plain-random history of 2-7 calls on one key (a second style of generator): cas
    mostly along one chain of values (null -> v1 -> v2 ...), some odd values, any fate, any
    interleaving (a process per call)."""
    seq = [None] + rng.sample(range(1, 50), 6)
    calls = []
    for _ in range(rng.randint(2, 7)):
        r = rng.random()
        if r < 0.4 and model != "register":
            i = rng.randint(1, 6)
            f, arg = "cas", [seq[i - 1] if rng.random() < 0.85 else rng.choice(seq), seq[i]]
        elif r < 0.6:
            f, arg = "write", rng.choice(seq[1:]) if rng.random() < 0.9 else rng.choice(ODD_VALUES)
        else:
            f, arg = "read", None
        fate = rng.choice(["ok", "ok", "info", "missing", "fail"])
        res = (rng.choice(seq) if rng.random() < 0.9 else rng.choice(ODD_VALUES)) \
            if f == "read" else arg
        err = rng.choice(["key-does-not-exist", "timeout", "precondition-failed"]) \
            if f == "cas" else "timeout"
        calls.append((f, arg, fate, res, err))
    started: list = []
    done: set = set()
    ops: list[Op] = []
    while len(done) < len(calls):
        moves = [(0, i) for i in range(len(calls)) if i not in started]
        moves += [(1, i) for i in started if i not in done]
        k, i = rng.choice(moves)
        f, arg, fate, res, err = calls[i]
        if k == 0:
            started.append(i)
            ops.append(Op(index=len(ops), time=len(ops), process=i, type="invoke", f=f,
                          value=arg, key=key))
            continue
        done.add(i)
        if fate != "missing":
            ops.append(Op(index=len(ops), time=len(ops), process=i, type=fate, f=f,
                          value=res if f == "read" and fate == "ok" else arg, key=key,
                          error=err if fate == "fail" else None))
    return ops


@pytest.mark.parametrize("seed", [1, 2])
def test_random_histories_agree(seed):
    rng = random.Random(seed)
    for _ in range(300):
        model = rng.choice(MODELS)
        compare(model, random_history(rng, model, None if model != "kv" else "k"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 9))
def test_random_histories_agree_slow_tier(seed):
    rng = random.Random(seed)
    for _ in range(10_000):
        model = rng.choice(MODELS)
        compare(model, random_history(rng, model, None if model != "kv" else "k"))


@pytest.mark.parametrize("model,seed", [("cas-register", 1), ("kv", 2)])
def test_the_command_on_one_big_file_of_many_keys(tmp_path, model, seed):
    """Hundreds of keys in one file of many 64 KB batches (the JSONL reader's columns), as
    JSONL and as Jepsen EDN: the invalid keys the command reports are the oracle's."""
    rng = random.Random(seed)
    ops = _joined([random_history(rng, model) for _ in range(1500)], keyless=2)
    want = _bad_keys(ops, model)
    paths = [str(tmp_path / "big.jsonl"), str(tmp_path / "big.edn")]
    write_jsonl(paths[0], ops)
    with open(paths[1], "w") as fh:
        fh.write(to_edn(ops, "jepsen"))
    assert os.path.getsize(paths[0]) > 3 * (1 << 16)
    rc, doc, err = run_check(paths, model)
    assert "Traceback" not in err, err
    assert rc == (1 if want else 0), (rc, err[-2000:])
    for h in doc["histories"]:
        got = {json.dumps(a["details"]["key"])
               for a in h["results"]["linearizable"]["anomalies"]}
        assert got == want, (h["path"], got ^ want)
