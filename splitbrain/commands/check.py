"""`splitbrain check FILE...`: check recorded histories and print a verdict per history.

For every FILE (a history in any format of splitbrain/history/formats.py, or a stored run's
directory) the command loads and validates it, runs the chosen checkers through `safe_check`, and
prints one line: the verdict, the file, the model, the checkers, the number of ops and the time
taken; then the details (each anomaly's message, errors, files written). `--json` prints one JSON
document instead. Every file is loaded before any is checked, so a malformed input stops the
command with one line on stderr and exit 2 before any verdict is printed. An empty history is not
malformed but decides nothing: its verdict is UNKNOWN (exit 3 unless another file is invalid), and
the other files are checked as usual. A JSONL history is held as columns meanwhile
(history/columns.py: about 64 bytes an op, not an Op object per line); when `linearizable` is
its only checker, that checker streams the Ops built from them, batch by batch (any other
checker gets a list of Ops).

Which model and checkers (first that applies):
  1. `--model M` / `--checker NAME` on the command line;
  2. a sidecar `FILE-STEM.test.json` next to FILE, else a `test.json` in FILE's directory (a
     stored run, DESIGN.md "The store"), with keys `"model"` and `"checkers"` (a list of names);
     that dict is also what checkers receive as `test`, minus the run's own `time_limit` (the
     test's duration), `out_dir`, `run_dir` and `workers`: only --time-limit, --out and
     --workers set those for a check (`splitbrain analyze` re-checks a stored run as it ran);
     A stored run of one of Maelstrom's eventually consistent or stateless workloads (test.json's
     `"workload"`: echo, unique-ids, broadcast, g-set, g-counter, pn-counter) without
     `"checkers"` gets that workload's checkers, plus `availability` when the run had that goal
     (`workload_checkers`);
  3. the model is inferred from the operations (`infer_model`); the checker is `linearizable`,
     or the one of Maelstrom's workload the ops name (`infer_checkers`): `kafka` for send /
     poll, `broadcast` for broadcast, `echo` for echo, `unique-ids` for generate, and
     `list-append` / `rw-register` for a history of transactions (`f` "txn", micro-ops
     [f, key, value]) by its micro-ops.
`--consistency-model M` (repeatable, or comma-separated) is the transactional checkers' model
(default strict-serializable; a test.json's "consistency_models" list otherwise).

Input is not trusted: values compare as JSON values in every checker (history/values.py); a
JSONL history's torn last line is skipped with a warning on stderr; hostile values (huge
integers, deep nesting, lone surrogates: history/sanity.py) are bad input; everything printed
is escaped (termsafe.py). `--time-limit` is per history, for all its checkers together, from
the end of loading: each checker gets what is left, and one that overruns it by
OVERTIME_GRACE_S is stopped (its verdict "unknown").

Exit code (splitbrain/exitcodes.py): the composed validity of every checker on every history
(False > "unknown" > True): 0 valid, 1 invalid, 3 unknown; 2 for bad input or usage, 4 when a
checker cannot even be built (a missing module).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from .. import exitcodes
from ..checkers.linearizability.search import release_deferred
from ..checkers.registry import checker_names, make_checker
from ..checkers.result import Result, merge_validity, safe_check
from ..history.errors import HistoryError
from ..history.columns import ColumnHistory
from ..history.formats import AUTO, FORMATS, load_history_ex
from ..history.op import NEMESIS, OK, Op
from ..termsafe import echo, safe_line, safe_text

DEFAULT_CHECKERS = ("linearizable",)
EMPTY_HISTORY = "empty history: no operations to check"
# test.json keys that describe the recorded run, not this check (see `command`).
_RUN_ONLY_KEYS = ("time_limit", "out_dir", "run_dir", "workers")
# How long after the time limit a checker that does not honour it is stopped (`_run_checker`).
OVERTIME_GRACE_S = 0.5


class HarnessError(click.ClickException):
    """splitbrain itself cannot do the job (e.g. a checker's module is missing): exit 4."""

    exit_code = exitcodes.HARNESS_ERROR

_VERDICT = {True: "VALID", False: "INVALID", "unknown": "UNKNOWN"}
_COLOR = {True: "green", False: "red", "unknown": "yellow"}


def infer_model(history: Sequence[Op]) -> str | None:
    """The linearizability model a history's operations suggest, or None when they do not tell.

    By the client ops' `f` (DESIGN.md's workloads): enqueue/dequeue -> fifo-queue; acquire/release
    -> mutex; mul -> arith; add -> set when an ok read returned a list, arith otherwise; append ->
    append-log when an ok read returned a list or ops have no key and `status` appears, kv
    otherwise; read/write/cas with keys -> kv, with cas -> cas-register, else register.
    """
    fs, keyed, read_lists = _facts(history)
    if not fs:
        return None
    if fs & {"enqueue", "dequeue"}:
        return "fifo-queue"
    if fs & {"acquire", "release"}:
        return "mutex"
    if "mul" in fs:
        return "arith"
    if "add" in fs:
        return "set" if read_lists else "arith"
    if "append" in fs:
        if read_lists or (not keyed and "status" in fs):
            return "append-log"
        return "kv"
    if fs <= {"read", "write", "cas"}:
        if keyed:
            return "kv"
        return "cas-register" if "cas" in fs else "register"
    return None


def _facts(history: Iterable[Op]) -> tuple[set[str], bool, bool]:
    """What the inference reads: the client ops' `f`s, whether a client op has a key, whether an
    ok client read returned a list. A history.columns.ColumnHistory keeps them (`summary`)."""
    summary = getattr(history, "summary", None)
    if summary is not None:
        return summary()
    fs: set[str] = set()
    keyed = read_lists = False
    for op in history:
        if op.process == NEMESIS:
            continue
        fs.add(op.f)
        keyed |= op.key is not None
        if op.type == OK and op.f == "read":
            read_lists |= isinstance(op.value, list)
    return fs, keyed, read_lists


# Workloads whose checkers a stored run's test.json selects (rule 2 of the module docstring).
_WORKLOAD_CHECKED = ("echo", "unique-ids", "broadcast", "g-set", "g-counter", "pn-counter",
                     "counter")


def infer_checkers(history: Sequence[Op]) -> list[str]:
    """The checkers when neither --checker nor a sidecar names them, from the ops' `f`:
    Maelstrom's kafka (send / poll), broadcast (broadcast / read), echo, unique-ids (generate);
    else the linearizability checker. Ops that tell nothing apart (add / read: a g-set, a
    counter or splitbrain's linearizable set) keep the linearizability checker."""
    fs = _facts(history)[0]
    if fs == {"txn"}:
        from ..checkers.transactions import infer_kind
        kind = infer_kind(history)
        if kind is not None:
            return [kind]
    if fs & {"send", "poll"} and not fs & {"read", "write", "cas", "append", "add"}:
        return ["kafka"]
    if "broadcast" in fs and fs <= {"broadcast", "read"}:
        return ["broadcast"]
    if fs == {"echo"}:
        return ["echo"]
    if fs == {"generate"}:
        return ["unique-ids"]
    return list(DEFAULT_CHECKERS)


def workload_checkers(test: dict) -> list[str] | None:
    """A stored run's checkers by its workload (rule 2), or None when test.json does not tell."""
    name = test.get("workload")
    opts = test.get("workload_opts") or {}
    if not isinstance(name, str) or not isinstance(opts, dict):
        return None
    from ..harness.workloads import make_workload  # 20 ms of imports: only for a stored run
    try:
        w = make_workload(name, opts)
    except ValueError:
        return None
    if name not in _WORKLOAD_CHECKED:
        return None
    return [n for n, _ in w.checker_plan(test)]


def _sidecar(path: str) -> tuple[dict, str | None]:
    """The test metadata next to a history (rule 2 of the module docstring) and where it was."""
    p = Path(path)
    for candidate in (p.with_name(p.name.split(".")[0] + ".test.json"), p.with_name("test.json")):
        if candidate.is_file():
            try:
                test = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise HistoryError(f"unreadable test metadata: {e}", path=str(candidate)) from None
            except RecursionError:
                raise HistoryError("unreadable test metadata: nested too deep",
                                   path=str(candidate)) from None
            if not isinstance(test, dict):
                raise HistoryError("test metadata must be a JSON object", path=str(candidate))
            checkers = test.get("checkers")
            if checkers is not None and not (isinstance(checkers, list)
                                             and all(isinstance(c, str) for c in checkers)):
                raise HistoryError("must be a list of checker names", path=str(candidate),
                                   field="checkers")
            model = test.get("model")
            if model is not None and not isinstance(model, str):
                raise HistoryError("must be a model name", path=str(candidate), field="model")
            return test, str(candidate)
    return {}, None


def _out_dirs(files: Sequence[str], out: str | None) -> list[str | None]:
    """One output directory per history: DIR itself for one file, DIR/<stem> for several."""
    if out is None:
        return [None] * len(files)
    if len(files) == 1:
        return [out]
    seen: dict[str, int] = {}
    dirs = []
    for f in files:
        stem = Path(f).name.split(".")[0] or "history"
        if Path(f).name in ("history.jsonl", "history.edn") or os.path.isdir(f):
            stem = Path(os.path.abspath(f)).parent.name if not os.path.isdir(f) \
                else Path(os.path.abspath(f)).name
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        dirs.append(os.path.join(out, stem if n == 1 else f"{stem}-{n}"))
    return dirs


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


@click.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--model", "-m", metavar="M",
              help="Linearizability model (register, cas-register, kv, arith, set, fifo-queue, "
                   "mutex, append-log). Default: test.json's, else inferred from the ops.")
@click.option("--format", "fmt", default=AUTO, show_default=True, metavar="F",
              help=f"History format: {AUTO}, {', '.join(FORMATS)}.")
@click.option("--checker", "-c", "checkers", multiple=True, metavar="NAME",
              help="Checker to run (repeatable): " + ", ".join(checker_names())
                   + ". Default: test.json's, else linearizable.")
@click.option("--out", "out", metavar="DIR", type=click.Path(file_okay=False),
              help="Directory for the files checkers write (counterexample HTML, plots).")
@click.option("--time-limit", "time_limit", type=float, metavar="S",
              help="Seconds for checking each history, all its checkers together (preparing and "
                   "searching; loading excluded); past it the verdict is unknown.")
@click.option("--workers", type=int, metavar="N",
              help="Worker processes a checker may use (e.g. across keys). Default: the checker's.")
@click.option("--memo-max", "memo_max", type=int, metavar="N",
              help="Linearizability search: configurations remembered per key at most (default "
                   "4000000); past it the key is unknown. The unique-values method needs none.")
@click.option("--first-invalid", "first_invalid", is_flag=True,
              help="Linearizability: stop at the first invalid key, as Porcupine does. "
                   "Default: every invalid key gets its counterexample, searched for at most "
                   "10x the time the verdict took (1-10 s).")
@click.option("--consistency-model", "consistency_models", multiple=True, metavar="M",
              help="Transactional checkers (list-append, rw-register): the model the history "
                   "must satisfy, repeatable (strict-serializable, serializable, "
                   "snapshot-isolation, repeatable-read, read-committed, read-uncommitted, "
                   "strong-session-...). Default: strict-serializable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write JUnit XML: one test case per history, failing with its anomalies.")
def command(files: tuple[str, ...], model: str | None, fmt: str, checkers: tuple[str, ...],
            out: str | None, time_limit: float | None, workers: int | None,
            as_json: bool, consistency_models: tuple[str, ...] = (),
            memo_max: int | None = None, junit_path: str | None = None,
            first_invalid: bool = False) -> int:
    """Check histories (JSONL, Jepsen EDN, Porcupine logs) and print a verdict per history.

    \b
    Exit codes: 0 all valid, 1 an anomaly was found, 2 bad input or usage,
                3 undecided (e.g. --time-limit reached), 4 splitbrain failed.
    """
    from ..cli import UserError

    if fmt != AUTO and fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r} (choose from {AUTO}, {', '.join(FORMATS)})")
    if time_limit is not None and not time_limit > 0:
        raise UserError(f"--time-limit must be a positive number of seconds, got {time_limit}")
    if time_limit == float("inf"):
        time_limit = None
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if memo_max is not None and memo_max < 1:
        raise UserError(f"--memo-max must be at least 1, got {memo_max}")
    cmodels = [m.strip() for c in consistency_models for m in c.split(",") if m.strip()]
    if cmodels:
        from ..checkers.transactions.models import canonical
        for cmodel in cmodels:
            try:
                canonical(cmodel)
            except ValueError as e:
                raise UserError(f"--consistency-model: {e}") from None
    for name in checkers:
        if name not in checker_names():
            raise UserError(f"unknown --checker {name!r} (choose from "
                            f"{', '.join(checker_names())})")

    # Load (and validate) everything first: bad input ends the command before any verdict.
    loaded = []
    for path in files:
        # A JSONL history is held as columns (history/columns.py: a third of the memory, no Op
        # object per line until a checker iterates it); the other formats as a list of Ops.
        ops, used_fmt, real = load_history_ex(path, fmt, jsonl_columns=True)
        if not ops:
            # Nothing is malformed, but nothing can be decided either: the history gets the
            # verdict UNKNOWN (never a vacuous pass) and the other files are still checked.
            loaded.append((path, real, used_fmt, ops, {}, [], model or "-"))
            continue
        test, test_path = _sidecar(real)
        names = list(checkers) or list(test.get("checkers") or workload_checkers(test)
                                       or infer_checkers(ops))
        for name in names:
            if name not in checker_names():
                raise HistoryError(f"unknown checker {name!r} (choose from "
                                   f"{', '.join(checker_names())})", path=test_path,
                                   field="checkers")
        m = model or test.get("model") or (infer_model(ops) if "linearizable" in names else None)
        if m is None and "linearizable" in names:
            fs = sorted(_facts(ops)[0])
            raise UserError(f"{real}: cannot infer the model from its operations "
                            f"({', '.join(fs)}); pass --model")
        if isinstance(ops, ColumnHistory) and names != ["linearizable"]:
            ops = ops.to_list()  # the other checkers take a list of Ops
        loaded.append((path, real, used_fmt, ops, test, names, m))

    # Build every checker before checking anything: a bad option (an unknown model) is a usage
    # error that must not wait behind a long check.
    planned = []
    for entry, out_dir in zip(loaded, _out_dirs([l[1] for l in loaded], out)):
        path, real, used_fmt, ops, test, names, m = entry
        # The time limit is not a build option: each checker gets what is left of the
        # history's limit when it starts (`_run_checker`).
        options: dict[str, Any] = {"model": m, "out_dir": out_dir, "workers": workers,
                                   "consistency_models": cmodels or test.get("consistency_models")}
        options["memo_max"] = memo_max
        options["first_invalid"] = True if first_invalid else None
        options = {k: v for k, v in options.items() if v is not None}
        built = []
        for name in names:
            try:
                built.append((name, make_checker(name, options)))
            except ValueError as e:
                raise UserError(f"{real}: {name}: {e}") from None
            except ImportError as e:
                raise HarnessError(f"checker {name!r} is not available: {e}") from None
        # A stored run's test.json holds the *test's* time limit (its duration) and the run's
        # out_dir (relative to where it ran): neither is meant for this check, whose checker
        # options come only from the command line.
        test_meta = {k: v for k, v in test.items() if k not in _RUN_ONLY_KEYS}
        test_meta.update(options)
        test_meta.setdefault("history_path", real)
        if out_dir is not None:
            try:
                os.makedirs(out_dir, exist_ok=True)
            except OSError as e:
                raise UserError(f"--out {out}: cannot create the directory {out_dir}: "
                                f"{e.strerror or e}") from None
        planned.append((entry, out_dir, built, test_meta))

    widths = {"file": max(len(l[0]) for l in loaded),
              "model": max(len(l[6] or "-") for l in loaded),
              "checkers": max(len(", ".join(l[5])) + 2 for l in loaded)}
    reports = []
    for (path, real, used_fmt, ops, test, names, m), out_dir, built, test_meta in planned:
        results: dict[str, Result] = {}
        t0 = time.perf_counter()
        # --time-limit covers everything after loading: preparing, compiling and searching,
        # for all the history's checkers together.
        deadline = None if time_limit is None else time.monotonic() + time_limit
        if not ops:
            results["history"] = Result(valid="unknown", checker="history",
                                        error=EMPTY_HISTORY)
        for name, checker in built:
            results[name] = _run_checker(name, checker, ops, test_meta, deadline, time_limit)
        elapsed = time.perf_counter() - t0
        valid = merge_validity([r.valid for r in results.values()])
        report = {"file": path, "path": real, "format": used_fmt, "model": m, "ops": len(ops),
                  "valid": valid, "time_s": elapsed, "results": results}
        reports.append(report)
        if not as_json:
            _print_report(report, widths)  # as each history finishes: checks can be long
        release_deferred()  # what a check stopped by the time limit left (after its verdict)

    overall = merge_validity([r["valid"] for r in reports])
    if junit_path:
        _write_junit(junit_path, reports)
    if as_json:
        _print_json(reports, overall)
    else:
        _print_summary(reports, overall)
    return exitcodes.for_validity(overall)


class _Overtime(BaseException):
    """Raised by the backstop alarm in a checker that overran the time limit (BaseException, so
    that a checker's own `except Exception` does not swallow it)."""


def _write_junit(path: str, reports: list[dict]) -> None:
    """--junit: one test case per history (splitbrain/campaign/junit.py), expected valid."""
    from ..campaign import junit
    cases = [junit.run_case(name=r["file"], classname="splitbrain.check",
                            verdict=junit.verdict_of(r["valid"]), expect="valid",
                            results={"children": {n: res.to_json()
                                                  for n, res in r["results"].items()}},
                            replay=f"splitbrain check {shlex.quote(r['file'])}",
                            time_s=r["time_s"])
             for r in reports]
    try:
        junit.write(path, [junit.Suite("splitbrain check", cases)])
    except OSError as e:
        from ..cli import UserError
        raise UserError(f"--junit {path}: cannot write: {e.strerror or e}") from None


def _run_checker(name: str, checker: Any, ops: list, test_meta: dict, deadline: float | None,
                 time_limit: float | None) -> Result:
    """`safe_check` within what is left of the history's time limit.

    The checker is told the seconds left (test["time_limit"]); a checker that honours it (the
    linearizability checker checks its clock while preparing, compiling and searching) returns
    "unknown" in time. A checker that does not is stopped by an alarm OVERTIME_GRACE_S after
    the deadline (main thread only): its verdict is "unknown" too, never a pass.
    """
    if deadline is None:
        return safe_check(checker, ops, test_meta)
    left = deadline - time.monotonic()
    if left <= 0:
        return Result(valid="unknown", checker=name,
                      error=f"time limit of {time_limit} s reached before this checker ran")
    meta = dict(test_meta, time_limit=left)
    use_alarm = (threading.current_thread() is threading.main_thread()
                 and hasattr(signal, "setitimer"))
    if not use_alarm:
        return safe_check(checker, ops, meta)

    def on_alarm(signum, frame):
        raise _Overtime()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, left + OVERTIME_GRACE_S)
        try:
            return safe_check(checker, ops, meta)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Overtime:
        return Result(valid="unknown", checker=name,
                      error=f"time limit of {time_limit} s reached: the checker was stopped")
    finally:
        signal.signal(signal.SIGALRM, previous)


def _print_json(reports: list[dict], overall: Any) -> None:
    histories = []
    all_anomalies = []
    for r in reports:
        anomalies = []
        for name, res in r["results"].items():
            for a in res.all_anomalies():
                anomalies.append({"checker": name, **a.to_json()})
        all_anomalies.extend({"file": r["file"], **a} for a in anomalies)
        histories.append({
            "file": r["file"], "path": r["path"], "format": r["format"], "model": r["model"],
            "ops": r["ops"], "valid": r["valid"], "time_s": round(r["time_s"], 6),
            "anomalies": anomalies,
            "results": {name: res.to_json() for name, res in r["results"].items()},
        })
    doc = {"valid": overall, "anomalies": all_anomalies, "histories": histories}
    click.echo(json.dumps(_jsonable(doc), indent=2))


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in str(text).splitlines())


def _print_report(r: dict, widths: dict[str, int]) -> None:
    """One history's verdict line and, indented below, its details."""
    verdict = click.style(f"{_VERDICT[r['valid']]:<7}", fg=_COLOR[r["valid"]], bold=True)
    names = "[" + ", ".join(r["results"]) + "]"
    rest = safe_line(f"{r['file']:<{widths['file']}}  {r['model'] or '-':<{widths['model']}}"
                     f"  {names:<{widths['checkers']}}  {r['ops']:>6} ops  {r['time_s']:.3f} s")
    click.echo(f"{verdict}  {rest}")
    for name, res in r["results"].items():
        if res.error is not None:
            echo(f"  {name}: {_VERDICT[res.valid].lower()}: {res.error}")
        elif res.valid == "unknown" and not res.all_anomalies():
            reason = res.stats.get("reason") if isinstance(res.stats, dict) else None
            echo(f"  {name}: undecided" + (f": {reason}" if reason else ""))
        for a in res.all_anomalies():
            echo(f"  {name}: {a.name}:")
            echo(_indent(safe_text(a.message), "    "))  # escape first: \r splits lines
        stats = res.stats if isinstance(res.stats, dict) else {}
        if stats.get("not") or stats.get("allowed_anomalies"):
            # Transactional checkers: which models the anomalies rule out (Elle's not/also-not).
            if stats.get("allowed_anomalies"):
                echo(f"  {name}: allowed by the chosen model: "
                     f"{', '.join(stats['allowed_anomalies'])}")
            echo(f"  {name}: not {', '.join(stats['not'])}"
                 + (f"; also not {', '.join(stats['also-not'])}"
                    if stats.get("also-not") else ""))
        for f in res.files:
            echo(f"  {name}: wrote {f}")


def _print_summary(reports: list[dict], overall: Any) -> None:
    """With several histories, one closing line that counts the verdicts."""
    if len(reports) > 1:
        counts = {v: sum(1 for r in reports if r["valid"] == v) for v in (True, False, "unknown")}
        total = sum(r["time_s"] for r in reports)
        click.echo(f"{len(reports)} histories: {counts[True]} valid, {counts[False]} invalid, "
                   f"{counts['unknown']} unknown; overall {_VERDICT[overall]} ({total:.3f} s)")
