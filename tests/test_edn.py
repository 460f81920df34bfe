"""Jepsen EDN import and export (splitbrain/history/edn.py)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitbrain.history import HistoryError, Op
from splitbrain.history.edn import (
    dumps_edn, dumps_edn_op, loads_edn, looks_independent, parse_edn_ops, read_edn, write_edn)

JEPSEN_VECTOR = """[{:type :invoke, :f :read, :value nil, :process 0, :time 10, :index 0}
 #jepsen.history.Op{:type :ok, :f :read, :value 3, :process 0, :time 20, :index 1}
 {:type :invoke, :f :start-partition, :value :majority, :process :nemesis, :time 30, :index 2}
 ; a comment with a stray ] bracket
 #_ {:this :is :discarded}
 {:type :info, :f :start-partition, :value {"n1" #{"n3" "n2"}}, :process :nemesis, :time 31,
  :index 3}
 {:type :invoke, :f :cas, :value [3 4], :process 1, :time 40, :index 4, :debug {:x 1}}
 {:type :fail, :f :cas, :value [3 4], :process 1, :time 50, :index 5,
  :error [:precondition-failed "x"]}
 {:type :invoke, :f :write, :value "a \\"quoted\\" ]string[", :process 2, :time 60, :index 6}
 {:type :info, :f :write, :value nil, :process 2, :time 70, :index 7, :error :timeout,
  :node "n1"}]
"""


def test_jepsen_vector_with_tags_comments_discards_sets():
    ops, lines = parse_edn_ops(JEPSEN_VECTOR)
    assert [o.index for o in ops] == list(range(8))
    assert lines == [1, 2, 3, 6, 8, 9, 11, 12]
    assert ops[1] == Op(1, 20, 0, "ok", "read", 3)
    assert ops[2].process == "nemesis" and ops[2].f == "start-partition"
    assert ops[2].value == "majority"  # keywords become strings
    assert ops[3].value == {"n1": ["n2", "n3"]}  # sets become sorted lists
    assert ops[4].value == [3, 4] and ops[4].key is None  # a plain cas is not a tuple
    assert ops[5].error == '["precondition-failed", "x"]'
    assert ops[6].value == 'a "quoted" ]string['
    assert (ops[7].error, ops[7].node) == ("timeout", "n1")


def test_sequence_of_maps_without_index_or_time_knossos_style():
    text = ("{:process 0, :type :invoke, :f :write, :value 1}\n"
            "{:process 1, :type :invoke, :f :read, :value nil}\n"
            "{:process 0, :type :ok, :f :write, :value 1}\n"
            "{:process 1, :type :ok, :f :read, :value 1}\n")
    ops = loads_edn(text)
    assert [(o.index, o.time) for o in ops] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert ops[3] == Op(3, 3, 1, "ok", "read", 1)
    # Some ops with a time, some without: missing times never go backwards.
    mixed = loads_edn("{:process 0, :type :invoke, :f :read, :time 500}\n"
                      "{:process 0, :type :ok, :f :read, :value 1}\n")
    assert [o.time for o in mixed] == [500, 500]


def test_independent_tuples_become_keys():
    text = """[{:process 0, :type :invoke, :f :read, :value [7 nil]}
{:process 1, :type :invoke, :f :cas, :value ["k" [1 2]]}
{:process 0, :type :ok, :f :read, :value [7 5]}
{:process 1, :type :fail, :f :cas, :value nil, :error :precondition-failed}
{:process :nemesis, :type :info, :f :kill, :value [1 2 3]}
{:process 2, :type :invoke, :f :write, :value [7 9]}
{:process 2, :type :info, :f :write, :value :timed-out}]"""
    ops = loads_edn(text)
    assert [(o.key, o.value) for o in ops] == [
        (7, None), ("k", [1, 2]), (7, 5), ("k", None), (None, [1, 2, 3]), (7, 9), (7, "timed-out")]


def test_plain_cas_register_is_not_mistaken_for_tuples():
    # Every value is a pair, but no cas holds a nested pair and reads carry nil: not independent.
    text = ("{:process 0, :type :invoke, :f :cas, :value [1 2]}\n"
            "{:process 0, :type :ok, :f :cas, :value [1 2]}\n")
    assert [o.key for o in loads_edn(text)] == [None, None]
    assert [o.key for o in loads_edn(text, independent=True)] == [1, 1]


def test_key_entries_switch_tuple_reading_off():
    text = ('{:process 0, :type :invoke, :f :write, :key "a", :value [1 2]}\n'
            '{:process 0, :type :ok, :f :write, :key "a", :value [1 2]}\n')
    assert [(o.key, o.value) for o in loads_edn(text)] == [("a", [1, 2])] * 2


def test_forced_independent_needs_tuples():
    with pytest.raises(HistoryError) as e:
        loads_edn("{:process 0, :type :invoke, :f :read, :value nil}\n", independent=True)
    assert e.value.field == "value" and e.value.line == 1


@pytest.mark.parametrize("text, line, field, words", [
    ("[{:process 0 :type :invoke :f :write :value 3}\n", 1, None, "never closed"),
    ("{:process 0 :type :invoke :f :w}\n{:process 0 :type :ok :f :w}}\n", 2, None, "unmatched"),
    ('{:process 0 :type :invoke :f :w}\n\n{:process 0 :value "abc}\n', 3, None, "unterminated"),
    ("{:process 0 :type :invoke :f :w}\n{:process 1 :type :invoke}\n", 2, "f", "missing"),
    ("\n\n{:process 0 :type :bogus :f :x}", 3, "type", "unknown type"),
    ("{:process 0 :type :invoke :f :x}\n5\n", 2, None, "expected an op map"),
    ("[{:process 0 :type :invoke :f :x\n :value [1 2 }]", 2, None, "does not close"),
    ("{:process 0 :type :invoke :f :x :value {:a}}", 1, None, "bad EDN"),
    ("{:process 0 :type :invoke :f :x :index 3}", 1, "index", "position 0"),
    ('{:process "p1" :type :invoke :f :x}', 1, "process", ":nemesis"),
    ("{:process 0 :type :invoke :f :x :time -5}", 1, "time", "non-negative"),
    ("[{:process 0 :type :invoke :f :x}]\n[{:process 0 :type :ok :f :x}]", 2, None,
     "after the end"),
    ("{:process 0 :type :invoke :f :x :value \u0001}", 1, None, r"Illegal character '\x01'"),
])
def test_bad_edn_names_line_and_field(text, line, field, words):
    with pytest.raises(HistoryError) as e:
        parse_edn_ops(text, path="h.edn")
    err = e.value
    assert (err.path, err.line, err.field) == ("h.edn", line, field), str(err)
    assert words in str(err) and "\n" not in str(err)


def test_read_edn_missing_file_and_binary(tmp_path):
    with pytest.raises(HistoryError) as e:
        read_edn(str(tmp_path / "nope.edn"))
    assert "cannot open" in str(e.value)
    bad = tmp_path / "bin.edn"
    bad.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(HistoryError) as e:
        read_edn(str(bad))
    assert "not UTF-8" in str(e.value)


def test_writer_shape_and_jepsen_tuples():
    op = Op(3, 99, 1, "ok", "cas", [1, 2], key="k", node="n2", error="x y")
    assert dumps_edn_op(op) == ('{:index 3, :time 99, :type :ok, :process 1, :f :cas, '
                                ':value [1 2], :key "k", :node "n2", :error "x y"}')
    assert ':value ["k" [1 2]]' in dumps_edn_op(op, tuples=True)
    assert dumps_edn({"a": [None, True, 1.5, 2.0, "\n"]}) == '{"a" [nil true 1.5 2.0 "\\n"]}'


def test_keyless_history_that_looks_independent_round_trips():
    # Writes of pairs whose first element could be a key: rule 2 would unwrap them on reading,
    # so the writer marks the history with `:key nil`.
    ops = [Op(0, 0, 0, "invoke", "write", [1, 2]), Op(1, 1, 0, "ok", "write", [1, 2])]
    assert looks_independent(ops)
    buf = io.StringIO()
    write_edn(buf, ops)
    assert ":key nil" in buf.getvalue()
    assert loads_edn(buf.getvalue()) == ops


# --- Hypothesis: every history written by write_edn reads back equal -------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | _text)
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(_text, inner, max_size=4), max_leaves=12)
_names = st.sampled_from(["read", "write", "cas", "start-partition", "a.b", "x/y", "1st",
                          "with space", "ünïcode", "-", "?"]) | _text.filter(bool)


@st.composite
def any_histories(draw):
    """Arbitrary ops (shape only, no semantics): what the reader must not lose or change."""
    keyed = draw(st.booleans())
    n = draw(st.integers(0, 12))
    return [Op(index=i, time=draw(st.integers(0, 2**63)),
               process=draw(st.integers(-3, 2**40) | st.just("nemesis")),
               type=draw(st.sampled_from(["invoke", "ok", "fail", "info"])), f=draw(_names),
               value=draw(json_values),
               key=draw(json_values.filter(lambda v: v is not None)) if keyed and
               draw(st.booleans()) else None,
               node=draw(st.none() | _text), error=draw(st.none() | _names))
            for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(any_histories(), st.booleans())
def test_round_trip_any_history(ops, vector):
    buf = io.StringIO()
    assert write_edn(buf, ops, vector=vector) == len(ops)
    assert loads_edn(buf.getvalue()) == ops


@st.composite
def keyed_register_histories(draw):
    """A multi-key register workload as Jepsen's independent checker records it."""
    ops: list[Op] = []
    for p in range(draw(st.integers(1, 10))):
        f = draw(st.sampled_from(["read", "write", "cas"]))
        key = draw(st.integers(0, 5) | st.sampled_from(["a", "b"]))
        arg = {"read": None, "write": draw(st.integers(0, 9)),
               "cas": [draw(st.integers(0, 9)), draw(st.integers(0, 9))]}[f]
        ops.append(Op(len(ops), len(ops), p, "invoke", f, arg, key=key))
        if draw(st.booleans()):
            ops.append(Op(len(ops), len(ops), "nemesis", "info", "kill", ["n1"]))
        t = draw(st.sampled_from(["ok", "fail", "info", None]))
        if t is not None:
            result = draw(st.integers(0, 9) | st.none()) if f == "read" else arg
            ops.append(Op(len(ops), len(ops), p, t, f, result, key=key,
                          error="timeout" if t == "info" else None))
    return ops


@settings(max_examples=80, deadline=None)
@given(keyed_register_histories())
def test_round_trip_jepsen_tuples(ops):
    buf = io.StringIO()
    write_edn(buf, ops, tuples=True, vector=True)
    assert ':key' not in buf.getvalue()
    assert loads_edn(buf.getvalue()) == ops


def test_file_round_trip(tmp_path):
    ops = [Op(0, 1, 0, "invoke", "append", "é\u2028x", key=3),
           Op(1, 2, 0, "ok", "append", {"value": "é\u2028x", "offset": 0}, key=3, node="n1")]
    p = tmp_path / "h.edn"
    write_edn(str(p), ops)
    assert read_edn(str(p)) == ops


def test_bad_op_deep_in_a_large_file_names_its_line():
    ops = [Op(i, i, i, "invoke", "read", None) for i in range(2600)]
    buf = io.StringIO()
    write_edn(buf, ops)
    lines = buf.getvalue().splitlines()
    lines[2345] = lines[2345].replace(":value nil", ":value {:a}")
    with pytest.raises(HistoryError) as e:
        loads_edn("\n".join(lines))
    assert e.value.line == 2346 and "bad EDN" in str(e.value)


# --- the fast path for one simple op map per line (edn._S_LINE) --------------------------------

_KEYWORDS = st.sampled_from([":read", ":write", ":cas", ":invoke", ":ok", ":fail", ":info",
                             ":nemesis", ":a/b", ":x-y?", ":k.v", ":<=>", ":_", ":9lives"])
_SCALARS = st.one_of(
    st.integers(-10**20, 10**20).map(str),            # 19+ digits leave the fast path
    st.sampled_from(["nil", "true", "false", "+5", "5N", "1.5", "1e3", "2M", "1/2", "##NaN",
                     "-0", "007", "nilly", "\\a"]),
    _KEYWORDS,
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6).map(
        lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"a :b 1"', '"}"', '"]"', '"x\\ny"', '"\\u00e9"', '""']))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3).map(
    lambda xs: "[" + " ".join(xs) + "]"), max_leaves=6)
_SEP = st.sampled_from([" ", ", ", ",", "  ", "\t", " ,"])
_FIELD_NAMES = st.sampled_from([":index", ":time", ":process", ":type", ":f", ":value", ":key",
                                ":node", ":error", ":debug"])


@st.composite
def _op_line(draw, i):
    """An op map on one line, mostly well-formed (the usual fields with plausible values), with
    odd values and separators the fast path must either read as the general reader does or
    leave to it."""
    fields = [(":index", str(i)), (":time", str(draw(st.integers(0, 10**6)))),
              (":process", draw(st.sampled_from(["0", "1", "2", ":nemesis"]))),
              (":type", draw(st.sampled_from([":invoke", ":ok", ":fail", ":info"]))),
              (":f", draw(st.sampled_from([":read", ":write", ":cas"]))),
              (":value", draw(_VALUES))]
    fields += draw(st.lists(st.tuples(_FIELD_NAMES, _VALUES), max_size=2))
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    body = "".join(k + draw(_SEP) + v + draw(_SEP) for k, v in fields)
    return "{" + body.rstrip() + "}"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_fast_path_reads_what_the_general_reader_reads(data):
    from splitbrain.history import edn
    n = data.draw(st.integers(1, 6))
    lines = [data.draw(_op_line(i)) for i in range(n)]
    if data.draw(st.booleans()):
        lines.insert(data.draw(st.integers(0, n)), data.draw(st.sampled_from(["", "  ", ","])))
    text = "\n".join(lines) + data.draw(st.sampled_from(["", "\n", "\r\n"]))
    if data.draw(st.booleans()):
        text = "[" + text + "]"

    def outcome():
        try:
            ops, where = edn.parse_edn_ops(text, path="h.edn")
            return "ok", [o.to_dict() for o in ops], list(where)
        except HistoryError as e:
            return "error", str(e)

    fast = outcome()
    layout = edn._simple_layout
    edn._simple_layout = lambda t: None   # the general reader only
    try:
        general = outcome()
    finally:
        edn._simple_layout = layout
    assert repr(fast) == repr(general)   # repr: NaN compares equal to itself there


def test_the_fast_path_takes_the_usual_jepsen_lines():
    """The usual history.edn lines do take the fast path (else the test above proves nothing)."""
    from splitbrain.history import edn
    text = ('{:index 0, :time 5, :type :invoke, :process 0, :f :cas, :value [1 [2 3]]}\n'
            '{:index 1, :time 9, :type :ok, :process 0, :f :cas, :value [1 [2 3]]}\n')
    assert edn._simple_lines(edn._simple_layout(text)) == [1, 2]
    ops, _ = edn.parse_edn_ops(text)
    assert ops[1].key == 1 and ops[1].value == [2, 3]         # an independent [k v] tuple
    assert edn._simple_lines("{:value 1.5}\n") is None        # a float: the general reader
    assert edn._simple_lines("{:value 1} ; note\n") is None   # a comment


@pytest.mark.parametrize("line, words", [
    ("{:index 0, :time 0, :process 0, :type [1 2], :f :read, :value nil}", "unknown type"),
    ("{:index 0, :time 0, :process true, :type :invoke, :f :read}", "must be an integer"),
    ("{:index 3, :time 0, :process 0, :type :invoke, :f :read}", "0-based position"),
    ("{:index 0, :time -1, :process 0, :type :invoke, :f :read}", "non-negative"),
    ("{:index 0, :time 0, :process 0, :type :invoke, :f \"\"}", "non-empty"),
    ("{:index 0, :time 0, :type :invoke, :f :read}", "missing required field"),
])
def test_bad_op_fields_are_named_on_the_fast_path_too(line, words):
    from splitbrain.history import edn
    assert edn._simple_lines(edn._simple_layout(line + "\n")) == [1]   # the fast path reads it
    with pytest.raises(HistoryError, match=words):
        edn.parse_edn_ops(line + "\n", path="h.edn")


def test_a_hostile_line_cannot_make_the_fast_path_backtrack_quadratically():
    """`[, , , ... x]` once took 17 s per 60 KB line (a run of separators split two ways at
    every position); with possessive separators it is one scan. Guarded by an alarm with a
    margin of thousands (milliseconds now), not a benchmark."""
    import signal

    from splitbrain.history import edn

    def too_slow(signum, frame):
        raise AssertionError("the fast path's regexes backtrack on a hostile line")

    lines = ["{:a [" + ", " * 30000 + "x]}", "{" + ", " * 30000 + "x}",
             "{:a [1 [" + ", " * 30000 + "x]]}"]
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
    try:
        for line in lines:
            assert edn._simple_lines(line + "\n") is None
            with pytest.raises(HistoryError):
                edn.parse_edn_ops(line + "\n")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
