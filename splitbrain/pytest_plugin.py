"""The splitbrain pytest plugin (entry point `pytest11`: loaded by pytest once splitbrain is
installed): run a splitbrain test inside your own pytest suite.

    def test_my_node_is_linearizable(splitbrain_test):
        summary = splitbrain_test(bin="./my-node", workload="lin-kv", nemesis="partition",
                                  time_limit=10)

    def test_raft_catches_stale_reads(splitbrain_test):
        splitbrain_test(system="raft", bug="stale-reads", workload="register", backend="sim",
                        nemesis="partition,kill,clock", time_limit=5, seed=15, expect="invalid")

The fixture takes `splitbrain test`'s options as keyword arguments (system, bin, db, workload,
nemesis, time_limit, nodes, concurrency, rate, seed, bug / bugs, opts (a dict or k=v strings),
backend, schedule, latency), runs the test with the same checks and checkers as the command, and
returns its RunSummary (valid, results, run_dir, replay). When the verdict is not `expect`
("valid" unless given) the test fails with the anomalies by checker and name, the run's store
directory and the command that replays it; an undecided verdict fails too (a gate must not pass on
"could not tell"). Bad options fail the test with splitbrain's one-line message.

Runs are stored under pytest's temporary directory (kept for the last three sessions, as pytest
does), or under `--splitbrain-store DIR` when given.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("splitbrain")
    group.addoption("--splitbrain-store", metavar="DIR", default=None,
                    help="Store root for the runs of the splitbrain_test fixture (default: a "
                         "pytest temporary directory).")


def _failure_text(summary, expect: str) -> str:
    from .campaign.junit import anomaly_lines, verdict_of
    verdict = verdict_of(summary.valid)
    lines = [f"splitbrain: expected {expect.upper()}, got {verdict.upper()}"]
    lines += [f"  {line}" for line in anomaly_lines(summary.results)]
    if summary.run_dir:
        lines.append(f"  store: {summary.run_dir}")
    lines.append(f"  replay: {summary.replay}")
    return "\n".join(lines)


@pytest.fixture
def splitbrain_test(request, tmp_path_factory) -> Callable[..., Any]:
    """Run a splitbrain test (keyword arguments: `splitbrain test`'s options); fail the calling
    test, with the anomalies and the replay command, when its verdict is not `expect`."""
    from .cli import UserError
    from .commands.test import build_test, parse_bin, run

    root = request.config.getoption("--splitbrain-store")

    def _run(*, expect: str = "valid", bug: str | None = None, bugs=(), opts=None,
             bin: str | None = None, backend: str | None = None, **kw) -> Any:
        if expect not in ("valid", "invalid"):
            raise ValueError(f"expect must be 'valid' or 'invalid', got {expect!r}")
        store = root or str(tmp_path_factory.mktemp("splitbrain"))
        all_bugs = [*([bug] if bug else []), *bugs]
        if isinstance(opts, dict):
            import json
            opts = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in opts.items()]
        args = {"system": None, "workload": None, "nemesis": None, "time_limit": None,
                "nodes": None, "concurrency": None, "rate": None, "seed": None, "name": None,
                "schedule": None, "latency": None, "db": None}
        unknown = set(kw) - set(args)
        if unknown:
            raise TypeError(f"splitbrain_test: unknown option(s) {', '.join(sorted(unknown))}")
        args.update(kw)
        error = None
        try:
            prog, prog_args = parse_bin(bin)
            test = build_test(bin_path=prog, bin_args=prog_args, bugs=all_bugs,
                              opts=list(opts or ()), backend=backend, store=store, **args)
            summary = run(test)
        except UserError as e:
            error = e.format_message()
        if error is not None:       # outside the except: the message alone, no chained trace
            pytest.fail(f"splitbrain: {error}", pytrace=False)
        want = expect == "valid"
        if summary.valid is not want:
            pytest.fail(_failure_text(summary, expect), pytrace=False)
        return summary

    return _run
