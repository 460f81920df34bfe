"""check_linearizable: partition by key, search each key (on several cores when it pays), compose.

Verdicts: a key is valid when the search linearized all of it, invalid when some completion could
not be linearized; past the time limit a key is "unknown" (never a pass). The history's validity
is the merge over keys (False > "unknown" > True). An empty history (or one with no client
operation the model describes) is valid: nothing contradicts the model.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Iterable

from ...history.errors import HistoryError
from ...history.op import Op
from ..result import UNKNOWN, Anomaly, Result, merge_validity
from .models import Model, get_model
from .prepare import partition_history
from .search import (Partition, StepBudgetExceeded, TimeLimitReached, release_deferred,
                     search)

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
# the end, for at most this many seconds more (and within the check's time limit). A key not
# decided by then is listed in stats["undecided_keys"]; the verdict is False either way.
AFTER_INVALID_S = 10.0

# State handed to forked workers (fork inherits it; a user's model may hold lambdas).
_WORK: tuple[Model, list[Partition], float | None] | None = None


def _search_one(model: Model, part: Partition, deadline: float | None,
                steps_max: int | None) -> tuple[str, Any]:
    """("valid" | "invalid" | "unknown" | "deferred", Outcome or None) for one key."""
    try:
        outcome = search(model, part, deadline, steps_max=steps_max)
        return ("valid" if outcome.valid else "invalid"), outcome
    except TimeLimitReached:
        return "unknown", None
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
         stop_at_invalid: bool = True) -> dict[int, tuple[str, Any]]:
    """Search the keys `which`, on `workers` forked processes when that pays.

    With `stop_at_invalid`, once a key is invalid the verdict is False: in this process the keys
    after it get only KEY_STEPS_AFTER_INVALID expansions; in a pool the keys still running are
    stopped (like Porcupine). Keys not decided that way are "deferred". Without it, every key
    is searched (until `deadline`).
    """
    if workers <= 1 or len(which) <= 1 or (steps_max is not None and
                                           sum(len(parts[i].calls) for i in which)
                                           < PARALLEL_CALLS_MIN):
        got: dict[int, tuple[str, Any]] = {}
        budget = steps_max
        for i in which:
            got[i] = _search_one(model, parts[i], deadline, budget)
            if got[i][0] == "invalid" and stop_at_invalid:
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
                       workers: int | None = None) -> Result:
    """Check a history for linearizability with Jepsen's semantics, per key.

    - model: a name from MODELS or a Model;
    - time_limit: seconds for the whole check; past it the undecided keys are "unknown";
    - out_dir: when given, one HTML counterexample per invalid key is written to
      out_dir/linearizability/<key>.html and listed in Result.files;
    - workers: processes for the search; None = the CPUs available, used only when the history
      is large enough and has several keys.

    Returns Result(checker="linearizable") with one Anomaly "nonlinearizable" per invalid key;
    its message is the counterexample in words and its ops the history indices involved.
    With several keys, a key whose search is long is left undecided once another key is found
    invalid (stats["undecided_keys"]); the verdict is False either way.
    Raises HistoryError for a history that breaks the op semantics (completion without invoke,
    a busy process invoking) or an operation the model does not describe.
    """
    # The search allocates millions of small acyclic objects; the cyclic garbage collector would
    # rescan them again and again for nothing (preparing 400k ops: 14 s with it, 9 s without).
    release_deferred()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _check(history, model, time_limit, out_dir, workers)
    finally:
        if was_enabled:
            # Everything allocated meanwhile sits in the youngest generation: the first
            # collection after gc.enable() would walk millions of objects (seconds, measured
            # on 2M ops). freeze + unfreeze moves them to the oldest generation in O(1).
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def _check(history: Iterable[Op], model: "str | Model", time_limit: float | None,
           out_dir: str | None, workers: int | None) -> Result:
    started = time.monotonic()
    m = get_model(model)
    deadline = None if time_limit is None else started + float(time_limit)
    history = list(history)
    try:
        parts = list(partition_history(history, m, deadline).values())
    except TimeLimitReached:
        return Result(valid=UNKNOWN, checker=CHECKER_NAME,
                      error=f"time limit of {round(time_limit, 2):g} s reached while preparing the history "
                            f"({len(history)} ops) for the search",
                      stats={"model": m.name, "seconds": round(time.monotonic() - started, 6)})
    total_calls = sum(len(p.calls) for p in parts)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)

    everything = list(range(len(parts)))
    if len(parts) <= 1:
        outcomes = _run(m, parts, everything, deadline, None, workers)
    else:
        outcomes = _run(m, parts, everything, deadline, KEY_STEPS_FIRST, workers)
        deferred = [i for i in everything if outcomes[i][0] == "deferred"]
        if deferred and not any(v == "invalid" for v, _ in outcomes.values()):
            outcomes.update(_run(m, parts, deferred, deadline, None, workers))
            deferred = [i for i in everything if outcomes[i][0] == "deferred"]
        if deferred:
            # The verdict is already False; search the other keys too, so that each invalid
            # key gets its counterexample, within AFTER_INVALID_S more seconds.
            soft = time.monotonic() + AFTER_INVALID_S
            more = _run(m, parts, deferred, soft if deadline is None else min(deadline, soft),
                        None, workers, stop_at_invalid=False)
            for i, (v, o) in more.items():
                if v == "unknown" and (deadline is None or time.monotonic() < deadline):
                    v = "deferred"   # stopped by AFTER_INVALID_S, not by the time limit
                outcomes[i] = (v, o)

    anomalies: list[Anomaly] = []
    files: list[str] = []
    verdicts = []
    unknown_keys = []
    undecided_keys = []
    for i, part in enumerate(parts):
        verdict, outcome = outcomes[i]
        if verdict == "valid":
            verdicts.append(True)
        elif verdict == "unknown":
            verdicts.append(UNKNOWN)
            unknown_keys.append(part.key)
        elif verdict == "deferred":
            undecided_keys.append(part.key)  # another key is invalid: the verdict is False
        else:
            verdicts.append(False)
            from .counterexample import describe, render_html  # only when something is wrong

            anomaly = describe(m, part, outcome.failure, multi_key=len(parts) > 1)
            if out_dir is not None:
                path = render_html(m, part, outcome.failure, out_dir)
                files.append(path)
                anomaly.details["html"] = path
            anomalies.append(anomaly)
    valid = merge_validity(verdicts)
    assert not undecided_keys or valid is False, "keys are left undecided only when invalid"
    stats = {
        "model": m.name,
        "keys": len(parts),
        "invalid_keys": len(anomalies),
        "unknown_keys": len(unknown_keys),
        "calls": total_calls,
        "crashed_calls": sum(sum(p.crashed) for p in parts),
        "dropped_calls": sum(p.dropped for p in parts),
        "steps": sum(o.stats.get("steps", 0) for _, o in outcomes.values() if o is not None),
        "seconds": round(time.monotonic() - started, 6),
    }
    if undecided_keys:
        stats["undecided_keys"] = [k for k in undecided_keys]
    result = Result(valid=valid, checker=CHECKER_NAME, anomalies=anomalies, files=files,
                    stats=stats)
    if unknown_keys:
        shown = ", ".join(repr(k) for k in unknown_keys[:10])
        result.error = (f"time limit of {round(time_limit, 2):g} s reached before deciding "
                        f"{len(unknown_keys)} key(s): {shown}")
    return result


class LinearizableChecker:
    """The registry's checker object: `check(history, test) -> Result`.

    Options (constructor) win over the test map's `model`, `time_limit`, `out_dir`, `workers`.
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
                                  workers=opt("workers"))


def make_checker(options: dict | None = None) -> LinearizableChecker:
    """Registry factory: options may hold model (default cas-register), time_limit, out_dir,
    workers."""
    return LinearizableChecker(options)
