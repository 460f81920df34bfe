"""The kafka checker: Maelstrom's Kafka-style logs (harness/workloads.py `KafkaWorkload`).

Ops (the workload's history values): `send` key k, value m -> ok [offset, m]; `poll` value
{k: offset asked} -> ok {k: [[offset, m], ...]}; `assign` value [keys] -> ok {k: committed};
`commit` value {k: offset}. Messages are unique in a test (the workload draws them from a
counter), so a message names one send.

Histories recorded by Jepsen's and Maelstrom's kafka workloads are read too: their ops hold
micro-ops ([["send", k, [offset, m]]], [["poll", {k: pairs}]], several in a `txn`), their
`assign` / `subscribe` ops reset a consumer's position as ours do.

Every ok send and every pair an ok poll returned is an observation "offset o of log k holds m".
From them the checker knows, per log, which offsets exist and what they hold, and reports
(Jepsen's kafka checker, with Maelstrom's single-op transactions and `assign` subscriptions):

- `inconsistent-offsets`: one offset of a log observed holding two different messages;
- `duplicate`: one message observed at two offsets of a log;
- `unexpected-message`: a poll returned a message no send of that log ever tried;
- `failed-send-visible`: a poll returned the message of a send that failed (a definite error);
- `nonmonotonic-send`: a process's ok send got an offset not above its previous send's to the
  same log (its sends were sequential, so a total-order log gives them rising offsets);
- `nonmonotonic-poll`: offsets that do not rise within one poll's answer for a log, a first
  offset below the one asked for, or a first offset not above what the same process polled
  last from that log (since its last `assign`, and unless it asked for an offset at or below
  that: a rewind, as the final phase's polls from 0 are);
- `poll-skip`: a poll jumped over an offset known to exist: between the offset it started from
  (the one asked, or the process's last polled + 1, whichever is higher) and its first message,
  or between two consecutive messages of its answer;
- `lost-write`: an acknowledged send that no poll ever returned although some poll of the same
  log returned a later offset (consumers read in order, and the final phase polls every log
  from 0 on every node, so an acknowledged message below what was read should have been read).

Not anomalies (stats): `unseen` acknowledged sends above everything polled from their log (no
recency requirement, as in Maelstrom), sends that ended `info` and were or were not read.
Valid is False with any anomaly; "unknown" when sends were acknowledged but no poll succeeded.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..history.errors import HistoryError
from ..history.op import FAIL, INVOKE, OK
from .log import hkey, unkey
from .result import UNKNOWN, Anomaly, Result

NAME = "kafka"
ANOMALIES_PER_NAME_MAX = 1000


@dataclass
class _Log:
    """What the history says about one log (one key)."""

    # offset -> {message hkey -> op index of the first observation}
    at: dict[int, dict[Any, int]] = field(default_factory=dict)
    # message hkey -> {offset -> op index of the first observation}
    where: dict[Any, dict[int, int]] = field(default_factory=dict)
    sent: dict[Any, int] = field(default_factory=dict)        # message -> its send's invoke
    acked: dict[Any, tuple[int, int]] = field(default_factory=dict)  # message -> (offset, ok op)
    failed: dict[Any, int] = field(default_factory=dict)      # message -> its send's fail op
    polled: dict[Any, int] = field(default_factory=dict)      # message -> first poll that read it
    poll_max: tuple[int, int] = (-1, -1)                      # (highest offset polled, poll op)
    known: list[int] = field(default_factory=list)            # sorted offsets known to exist

    def observe(self, offset: int, h: Any, index: int) -> None:
        self.at.setdefault(offset, {}).setdefault(h, index)
        self.where.setdefault(h, {}).setdefault(offset, index)


@dataclass
class _Poll:
    index: int          # the ok completion's op index
    process: Any
    asked: dict         # {key: offset} of the invocation (may be empty for foreign histories)
    msgs: dict          # {key: [[offset, message], ...]}


def is_offset(x: Any) -> bool:
    """An offset: a non-negative integer (not a bool)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def offset_pairs(pairs: Any) -> bool:
    """Is `pairs` a poll's answer for one log, [[offset, message], ...]? (The workload checks
    replies with it too.)"""
    return isinstance(pairs, list) and all(
        isinstance(p, list) and len(p) == 2 and is_offset(p[0]) for p in pairs)


KAFKA_FS = ("send", "poll", "txn", "assign", "subscribe", "commit")


def _micro_ops(op, inv=None) -> list[tuple[str, Any, Any]]:
    """An op's micro-operations as (f, key, value).

    splitbrain's own ops are one each: a send is ("send", key, value) and a poll's completion
    ("poll", None, {key: pairs}); a poll's invocation gives ("poll-from", key, offset) per key
    it asked. Jepsen's and Maelstrom's kafka histories hold a list of micro-ops in the value,
    [["send", k, v] | ["poll"] | ["poll", {k: pairs}], ...] (`txn` ops hold several).
    """
    v = op.value
    if (isinstance(v, list) and v and all(isinstance(m, list) and m and m[0] in ("send", "poll")
                                          for m in v)):
        out = []
        for m in v:
            if m[0] == "send" and len(m) == 3:
                out.append(("send", m[1], m[2]))
            elif m[0] == "poll" and len(m) == 2:
                out.append(("poll", None, m[1]))
        return out
    if op.f == "send":
        key = op.key if op.key is not None else getattr(inv, "key", None)
        return [("send", key, v)]
    if op.f == "poll":
        if op.type == INVOKE:
            return [("poll-from", k, o) for k, o in v.items()] if isinstance(v, dict) else []
        return [("poll", None, v)]
    return []


def _poll(op, msgs: Any, asked: dict) -> _Poll:
    """A checked poll answer: {key: [[offset, message], ...]}; HistoryError for another shape."""
    msgs = msgs if msgs is not None else {}
    if not isinstance(msgs, dict):
        raise HistoryError(f"op {op.index}: an ok poll must have a map of key to "
                           f"[[offset, message], ...], got {type(msgs).__name__}", field="value")
    for k, pairs in msgs.items():
        if not offset_pairs(pairs):
            raise HistoryError(f"op {op.index}: key {k!r} of an ok poll must hold "
                               f"[[offset, message], ...], got {pairs!r}", field="value")
    return _Poll(op.index, op.process, asked, msgs)


class KafkaChecker:
    name = NAME

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        logs: dict[Any, _Log] = {}
        polls: list[_Poll] = []
        # Per process, in its order: ("poll", _Poll) | ("assign", index) | ("send", key, off, i)
        by_process: dict[Any, list[tuple]] = {}
        pending: dict[Any, Any] = {}

        def log_of(k: Any) -> _Log:
            return logs.setdefault(hkey(k), _Log())

        for op in history:
            if op.f not in KAFKA_FS:
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                for f, key, value in _micro_ops(op):
                    if f == "send":
                        log_of(key).sent.setdefault(hkey(value), op.index)
                continue
            inv = pending.pop(op.process, None)
            if op.f in ("assign", "subscribe"):
                if op.type == OK:
                    by_process.setdefault(op.process, []).append(("assign", op.index))
                continue
            if op.type == FAIL:
                for f, key, value in _micro_ops(inv if inv is not None else op):
                    if f == "send":
                        log_of(key).failed.setdefault(hkey(value), op.index)
                continue
            if op.type != OK:
                continue
            asked = {k: v for f, k, v in (_micro_ops(inv) if inv is not None else ())
                     if f == "poll-from"}
            for f, key, value in _micro_ops(op, inv):
                if f == "send":
                    if not (isinstance(value, list) and len(value) == 2 and is_offset(value[0])):
                        raise HistoryError(f"op {op.index}: an ok send must have value [offset, "
                                           f"message], got {value!r}", field="value")
                    lg = log_of(key)
                    o, h = value[0], hkey(value[1])
                    lg.observe(o, h, op.index)
                    lg.acked.setdefault(h, (o, op.index))
                    by_process.setdefault(op.process, []).append(("send", hkey(key), o,
                                                                  op.index))
                elif f == "poll":
                    p = _poll(op, value, asked)
                    polls.append(p)
                    by_process.setdefault(op.process, []).append(("poll", p))
                    for k, pairs in p.msgs.items():
                        lg = log_of(k)
                        for o, m in pairs:
                            h = hkey(m)
                            lg.observe(o, h, op.index)
                            lg.polled.setdefault(h, op.index)
                            if o > lg.poll_max[0]:
                                lg.poll_max = (o, op.index)
        for lg in logs.values():
            lg.known = sorted(lg.at)
        return self._judge(logs, polls, by_process)

    def _judge(self, logs: dict[Any, _Log], polls: list[_Poll],
               by_process: dict[Any, list[tuple]]) -> Result:
        anomalies: list[Anomaly] = []
        counts: dict[str, int] = {}

        def add(name: str, msg: str, ops: list[int], **details: Any) -> None:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] <= ANOMALIES_PER_NAME_MAX:
                anomalies.append(Anomaly(name, msg, sorted(set(ops)), details))

        for hk, lg in sorted(logs.items(), key=lambda t: repr(t[0])):
            k = unkey(hk)
            for o in lg.known:
                held = lg.at[o]
                if len(held) > 1:
                    (m1, i1), (m2, i2) = sorted(held.items(), key=lambda t: t[1])[:2]
                    add("inconsistent-offsets", f"log {k!r} offset {o} holds {unkey(m1)!r} "
                        f"(op {i1}) and {unkey(m2)!r} (op {i2})", [i1, i2], key=k, offset=o,
                        messages=[unkey(m) for m in held])
            for h, offs in lg.where.items():
                if len(offs) > 1:
                    (o1, i1), (o2, i2) = sorted(offs.items())[:2]
                    add("duplicate", f"message {unkey(h)!r} of log {k!r} is at offset {o1} "
                        f"(op {i1}) and at offset {o2} (op {i2})", [i1, i2], key=k,
                        message=unkey(h), offsets=sorted(offs))
            for h, i in lg.polled.items():
                if h in lg.failed and h not in lg.acked:
                    add("failed-send-visible", f"poll op {i} read {unkey(h)!r} from log {k!r}, "
                        f"whose send failed (op {lg.failed[h]})", [i, lg.failed[h]], key=k,
                        message=unkey(h))
                elif h not in lg.sent:
                    add("unexpected-message", f"poll op {i} read {unkey(h)!r} from log {k!r}, "
                        f"which no send to that log tried", [i], key=k, message=unkey(h))
            top, top_op = lg.poll_max
            for h, (o, i) in sorted(lg.acked.items(), key=lambda t: t[1]):
                if h in lg.polled:
                    continue
                if o < top:
                    add("lost-write", f"the send of {unkey(h)!r} to log {k!r} was acknowledged "
                        f"at offset {o} (op {i}) but no poll read it, though poll op {top_op} "
                        f"read offset {top}", [i, top_op], key=k, message=unkey(h), offset=o)
                else:
                    counts["unseen"] = counts.get("unseen", 0) + 1
        for process, events in by_process.items():
            self._process_order(process, events, logs, add)
        stats = {"logs": len(logs),
                 "sends": sum(len(lg.sent) for lg in logs.values()),
                 "acknowledged": sum(len(lg.acked) for lg in logs.values()),
                 "polls_ok": len(polls),
                 "messages_read": sum(len(lg.polled) for lg in logs.values()),
                 "highest_offsets": {str(unkey(h)): lg.known[-1] for h, lg in logs.items()
                                     if lg.known},
                 "anomalies": {n: c for n, c in counts.items() if n != "unseen"},
                 "unseen": counts.get("unseen", 0)}
        if anomalies:
            return Result(valid=False, checker=NAME, anomalies=anomalies, stats=stats)
        if stats["acknowledged"] and not polls:
            return Result(valid=UNKNOWN, checker=NAME, stats=stats,
                          error="sends were acknowledged but no poll succeeded")
        return Result(valid=True, checker=NAME, stats=stats)

    @staticmethod
    def _process_order(process: Any, events: list[tuple], logs: dict[Any, _Log], add) -> None:
        """One process's sends and polls, in its order: the rules that span its operations."""
        last_poll: dict[Any, tuple[int, int]] = {}   # log -> (offset last polled, poll op)
        last_send: dict[Any, tuple[int, int]] = {}   # log -> (offset last sent, send op)
        for ev in events:
            if ev[0] == "assign":
                last_poll.clear()       # a fresh assign may move the process's position
                continue
            if ev[0] == "send":
                _, hk, o, i = ev
                prev = last_send.get(hk)
                if prev is not None and o <= prev[0]:
                    add("nonmonotonic-send", f"process {process} sent to log {unkey(hk)!r} at "
                        f"offset {prev[0]} (op {prev[1]}) and then at offset {o} (op {i})",
                        [prev[1], i], key=unkey(hk), offsets=[prev[0], o])
                last_send[hk] = (o, i)
                continue
            p: _Poll = ev[1]
            for k, pairs in p.msgs.items():
                if not pairs:
                    continue
                hk = hkey(k)
                known = logs[hk].known
                first, last = pairs[0][0], pairs[-1][0]
                asked = p.asked.get(k)
                prev = last_poll.get(hk)
                if prev is not None and is_offset(asked) and asked <= prev[0]:
                    prev = None         # the client asked to read again (a rewind, a final poll)
                start = asked if is_offset(asked) else 0
                if prev is not None:
                    start = max(start, prev[0] + 1)
                if is_offset(asked) and first < asked:
                    add("nonmonotonic-poll", f"poll op {p.index} (process {process}) asked log "
                        f"{k!r} from offset {asked} and got offset {first} first", [p.index],
                        key=k, offsets=[asked, first])
                elif prev is not None and first <= prev[0]:
                    add("nonmonotonic-poll", f"process {process} polled log {k!r} up to offset "
                        f"{prev[0]} (op {prev[1]}) and then from offset {first} (op "
                        f"{p.index})", [prev[1], p.index], key=k, offsets=[prev[0], first])
                elif is_offset(asked) or prev is not None:
                    _skips(k, known, start, first, p, add, first_gap=True)
                steps = [(a, b) for (a, _), (b, _) in zip(pairs, pairs[1:])]
                backwards = [(a, b) for a, b in steps if b <= a]
                for a, b in backwards:
                    add("nonmonotonic-poll", f"poll op {p.index} (process {process}) read log "
                        f"{k!r} at offset {a} and then at {b}", [p.index], key=k, offsets=[a, b])
                if not backwards:       # skips inside an answer only when its order holds
                    for a, b in steps:
                        if b > a + 1:
                            _skips(k, known, a + 1, b, p, add)
                last_poll[hk] = (max(last, prev[0]) if prev else last, p.index)


def _skips(k: Any, known: list[int], lo: int, hi: int, p: _Poll, add,
           first_gap: bool = False) -> None:
    """Report a poll-skip when an offset known to exist lies in [lo, hi)."""
    j = bisect.bisect_left(known, lo)
    if j < len(known) and known[j] < hi:
        where = (f"started at offset {lo} but its first message is at {hi}" if first_gap else
                 f"went from offset {lo - 1} to {hi}")
        add("poll-skip", f"poll op {p.index} (process {p.process}) of log {k!r} {where}, "
            f"skipping offset {known[j]}, which exists", [p.index], key=k, skipped=known[j],
            range=[lo, hi])


def make_checker(options: dict) -> KafkaChecker:
    """Registry factory: the kafka checker takes no options."""
    return KafkaChecker()
