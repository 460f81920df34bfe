"""check_linearizable: partition by key, decide each key (on several cores when it pays), compose.

Per key, the method (stats["method"], and per key in stats["keys_by_method"]):
- "unique-values polynomial" (unique.py) when the model is register / cas-register / kv and the
  key's written values are unique (its precondition; the reason a key does not qualify is in
  stats["search_reasons"]): O(n log n), never "unknown" except past the time limit;
- "search" (search.py) otherwise, after the reduction of unobserved crashed writes
  (prepare.reduce_unobserved) and with a bounded memo table (`memo_max`: past it the key is
  "unknown" with that reason).

Verdicts: a key is valid when the search linearized all of it, invalid when some completion could
not be linearized; past the time limit a key is "unknown" (never a pass). The history's validity
is the merge over keys (False > "unknown" > True). An empty history (or one with no client
operation the model describes) is valid: nothing contradicts the model.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Iterable, Iterator

from ...history.errors import HistoryError
from ...history.op import Op
from ..result import UNKNOWN, Anomaly, Result, merge_validity
from .models import Model, get_model
from .prepare import partition_history, reduce_unobserved
from .search import (MEMO_MAX_DEFAULT, MemoFull, Partition, StepBudgetExceeded,
                     TimeLimitReached, release_deferred, search)
from .unique import METHOD_POLY, METHOD_SEARCH, UniqueKey, check_unique, stream_unique, supports

CHECKER_NAME = "linearizable"
# Forking worker processes costs tens of milliseconds: a first, bounded pass over the keys runs
# in this process unless there are at least this many calls in all keys together.
PARALLEL_CALLS_MIN = 20_000
# With several keys, each key first gets this many search expansions, in this process. A key that
# needs more is deferred, then searched to the end (or the time limit; when another key is
# already invalid, for at most AFTER_INVALID_S more), on several cores when there are several.
KEY_STEPS_FIRST = 5_000
# ... and once a key is invalid, the keys after it in that first pass get only this many.
KEY_STEPS_AFTER_INVALID = 1_000
# Every invalid key gets its counterexample (Jepsen's independent checker reports each failing
# key, Porcupine only the first): once a key is invalid, the deferred keys are still searched to
# the end, within a budget that grows with the work the verdict took -- AFTER_INVALID_FACTOR
# times the seconds spent so far, at least AFTER_INVALID_MIN_S, at most AFTER_INVALID_S (and
# within the check's time limit) -- so that a verdict found in milliseconds is not followed by
# ten seconds of searching a hard key. A key not decided by then is listed in
# stats["undecided_keys"]; the verdict is False either way. With first_invalid (Porcupine's
# behaviour) nothing is searched once a key is invalid.
AFTER_INVALID_S = 10.0
AFTER_INVALID_MIN_S = 1.0
AFTER_INVALID_FACTOR = 10.0


def after_invalid_budget(spent_s: float) -> float:
    """Seconds the deferred keys may still be searched once the verdict is False."""
    return min(AFTER_INVALID_S, max(AFTER_INVALID_MIN_S, AFTER_INVALID_FACTOR * spent_s))

# State handed to forked workers (fork inherits it; a user's model may hold lambdas).
_WORK: tuple[Model, list[Partition], float | None] | None = None
# The memo table bound of the search (configurations per key), for the forked workers too.
_MEMO_MAX = MEMO_MAX_DEFAULT
# The keys for the polynomial method, for forked workers.
_UWORK: tuple[list[UniqueKey], float | None] | None = None


def _search_one(model: Model, part: Partition, deadline: float | None,
                steps_max: int | None) -> tuple[str, Any]:
    """("valid" | "invalid" | "unknown" | "memo-full" | "deferred", Outcome or None) per key."""
    try:
        outcome = search(model, part, deadline, steps_max=steps_max, memo_max=_MEMO_MAX)
        return ("valid" if outcome.valid else "invalid"), outcome
    except TimeLimitReached:
        return "unknown", None
    except MemoFull as e:
        return "memo-full", e.size
    except StepBudgetExceeded:
        return "deferred", None
    except (ValueError, TypeError) as e:
        # A model that rejects an operation it does not know: bad input, named by key.
        raise HistoryError(f"key {part.key!r}: {e}") from None


def _worker(job: tuple[int, int | None]) -> tuple[int, tuple[str, Any]]:
    assert _WORK is not None
    model, parts, deadline = _WORK
    i, steps_max = job
    return i, _search_one(model, parts[i], deadline, steps_max)


def _run(model: Model, parts: list[Partition], which: list[int], deadline: float | None,
         steps_max: int | None, workers: int,
         stop_at_invalid: bool = True, first_invalid: bool = False
         ) -> dict[int, tuple[str, Any]]:
    """Search the keys `which`, on `workers` forked processes when that pays.

    With `stop_at_invalid`, once a key is invalid the verdict is False: in this process the keys
    after it get only KEY_STEPS_AFTER_INVALID expansions (none with `first_invalid`); in a pool
    the keys still running are stopped (like Porcupine). Keys not decided that way are
    "deferred". Without it, every key is searched (until `deadline`).
    """
    if workers <= 1 or len(which) <= 1 or (steps_max is not None and
                                           sum(len(parts[i].calls) for i in which)
                                           < PARALLEL_CALLS_MIN):
        got: dict[int, tuple[str, Any]] = {}
        budget = steps_max
        stopped = False
        for i in which:
            if stopped:
                got[i] = ("deferred", None)
                continue
            got[i] = _search_one(model, parts[i], deadline, budget)
            if got[i][0] == "invalid" and stop_at_invalid:
                stopped = first_invalid
                budget = KEY_STEPS_AFTER_INVALID if budget is None else min(
                    budget, KEY_STEPS_AFTER_INVALID)
        return got
    import multiprocessing

    global _WORK
    _WORK = (model, parts, deadline)
    got = {}
    try:
        ctx = multiprocessing.get_context("fork")
        # Largest keys first: the slowest keys start early.
        order = sorted(which, key=lambda i: -len(parts[i].calls))
        with ctx.Pool(processes=min(workers, len(which))) as pool:
            for i, res in pool.imap_unordered(_worker, [(i, steps_max) for i in order]):
                got[i] = res
                if res[0] == "invalid" and stop_at_invalid:
                    break  # leaving the block terminates the workers
    finally:
        _WORK = None
    for i in which:
        got.setdefault(i, ("deferred", None))
    return got


def check_linearizable(history: Iterable[Op], model: "str | Model", *,
                       time_limit: float | None = None, out_dir: str | None = None,
                       workers: int | None = None, memo_max: int | None = None,
                       method: str = "auto", first_invalid: bool = False) -> Result:
    """Check a history for linearizability with Jepsen's semantics, per key.

    - model: a name from MODELS or a Model;
    - time_limit: seconds for the whole check; past it the undecided keys are "unknown";
    - out_dir: when given, one HTML counterexample per invalid key is written to
      out_dir/linearizability/<key>.html and listed in Result.files;
    - workers: processes for the per-key work; None = the CPUs available, used only when the
      history is large enough and has several keys;
    - memo_max: configurations the search may remember per key (default MEMO_MAX_DEFAULT);
      past it the key is "unknown" (stats["memo_full_keys"]); None = the default;
    - method: "auto" (the unique-values polynomial method where its precondition holds, the
      search elsewhere) or "search" (the search everywhere; for tests and benchmarks);
    - first_invalid: once a key is invalid, search no other key, as Porcupine does (the keys not
      searched are listed in stats["undecided_keys"]; keys of the polynomial method, microseconds
      each, are all decided and reported); by default every invalid key is looked for, within
      `after_invalid_budget` once the verdict is known.

    Returns Result(checker="linearizable") with one Anomaly "nonlinearizable" per invalid key;
    its message is the counterexample in words and its ops the history indices involved.
    stats["method"] names the method used ("unique-values polynomial", "search", or both joined
    by " + " when keys differ). With several keys, a key whose search is long is left undecided
    once another key is found invalid (stats["undecided_keys"]); the verdict is False either way.
    Raises HistoryError for a history that breaks the op semantics (completion without invoke,
    a busy process invoking) or an operation the model does not describe.
    """
    if method not in ("auto", "search"):
        raise ValueError(f"method must be 'auto' or 'search', got {method!r}")
    # The search allocates millions of small acyclic objects; the cyclic garbage collector would
    # rescan them again and again for nothing (preparing 400k ops: 14 s with it, 9 s without).
    release_deferred()
    was_enabled = gc.isenabled()
    gc.disable()
    global _MEMO_MAX
    _MEMO_MAX = MEMO_MAX_DEFAULT if memo_max is None else int(memo_max)
    try:
        return _check(history, model, time_limit, out_dir, workers, method, first_invalid)
    finally:
        _MEMO_MAX = MEMO_MAX_DEFAULT
        if was_enabled:
            # Everything allocated meanwhile sits in the youngest generation: the first
            # collection after gc.enable() would walk millions of objects (seconds, measured
            # on 2M ops). freeze + unfreeze moves them to the oldest generation in O(1).
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def _unique_one(u: UniqueKey, deadline: float | None) -> tuple[str, Any]:
    try:
        valid, failure = check_unique(u, deadline)
    except TimeLimitReached:
        return "unknown", None
    return ("valid", None) if valid else ("invalid", failure)


def _unique_worker(i: int) -> tuple[int, tuple[str, Any]]:
    assert _UWORK is not None
    keys, deadline = _UWORK
    return i, _unique_one(keys[i], deadline)


def _run_unique(keys: list[UniqueKey], deadline: float | None, workers: int
                ) -> list[tuple[str, Any]]:
    """The polynomial check of every key; on `workers` forked processes when that pays."""
    total = sum(len(u) for u in keys)
    if workers <= 1 or len(keys) <= 1 or total < PARALLEL_CALLS_MIN:
        return [_unique_one(u, deadline) for u in keys]
    import multiprocessing

    global _UWORK
    _UWORK = (keys, deadline)
    got: dict[int, tuple[str, Any]] = {}
    try:
        ctx = multiprocessing.get_context("fork")
        order = sorted(range(len(keys)), key=lambda i: -len(keys[i]))
        with ctx.Pool(processes=min(workers, len(keys))) as pool:
            for i, res in pool.imap_unordered(_unique_worker, order,
                                              chunksize=max(1, len(keys) // (8 * workers))):
                got[i] = res
    finally:
        _UWORK = None
    return [got[i] for i in range(len(keys))]


def _keys_of(history: Iterable[Op], wanted: set) -> Iterator[Op]:
    """The ops of the keys `wanted` (by their invocation's key; nemesis ops dropped), one pass
    over the history, streamed (no list of them)."""
    from .models import freeze
    pending: dict[Any, bool] = {}
    for op in history:
        p = op.process
        if p == "nemesis":
            continue
        if op.type == "invoke":
            keep = pending[p] = freeze(op.key) in wanted
        else:
            keep = pending.pop(p, True)
        if keep:
            yield op


def _check(history: Iterable[Op], model: "str | Model", time_limit: float | None,
           out_dir: str | None, workers: int | None, method: str,
           first_invalid: bool = False) -> Result:
    started = time.monotonic()
    m = get_model(model)
    deadline = None if time_limit is None else started + float(time_limit)
    # A one-shot iterator is listed. A re-iterable history (a list; a history.columns
    # .ColumnHistory, which builds its Ops afresh each time) is read where needed: once, once
    # more for the keys the search decides, once more for the invalid keys' counterexamples.
    if isinstance(history, Iterator) or not hasattr(history, "__len__"):
        history = list(history)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    ukeys: list[UniqueKey] = []
    reasons: dict[str, int] = {}
    try:
        if method == "auto" and supports(m):
            streamed = stream_unique(history, m, deadline)
            fallback = set()
            for k, u in streamed.items():
                if u.why is not None:
                    fallback.add(k)
                    reasons[u.why] = reasons.get(u.why, 0) + 1
                elif len(u):
                    ukeys.append(u)
            every_key_falls_back = not ukeys and len(fallback) == len(streamed)
            del streamed
            # (every key falling back: no need to filter the history by key first)
            parts = list(partition_history(history if every_key_falls_back
                                           else _keys_of(history, fallback), m, deadline
                                           ).values()) if fallback else []
        else:
            parts = list(partition_history(history, m, deadline).values())
    except TimeLimitReached:
        return Result(valid=UNKNOWN, checker=CHECKER_NAME,
                      error=f"time limit of {round(time_limit, 2):g} s reached while preparing the history "
                            f"({len(history)} ops) for the search",
                      stats={"model": m.name, "seconds": round(time.monotonic() - started, 6)})
    # Crashed writes whose value nobody observes are left out of the search (prepare.py).
    reduced = 0
    for i, p in enumerate(parts):
        parts[i], n_removed = reduce_unobserved(m, p)
        reduced += n_removed
    total_calls = sum(len(p.calls) for p in parts) + sum(len(u) for u in ukeys)

    uout = _run_unique(ukeys, deadline, workers)
    everything = list(range(len(parts)))
    poly_invalid = any(v == "invalid" for v, _ in uout)
    if len(parts) + len(ukeys) <= 1:
        outcomes = _run(m, parts, everything, deadline, None, workers)
    elif poly_invalid and first_invalid:
        outcomes = {i: ("deferred", None) for i in everything}
    else:
        # Once a key is invalid the verdict is False: the searched keys get a short budget.
        outcomes = _run(m, parts, everything, deadline,
                        KEY_STEPS_AFTER_INVALID if poly_invalid else KEY_STEPS_FIRST, workers,
                        first_invalid=first_invalid)
        deferred = [i for i in everything if outcomes[i][0] == "deferred"]
        if deferred and not any(v == "invalid" for v, _ in list(outcomes.values()) + uout):
            outcomes.update(_run(m, parts, deferred, deadline, None, workers,
                                 first_invalid=first_invalid))
            deferred = [i for i in everything if outcomes[i][0] == "deferred"]
        if deferred and not first_invalid:
            # The verdict is already False; search the other keys too, so that each invalid
            # key gets its counterexample, within after_invalid_budget more seconds.
            soft = time.monotonic() + after_invalid_budget(time.monotonic() - started)
            more = _run(m, parts, deferred, soft if deadline is None else min(deadline, soft),
                        None, workers, stop_at_invalid=False)
            for i, (v, o) in more.items():
                if v == "unknown" and (deadline is None or time.monotonic() < deadline):
                    v = "deferred"   # stopped by the budget, not by the time limit
                outcomes[i] = (v, o)

    anomalies: list[Anomaly] = []
    files: list[str] = []
    verdicts = []
    unknown_keys = []
    memo_full_keys = []
    undecided_keys = []
    multi = len(parts) + len(ukeys) > 1

    def invalid(part: Partition, failure) -> None:
        verdicts.append(False)
        from .counterexample import describe, render_html  # only when something is wrong

        anomaly = describe(m, part, failure, multi_key=multi)
        anomaly.details["method"] = method_of.get(id(part), METHOD_SEARCH)
        if out_dir is not None:
            path = render_html(m, part, failure, out_dir)
            files.append(path)
            anomaly.details["html"] = path
        anomalies.append(anomaly)

    method_of: dict[int, str] = {}
    from .models import freeze
    # The invalid keys' Partitions (for their counterexamples), all in one pass.
    bad = {freeze(u.key) for u, (verdict, _) in zip(ukeys, uout) if verdict == "invalid"}
    bad_parts = partition_history(_keys_of(history, bad), m) if bad else {}
    for u, (verdict, failure) in zip(ukeys, uout):
        if verdict == "valid":
            verdicts.append(True)
        elif verdict == "unknown":
            verdicts.append(UNKNOWN)
            unknown_keys.append(u.key)
        else:
            k = freeze(u.key)
            part = bad_parts[k]
            assert len(part.calls) == len(u), "the two preparations see the same calls"
            method_of[id(part)] = METHOD_POLY
            invalid(part, failure)
    for i, part in enumerate(parts):
        verdict, outcome = outcomes[i]
        if verdict == "valid":
            verdicts.append(True)
        elif verdict == "unknown":
            verdicts.append(UNKNOWN)
            unknown_keys.append(part.key)
        elif verdict == "memo-full":
            verdicts.append(UNKNOWN)
            memo_full_keys.append(part.key)
        elif verdict == "deferred":
            undecided_keys.append(part.key)  # another key is invalid: the verdict is False
        else:
            invalid(part, outcome.failure)
    valid = merge_validity(verdicts)
    assert not undecided_keys or valid is False, "keys are left undecided only when invalid"
    methods = ([METHOD_POLY] if ukeys else []) + ([METHOD_SEARCH] if parts else [])
    stats = {
        "model": m.name,
        "method": " + ".join(methods) if methods else METHOD_POLY if supports(m) and
        method == "auto" else METHOD_SEARCH,
        "keys_by_method": {METHOD_POLY: len(ukeys), METHOD_SEARCH: len(parts)},
        "keys": len(parts) + len(ukeys),
        "invalid_keys": len(anomalies),
        "unknown_keys": len(unknown_keys) + len(memo_full_keys),
        "calls": total_calls,
        "crashed_calls": sum(sum(p.crashed) for p in parts) + sum(sum(u.crashed) for u in ukeys),
        "dropped_calls": sum(p.dropped for p in parts) + sum(u.dropped for u in ukeys),
        "crashed_calls_left_out": reduced,
        "steps": sum(o.stats.get("steps", 0) for v, o in outcomes.values()
                     if v in ("valid", "invalid")),
        "seconds": round(time.monotonic() - started, 6),
    }
    if reasons:
        stats["search_reasons"] = reasons
    if undecided_keys:
        stats["undecided_keys"] = [k for k in undecided_keys]
    if memo_full_keys:
        stats["memo_full_keys"] = list(memo_full_keys)
    result = Result(valid=valid, checker=CHECKER_NAME, anomalies=anomalies, files=files,
                    stats=stats)
    errors = []
    if unknown_keys:
        shown = ", ".join(repr(k) for k in unknown_keys[:10])
        errors.append(f"time limit of {round(time_limit, 2):g} s reached before deciding "
                      f"{len(unknown_keys)} key(s): {shown}")
    if memo_full_keys:
        shown = ", ".join(repr(k) for k in memo_full_keys[:10])
        errors.append(f"the search's memo table is full ({_MEMO_MAX:,} configurations, option "
                      f"memo_max) before deciding {len(memo_full_keys)} key(s): {shown}")
    if errors:
        result.error = "; ".join(errors)
    return result


class LinearizableChecker:
    """The registry's checker object: `check(history, test) -> Result`.

    Options (constructor) win over the test map's `model`, `time_limit`, `out_dir`, `workers`,
    `memo_max`, `method`, `first_invalid`.
    """

    name = CHECKER_NAME

    def __init__(self, options: dict | None = None):
        self.options = dict(options or {})
        # Fail early on an unknown model name: a usage error, not a checker failure.
        if self.options.get("model") is not None:
            get_model(self.options["model"])

    def check(self, history: list, test: dict | None = None) -> Result:
        test = test or {}

        def opt(name: str, default=None):
            v = self.options.get(name)
            return test.get(name, default) if v is None else v

        return check_linearizable(history, opt("model", "cas-register"),
                                  time_limit=opt("time_limit"), out_dir=opt("out_dir"),
                                  workers=opt("workers"), memo_max=opt("memo_max"),
                                  method=opt("method", "auto"),
                                  first_invalid=bool(opt("first_invalid", False)))


def make_checker(options: dict | None = None) -> LinearizableChecker:
    """Registry factory: options may hold model (default cas-register), time_limit, out_dir,
    workers, memo_max, method ("auto" or "search"), first_invalid."""
    return LinearizableChecker(options)
