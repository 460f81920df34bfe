"""Porcupine's etcd and kv logs: reading, writing (round trips), sniffing, errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.linearizability import check_linearizable
from splitbrain.history import HistoryError, Op
from splitbrain.history.porcupine import (read_etcd_log, read_kv_log, sniff, write_etcd_log,
                                          write_kv_log)

ROUND_TRIP = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def fields(ops):
    """What both formats carry (time is synthetic, so it is left out)."""
    return [(o.index, o.process, o.type, o.f, o.value, o.key, o.error) for o in ops]


def test_etcd_mapping(tmp_path):
    p = tmp_path / "e.log"
    p.write_text("INFO  jepsen.util - 0\t:invoke\t:cas\t[1 4]\n"
                 "INFO  jepsen.util - 1   :invoke :read   nil\n"
                 "INFO  jepsen.util - 0\t:fail\t:cas\t[1 4]\n"
                 "INFO  jepsen.util - 1\t:fail\t:read\t:timed-out\n"
                 "INFO  jepsen.util - 2\t:invoke\t:write\t3\n"
                 "INFO  jepsen.util - 2\t:info\t:write\t:timed-out\n"
                 "INFO  jepsen.util - 3\t:invoke\t:read\tnil\n"
                 "INFO  jepsen.util - 3\t:ok\t:read\tnil\n")
    ops = read_etcd_log(str(p))
    assert fields(ops) == [
        (0, 0, "invoke", "cas", [1, 4], None, None),
        (1, 1, "invoke", "read", None, None, None),
        (2, 0, "fail", "cas", [1, 4], None, "precondition-failed"),
        (3, 1, "fail", "read", None, None, "timed-out"),
        (4, 2, "invoke", "write", 3, None, None),
        (5, 2, "info", "write", 3, None, "timed-out"),
        (6, 3, "invoke", "read", None, None, None),
        (7, 3, "ok", "read", None, None, None),
    ]
    assert [o.time for o in ops] == sorted(o.time for o in ops)
    assert len({o.time for o in ops}) == len(ops)
    # The timed-out read constrains nothing; the failed cas says the register was not 1.
    assert check_linearizable(ops, "cas-register").valid is True


def test_kv_mapping(tmp_path):
    p = tmp_path / "k.txt"
    p.write_text('{:process 0, :type :invoke, :f :get, :key "3", :value nil}\n'
                 '{:process 0, :type :ok, :f :get, :key "3", :value ""}\n'
                 '{:process 1, :type :invoke, :f :put, :key "3", :value "x \\"q\\" y"}\n'
                 '{:process 1, :type :ok, :f :put, :key "3", :value "x \\"q\\" y"}\n'
                 '{:process 1, :type :invoke, :f :append, :key "3", :value "z"}\n'
                 '{:process 1, :type :ok, :f :append, :key "3", :value "z"}\n')
    ops = read_kv_log(str(p))
    assert fields(ops) == [
        (0, 0, "invoke", "read", None, "3", None),
        (1, 0, "ok", "read", "", "3", None),
        (2, 1, "invoke", "write", 'x "q" y', "3", None),
        (3, 1, "ok", "write", 'x "q" y', "3", None),
        (4, 1, "invoke", "append", "z", "3", None),
        (5, 1, "ok", "append", "z", "3", None),
    ]


def test_whole_corpus_reads(porcupine_dir):
    total = 0
    for path in sorted((porcupine_dir / "jepsen").glob("*.log")):
        ops = read_etcd_log(str(path))
        total += len(ops)
        assert all(o.f in ("read", "write", "cas") for o in ops)
    assert total == 17046
    n = 0
    for path in sorted((porcupine_dir / "kv").glob("*.txt")):
        ops = read_kv_log(str(path))
        n += len(ops)
        assert all(isinstance(o.key, str) for o in ops)
    assert n == 9148
    assert read_etcd_log(str(porcupine_dir / "jepsen" / "etcd_095.log")) == []


def test_sniff(porcupine_dir):
    head = (porcupine_dir / "jepsen" / "etcd_000.log").read_text()[:4096]
    assert sniff(head) == "porcupine-etcd"
    head = (porcupine_dir / "kv" / "c10-ok.txt").read_text()[:4096]
    assert sniff(head) == "porcupine-kv"
    assert sniff("") is None
    assert sniff('{"index":0,"time":0,"process":0,"type":"invoke","f":"read"}\n') is None
    assert sniff('[{:type :invoke, :f :read, :process 0, :index 0}]') is None


@pytest.mark.parametrize("text, where, what", [
    ("INFO  jepsen.util - 0\t:invoke\t:read\tnil\ngarbage\n", 2, "not an etcd log line"),
    ("INFO  jepsen.util - 0\t:ok\t:read\t3\n", 1, "no :invoke"),
    ("INFO  jepsen.util - 0\t:invoke\t:frob\tnil\n", 1, "unknown operation :frob"),
    ("INFO  jepsen.util - 0\t:invoke\t:write\t{1}\n", 1, "cannot read value"),
    ("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
     2, "outstanding"),
])
def test_etcd_errors_name_file_and_line(tmp_path, text, where, what):
    p = tmp_path / "bad.log"
    p.write_text(text)
    with pytest.raises(HistoryError) as e:
        read_etcd_log(str(p))
    assert e.value.path == str(p) and e.value.line == where and what in e.value.message
    assert "\n" not in e.value.one_line()


@pytest.mark.parametrize("text, where, what", [
    ('{:process 0, :type :invoke, :f :get, :key "3", :value nil}\n{:process 0}\n', 2,
     "not a kv log line"),
    ('{:process 0, :type :ok, :f :get, :key "3", :value ""}\n', 1, "no :invoke"),
    ('{:process 0, :type :invoke, :f :del, :key "3", :value nil}\n', 1, "unknown operation"),
])
def test_kv_errors_name_file_and_line(tmp_path, text, where, what):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(HistoryError) as e:
        read_kv_log(str(p))
    assert e.value.path == str(p) and e.value.line == where and what in e.value.message


def test_missing_file():
    with pytest.raises(HistoryError, match="cannot open"):
        read_etcd_log("/nonexistent/etcd.log")


# --- round trips --------------------------------------------------------------------------------

@st.composite
def etcd_histories(draw):
    """Well-formed histories in the etcd format's domain."""
    n = draw(st.integers(0, 25))
    ops: list[Op] = []
    pending: dict[int, Op] = {}
    for _ in range(n):
        p = draw(st.integers(0, 4))
        if p not in pending:
            f = draw(st.sampled_from(["read", "write", "cas"]))
            value = {"read": None, "write": draw(st.integers(-3, 9)),
                     "cas": [draw(st.integers(0, 4)), draw(st.integers(0, 4))]}[f]
            op = Op(len(ops), 0, p, "invoke", f, value)
            pending[p] = op
        else:
            inv = pending.pop(p)
            typ = draw(st.sampled_from(["ok", "fail", "info"]))
            if typ == "ok":
                value = draw(st.one_of(st.none(), st.integers(0, 9))) if inv.f == "read" \
                    else inv.value
                op = Op(len(ops), 0, p, "ok", inv.f, value)
            elif typ == "fail" and inv.f == "cas":
                op = Op(len(ops), 0, p, "fail", "cas", inv.value, error="precondition-failed")
            else:
                op = Op(len(ops), 0, p, typ, inv.f, inv.value, error="timed-out")
        ops.append(op)
    return ops


@ROUND_TRIP
@given(ops=etcd_histories())
def test_etcd_round_trip(tmp_path, ops):
    path = str(tmp_path / "rt.log")
    write_etcd_log(ops, path)
    assert fields(read_etcd_log(path)) == fields(ops)


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
                max_size=8)


@st.composite
def kv_histories(draw):
    n = draw(st.integers(0, 25))
    ops: list[Op] = []
    pending: dict[int, Op] = {}
    for _ in range(n):
        p = draw(st.integers(0, 4))
        if p not in pending:
            f = draw(st.sampled_from(["read", "write", "append"]))
            value = None if f == "read" else draw(_TEXT)
            op = Op(len(ops), 0, p, "invoke", f, value, key=draw(st.sampled_from(["0", "a b",
                                                                                    'q"'])))
            pending[p] = op
        else:
            inv = pending.pop(p)
            value = draw(_TEXT) if inv.f == "read" else inv.value
            op = Op(len(ops), 0, p, "ok", inv.f, value, key=inv.key)
        ops.append(op)
    return ops


@ROUND_TRIP
@given(ops=kv_histories())
def test_kv_round_trip(tmp_path, ops):
    path = str(tmp_path / "rt.txt")
    write_kv_log(ops, path)
    assert fields(read_kv_log(path)) == fields(ops)


def test_corpus_round_trips(porcupine_dir, tmp_path):
    for name in ("jepsen/etcd_000.log", "jepsen/etcd_002.log"):
        ops = read_etcd_log(str(porcupine_dir / name))
        write_etcd_log(ops, str(tmp_path / "x.log"))
        assert fields(read_etcd_log(str(tmp_path / "x.log"))) == fields(ops)
    ops = read_kv_log(str(porcupine_dir / "kv" / "c10-bad.txt"))
    write_kv_log(ops, str(tmp_path / "x.txt"))
    assert fields(read_kv_log(str(tmp_path / "x.txt"))) == fields(ops)


def test_writers_reject_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="cannot be written"):
        write_etcd_log([Op(0, 0, 0, "invoke", "append", 1)], str(tmp_path / "a"))
    with pytest.raises(ValueError, match="strings"):
        write_kv_log([Op(0, 0, 0, "invoke", "write", 1, key="k")], str(tmp_path / "b"))


def test_hostile_lines_do_not_make_the_readers_backtrack(tmp_path):
    """Runs of spaces inside an etcd log line once took seconds per line (a lazy value group
    before `\\s*`, and `\\s*,?\\s+` in the cas pair): each such file is now bad input at once.
    Guarded by an alarm with a margin of thousands, not a benchmark."""
    import signal

    from splitbrain.history import HistoryError
    from splitbrain.history.porcupine import read_etcd_log

    def too_slow(signum, frame):
        raise AssertionError("an etcd log reader's regex backtracks on a hostile line")

    lines = ["INFO  jepsen.util - 3\t:invoke\t:cas\t[" + " " * 30000 + "x",
             "INFO  jepsen.util - 3\t:invoke\t:cas\t[1" + " " * 30000 + "2" + " " * 30000 + "x"]
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
    try:
        for i, line in enumerate(lines):
            path = tmp_path / f"etcd_{i}.log"
            path.write_text(line + "\n")
            with pytest.raises(HistoryError):
                read_etcd_log(str(path))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
