"""The fast JSONL reader (orjson, whole columns at once) reads exactly what the stdlib json
reader reads, and the linearizability checker streaming a ColumnHistory decides exactly what it
decides on a list of the same Ops.

The reference is the reader with orjson switched off (`jsonl._orjson_loads = None`): then every
batch goes through the line-by-line path, the stdlib parser and the field checks one op at a
time, which is what the reader was before it had a fast path. For every file, well formed or
mangled (huge integers, NaN, lone surrogates, deep nesting, blank lines, torn last lines, fields
of the wrong type, Jepsen's semantics broken), both must give the same Ops (the same values, of
the same types) and lines, or the same one-line error, and the same warnings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.linearizability.checker import check_linearizable
from splitbrain.commands.check import infer_checkers, infer_model
from splitbrain.history import jsonl
from splitbrain.history.columns import ColumnHistory, load_jsonl_columns
from splitbrain.history.errors import HistoryError
from splitbrain.history.formats import read_jsonl_with_lines
from splitbrain.history.op import Op, make_op

# Raw text spliced into a field or in place of a line: what hostile or broken files hold.
HOSTILE = [
    "18446744073709551616", "-9223372036854775809", "18446744073709551615", "1" * 19,
    "9" * 5000, "-" + "1" * 4301, "1e400", "-1e400", "1.7976931348623157e309", "NaN",
    "Infinity", "-Infinity", '"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"',
    "[" * 101 + "]" * 101,
    "[" * 1000 + "]" * 1000, '{"a":' * 120 + "1" + "}" * 120, "0.1", "-0", "-0.0", "1E5", "true",
    "false", "null", '""', '"é"', '"\\u0000"', "[1,2,[3,{}]]", '{"k":[1.5,"x",null]}',
    "123456789012345678901234567890.5", "4.9e-324", "01", "+1", ".5", "[1,]", '"\x01"',
]
BROKEN_LINES = [
    "", "   ", "\t", "{", "}", "[]", "1", "null", '"op"', '{"index":', "\ufeff{}", "\x00",
    '{"a":1}{"b":2}', '{"index":0}', "\xff\xfe", "NaN",
]


@st.composite
def json_values(draw, depth: int = 0):
    """A JSON value as text, from plain ones to the hostile ones above."""
    kind = draw(st.integers(0, 9 if depth < 3 else 5))
    if kind == 0:
        return json.dumps(draw(st.integers(-(2 ** 70), 2 ** 70)))
    if kind == 1:
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if kind == 2:
        return json.dumps(draw(st.text(max_size=8)), ensure_ascii=draw(st.booleans()))
    if kind == 3:
        return draw(st.sampled_from(HOSTILE))
    if kind == 4:
        return draw(st.sampled_from(["null", "true", "false", "0", "7", '"x"']))
    if kind == 5:
        return str(draw(st.integers(0, 10 ** 6)))
    if kind <= 7:
        items = draw(st.lists(json_values(depth + 1), max_size=4))
        return "[" + ",".join(items) + "]"
    pairs = draw(st.lists(st.tuples(st.sampled_from(["a", "b", "value", "é"]),
                                    json_values(depth + 1)), max_size=3))
    return "{" + ",".join(json.dumps(k) + ":" + v for k, v in pairs) + "}"


@st.composite
def histories(draw):
    """JSONL text: a valid history of read/write calls (mostly), with some fields or lines
    replaced by hostile or wrong text, maybe a torn last line."""
    n_calls = draw(st.integers(0, 12))
    rng = random.Random(draw(st.integers(0, 2 ** 32)))
    mangle = draw(st.floats(0, 0.3))
    lines = []
    index = 0
    for c in range(n_calls):
        p = c % 3
        f = rng.choice(["read", "write"])
        completion = rng.choice(["ok", "ok", "ok", "fail", "info"])
        for typ in ("invoke", completion):
            fields = {"index": str(index), "time": str(index * 10), "process": str(p),
                      "type": json.dumps(typ), "f": json.dumps(f)}
            if f == "write" or typ != "invoke":
                fields["value"] = draw(json_values())
            if rng.random() < 0.2:
                fields["key"] = draw(json_values())
            if rng.random() < 0.1:
                fields["node"] = json.dumps("n1")
            if typ != "invoke" and completion != "ok" and rng.random() < 0.5:
                fields["error"] = draw(st.sampled_from(
                    ['"timeout"', "[1, 2]", "18446744073709551616", "1e400"]))
            if rng.random() < mangle:
                name = rng.choice(sorted(fields) + ["process", "extra"])
                fields[name] = draw(st.one_of(json_values(), st.sampled_from(
                    ['"nemesis"', '"invoke"', '""', "-1", "true", "1.0", '"ok"', "[]"])))
            if rng.random() < mangle / 4:
                del fields[rng.choice(sorted(fields))]
            line = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
            if rng.random() < mangle / 4:
                line = draw(st.sampled_from(BROKEN_LINES + HOSTILE))
            lines.append(line)
            index += 1
    text = "".join(line + "\n" for line in lines)
    if draw(st.booleans()) and lines:
        text = text[:-1]  # no newline at the end
        if draw(st.booleans()):
            text = text[:max(1, len(text) - draw(st.integers(1, 20)))]  # a torn last line
    return text.encode("utf-8", "surrogatepass")


def _outcome(path, read):
    """What reading `path` gives: ("ok", ops as comparable tuples, lines, warnings) or
    ("error", message, warnings)."""
    warnings: list[str] = []
    try:
        ops, lines = read(path, warnings.append)
    except HistoryError as e:
        return ("error", str(e), warnings)
    return ("ok", [_typed(op) for op in ops], list(lines), warnings)


def _typed(x):
    """A value with its types made visible (1 and 1.0 and True differ; NaN equals itself)."""
    if isinstance(x, Op):
        return ("Op", tuple(_typed(getattr(x, f.name)) for f in dataclasses.fields(Op)))
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else repr(x))
    if isinstance(x, list):
        return ("list", tuple(_typed(v) for v in x))
    if isinstance(x, dict):
        return ("dict", tuple((_typed(k), _typed(v)) for k, v in x.items()))
    return (type(x).__name__, x)


def _read_list(path, warn):
    return read_jsonl_with_lines(path, on_warning=warn)


def _read_columns(path, warn):
    h = load_jsonl_columns(path, on_warning=warn)
    ops = list(h)
    assert ops == h.to_list() and len(h) == len(ops)
    # what `splitbrain check` infers from the columns is what it infers from the Ops
    assert infer_model(h) == infer_model(ops) and infer_checkers(h) == infer_checkers(ops)
    return ops, range(0)   # ColumnHistory keeps no line numbers for the caller


def _read_iter(path, warn):
    pairs = list(jsonl.iter_ops_with_lines(path, on_warning=warn))
    return [op for _, op in pairs], [line for line, _ in pairs]


@pytest.fixture
def reference(monkeypatch):
    """Read with the stdlib parser only (every batch line by line)."""
    def read(path, reader):
        with monkeypatch.context() as m:
            m.setattr(jsonl, "_orjson_loads", None)
            return _outcome(path, reader)
    return read


@pytest.mark.parametrize("batch_bytes", [1, 200, 1 << 16])
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=histories())
def test_fast_reader_reads_what_json_reads(tmp_path, monkeypatch, reference, batch_bytes, text):
    monkeypatch.setattr(jsonl, "BATCH_BYTES", batch_bytes)
    path = str(tmp_path / "h.jsonl")
    with open(path, "wb") as fh:
        fh.write(text)
    want = reference(path, _read_list)
    got = _outcome(path, _read_list)
    assert got == want
    if want[0] == "ok":
        assert _outcome(path, _read_iter)[:2] == want[:2]
        got_c = _outcome(path, _read_columns)
        assert got_c[0] == "ok" and got_c[1] == want[1]
    else:
        assert _outcome(path, _read_columns)[:2] == want[:2]


@pytest.mark.parametrize("line, why", [
    ('{"index":0,"time":18446744073709551616,"process":0,"type":"invoke","f":"read"}',
     "time beyond 64 bits: an int, not orjson's float"),
    ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write",'
     '"value":[1,18446744073709551617]}', "a value beyond 64 bits inside a list"),
    ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1e400}',
     "1e400: json's inf"),
    ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":NaN}', "NaN"),
    ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":"\\ud800"}',
     "a lone surrogate: refused by sanity.py"),
    ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":' + "[" * 101
     + "]" * 101 + "}", "nested deeper than the bound"),
    ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","x":' + "9" * 5000 + "}",
     "an integer over Python's digit limit in an ignored field"),
    ('{"index":0,"time":0,"process":0,"type":"ok","f":"read","error":18446744073709551616}',
     "a non-string error is JSON text of json's value"),
])
def test_hostile_lines(tmp_path, reference, line, why):
    path = str(tmp_path / "h.jsonl")
    with open(path, "w") as fh:
        fh.write(line + "\n")
    want = reference(path, _read_list)
    assert _outcome(path, _read_list) == want, why
    assert _outcome(path, _read_columns)[:2] == want[:2], why


@pytest.mark.parametrize("batch_bytes", [100, 1 << 16])
def test_columns_infer_as_ops_do_with_nemesis(tmp_path, monkeypatch, batch_bytes):
    """Nemesis ops tell the inference nothing: their keys, names and list results are not the
    clients' (the columns' summary must leave them out as `infer_model` does)."""
    monkeypatch.setattr(jsonl, "BATCH_BYTES", batch_bytes)
    ops = []
    for i in range(40):
        if i % 5 == 0:
            ops += [("nemesis", "invoke", "partition", [1, 2], "k"),
                    ("nemesis", "info", "read", [1, 2], "k")]
        p = i % 3
        ops += [(p, "invoke", "write", i + 1, None), (p, "ok", "write", i + 1, None),
                (p, "invoke", "read", None, None), (p, "ok", "read", i + 1, None)]
    history = [Op(index=n, time=n, process=p, type=t, f=f, value=v, key=k)
               for n, (p, t, f, v, k) in enumerate(ops)]
    path = str(tmp_path / "h.jsonl")
    jsonl.write_jsonl(path, history)
    h = load_jsonl_columns(path)
    assert h.to_list() == history
    assert h.summary() == ({"write", "read"}, False, False)
    assert infer_model(h) == infer_model(history) == "register"
    assert infer_checkers(h) == infer_checkers(history) == ["linearizable"]


def test_op_made_fast_is_an_op():
    a = make_op(3, 40, 1, "ok", "read", [1, 2], "k", "n1", None)
    b = Op(index=3, time=40, process=1, type="ok", f="read", value=[1, 2], key="k", node="n1")
    assert type(a) is Op and a == b and repr(a) == repr(b)
    assert hash(make_op(1, 2, 3, "ok", "read", 5)) == hash(Op(1, 2, 3, "ok", "read", 5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.index = 4
    assert dataclasses.replace(a, index=9).index == 9
    assert pickle.loads(pickle.dumps(a)) == a


# --- the checker over a ColumnHistory -------------------------------------------------------

def _register_history(n_calls: int, keys: int, seed: int, stale: int = 0, dup: int = 0):
    """Unique-valued writes and reads over `keys` keys (None when 1) by 4 clients; `stale`
    reads per key return an overwritten value (invalid), `dup` writes of key 0 write a value
    again (that key goes to the search)."""
    rng = random.Random(seed)
    ops = []
    state = {k: None for k in range(keys)}
    history_of = {k: [None] for k in range(keys)}
    counter = 0
    stale_left = {k: stale for k in range(keys)}
    dup_left = {k: dup if k == 0 else 0 for k in range(keys)}   # key 0 only
    for c in range(n_calls):
        p = c % 4
        k = rng.randrange(keys)
        key = None if keys == 1 else k
        if rng.random() < 0.5:
            counter += 1
            v = counter
            if dup_left[k] and len(history_of[k]) > 2:
                v = history_of[k][-2]
                dup_left[k] -= 1
            ops.append(("invoke", p, "write", v, key))
            state[k] = v
            history_of[k].append(v)
            ops.append(("ok", p, "write", v, key))
        else:
            ops.append(("invoke", p, "read", None, key))
            v = state[k]
            if stale_left[k] and len(history_of[k]) > 3 and c > n_calls // 2:
                v = history_of[k][-3]
                stale_left[k] -= 1
            ops.append(("ok", p, "read", v, key))
    return [Op(index=i, time=i * 10, process=p, type=t, f=f, value=v, key=key)
            for i, (t, p, f, v, key) in enumerate(ops)]


class _Passes:
    """A re-iterable history that counts the passes over it."""

    def __init__(self, h):
        self.h = h
        self.passes = 0

    def __len__(self):
        return len(self.h)

    def __iter__(self):
        self.passes += 1
        return iter(self.h)


def _same(a, b):
    assert a.valid == b.valid
    assert [(x.name, x.message, x.ops) for x in a.all_anomalies()] == \
        [(x.name, x.message, x.ops) for x in b.all_anomalies()]
    sa = {k: v for k, v in a.stats.items() if k != "seconds"}
    sb = {k: v for k, v in b.stats.items() if k != "seconds"}
    assert sa == sb
    assert a.error == b.error


@pytest.mark.parametrize("keys, stale, dup, model, valid, passes", [
    (1, 0, 0, "register", True, 1),       # one pass: the unique-values stream
    (1, 1, 0, "register", False, 2),      # and one for the counterexample
    (4, 0, 0, "kv", True, 1),
    (4, 1, 0, "kv", False, 2),            # one pass for every invalid key's counterexample
    (4, 0, 1, "kv", True, 2),             # one pass for the keys the search decides
    (4, 1, 1, "kv", False, 3),
])
def test_streamed_check_equals_list_check(tmp_path, keys, stale, dup, model, valid, passes):
    ops = _register_history(400, keys, seed=keys * 10 + stale + dup, stale=stale, dup=dup)
    path = str(tmp_path / "h.jsonl")
    jsonl.write_jsonl(path, ops)
    h = load_jsonl_columns(path)
    assert isinstance(h, ColumnHistory) and h.to_list() == ops
    want = check_linearizable(ops, model)
    assert want.valid is valid
    got = check_linearizable(h, model)
    _same(got, want)
    counted = _Passes(h)
    _same(check_linearizable(counted, model), want)
    assert counted.passes == passes   # never listed, never one pass per key
    if dup:
        assert want.stats["keys_by_method"]["search"] > 0
    if stale and keys > 1:
        assert want.stats["invalid_keys"] > 1


def test_check_command_on_columns(tmp_path):
    """`splitbrain check` holds a JSONL history as columns and gives the list's verdict."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from splitbrain.cli import main

    ops = _register_history(300, 1, seed=3, stale=1)
    path = str(tmp_path / "h.jsonl")
    jsonl.write_jsonl(path, ops)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as e:
        main(["check", path, "--json"])
    assert e.value.code == 1, err.getvalue()
    doc = json.loads(out.getvalue())
    want = check_linearizable(ops, "register")
    assert doc["histories"][0]["model"] == "register"
    assert doc["histories"][0]["ops"] == len(ops)
    assert [a["message"] for a in doc["anomalies"]] == [a.message for a in want.anomalies]
