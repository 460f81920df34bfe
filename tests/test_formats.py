"""Format detection and loading (splitbrain/history/formats.py), the shipped examples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.history import HistoryError, Op, write_jsonl
from splitbrain.history.edn import write_edn
from splitbrain.history.formats import FORMATS, detect_format, load_history, load_history_ex

from conftest import REPO
from test_edn import json_values

EXAMPLES = REPO / "splitbrain" / "examples"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def line(**d) -> str:
    base = {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read", "value": None}
    base.update(d)
    return json.dumps(base) + "\n"


@pytest.mark.parametrize("name, fmt", [
    ("cas-register-valid.jsonl", "jsonl"), ("kv-valid.jsonl", "jsonl"),
    ("append-log-valid.jsonl", "jsonl"), ("jepsen-cas-register.edn", "jepsen-edn")])
def test_examples_are_detected_and_valid(name, fmt):
    ops, used, real = load_history_ex(str(EXAMPLES / name))
    assert used == fmt and real == str(EXAMPLES / name) and len(ops) > 50


def test_porcupine_corpus_detection(porcupine_dir):
    assert detect_format(str(porcupine_dir / "jepsen" / "etcd_000.log")) == "porcupine-etcd"
    assert detect_format(str(porcupine_dir / "kv" / "c10-ok.txt")) == "porcupine-kv"
    ops = load_history(str(porcupine_dir / "kv" / "c01-ok.txt"))
    assert ops and all(op.key is not None for op in ops)


def test_jepsen_edn_with_key_entries_is_not_mistaken_for_porcupine_kv(tmp_path):
    # Our EDN writer puts `:key` entries in maps, as Porcupine's kv logs do; `:index`/`:time`
    # tell Jepsen's apart.
    ops = [Op(0, 5, 0, "invoke", "put", "x", key="k"), Op(1, 6, 0, "ok", "put", "x", key="k")]
    p = tmp_path / "h.edn"
    write_edn(str(p), ops)
    assert detect_format(str(p)) == "jepsen-edn"
    assert load_history(str(p)) == ops


def test_unknown_format_lists_the_choices(tmp_path):
    p = write(tmp_path / "h.jsonl", line())
    with pytest.raises(HistoryError) as e:
        load_history(p, "yaml")
    msg = str(e.value)
    assert "'yaml'" in msg and all(f in msg for f in FORMATS) and "auto" in msg


def test_undetectable_text(tmp_path):
    p = write(tmp_path / "h.txt", "hello world\n")
    with pytest.raises(HistoryError) as e:
        load_history(p)
    assert "--format" in str(e.value) and e.value.path == p


def test_missing_file_directory_and_store_directory(tmp_path):
    with pytest.raises(HistoryError) as e:
        load_history(str(tmp_path / "nope.jsonl"))
    assert "no such file" in str(e.value)
    with pytest.raises(HistoryError) as e:
        load_history(str(tmp_path))
    assert "directory" in str(e.value)
    # A stored run's directory stands for its history.jsonl.
    write(tmp_path / "history.jsonl", line() + line(index=1, time=1, type="ok", value=3))
    assert [op.value for op in load_history(str(tmp_path))] == [None, 3]


def test_empty_file_is_an_empty_history(tmp_path):
    assert load_history(write(tmp_path / "h.jsonl", "")) == []
    assert load_history(write(tmp_path / "blank.jsonl", "\n \n")) == []


def test_binary_file(tmp_path):
    p = tmp_path / "h.bin"
    p.write_bytes(b"\x00\x01\xff\xfe" * 10)
    with pytest.raises(HistoryError) as e:
        load_history(str(p))
    assert "not UTF-8" in str(e.value)


def test_jsonl_semantic_error_names_the_real_line(tmp_path):
    # Blank lines shift lines against indices: the message must name the file's line.
    p = write(tmp_path / "h.jsonl",
              line() + "\n\n" + line(index=1, time=1, process=1) + line(index=2, time=2))
    with pytest.raises(HistoryError) as e:
        load_history(p)
    assert (e.value.line, e.value.field) == (5, "process")
    assert "line 1" in e.value.message
    # The same file without validation loads.
    assert len(load_history(p, validate=False)) == 3


def test_malformed_later_json_line_is_reported_as_jsonl(tmp_path):
    p = write(tmp_path / "h.jsonl", line() + '{"index": 1, "time": \n')
    with pytest.raises(HistoryError) as e:
        load_history(p)
    assert e.value.line == 2 and "not valid JSON" in str(e.value)


def test_edn_semantic_error_names_the_line(tmp_path):
    p = write(tmp_path / "h.edn", "[{:process 0 :type :invoke :f :read}\n\n"
                                  " {:process 0 :type :ok :f :write}]\n")
    with pytest.raises(HistoryError) as e:
        load_history(p)
    assert (e.value.path, e.value.line, e.value.field) == (p, 3, "f")


@st.composite
def jsonl_histories(draw):
    return [Op(index=i, time=draw(st.integers(0, 2**62)),
               process=draw(st.integers(0, 1000) | st.just("nemesis")),
               type=draw(st.sampled_from(["invoke", "ok", "fail", "info"])),
               f=draw(st.text(min_size=1, max_size=8)), value=draw(json_values),
               key=draw(st.none() | json_values.filter(lambda v: v is not None)),
               node=draw(st.none() | st.text(max_size=5)),
               error=draw(st.none() | st.text(max_size=8)))
            for i in range(draw(st.integers(1, 10)))]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=jsonl_histories())
def test_jsonl_round_trip(tmp_path, ops):
    p = tmp_path / "h.jsonl"
    write_jsonl(str(p), ops)
    assert load_history(str(p), "jsonl", validate=False) == ops


def test_examples_are_reproducible(tmp_path):
    from splitbrain.examples.generate import generate
    for path in generate(str(tmp_path)):
        name = Path(path).name
        assert Path(path).read_bytes() == (EXAMPLES / name).read_bytes(), name


def test_examples_ship_as_package_data(tmp_path):
    """Build the package from a copy of the sources: the examples must be in it."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "splitbrain", src / "splitbrain",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "build"
    r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                        "build_py", "--build-lib", str(out)], cwd=src, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    shipped = {p.name for p in (out / "splitbrain" / "examples").iterdir()}
    expected = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".jsonl", ".edn", ".json")}
    assert expected and expected <= shipped
