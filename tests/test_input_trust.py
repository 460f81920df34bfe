"""Issue 12: verdicts you can trust under bad input (items 1, 3, 4, 5 and 10).

Each case the issue lists is a regression test here: JSON value identity in every checker, a
torn last JSONL line, inputs that crashed `check` (huge integers, deep nesting, lone surrogates,
`--out` under a file), EDN memory, `--time-limit` covering preparation, and control characters
escaped on the terminal. `splitbrain check` runs in process (`splitbrain.cli.main`), as a user
runs it, exit code and all.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout

import pytest

from splitbrain.checkers.linearizability import check_linearizable
from splitbrain.checkers.registry import make_checker
from splitbrain.checkers.result import Result
from splitbrain.cli import main
from splitbrain.history import HistoryError, Op
from splitbrain.history.edn import loads_edn
from splitbrain.history.jsonl import dumps_op, read_jsonl
from splitbrain.termsafe import safe_line, safe_text

NAN = float("nan")
# What a terminal would act on: C0 controls but newline and tab, DEL, C1 controls.
_CONTROL = {chr(c) for c in [*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)]}


def run_cli(*args: str) -> tuple[int, str, str]:
    """`splitbrain ARGS...` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 4
    return code, out.getvalue(), err.getvalue()


def assert_one_line_usage_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitbrain: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def write_read(w, r, *, key=None) -> list[Op]:
    return [Op(0, 0, 0, "invoke", "write", w, key=key), Op(1, 1, 0, "ok", "write", w, key=key),
            Op(2, 2, 1, "invoke", "read", None, key=key), Op(3, 3, 1, "ok", "read", r, key=key)]


def jsonl(tmp_path, name: str, ops: list[Op]) -> str:
    p = tmp_path / name
    p.write_text("".join(dumps_op(o) + "\n" for o in ops), encoding="utf-8")
    return str(p)


# --- 1. value identity ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["register", "cas-register", "kv"])
@pytest.mark.parametrize("written, read, valid", [
    (1, True, False), (0, False, False), (True, 1, False), (True, True, True),
    (NAN, NAN, True), (1, 1.0, True), ([1], [True], False), ({"a": 0}, {"a": False}, False),
    ("1", 1, False), (None, False, False),
])
def test_register_values_compare_as_json(model, written, read, valid):
    assert check_linearizable(write_read(written, read), model).valid is valid


def test_kv_key_true_is_not_key_1():
    ops = [Op(0, 0, 0, "invoke", "write", 5, key=1), Op(1, 1, 0, "ok", "write", 5, key=1),
           Op(2, 2, 1, "invoke", "read", None, key=True), Op(3, 3, 1, "ok", "read", 5, key=True)]
    r = check_linearizable(ops, "kv")
    assert r.valid is False and r.stats["keys"] == 2


def test_set_arith_queue_and_append_log_models_use_json_identity():
    add_read = [Op(0, 0, 0, "invoke", "add", 1), Op(1, 1, 0, "ok", "add", 1),
                Op(2, 2, 1, "invoke", "read", None), Op(3, 3, 1, "ok", "read", [True])]
    assert check_linearizable(add_read, "set").valid is False
    nan_sum = [Op(0, 0, 0, "invoke", "add", NAN), Op(1, 1, 0, "ok", "add", NAN),
               Op(2, 2, 1, "invoke", "read", None), Op(3, 3, 1, "ok", "read", NAN)]
    assert check_linearizable(nan_sum, "arith").valid is True
    queue = [Op(0, 0, 0, "invoke", "enqueue", 1), Op(1, 1, 0, "ok", "enqueue", 1),
             Op(2, 2, 1, "invoke", "dequeue", None), Op(3, 3, 1, "ok", "dequeue", True)]
    assert check_linearizable(queue, "fifo-queue").valid is False
    log = [Op(0, 0, 0, "invoke", "append", 0), Op(1, 1, 0, "ok", "append", 0),
           Op(2, 2, 1, "invoke", "read", None), Op(3, 3, 1, "ok", "read", [False])]
    assert check_linearizable(log, "append-log").valid is False


def test_log_set_and_unique_ids_checkers_use_json_identity():
    def check(name, ops):
        return make_checker(name, {}).check(ops, {})

    lost = [Op(0, 0, 0, "invoke", "append", 1), Op(1, 1, 0, "ok", "append", 1),
            Op(2, 2, 1, "invoke", "read", None, node="n1"),
            Op(3, 3, 1, "ok", "read", [True], node="n1")]
    r = check("log", lost)
    assert r.valid is False and {"lost-append", "unexpected-value"} <= {a.name for a in r.anomalies}
    nan = [Op(0, 0, 0, "invoke", "append", NAN), Op(1, 1, 0, "ok", "append", NAN),
           Op(2, 2, 1, "invoke", "read", None, node="n1"),
           Op(3, 3, 1, "ok", "read", [NAN], node="n1")]
    assert check("log", nan).valid is True
    # two keys that Python would merge: key true and key 1 are two logs
    keys = [Op(0, 0, 0, "invoke", "append", 7, key=1), Op(1, 1, 0, "ok", "append", 7, key=1),
            Op(2, 2, 1, "invoke", "read", None, key=True, node="n1"),
            Op(3, 3, 1, "ok", "read", [], key=True, node="n1"),
            Op(4, 4, 2, "invoke", "read", None, key=1, node="n1"),
            Op(5, 5, 2, "ok", "read", [7], key=1, node="n1")]
    assert check("log", keys).valid is True
    sets = [Op(0, 0, 0, "invoke", "add", 1), Op(1, 1, 0, "ok", "add", 1),
            Op(2, 2, 1, "invoke", "read", None), Op(3, 3, 1, "ok", "read", [True])]
    assert {a.name for a in check("set", sets).anomalies} == {"lost", "unexpected"}
    ids = [Op(0, 0, 0, "invoke", "generate", None), Op(1, 1, 0, "ok", "generate", 1),
           Op(2, 2, 1, "invoke", "generate", None), Op(3, 3, 1, "ok", "generate", True),
           Op(4, 4, 2, "invoke", "generate", None), Op(5, 5, 2, "ok", "generate", 1.0)]
    r = check("unique-ids", ids)
    assert r.valid is False and len(r.anomalies) == 1  # 1 and 1.0 are one id, true another


def test_check_command_reads_true_after_writing_1_as_invalid(tmp_path):
    code, out, err = run_cli("check", jsonl(tmp_path, "h.jsonl", write_read(1, True)))
    assert code == 1 and "read -> true" in out, (out, err)


# --- 3. a torn last line ------------------------------------------------------------------------

def test_torn_last_line_is_ignored_with_a_warning(tmp_path):
    good = jsonl(tmp_path, "h.jsonl", write_read(1, 1))
    text = open(good, encoding="utf-8").read()
    torn = tmp_path / "torn.jsonl"
    torn.write_text(text + dumps_op(Op(4, 4, 2, "invoke", "read", None))[:25], encoding="utf-8")
    code, out, err = run_cli("check", str(torn))
    assert code == 0 and "VALID" in out and " 4 ops" in out, (out, err)
    warning = err.splitlines()
    assert len(warning) == 1 and "warning" in warning[0] and "torn.jsonl:line 5" in warning[0]
    # a multi-byte character cut in half is torn too
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(text.encode() + '{"index":4,"value":"é'.encode()[:-1])
    assert run_cli("check", str(cut))[0] == 0


def test_bad_line_in_the_middle_or_with_a_newline_is_still_an_error(tmp_path):
    lines = open(jsonl(tmp_path, "h.jsonl", write_read(1, 1)), encoding="utf-8").readlines()
    middle = tmp_path / "middle.jsonl"
    middle.write_text(lines[0] + lines[1][:20] + "\n" + "".join(lines[2:]), encoding="utf-8")
    assert_one_line_usage_error(*run_cli("check", str(middle)), "middle.jsonl:line 2")
    ended = tmp_path / "ended.jsonl"
    ended.write_text("".join(lines) + lines[0][:20] + "\n", encoding="utf-8")
    assert_one_line_usage_error(*run_cli("check", str(ended)), "ended.jsonl:line 5")


def test_analyze_checks_a_stored_run_whose_last_line_is_torn(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "test.json").write_text(json.dumps({"workload": "append-log"}), encoding="utf-8")
    ops = [Op(0, 0, 0, "invoke", "append", 1), Op(1, 1, 0, "ok", "append", 1),
           Op(2, 2, 1, "invoke", "read", None, node="n1"),
           Op(3, 3, 1, "ok", "read", [1], node="n1")]
    body = "".join(dumps_op(o) + "\n" for o in ops) + dumps_op(ops[0])[:30]
    (run / "history.jsonl").write_text(body, encoding="utf-8")
    code, out, err = run_cli("analyze", str(run), "--no-write")
    assert code in (0, 3), (out, err)  # the stored run's own checkers; never a usage error
    assert "history.jsonl:line 5" in out and "cut short" in out
    assert "4 history events" in out


# --- 4. inputs that crashed `check` ------------------------------------------------------------

def _line(value_text: str) -> str:
    return ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":'
            + value_text + '}\n')


@pytest.mark.parametrize("name, text, words", [
    ("bigint.jsonl", _line("1" * 4400), ["line 1", "digits"]),
    ("deep.jsonl", _line("[" * 1000 + "]" * 1000), ["line 1", "nested"]),
    ("deep150.jsonl", _line("[" * 150 + "]" * 150), ["line 1", "nested"]),
    ("surrogate.jsonl", _line('"a\\ud800b"'), ["line 1", "surrogate"]),
    ("deep.edn", "{:process 0 :type :invoke :f :write :value " + "[" * 500 + "]" * 500 + "}\n",
     ["line 1", "nested"]),
    ("bigint.edn", "{:process 0 :type :invoke :f :write :value " + "9" * 5000 + "}\n",
     ["line 1", "digits"]),
    ("surrogate.edn", '{:process 0 :type :invoke :f :write :value "\\ud800"}\n',
     ["line 1", "surrogate"]),
])
def test_hostile_values_are_bad_input(tmp_path, name, text, words):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    assert_one_line_usage_error(*run_cli("check", str(p)), name, *words)


def test_surrogate_pairs_are_fine(tmp_path):
    ops = write_read("\U0001F600", "\U0001F600")
    p = tmp_path / "emoji.jsonl"
    p.write_text("".join(json.dumps(o.to_dict()) + "\n" for o in ops), encoding="utf-8")
    assert "\\ud83d" in p.read_text()
    assert run_cli("check", str(p))[0] == 0
    assert loads_edn('{:process 0 :type :invoke :f :w :value "\\ud83d\\ude00"}')[0].value \
        == "\U0001F600"


def test_out_under_a_file_is_bad_input(tmp_path):
    h = jsonl(tmp_path, "h.jsonl", write_read(1, 1))
    (tmp_path / "afile").write_text("x")
    assert_one_line_usage_error(*run_cli("check", h, "--out", str(tmp_path / "afile" / "d")),
                                "--out")
    assert_one_line_usage_error(*run_cli("check", h, "--out", str(tmp_path / "afile")), "--out")


def test_edn_memory_is_a_small_multiple_of_the_input():
    # Was 150x (edn_format: 1.2 GB for an 8 MB file, 14 GB for a 100 MB string).
    text = "".join("{:index %d, :time %d, :type :invoke, :process %d, :f :write, :value %d}\n"
                   % (i, i, i, i) for i in range(10_000))
    tracemalloc.start()
    try:
        assert len(loads_edn(text)) == 10_000
        peak_ops = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        big = ('{:index 0, :time 0, :type :invoke, :process 0, :f :write, :value "'
               + "x" * 4_000_000 + '"}')
        assert len(loads_edn(big)[0].value) == 4_000_000
        peak_str = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_ops < 30 * len(text), peak_ops / len(text)   # measured: 15x (the Op objects)
    assert peak_str < 4 * len(big), peak_str / len(big)      # measured: 2x


# --- 5. --time-limit covers preparation ----------------------------------------------------------

def _many_ops(n_calls: int) -> list[Op]:
    ops = []
    for i in range(n_calls):
        p = i % 10
        ops.append(Op(2 * i, 2 * i, p, "invoke", "write", i))
        ops.append(Op(2 * i + 1, 2 * i + 1, p, "ok", "write", i))
    return ops


def test_time_limit_stops_preparation_of_a_large_history():
    ops = _many_ops(300_000)
    limit = 0.3
    t0 = time.monotonic()
    r = check_linearizable(ops, "register", time_limit=limit)
    elapsed = time.monotonic() - t0
    assert r.valid == "unknown" and "time limit" in r.error
    assert elapsed < limit + 1.0, elapsed


def test_a_checker_that_ignores_the_time_limit_is_stopped():
    from splitbrain.commands.check import OVERTIME_GRACE_S, _run_checker

    class Stubborn:
        name = "stubborn"

        def check(self, history, test):
            while True:
                try:
                    time.sleep(0.01)
                except Exception:  # noqa: BLE001 - a checker that swallows everything
                    pass

    t0 = time.monotonic()
    r = _run_checker("stubborn", Stubborn(), [], {}, time.monotonic() + 0.3, 0.3)
    elapsed = time.monotonic() - t0
    assert isinstance(r, Result) and r.valid == "unknown" and "time limit" in r.error
    assert 0.3 <= elapsed < 0.3 + OVERTIME_GRACE_S + 1.0, elapsed


# --- 10. control characters never reach the terminal raw ----------------------------------------

HOSTILE = "\x1b]0;owned\x07\x1b[2J\rX\x9b31m\u202e\x00"


def test_safe_text_and_safe_line_escape_what_a_terminal_interprets():
    t = safe_text("a\n" + HOSTILE + "\tb")
    assert not set(t) & _CONTROL and "\u202e" not in t and "\n" in t and "\t" in t
    assert "\\x1b]0;owned\\x07" in t and "\\r" in t and "\\x9b" in t
    one = safe_line("a\nb" + HOSTILE)
    assert "\n" not in one and not set(one) & _CONTROL
    assert safe_text("plain ünïcode ✓") == "plain ünïcode ✓"


def test_check_output_and_errors_escape_control_characters(tmp_path):
    ops = write_read(HOSTILE, HOSTILE + "x")
    code, out, err = run_cli("check", jsonl(tmp_path, "h.jsonl", ops))
    assert code == 1 and "\\x1b]0;owned" in out
    assert not (set(out) | set(err)) & _CONTROL, (out, err)
    bad = tmp_path / ("evil\x1b[31m.jsonl")
    bad.write_text("not json\n")
    code, out, err = run_cli("check", str(bad), "--format", "jsonl")
    assert code == 2 and "\\x1b[31m" in err and not set(err) & _CONTROL


def test_test_summaries_escape_control_characters(capsys):
    from splitbrain.commands.test import print_summary
    from splitbrain.harness.store import RunSummary

    results = {"children": {"log": {"valid": False, "error": HOSTILE, "anomalies": [
        {"name": "lost-append", "message": "append of " + HOSTILE + " was lost"}]}}}
    print_summary(RunSummary(valid=False, results=results, test={}, replay="r",
                             run_dir="/tmp/x\x1b", history_ops=4, notes=[HOSTILE]))
    out = capsys.readouterr().out
    assert "lost-append" in out and not set(out) & _CONTROL, out


def test_read_jsonl_api_reports_torn_lines_to_the_caller(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text(dumps_op(Op(0, 0, 0, "invoke", "read", None)) + "\n" + '{"index": 1, "ti')
    heard: list[str] = []
    assert len(read_jsonl(str(p), on_warning=heard.append)) == 1
    assert len(heard) == 1 and "line 2" in heard[0]
    with pytest.raises(HistoryError):
        p.write_text('{"index": 1, "ti\n')
        read_jsonl(str(p), on_warning=heard.append)


def test_canonical_values_survive_pickling_for_forked_workers():
    import pickle

    from splitbrain.history.values import JSON_NAN, JSON_TRUE, canon, uncanon

    v = canon({"a": [True, {"b": NAN}], "c": 1.0})
    w = pickle.loads(pickle.dumps(v))
    assert w == v and hash(w) == hash(v) and w["a"][0] is JSON_TRUE
    assert w["a"][1]["b"] is JSON_NAN and canon(True) != canon(1) and canon(1.0) == canon(1)
    back = uncanon(w)
    assert back["a"][0] is True and math.isnan(back["a"][1]["b"])
