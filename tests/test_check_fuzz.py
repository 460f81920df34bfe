"""Fuzzing `splitbrain check` over JSONL, Jepsen EDN and Porcupine inputs (issue 12's acceptance).

Every input, well formed or mangled, must end in one of two ways:
- exit 0, 1 or 3 with a verdict -- and for a well-formed small history, the verdict of a
  brute-force checker (tests/test_lin_properties.py's JSON oracle: VALID is exit 0, INVALID 1);
- exit 2 with exactly one error line on stderr (after a torn last line's warning, if any);
never a traceback or exit 4, never longer than the time limit plus a second, never a raw control
character on the terminal. `check` runs in this process (`splitbrain.cli.main`), a few thousand
examples in the CI tier; `pytest -m slow` runs many more.
"""

from __future__ import annotations

import io
import os
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.cli import main
from splitbrain.history.edn import write_edn
from splitbrain.history.formats import load_history
from splitbrain.history.jsonl import dumps_op
from splitbrain.history.op import Op
from splitbrain.history.porcupine import write_etcd_log
from splitbrain.history.values import json_key

from test_lin_properties import _mixed_history, _register_oracle

TIME_LIMIT_S = 5.0
OVERRUN_MAX_S = 1.0
CI_EXAMPLES = int(os.environ.get("SPLITBRAIN_FUZZ_EXAMPLES", "1000"))
SLOW_EXAMPLES = 20_000
FORMATS = ("jsonl", "jepsen-edn", "porcupine-etcd")
_CONTROL = {chr(c) for c in [*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)]}

# What a hostile or broken file may hold, spliced into a well-formed one.
SNIPPETS = [
    "[" * 1000, "{" * 600, "[" * 120 + "]" * 120, "9" * 5000, "-" + "1" * 4301, "1e999",
    '"\\ud800"', '"\\udfff\\ud800"', "\\ud83d", '"\x1b]0;owned\x07"', "\x1b[2J", "\r", "\x00",
    "\x9b", "\u202e", "NaN", "##NaN", "##Inf", "#_", "#{", "#inst", "\\u", "}", "]", ")", ",",
    ":", '"', "\n", "\n\n", "nil", "true", "null", '{"index":', ":invoke", "INFO  jepsen.util - ",
    "\t:ok\t:read\t", "\ufeff", "é", "\U0001F600", " " * 50,
]


def run_check(path: str, *extra: str) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["check", path, "--time-limit", str(TIME_LIMIT_S), *extra])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 4
    return code, out.getvalue(), err.getvalue(), time.monotonic() - t0


def assert_contract(code: int, out: str, err: str, elapsed: float) -> None:
    """The outcome every input must have (module docstring)."""
    assert "Traceback" not in out + err, err
    assert code in (0, 1, 2, 3), (code, out, err)
    if code == 2:
        # one error line (a torn last line's warning may come before it)
        lines = [x for x in err.splitlines() if not x.startswith("splitbrain: warning: ")]
        assert out == "" and len(lines) == 1 and lines[0].startswith("splitbrain: "), err
    else:
        assert out.split(None, 1)[0] in ("VALID", "INVALID", "UNKNOWN"), out
        for line in err.splitlines():  # at most warnings (a torn last line)
            assert line.startswith("splitbrain: warning: "), err
    assert elapsed < TIME_LIMIT_S + OVERRUN_MAX_S, elapsed
    assert not (set(out) | set(err)) & _CONTROL, (out, err)


def _as_ints(ops: list[Op]) -> list[Op]:
    """The same history with every value replaced by an integer id (JSON identity kept): what a
    Porcupine etcd log can hold. Linearizability only compares values, so the verdict stays."""
    ids: dict = {}

    def num(v):
        if v is None:
            return None
        return ids.setdefault(json_key(v), len(ids))

    def conv(op: Op):
        v = op.value
        if op.f == "cas" and isinstance(v, list):
            v = [num(v[0]), num(v[1])]
        elif v is not None:
            v = num(v)
        return Op(op.index, op.time, op.process, op.type, op.f, v, error=op.error)

    return [conv(o) for o in ops]


def write_history(tmp_path, fmt: str, ops: list[Op]) -> str:
    path = str(tmp_path / {"jsonl": "h.jsonl", "jepsen-edn": "h.edn",
                           "porcupine-etcd": "h.log"}[fmt])
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(dumps_op(o) + "\n" for o in ops)
    elif fmt == "jepsen-edn":
        write_edn(path, ops)
    else:
        write_etcd_log(ops, path)
    return path


histories = st.tuples(st.integers(0, 2**32 - 1), st.sampled_from(["register", "cas-register"]),
                      st.sampled_from(FORMATS))


def _well_formed_case(tmp_path, seed: int, model: str, fmt: str) -> None:
    ops = _mixed_history(seed, model)
    if fmt == "porcupine-etcd":
        ops = _as_ints(ops)
    path = write_history(tmp_path, fmt, ops)
    # Porcupine's format is lossy (an info keeps the invoke's value): judge what it holds.
    judged = load_history(path) if fmt == "porcupine-etcd" else ops
    code, out, err, elapsed = run_check(path, "--model", "cas-register")
    assert_contract(code, out, err, elapsed)
    expected = 0 if _register_oracle(judged) else 1
    assert code == expected, (seed, model, fmt, out, err)


def _mangled_case(tmp_path, seed: int, model: str, fmt: str, edits: list, auto: bool) -> None:
    ops = _mixed_history(seed, model)
    path = write_history(tmp_path, fmt, _as_ints(ops) if fmt == "porcupine-etcd" else ops)
    data = open(path, encoding="utf-8").read()
    for kind, where, what in edits:
        at = where % (len(data) + 1)
        if kind == "insert":
            data = data[:at] + what + data[at:]
        elif kind == "cut":
            data = data[:at]
        elif kind == "delete":
            data = data[:at] + data[at + len(what):]
        else:  # duplicate a stretch
            data = data[:at] + data[at:at + len(what) * 3] + data[at:]
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(data)
    extra = () if auto else ("--format", fmt)
    assert_contract(*run_check(path, *extra))


edits = st.lists(st.tuples(st.sampled_from(["insert", "cut", "delete", "duplicate"]),
                           st.integers(0, 10**6),
                           st.sampled_from(SNIPPETS) | st.text(max_size=8)),
                 min_size=1, max_size=3)


@settings(max_examples=CI_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=histories)
def test_well_formed_histories_get_the_brute_force_verdict(tmp_path, case):
    _well_formed_case(tmp_path, *case)


@settings(max_examples=CI_EXAMPLES * 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=histories, edits=edits, auto=st.booleans())
def test_mangled_histories_get_a_verdict_or_one_line(tmp_path, case, edits, auto):
    _mangled_case(tmp_path, *case, edits, auto)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=histories, edits=st.none() | edits, auto=st.booleans())
def test_many_more_histories(tmp_path, case, edits, auto):
    if edits is None:
        _well_formed_case(tmp_path, *case)
    else:
        _mangled_case(tmp_path, *case, edits, auto)
