"""The log checker: agreement, one total order and durability of a replicated append-only log.

Input: a history of the append-log workload (common rules): `append` v -> ok v or
{"value": v, "offset": i}; `read` null -> ok the node's committed log (a list, oldest first);
`status` ops are ignored here (see convergence.py). Ops with a `key` are independent logs, checked
separately (Jepsen's "independent" keys); ops without one form the log of key None.

The history is read in ONE pass, in order. Every observed log (a client read or a final read) is
inserted into a path-compressed trie of logs: equal prefixes are stored once, and each place where
two logs disagree is a branching point of the trie. Inserting a log costs O(its length) at C speed
(list slice comparison), so the pass is linear in the size of the history. Afterwards one walk of
the trie (whose size is the longest log plus the divergent branches, never more than the input)
finds duplicates, offset conflicts and order cycles.

Anomalies (each names the ops - index, process, node - and the offsets that prove it):
- `divergent-logs`: two observed logs of which neither is a prefix of the other; reported once per
  branching point with the first differing offset and both entries.
- `order-cycle`: the precedence graph "a came before b" (a networkx DiGraph whose edges are the
  consecutive entries of every observed log) has a cycle: no single total order exists. The cycle
  and the op that showed each of its edges are the witness. A divergence whose two entries lie on
  the same cycle is reported as this more specific anomaly, not also as `divergent-logs`.
- `lost-append`: an append acknowledged `ok` is in none of the final logs although at least one
  of their reads began after the acknowledgement. An append that ended `info` (or never
  completed) may be present once ("recovered", counted in stats) or absent.
- `failed-append-visible`: an append that completed `fail` appears in some observed log.
- `duplicate`: one value at two offsets of one observed log. Only its first occurrence counts for
  the order graph, and a divergence that begins with the duplicated entry is not reported again
  as `divergent-logs`.
- `inconsistent-offset`: an append's reported offset disagrees with another append's reported
  offset, or no observed log holds the value at its reported offset while some log puts it
  elsewhere (or holds another value there). A report that one log confirms is not contradicted
  by logs diverging from that one: their divergence is the anomaly, reported once per fork.
- `nonmonotonic-read`: a process's later read of a key is a proper prefix of (shorter than) its
  earlier read. A later read that is not an extension at all is a divergence and is reported as
  `divergent-logs` / `order-cycle` instead. A final read served by a different node than the
  earlier read is exempt (a lagging replica's final state is not a client observation).
- `unexpected-value`: a log holds a value that no append ever invoked (only judged for keys whose
  history contains appends at all).

Final logs: for each (key, node), the LAST `ok` read of that node (reads with `node` set). When a
key has no read with a node, replicas cannot be told apart: its final logs are then every `ok`
read invoked after the key's last append had completed (the final phase; an append that never
completed counts from its invoke), or, when there is no such read, its last `ok` read. When there
are acknowledged appends but no read of the key at all, durability cannot be judged and the
result is "unknown".

Runs without a final phase (cut short by Ctrl-C, SIGTERM or a killed harness, or a history whose
reads stop early): an acknowledged append that is in no final log and was acknowledged after
every final log's read had begun could not have been seen by any read. Its durability is unknown,
not lost: it is counted as `unconfirmed` (stats) and makes the result "unknown" when nothing else
is wrong. In a complete run the final phase's reads begin after every append completed, so no
append is unconfirmed.

Values (and keys) are compared as JSON values (splitbrain/history/values.py): `true` is not `1`,
NaN is NaN, `1` and `1.0` are one value. Every read log is converted once, on input, into hkeys
(`canon_log`; a log of ints and strings is used as it is).
"""

from __future__ import annotations

import bisect
import gc
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

from ..history.errors import HistoryError
from ..history.op import FAIL, INVOKE, OK
from ..history.values import NOT_PLAIN_TYPES, canon, is_plain_list, uncanon
from .result import UNKNOWN, Anomaly, Result

NAME = "log"
ANOMALIES_PER_NAME_MAX = 1000   # default cap on reported anomalies of one name; counts are exact
CYCLES_MAX = 100                # at most this many order-cycle witnesses per key
COMPONENT_LISTED_MAX = 1000     # values of a strongly connected component listed in a witness
_JSON_TAG = "\x00json"          # marks a hkey that encodes an unhashable value


def hkey(value: Any) -> Any:
    """A hashable key for a JSON value whose `==` is JSON identity (history/values.py `canon`):
    ints and strings as they are, true/false/NaN as singletons, lists as tuples, objects as
    FrozenDicts. Idempotent."""
    t = type(value)
    if t is int or t is str:
        return value
    return canon(value)


def unkey(h: Any) -> Any:
    """The JSON value of a hkey (inverse of hkey)."""
    t = type(h)
    if t is int or t is str:
        return h
    return uncanon(h)


def hkeys(values: list) -> set:
    """The set of hkeys of a list; C speed when every value is an int or a string."""
    if is_plain_list(values):
        return set(values)
    return {hkey(v) for v in values}


def canon_log(log: list) -> list:
    """A read log with every entry a hkey: the list itself when it holds only ints and strings
    (the common case, checked at C speed), else a new list."""
    if is_plain_list(log):
        return log
    return [hkey(v) for v in log]


def _first_difference(a: list, b: list) -> int:
    """The first index where a and b differ; they are known to differ within min(len) entries."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    raise AssertionError("lists do not differ within their common length")


class _Branch:
    """A run of log entries in the trie of observed logs.

    `entries[i]` is at absolute log offset `start + i`. `children` maps the hkey of the entry at
    offset `start + len(entries)` to the branch that continues there; two or more children mean
    observed logs disagree at that offset. `ops` holds (relative position, op index) pairs in
    increasing position: the entries from that position on were first seen in that op's log.
    """

    __slots__ = ("start", "entries", "children", "ops", "_index")

    def __init__(self, start: int, entries: list, op: int):
        self.start = start
        self.entries = entries
        self.children: dict[Any, _Branch] = {}
        self.ops: list[tuple[int, int]] = [(0, op)]
        self._index: dict | None = None

    def rel_of(self, h: Any) -> int:
        """The relative position of the first occurrence of hkey h (built once, on demand)."""
        if self._index is None:
            index: dict = {}
            for rel, v in enumerate(self.entries):
                index.setdefault(hkey(v), rel)
            self._index = index
        return self._index[h]

    def op_at(self, rel: int) -> int:
        """The op that first showed the entry at relative position `rel`."""
        i = bisect.bisect_right(self.ops, (rel, float("inf"))) - 1
        assert i >= 0, (rel, self.ops)
        return self.ops[i][1]

    def split(self, rel: int) -> "_Branch":
        """Cut this branch at relative position rel; returns the tail, now this branch's child."""
        assert 0 < rel < len(self.entries), (rel, len(self.entries))
        tail = _Branch(self.start + rel, self.entries[rel:], self.op_at(rel))
        tail.ops = [(0, self.op_at(rel))] + [(p - rel, o) for p, o in self.ops if p > rel]
        tail.children = self.children
        self.entries = self.entries[:rel]
        self._index = None
        self.ops = [(p, o) for p, o in self.ops if p < rel]
        self.children = {hkey(tail.entries[0]): tail}
        return tail


@dataclass
class _Fork:
    offset: int
    old: _Branch      # the branch that held the offset first
    new: _Branch      # the branch the diverging log created
    new_op: int


@dataclass(slots=True)
class _KeyState:
    """Everything the pass learns about one key's log."""

    key: Any = None
    hkey: Any = None
    root: _Branch | None = None
    forks: list[_Fork] = field(default_factory=list)
    ok: dict = field(default_factory=dict)              # hkey -> append ok op index
    failed: dict = field(default_factory=dict)          # hkey -> append fail op index
    info: dict = field(default_factory=dict)            # hkey -> op index of an append that
                                                        # ended info or never completed
    reported: dict = field(default_factory=dict)        # hkey -> (offset, ok op index)
    final: dict = field(default_factory=dict)           # node -> (op index, log)
    last_read: tuple | None = None                      # (op index, log) of the last ok read
    last_began: int = -1                                # invoke index of last_read
    final_began: dict = field(default_factory=dict)     # node -> invoke index of its final read
    last_append: int = -1                               # index of the last append completion
    tail: list = field(default_factory=list)            # (invoke index, op index, log) of reads
                                                        # without node invoked after last_append
    reads: int = 0
    plain_log: list | None = None                       # the last read log found plain ...
    plain_safe: int = 0                                 # ... and its length before a 0 or 1

    def canon_read(self, log: list) -> list:
        """The read `log` with every entry a hkey (`canon_log`), type-checking only the entries
        not already verified. A log found plain (ints and strings only) is remembered with the
        length of its prefix free of the ints 0 and 1; a later log whose leading entries equal
        that prefix (one C-speed slice comparison, which compares entries that are the same
        objects, as in-memory histories' growing reads are, by identity) has its type checks
        start after it. That is sound because only a bool can equal an int without being one as a JSON
        value (true == 1), and the trusted prefix holds no 0 or 1; a float equal to an int is
        the same JSON value and is what `hkey` would keep anyway."""
        ver = self.plain_log
        if log is ver:
            return log
        m = len(log)
        p = self.plain_safe if self.plain_safe <= m else m
        if p and not ((log if p == m else log[:p]) ==
                      (ver if p == len(ver) else ver[:p])):   # type: ignore[index]
            p = 0
        rest = log[p:] if p else log
        if not NOT_PLAIN_TYPES.isdisjoint(map(type, rest)):
            return [hkey(v) for v in log]
        safe = m
        for x in (0, 1):
            try:
                i = rest.index(x)
            except ValueError:
                continue
            if p + i < safe:
                safe = p + i
        self.plain_log, self.plain_safe = log, safe
        return log

    def insert(self, log: list, op: int) -> None:
        """Add an observed log to the trie, recording a fork where it disagrees with known logs."""
        self.reads += 1
        if not log:
            return
        if self.root is None:
            self.root = _Branch(0, list(log), op)
            return
        b = self.root
        pos = 0
        n = len(log)
        while True:
            e = b.entries
            m = len(e)
            assert b.start == pos, (b.start, pos)
            k = min(n - pos, m)
            same = (log[pos:pos + k] == e) if k == m else (log[pos:pos + k] == e[:k])
            if not same:
                j = _first_difference(log[pos:pos + k], e)
                # j > 0 always holds except at the root: a child is entered only on a matching
                # first entry. At the root, offset 0 is the branching point: give the root an
                # empty run so both logs become its children.
                if j == 0:
                    assert b is self.root
                    old = self.root
                    self.root = _Branch(0, [], op)
                    self.root.children = {hkey(old.entries[0]): old}
                    b = self.root
                else:
                    b.split(j)
                new = _Branch(pos + j, list(log[pos + j:]), op)
                old_child = b.children[next(iter(b.children))]
                b.children[hkey(log[pos + j])] = new
                self.forks.append(_Fork(pos + j, old_child, new, op))
                return
            pos += k
            if pos == n:
                return                      # a prefix of something already observed
            if not b.children:
                if m == 0:                  # an emptied root with no children cannot occur
                    raise AssertionError("empty branch without children")
                b.ops.append((m, op))
                b.entries.extend(log[pos:])
                b._index = None
                return
            child = b.children.get(hkey(log[pos]))
            if child is None:
                new = _Branch(pos, list(log[pos:]), op)
                old_child = b.children[next(iter(b.children))]
                b.children[hkey(log[pos])] = new
                self.forks.append(_Fork(pos, old_child, new, op))
                return
            b = child


class _Positions:
    """Where each value first sits in the trie (depth-first): hkey -> branch, offsets on demand."""

    def __init__(self) -> None:
        self.branch: dict[Any, _Branch] = {}

    def offset(self, h: Any) -> int:
        b = self.branch[h]
        return b.start + b.rel_of(h)

    def op(self, h: Any) -> int:
        b = self.branch[h]
        return b.op_at(b.rel_of(h))


class LogChecker:
    """Checks append-log histories; see the module docstring for what is reported."""

    name = NAME

    def __init__(self, anomalies_per_name_max: int = ANOMALIES_PER_NAME_MAX):
        assert anomalies_per_name_max > 0
        self.anomalies_per_name_max = anomalies_per_name_max

    # ---------------------------------------------------------------- the pass
    def check(self, history: Iterable, test: dict | None = None) -> Result:
        """Check a history: any iterable of Op, consumed once, in order.

        When `history` is a list whose ops sit at their own index, the witnesses look ops up in
        it; otherwise (a stream) the process and node of every append and read are remembered.
        """
        # The pass allocates millions of small acyclic objects; the cyclic garbage collector
        # would rescan them again and again for nothing (it doubled the checking time).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._check(history)
        finally:
            if was_enabled:
                gc.enable()

    def _check(self, history: Iterable) -> Result:
        indexed = isinstance(history, list)
        keys: dict[Any, _KeyState] = {}
        pending: dict[Any, Any] = {}       # process -> its outstanding invoke Op
        meta: dict[int, tuple] = {}        # op index -> (process, node), for streamed input
        mono: dict[tuple, tuple] = {}      # (process, key) -> (log, op index, node) longest so far
        mono_candidates: list[tuple] = []
        n_ops = 0
        get_state = self._state
        for op in history:
            n_ops += 1
            f = op.f
            if f != "append" and f != "read":
                continue
            typ = op.type
            proc = op.process
            if typ == INVOKE:
                pending[proc] = op
                continue
            inv = pending.pop(proc, None)
            key = op.key
            if key is None and inv is not None:
                key = inv.key
            tk = type(key)
            st = keys.get(key) if tk is str or tk is int or key is None else None
            if st is None:
                st = get_state(keys, key)
            if not indexed:
                meta[op.index] = (proc, op.node if op.node is not None or inv is None
                                  else inv.node)
                if inv is not None:
                    meta[inv.index] = (proc, inv.node)
            if f == "append":
                # The invoke's value is the appended value's identity; an ok value may be
                # {"value": v, "offset": i}.
                value = op.value
                offset = None
                if type(value) is dict and "value" in value and "offset" in value:
                    offset = value["offset"]
                    value = value["value"]
                if inv is not None:
                    value = inv.value
                if type(value) is not int and type(value) is not str:
                    value = hkey(value)
                st.last_append = op.index
                if st.tail:
                    st.tail = []
                if typ == OK:
                    st.ok[value] = op.index
                    if type(offset) is int:
                        st.reported[value] = (offset, op.index)
                elif typ == FAIL:
                    st.failed[value] = op.index
                else:
                    st.info[value] = op.index
                continue
            if typ != OK:
                continue
            node = op.node
            if node is None and inv is not None:
                node = inv.node
            log = op.value
            if type(log) is not list:
                raise HistoryError(f"op {op.index}: an ok read of the append-log workload must "
                                   f"return a list, got {type(log).__name__}", field="value")
            log = st.canon_read(log)
            st.insert(log, op.index)
            st.last_read = (op.index, log)
            began = inv.index if inv is not None else op.index
            st.last_began = began
            if node is not None:
                st.final[node] = (op.index, log)
                st.final_began[node] = began
            elif not st.final and inv is not None and inv.index > st.last_append:
                st.tail.append((inv.index, op.index, log))
            # per-process monotonic reads: keep the longest read; a shorter prefix is a candidate
            mk = (proc, st.hkey)
            prev = mono.get(mk)
            if prev is None or len(log) >= len(prev[0]):
                mono[mk] = (log, op.index, node)    # an extension, or a divergence (reported
                continue                            # by the trie)
            plog = prev[0]
            if plog[:len(log)] == log:
                mono_candidates.append((key, prev[1], op.index, len(plog), len(log), prev[2]))
            else:
                mono[mk] = (log, op.index, node)
        # appends that never completed count as attempted (like info)
        for op in pending.values():
            if op.f == "append":
                st = self._state(keys, op.key)
                st.info.setdefault(hkey(op.value), op.index)
                st.tail = [t for t in st.tail if t[0] > op.index]
                if not indexed:
                    meta[op.index] = (op.process, op.node)
        out = _Report(self.anomalies_per_name_max, history if indexed else None, meta)
        return self._finish(keys, out, mono_candidates, n_ops)

    @staticmethod
    def _state(keys: dict, key: Any) -> _KeyState:
        """The state of `key`, keyed by its hkey (key `true` is not key `1`)."""
        hk = hkey(key)
        st = keys.get(hk)
        if st is None:
            st = keys[hk] = _KeyState(key=key, hkey=hk)
        return st

    # ---------------------------------------------------------------- after the pass
    def _finish(self, keys: dict, out: "_Report", mono_candidates: list, n_ops: int) -> Result:
        unknown_reasons = []
        totals = {"ops": n_ops, "keys": len(keys), "reads": 0, "final-logs": 0,
                  "acknowledged": 0, "recovered": 0, "lost": 0, "unconfirmed": 0,
                  "longest-log": 0, "trie-entries": 0}
        final_node: dict[int, Any] = {}     # op index of a final read -> its node
        for st in keys.values():
            k = st.key
            finals = self._final_logs(st)
            for node, (i, _) in st.final.items():
                final_node[i] = node
            totals["reads"] += st.reads
            totals["final-logs"] += len(finals)
            totals["acknowledged"] += len(st.ok)
            if st.ok and not finals:
                unknown_reasons.append(f"key {k!r}: acknowledged appends but no read, "
                                       "so durability cannot be judged")
            pos = self._walk(st, out, totals)
            # durability
            if finals:
                present: set = set()
                for _, log in finals:
                    present |= hkeys(log)
                    totals["longest-log"] = max(totals["longest-log"], len(log))
                lost = st.ok.keys() - present
                # Acknowledged after every final read had begun: no read could have seen it.
                began = self._finals_began(st)
                unconfirmed = {h for h in lost if st.ok[h] > began}
                if unconfirmed:
                    lost -= unconfirmed
                    totals["unconfirmed"] += len(unconfirmed)
                    unknown_reasons.append(
                        f"key {k!r}: {len(unconfirmed)} acknowledged append(s) came after the "
                        f"last read began (no final phase?), so no read could confirm them")
                totals["lost"] += len(lost)
                totals["recovered"] += len(st.info.keys() & present)
                fin_ops = [i for i, _ in finals]
                fin = ", ".join(f"{out.desc(i)}: {_entries(len(log))}" for i, log in finals)
                for h in sorted(lost, key=lambda h: st.ok[h]):
                    if out.full("lost-append"):
                        break
                    msg = (f"append of {_show(unkey(h))} was acknowledged by "
                           f"{out.desc(st.ok[h])} but is in no final log ({fin})")
                    seen = None
                    if h in pos.branch:
                        seen = {"offset": pos.offset(h), "op": out.op_json(pos.op(h))}
                        msg += (f"; it had been seen at offset {seen['offset']} by "
                                f"{out.desc(pos.op(h))}")
                    out.add("lost-append", msg, [st.ok[h]] + fin_ops, key=k, value=unkey(h),
                            append=out.op_json(st.ok[h]),
                            final_logs=[out.op_json(i) for i in fin_ops], seen_at=seen)
                if lost:
                    out.count("lost-append", len(lost))
            # failed appends that are visible
            for h in sorted(st.failed.keys() & pos.branch.keys(), key=lambda h: st.failed[h]):
                if h in st.ok:
                    continue   # the same value also acknowledged: values are not unique here
                off, rop = pos.offset(h), pos.op(h)
                out.add("failed-append-visible",
                        f"append of {_show(unkey(h))} failed ({out.desc(st.failed[h])}) but is at "
                        f"offset {off} of the log read by {out.desc(rop)}",
                        [st.failed[h], rop], key=k, value=unkey(h), offset=off,
                        append=out.op_json(st.failed[h]), read=out.op_json(rop))
            # values nobody appended
            if st.ok or st.failed or st.info:
                strays = pos.branch.keys() - st.ok.keys() - st.failed.keys() - st.info.keys()
                for h in sorted(strays, key=pos.offset):
                    off, rop = pos.offset(h), pos.op(h)
                    out.add("unexpected-value",
                            f"{_show(unkey(h))} at offset {off} of the log read by "
                            f"{out.desc(rop)} was never appended", [rop], key=k,
                            value=unkey(h), offset=off, read=out.op_json(rop))
        for k, earlier, later, elen, llen, enode in mono_candidates:
            lnode = out.node_of(later)
            if later in final_node and lnode is not None and lnode != enode:
                continue   # a final read of a (possibly lagging) other replica
            proc = out.process_of(later)
            out.add("nonmonotonic-read",
                    f"process {proc} read {_entries(elen)} ({out.desc(earlier)}) and later only "
                    f"{_entries(llen)}, a proper prefix ({out.desc(later)})",
                    [earlier, later], key=k, process=proc, earlier=out.op_json(earlier),
                    later=out.op_json(later), lengths=[elen, llen])
        totals["anomaly-counts"] = dict(out.counts)
        if out.anomalies:
            valid: Any = False
        elif unknown_reasons:
            valid = UNKNOWN
        else:
            valid = True
        res = Result(valid=valid, checker=NAME, anomalies=out.anomalies, stats=totals)
        if valid == UNKNOWN:
            res.error = "; ".join(unknown_reasons)
        return res

    @staticmethod
    def _final_logs(st: _KeyState) -> list[tuple[int, list]]:
        if st.final:
            return sorted(st.final.values(), key=lambda t: t[0])
        if st.tail:
            return [(i, log) for _, i, log in st.tail]
        return [st.last_read] if st.last_read is not None else []

    @staticmethod
    def _finals_began(st: _KeyState) -> int:
        """The history index at which the latest-starting read among the final logs began."""
        if st.final:
            return max(st.final_began.values())
        if st.tail:
            return max(t[0] for t in st.tail)
        return st.last_began

    def _walk(self, st: _KeyState, out: "_Report", totals: dict) -> _Positions:
        """Walk the trie once, depth first: duplicates, offsets, order cycles, divergences."""
        k = st.key
        pos = _Positions()
        first = pos.branch
        if st.root is None:
            self._offset_conflicts_between_appends(st, out)
            return pos
        on_path: dict[Any, _Branch] = {}   # hkey -> branch of its first occurrence on this path
        dup_heads: set[int] = set()        # id() of branches whose first entry is a path duplicate
        repeated: set = set()              # values that sit at two trie positions
        reported = st.reported
        by_offset: dict[int, Any] = {}
        for h, (off, _) in reported.items():
            by_offset.setdefault(off, h)
        offset_bad: dict[Any, tuple] = {}  # reported hkey -> (why, offset, read op, other value)
        confirmed: set = set()             # reported hkeys that some log holds at that offset
        stack: list[tuple[_Branch, bool]] = [(st.root, True)]
        added: dict[int, list] = {}
        while stack:
            b, entering = stack.pop()
            if not entering:
                for h in added.pop(id(b)):
                    del on_path[h]
                continue
            entries = b.entries
            totals["trie-entries"] += len(entries)
            fast = not reported
            if fast:
                try:
                    s = set(entries)
                except TypeError:
                    fast = False
                else:
                    fast = (len(s) == len(entries) and s.isdisjoint(on_path)
                            and s.isdisjoint(first))
            if fast:
                # the common case: new, distinct, hashable values; C speed
                here = dict.fromkeys(entries, b)
                on_path.update(here)
                first.update(here)
                mine = entries
            else:
                mine = []
                for rel, v in enumerate(entries):
                    h = hkey(v)
                    off = b.start + rel
                    ob = on_path.get(h)
                    if ob is not None:
                        if rel == 0:
                            dup_heads.add(id(b))
                        op1, op2 = ob.op_at(ob.rel_of(h)), b.op_at(rel)
                        out.add("duplicate",
                                f"{_show(v)} is at offsets {ob.start + ob.rel_of(h)} and {off} of "
                                f"the log read by {out.desc(op2)}", sorted({op1, op2}), key=k,
                                value=unkey(v), offsets=[ob.start + ob.rel_of(h), off],
                                read=out.op_json(op2))
                        continue
                    on_path[h] = b
                    mine.append(h)
                    if h in first:
                        repeated.add(h)
                    else:
                        first[h] = b
                    if reported:
                        r = reported.get(h)
                        if r is not None and r[0] == off:
                            confirmed.add(h)
                        if r is not None and r[0] != off and (
                                h not in offset_bad or offset_bad[h][0] != "elsewhere"):
                            # seeing the value itself elsewhere is the clearer witness
                            offset_bad[h] = ("elsewhere", off, b.op_at(rel), None)
                        other = by_offset.get(off)
                        if other is not None and other != h and other not in offset_bad:
                            offset_bad[other] = ("occupied", off, b.op_at(rel), v)
            added[id(b)] = mine
            stack.append((b, False))
            for c in reversed(list(b.children.values())):
                stack.append((c, True))
        # offsets reported by appends
        # A report that some observed log confirms is not contradicted by the logs that
        # diverge from that one (they are reported as divergent-logs / order-cycle): otherwise
        # one fork would make every later report conflict.
        for h, (why, off, rop, other) in sorted(offset_bad.items(),
                                                key=lambda t: reported[t[0]][1]):
            if h in confirmed:
                continue
            roff, aop = reported[h]
            if why == "elsewhere":
                seen = f"has it at offset {off}"
                extra = {"observed_offset": off}
            else:
                seen = f"has {_show(other)} at that offset"
                extra = {"occupant": other}
            out.add("inconsistent-offset",
                    f"append of {_show(unkey(h))} ({out.desc(aop)}) reported offset {roff}, but "
                    f"the log read by {out.desc(rop)} {seen}", sorted({aop, rop}), key=k,
                    value=unkey(h), reported_offset=roff, **extra,
                    append=out.op_json(aop), read=out.op_json(rop))
        self._offset_conflicts_between_appends(st, out)
        # The order graph is built only when a value sits at two trie positions: otherwise it is
        # the trie's tree of first occurrences with every edge pointing deeper, hence acyclic.
        in_cycle: dict[Any, int] = {}
        if repeated:
            g = self._order_graph(st, repeated)
            sccs = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
            sccs.sort(key=lambda c: min(pos.offset(h) for h in c))
            for n, comp in enumerate(sccs):
                for h in comp:
                    in_cycle[h] = n
                if n < CYCLES_MAX:
                    self._report_cycle(k, g, comp, out)
        # divergences not explained by a cycle or by a duplicate
        for fk in st.forks:
            x, y = fk.old.entries[0], fk.new.entries[0]
            if id(fk.old) in dup_heads or id(fk.new) in dup_heads:
                continue
            cx, cy = in_cycle.get(hkey(x)), in_cycle.get(hkey(y))
            if cx is not None and cx == cy:
                continue
            xo = fk.old.op_at(0)
            out.add("divergent-logs",
                    f"logs diverge at offset {fk.offset}: the log read by {out.desc(xo)} has "
                    f"{_show(x)}, the log read by {out.desc(fk.new_op)} has {_show(y)}",
                    sorted({xo, fk.new_op}), key=k, offset=fk.offset, entries=[unkey(x), unkey(y)],
                    logs=[out.op_json(xo), out.op_json(fk.new_op)])
        return pos

    @staticmethod
    def _report_cycle(k, g: nx.DiGraph, comp: set, out: "_Report") -> None:
        cyc = nx.find_cycle(g.subgraph(comp))
        steps = []
        for u, v in cyc:
            d = g.edges[u, v]
            steps.append({"before": unkey(u), "after": unkey(v), "offsets": list(d["offsets"]),
                          "op": out.op_json(d["op"])})
        chain = " -> ".join(_show(s["before"]) for s in steps) + f" -> {_show(steps[0]['before'])}"
        # the cycle is one witness; the component is every value caught in contradictory orders
        why = "; ".join(f"{_show(s['before'])} before {_show(s['after'])} at offsets "
                        f"{s['offsets'][0]},{s['offsets'][1]} of the log read by "
                        f"{out.desc(s['op']['index'])}" for s in steps)
        out.add("order-cycle", f"no single total order of the log: {chain} ({why})",
                sorted({s["op"]["index"] for s in steps}), key=k,
                cycle=[s["before"] for s in steps], edges=steps, component_size=len(comp),
                component=[unkey(h) for h in list(comp)[:COMPONENT_LISTED_MAX]])

    @staticmethod
    def _offset_conflicts_between_appends(st: _KeyState, out: "_Report") -> None:
        seen: dict[int, Any] = {}
        for h, (off, aop) in sorted(st.reported.items(), key=lambda t: t[1][1]):
            other = seen.get(off)
            if other is None:
                seen[off] = h
                continue
            oop = st.reported[other][1]
            out.add("inconsistent-offset",
                    f"appends of {_show(unkey(other))} ({out.desc(oop)}) and {_show(unkey(h))} "
                    f"({out.desc(aop)}) both reported offset {off}", [oop, aop], key=st.key,
                    reported_offset=off, values=[unkey(other), unkey(h)],
                    appends=[out.op_json(oop), out.op_json(aop)])

    @staticmethod
    def _order_graph(st: _KeyState, repeated: set) -> nx.DiGraph:
        """Edges "a came before b" between consecutive first occurrences along every trie path.

        Each edge carries the op whose log first showed it and the two offsets. Later
        occurrences of a value on one path (duplicates, reported separately) add no edge.
        A value before the first repeated value of its path has one position and all its
        predecessors lie on that path before it, so it cannot be on a cycle: such values are left
        out, which keeps the graph to the logs' divergent parts.
        """
        g = nx.DiGraph()
        on_path: set = set()
        # (branch, entering?, previous hkey on the path, its offset)
        stack: list[tuple] = [(st.root, True, None, -1)]
        added: dict[int, list] = {}
        while stack:
            b, entering, prev, prev_off = stack.pop()
            if not entering:
                on_path.difference_update(added.pop(id(b)))
                continue
            mine = []
            for rel, v in enumerate(b.entries):
                h = hkey(v)
                if h in on_path:
                    continue
                on_path.add(h)
                mine.append(h)
                off = b.start + rel
                if prev is None:
                    if h not in repeated:
                        continue                # not yet past a repeated value on this path
                    g.add_node(h)
                elif not g.has_edge(prev, h):
                    g.add_edge(prev, h, op=b.op_at(rel), offsets=(prev_off, off))
                prev, prev_off = h, off
            added[id(b)] = mine
            stack.append((b, False, None, -1))
            for c in reversed(list(b.children.values())):
                stack.append((c, True, prev, prev_off))
        return g


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _show(v: Any) -> str:
    return json.dumps(unkey(v), ensure_ascii=False)


class _Report:
    """Collects anomalies with a per-name cap (counts stay exact); describes ops for people."""

    def __init__(self, per_name_max: int, history: list | None, meta: dict):
        self.per_name_max = per_name_max
        self.history = history
        self.meta = meta
        self.anomalies: list[Anomaly] = []
        self.counts: dict[str, int] = {}
        self._listed: dict[str, int] = {}

    def _who(self, index: int) -> tuple:
        h = self.history
        if h is not None and 0 <= index < len(h) and h[index].index == index:
            op = h[index]
            return op.process, op.node
        return self.meta.get(index, (None, None))

    def process_of(self, index: int):
        return self._who(index)[0]

    def node_of(self, index: int):
        return self._who(index)[1]

    def desc(self, index: int) -> str:
        proc, node = self._who(index)
        parts = []
        if proc is not None:
            parts.append(f"process {proc}")
        if node is not None:
            parts.append(f"node {node}")
        return f"op {index}" + (f" ({', '.join(parts)})" if parts else "")

    def op_json(self, index: int) -> dict:
        proc, node = self._who(index)
        return {"index": index, "process": proc, "node": node}

    def full(self, name: str) -> bool:
        return self._listed.get(name, 0) >= self.per_name_max

    def count(self, name: str, n: int) -> None:
        """Set the exact count of a name whose instances were listed only up to the cap."""
        self.counts[name] = n

    def add(self, name: str, message: str, ops: list[int], **details) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.full(name):
            return
        self._listed[name] = self._listed.get(name, 0) + 1
        if details.get("key") is None:
            details.pop("key", None)
        self.anomalies.append(Anomaly(name, message, list(ops), details))


def make_checker(options: dict) -> LogChecker:
    """Registry factory. Options: `anomalies_per_name_max` (int, default 1000)."""
    cap = options.get("anomalies_per_name_max") or ANOMALIES_PER_NAME_MAX
    if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
        raise ValueError(f"anomalies_per_name_max must be a positive integer, got {cap!r}")
    return LogChecker(anomalies_per_name_max=cap)
