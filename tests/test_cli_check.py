"""`splitbrain check` through the real console entry (`python -m splitbrain`), and in-process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from splitbrain.checkers import registry
from splitbrain.checkers.result import Anomaly, Result
from splitbrain.history import Op, write_jsonl

EXAMPLES = REPO / "splitbrain" / "examples"
VALID = str(EXAMPLES / "cas-register-valid.jsonl")
INVALID = str(EXAMPLES / "cas-register-invalid.jsonl")


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("SPLITBRAIN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "splitbrain", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def line(**d) -> str:
    base = {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read", "value": None}
    base.update(d)
    return json.dumps(base) + "\n"


GOOD_START = line()

# name -> (file name, file content or None for "do not create", extra args, words in the error)
MALFORMED = {
    "malformed-json": ("h.jsonl", GOOD_START + '{"index": 1, "time": 1,\n', [],
                       ["h.jsonl:line 2", "not valid JSON"]),
    "unknown-type": ("h.jsonl", GOOD_START + line(index=1, time=1, type="done"), [],
                     ["h.jsonl:line 2", "field 'type'", "'done'"]),
    "missing-field": ("h.jsonl", GOOD_START + json.dumps({"index": 1, "time": 1, "process": 0,
                                                          "type": "ok"}) + "\n", [],
                      ["h.jsonl:line 2", "field 'f'", "missing"]),
    "busy-process": ("h.jsonl", GOOD_START + line(index=1, time=1, f="write", value=2), [],
                     ["h.jsonl:line 2", "field 'process'", "outstanding"]),
    "completion-without-invoke": ("h.jsonl", GOOD_START + line(index=1, time=1, process=7,
                                                               type="ok", value=1), [],
                                  ["h.jsonl:line 2", "field 'type'", "no outstanding invoke"]),
    "invoke-after-info": ("h.jsonl", GOOD_START + line(index=1, time=1, type="info")
                          + line(index=2, time=2), [], ["h.jsonl:line 3", "after its 'info'"]),
    "sparse-index": ("h.jsonl", GOOD_START + line(index=5, time=1, type="ok", value=1), [],
                     ["h.jsonl:line 2", "field 'index'"]),
    "bad-edn": ("h.edn", "[{:process 0, :type :invoke, :f :read, :value nil}\n"
                         " {:process 0, :type :ok, :f :read, :value [1 2}]\n", [],
                ["h.edn:line 2", "bad EDN"]),
    "edn-busy-process": ("h.edn", "{:process 0, :type :invoke, :f :read}\n"
                                  "{:process 0, :type :invoke, :f :read}\n", [],
                         ["h.edn:line 2", "field 'process'"]),
    "unknown-format": ("h.jsonl", GOOD_START, ["--format", "yaml"],
                       ["'yaml'", "jsonl", "jepsen-edn", "porcupine-etcd", "porcupine-kv"]),
    "missing-file": ("nope.jsonl", None, [], ["nope.jsonl", "no such file"]),
    "directory": (".", None, [], ["directory"]),
    "binary-file": ("h.jsonl", "\x00\x01binary", ["--format", "jsonl"], ["h.jsonl:line 1"]),
    "unknown-checker": ("h.jsonl", GOOD_START, ["--checker", "nope"], ["'nope'", "linearizable"]),
    "unknown-model": ("h.jsonl", GOOD_START, ["--model", "nope"], ["nope", "cas-register"]),
    "bad-time-limit": ("h.jsonl", GOOD_START, ["--time-limit", "-1"], ["--time-limit"]),
    "uninferable-model": ("h.jsonl", line(f="frobnicate"), [], ["h.jsonl", "--model"]),
    "bad-sidecar": ("h.jsonl", GOOD_START, ["SIDECAR"], ["h.test.json", "checkers"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_one_line_and_exit_2(tmp_path, case):
    name, content, extra, words = MALFORMED[case]
    target = tmp_path / name
    if content is not None:
        target.write_text(content, encoding="utf-8")
    if extra == ["SIDECAR"]:
        (tmp_path / "h.test.json").write_text('{"checkers": "linearizable"}')
        extra = []
    r = run("check", str(target), *extra, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("splitbrain: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_valid_example_one_line_with_verdict_and_time():
    r = run("check", VALID)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    assert re.match(r"VALID\s+\S+cas-register-valid\.jsonl\s+cas-register\s+\[linearizable\]\s+"
                    r"\d+ ops\s+\d+\.\d+ s$", lines[0]), lines[0]


def test_invalid_example_prints_details_and_exits_1():
    r = run("check", INVALID)
    assert r.returncode == 1, r.stderr
    first, *details = r.stdout.splitlines()
    assert first.startswith("INVALID") and details
    assert any("cannot linearize" in d for d in details)


def test_check_all_shipped_examples():
    """`splitbrain check splitbrain/examples/*.jsonl`: one line per example, then a summary."""
    files = sorted(str(p.relative_to(REPO)) for p in EXAMPLES.glob("*.jsonl"))
    r = run("check", *files)
    assert r.returncode == 1, r.stderr  # cas-register-invalid.jsonl is invalid on purpose
    verdicts = {l.split()[1]: l.split()[0] for l in r.stdout.splitlines()
                if l.split() and l.split()[0] in ("VALID", "INVALID", "UNKNOWN")}
    assert verdicts == {f: ("INVALID" if "invalid" in f else "VALID") for f in files}
    assert re.search(r"^4 histories: 3 valid, 1 invalid, 0 unknown; overall INVALID",
                     r.stdout, re.M)


def test_json_output(tmp_path):
    r = run("check", VALID, INVALID, str(EXAMPLES / "jepsen-cas-register.edn"), "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["valid"] is False
    assert [h["valid"] for h in doc["histories"]] == [True, False, True]
    assert [h["format"] for h in doc["histories"]] == ["jsonl", "jsonl", "jepsen-edn"]
    assert doc["histories"][2]["model"] == "kv"
    assert doc["anomalies"] and all(a["file"] == INVALID for a in doc["anomalies"])
    assert doc["histories"][1]["anomalies"][0]["checker"] == "linearizable"
    assert doc["histories"][0]["anomalies"] == [] and doc["histories"][0]["time_s"] >= 0
    assert "linearizable" in doc["histories"][0]["results"]


def test_sidecar_and_flags_choose_model_and_checkers(tmp_path):
    # Precedence: --model/--checker, then FILE-STEM.test.json, then test.json, then inference.
    h = tmp_path / "run.jsonl"
    write_jsonl(str(h), [Op(0, 0, 0, "invoke", "write", 1), Op(1, 1, 0, "ok", "write", 1),
                         Op(2, 2, 0, "invoke", "read"), Op(3, 3, 0, "ok", "read", 1)])
    assert run("check", str(h)).returncode == 0
    (tmp_path / "test.json").write_text(json.dumps({"model": "set"}))
    r = run("check", str(h), "--json")
    assert json.loads(r.stdout)["histories"][0]["model"] == "set"
    (tmp_path / "run.test.json").write_text(json.dumps({"model": "register",
                                                        "checkers": ["linearizable", "set"]}))
    r = run("check", str(h), "--json")
    doc = json.loads(r.stdout)["histories"][0]
    assert doc["model"] == "register" and list(doc["results"]) == ["linearizable", "set"]
    r = run("check", str(h), "--json", "--model", "cas-register", "--checker", "linearizable")
    doc = json.loads(r.stdout)["histories"][0]
    assert doc["model"] == "cas-register" and list(doc["results"]) == ["linearizable"]


def test_out_dir_receives_counterexample(tmp_path):
    out = tmp_path / "out"
    r = run("check", INVALID, "--out", str(out), "--json")
    assert r.returncode == 1
    files = json.loads(r.stdout)["histories"][0]["results"]["linearizable"]["files"]
    assert files and all(Path(f).is_file() and str(out) in f for f in files)


def test_python_dash_m_help():
    r = run("--help")
    assert r.returncode == 0 and "check" in r.stdout
    r = run("check", "--help")
    assert r.returncode == 0 and "--time-limit" in r.stdout and "--workers" in r.stdout


# --- in-process: composition of validity and the exit codes 3 and 4 --------------------------

class _Fixed:
    def __init__(self, name, valid, boom=False):
        self.name, self.valid, self.boom = name, valid, boom

    def check(self, history, test):
        if self.boom:
            raise RuntimeError("checker exploded")
        anomalies = [Anomaly("made-up", "a made-up anomaly")] if self.valid is False else []
        return Result(valid=self.valid, checker=self.name, anomalies=anomalies)


def make_true(options):
    return _Fixed("always-true", True)


def make_unknown(options):
    return _Fixed("always-unknown", "unknown")


def make_false(options):
    return _Fixed("always-false", False)


def make_raising(options):
    return _Fixed("raising", True, boom=True)


@pytest.fixture
def fake_checkers(monkeypatch):
    for name in ("true", "unknown", "false", "raising"):
        monkeypatch.setitem(registry.CHECKER_PATHS, f"t-{name}", f"test_cli_check:make_{name}")
    monkeypatch.setitem(registry.CHECKER_PATHS, "t-missing", "splitbrain.no_such_module:make")


def main(*args: str, capsys) -> tuple[int, str, str]:
    from splitbrain.cli import main as cli_main
    with pytest.raises(SystemExit) as e:
        cli_main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("checkers, code", [
    (["t-true"], 0), (["t-unknown"], 3), (["t-false"], 1), (["t-raising"], 3),
    (["t-true", "t-unknown"], 3), (["t-unknown", "t-false"], 1), (["t-raising", "t-false"], 1),
])
def test_composed_validity_gives_the_exit_code(fake_checkers, capsys, checkers, code):
    args = ["check", VALID]
    for c in checkers:
        args += ["--checker", c]
    rc, out, err = main(*args, capsys=capsys)
    assert rc == code, (out, err)
    if "t-raising" in checkers:
        assert "RuntimeError: checker exploded" in out


def test_unknown_history_among_valid_ones_is_exit_3(fake_checkers, capsys, tmp_path):
    (tmp_path / "b.test.json").write_text(json.dumps({"checkers": ["t-unknown"]}))
    b = tmp_path / "b.jsonl"
    b.write_text(Path(VALID).read_text())
    rc, out, _ = main("check", VALID, str(b), capsys=capsys)
    assert rc == 3 and "overall UNKNOWN" in out


def test_missing_checker_module_is_a_harness_error(fake_checkers, capsys):
    rc, out, err = main("check", VALID, "--checker", "t-missing", capsys=capsys)
    assert rc == 4 and len(err.splitlines()) == 1 and "not available" in err


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    # The README's first lines: a code block with the main job, then the test command.
    block = readme[readme.index("```") + 1:][:2]
    assert "pytest" in block[1], block
    test_cmd = block[1].split("&&")[-1].strip()
    assert test_cmd == "python3 -m pytest -q", block
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
    assert "set -euo pipefail" in ci  # pytest's "no tests ran" (exit 5) fails the script


def test_time_limit_gives_unknown_and_exit_3(porcupine_dir):
    r = run("check", str(porcupine_dir / "kv" / "c50-ok.txt"), "--time-limit", "0.00001")
    assert r.returncode == 3, (r.stdout, r.stderr)
    first, *details = r.stdout.splitlines()
    assert first.startswith("UNKNOWN") and " kv " in first
    assert details and "time limit" in details[0]


@pytest.mark.parametrize("args, words", [
    (["check"], "Missing argument"),
    (["check", VALID, "--time-limit", "abc"], "--time-limit"),
    (["check", VALID, "--workers", "0"], "--workers"),
    (["check", VALID, "--bogus"], "--bogus"),
])
def test_usage_errors_are_one_line_and_exit_2(args, words):
    r = run(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and words in r.stderr


def test_stored_run_directory_ignores_the_runs_own_time_limit_and_out_dir(tmp_path):
    run_dir = tmp_path / "store" / "t" / "1"
    run_dir.mkdir(parents=True)
    (run_dir / "history.jsonl").write_text(Path(INVALID).read_text())
    # The harness records the test's duration as time_limit and a relative out_dir: applied to
    # the check they would give "unknown" and write into the caller's directory.
    (run_dir / "test.json").write_text(json.dumps({"workload": "register", "time_limit": 1e-9,
                                                   "out_dir": "junk/out"}))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = run("check", str(run_dir), "--json", cwd=cwd)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["histories"][0]["valid"] is False
    assert not (cwd / "junk").exists()


def test_empty_history_is_unknown_and_the_others_are_still_checked(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run("check", str(empty), VALID)
    assert r.returncode == 3, (r.stdout, r.stderr)
    verdicts = [l.split()[0] for l in r.stdout.splitlines() if l.split()
                and l.split()[0] in ("VALID", "INVALID", "UNKNOWN")]
    assert verdicts == ["UNKNOWN", "VALID"], r.stdout
    assert "empty history" in r.stdout and "Traceback" not in r.stderr


def test_first_invalid_flag_reports_one_key_of_porcupine_kv_c50_bad(porcupine_dir):
    """--first-invalid stops at the first invalid key (Porcupine's behaviour); the default
    reports every invalid key it finds within its budget."""
    path = str(porcupine_dir / "kv" / "c50-bad.txt")
    first = run("check", "--json", "--first-invalid", path)
    assert first.returncode == 1, first.stderr
    res = json.loads(first.stdout)["histories"][0]["results"]["linearizable"]
    assert res["valid"] is False
    assert len(res["anomalies"]) == 1
    assert len(res["stats"]["undecided_keys"]) == res["stats"]["keys"] - 1
    every = run("check", "--json", path)
    assert every.returncode == 1, every.stderr
    res = json.loads(every.stdout)["histories"][0]["results"]["linearizable"]
    assert len(res["anomalies"]) > 1
