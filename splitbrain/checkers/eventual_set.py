"""Jepsen's set-full analysis as Maelstrom runs it: broadcast and g-set (eventually consistent).

Maelstrom checks its `broadcast` workload with set-full after renaming `broadcast` to `add`, and
its `g-set` workload with set-full as it is, both with `linearizable? false`. This module is that
analysis, with the same outcomes, counts and latency figures, plus diagnostics Maelstrom does not
give (which nodes' last reads miss a lost element) and two anomalies it does not look for.

Ops: an add (`f` = option `add_f`: "broadcast" or "add") with the element as value; `read` whose
ok value is the list of every element the node holds. History order is op index. Values compare
as JSON values (splitbrain/history/values.py: `true` is not `1`).

For every element (tracked from its add's invoke on; a read counts for it when the read completed
after that invoke):
- *known*: the earlier (by history order) of its add's `ok` completion and the completion of the
  first read that contained it;
- *last-present* / *last-absent*: the latest-invoked read that contained it / lacked it;
- `stable` when it has a last-present read invoked after its last-absent one (or never absent);
- `lost` when it is known, and the latest read invoked after it was known lacks it and no read
  invoked later contains it (its last-absent read was invoked after both its known op and its
  last-present read);
- `never-read` otherwise (no read began after it was known);
- splitbrain's stricter rule for the final phase (reads the harness pinned to a node after the
  heal and the quiet period): an element known before a node's final read began, and missing
  from it, is `lost` too, even when some other node's later read holds it. Set-full looks only
  at the latest-invoked read, so its verdict on a node that never got a message depends on which
  final read happened to start last; every node must end up with every element;
- `stale`: a stable element whose stable latency is > 0 ms.
Latencies are Jepsen's, in whole milliseconds: stable latency = (time of the last-absent read's
invoke + 1 ns, or 0 when never absent) - known time, at least 0; lost latency likewise from the
last-present read. `stable-latencies` / `lost-latencies` are the quantiles 0, 0.5, 0.95, 0.99, 1
(Jepsen's `frequency-distribution`: the element at floor(n * q), capped at n - 1, of the sorted
latencies).

Verdict (Maelstrom's, with splitbrain's additions):
- False with any `lost` element;
- False with an `unexpected` element (splitbrain's addition: a read returned an element no add
  ever invoked, that a read returned before its add was invoked, or whose every add failed: a
  node invented or resurrected it; set-full ignores these);
- False with a `malformed-read` (splitbrain's addition: an ok read whose value is not a list);
- "unknown" when no element is stable (nothing added, or nothing read after it was known);
- "unknown" when a node's final read was invoked and did not complete ok (a node down at the
  end: what it holds is not known, and a run must not pass on the nodes that still answer);
- else True. Stale elements never make the verdict False (the set is not linearizable).
Duplicates inside one read are counted (`duplicated-count`), not judged (a set may be sent as a
list with repeats; Jepsen's own duplicate check never fires).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..history.op import FAIL, INVOKE, NEMESIS, OK
from ..history.values import json_key
from .result import UNKNOWN, Anomaly, Result

QUANTILES = (0, 0.5, 0.95, 0.99, 1)
ANOMALIES_PER_NAME_MAX = 1000
ELEMENTS_LISTED_MAX = 1000     # elements listed by value in stats (lost, stale, never-read)
WORST_STALE_MAX = 8            # Jepsen's worst-stale length


def frequency_distribution(values: list[int], points=QUANTILES) -> dict[str, int] | None:
    """Jepsen's quantiles: for each point q the sorted value at min(n - 1, floor(n * q))."""
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    return {_qname(q): s[min(n - 1, int(math.floor(n * q)))] for q in points}


def _qname(q: float) -> str:
    return str(int(q)) if q in (0, 1) else str(q)


_PLAIN = frozenset({int, str})


def ekey(v: Any) -> Any:
    """The element key of a JSON value: equal exactly when the values are the same JSON value
    (values.json_key), but an int or a string is its own key, so a read of plain elements
    becomes a set at C speed. An integral float is keyed as its int (1.0 is 1); every other
    value by its json_key tuple (a tuple never equals an int or a string)."""
    t = type(v)
    if t is int or t is str:
        return v
    if t is float and v.is_integer():
        return int(v)
    return json_key(v)


def _unkey(k: Any) -> Any:
    """Back from an element key to a JSON-like value (for messages and stats)."""
    if not isinstance(k, tuple):
        return k
    tag = k[0]
    if tag in ("s", "b", "#"):
        return k[1]
    if tag == "n":
        return None
    if tag == "l":
        return [_unkey(x) for x in k[1]]
    if tag == "d":
        return {str(_unkey(a)): _unkey(b) for a, b in k[1]}
    return k[-1]


def _ms(ns: int) -> int:
    """Nanoseconds to whole milliseconds, truncated (Jepsen's nanos->ms then long)."""
    return int(ns / 1e6)


@dataclass
class _Read:
    inv_index: int
    inv_time: int
    index: int          # completion index
    time: int
    keys: frozenset
    process: Any
    node: Any
    final: Any = None       # final phase: the node its invoke was pinned to (else None)


@dataclass
class _Element:
    value: Any
    invoke: int                          # index of its (first) add invoke
    ok: tuple[int, int] | None = None    # (index, time) of its add's ok completion
    failed: bool = False                 # an add of it failed, none succeeded


class EventualSetChecker:
    """set-full (non-linearizable) over `add_f` / `read` ops; see the module docstring."""

    def __init__(self, name: str = "g-set", add_f: str = "add", linearizable: bool = False):
        self.name = name
        self.add_f = add_f
        self.linearizable = linearizable

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        pending: dict[Any, Any] = {}
        elements: dict[Any, _Element] = {}
        reads: list[_Read] = []
        anomalies: list[Anomaly] = []
        counts = {"malformed-read": 0, "unexpected": 0, "lost": 0}
        dup_elements: set = set()
        final_invoked: set = set()      # nodes whose final read was invoked

        def flag(name: str, msg: str, ops: list, **details) -> None:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] <= ANOMALIES_PER_NAME_MAX:
                anomalies.append(Anomaly(name, msg, ops, details))

        for op in history:
            if op.process == NEMESIS or op.f not in (self.add_f, "read"):
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                if op.f == "read" and op.node is not None:
                    final_invoked.add(op.node)
                if op.f == self.add_f:
                    k = ekey(op.value)
                    if k not in elements:
                        elements[k] = _Element(op.value, op.index)
                continue
            inv = pending.pop(op.process, None)
            if op.f == self.add_f:
                e = elements.get(ekey(inv.value if inv is not None else op.value))
                if e is None:
                    continue
                if op.type == OK and e.ok is None:
                    e.ok = (op.index, op.time)
                    e.failed = False
                elif op.type == FAIL and e.ok is None:
                    e.failed = True
                continue
            if op.type != OK:
                continue
            node = op.node if op.node is not None else getattr(inv, "node", None)
            if not isinstance(op.value, (list, tuple)):   # tuple: a canonicalized list
                flag("malformed-read", f"read op {op.index} (process {op.process}"
                     f"{', node ' + str(node) if node else ''}) returned "
                     f"{type(op.value).__name__} {op.value!r:.80}, not a list of elements",
                     [op.index], value=op.value)
                continue
            if set(map(type, op.value)) <= _PLAIN:
                keys = op.value
            else:
                keys = [ekey(v) for v in op.value]
            ks = frozenset(keys)
            if len(ks) != len(keys):
                seen: set = set()
                for k in keys:
                    if k in seen:
                        dup_elements.add(k)
                    seen.add(k)
            reads.append(_Read(inv.index if inv is not None else op.index,
                               inv.time if inv is not None else op.time,
                               op.index, op.time, ks, op.process, node,
                               inv.node if inv is not None else None))
        final_ok = {r.final for r in reads if r.final is not None}
        no_final = sorted(str(n) for n in final_invoked - final_ok)
        return self._judge(elements, reads, anomalies, counts, flag, len(dup_elements),
                           no_final)

    # ---- the analysis ---------------------------------------------------------------------

    def _judge(self, elements, reads, anomalies, counts, flag, duplicated,
               no_final: list) -> Result:
        def rdesc(r: _Read) -> str:
            node = f", node {r.node}" if r.node is not None else ""
            return f"read op {r.index} (process {r.process}{node})"

        # Unexpected: elements read that no add explains.
        first_read: dict[Any, _Read] = {}
        seen: set = set()
        for r in reads:                       # reads are in completion order
            new = r.keys - seen               # set operations: C speed over big reads
            if new:
                seen |= new
                for k in new:
                    first_read[k] = r
        for k, r in sorted(first_read.items(), key=lambda t: t[1].index):
            e = elements.get(k)
            if e is not None and e.invoke < r.index and not e.failed:
                continue
            value = _unkey(k)
            if e is None:
                why = f"no {self.add_f} of it was ever invoked"
            elif e.failed:
                why = f"its {self.add_f} (invoked at op {e.invoke}) failed"
            else:
                why = f"it was read before its {self.add_f} was invoked (op {e.invoke})"
            flag("unexpected", f"{rdesc(r)} contains {value!r}, but {why}",
                 [r.index] + ([e.invoke] if e is not None else []), element=value)

        by_inv = sorted(reads, key=lambda r: r.inv_index, reverse=True)
        # Each node's last read (by invoke order): which nodes miss a lost element.
        last_by_node: dict[Any, _Read] = {}
        for r in by_inv:
            last_by_node.setdefault(r.node, r)
        final_reads = [r for r in last_by_node.values() if r.final is not None]
        outcomes = {"stable": [], "lost": [], "never-read": []}
        stable_lat: list[int] = []
        lost_lat: list[int] = []
        stale: list[tuple[int, _Element, Any, Any]] = []
        # Each element's last-present and last-absent read, newest reads first, with set
        # operations (C speed): a read counts for the elements whose add was invoked before the
        # read completed, a prefix of the elements in invoke order.
        order = sorted(elements, key=lambda k: elements[k].invoke)
        invokes = [elements[k].invoke for k in order]
        last_present_of: dict[Any, _Read] = {}
        last_absent_of: dict[Any, _Read] = {}
        done_present: set = set()
        done_absent: set = set()
        for r in by_inv:
            n = bisect.bisect_left(invokes, r.index)
            new = set(order[:n]) - r.keys - done_absent
            if new:
                done_absent |= new
                for k in new:
                    last_absent_of[k] = r
            new = r.keys - done_present
            for k in new:
                e = elements.get(k)
                if e is None:
                    done_present.add(k)        # never added: the unexpected check names it
                elif e.invoke < r.index:
                    done_present.add(k)
                    last_present_of[k] = r
        for k in order:
            e = elements[k]
            known = e.ok
            last_present = last_present_of.get(k)
            last_absent = last_absent_of.get(k)
            fr = first_read.get(k)
            if fr is not None and fr.index > e.invoke and (known is None or fr.index < known[0]):
                known = (fr.index, fr.time)
            stable = last_present is not None and (
                last_absent is None or last_absent.inv_index < last_present.inv_index)
            lost = (known is not None and last_absent is not None
                    and (last_present is None or last_present.inv_index < last_absent.inv_index)
                    and known[0] < last_absent.inv_index)
            final_missing = [] if known is None else [
                r for r in final_reads if r.inv_index > known[0] and k not in r.keys]
            if stable and final_missing:
                stable, lost = False, True
                last_absent = max(final_missing, key=lambda r: r.inv_index)
            if stable:
                outcomes["stable"].append(e.value)
                t = last_absent.inv_time + 1 if last_absent is not None else 0
                lat = _ms(max(0, t - known[1])) if known is not None else 0
                stable_lat.append(lat)
                if lat > 0:
                    stale.append((lat, e, known, last_absent))
            elif lost:
                outcomes["lost"].append(e.value)
                t = last_present.inv_time + 1 if last_present is not None else 0
                lost_lat.append(_ms(max(0, t - known[1])))
                missing = sorted(str(n) for n, r in last_by_node.items()
                                 if n is not None and k not in r.keys
                                 and r.inv_index > known[0])
                how = "acknowledged" if e.ok is not None and e.ok[0] == known[0] else "first read"
                if last_present is not None and last_present.inv_index > last_absent.inv_index:
                    msg = (f"{e.value!r} ({how} at op {known[0]}) is missing from the final "
                           f"read{'s' if len(missing) > 1 else ''} of "
                           f"{', '.join(missing) or rdesc(last_absent)} (after the heal "
                           f"and the quiet period), though other nodes hold it (latest: "
                           f"{rdesc(last_present)})")
                else:
                    msg = (f"{e.value!r} ({how} at op {known[0]}) is absent from "
                           f"{rdesc(last_absent)}, which began after that, and ")
                    msg += ("no read ever contained it" if last_present is None else
                            f"no read invoked later contains it (last present in "
                            f"{rdesc(last_present)})")
                    if missing:
                        msg += f"; missing from the last reads of {', '.join(missing)}"
                flag("lost", msg, [e.invoke, known[0], last_absent.index], element=e.value,
                     known=known[0], last_absent=last_absent.index,
                     last_present=None if last_present is None else last_present.index,
                     missing_on=missing)
            else:
                outcomes["never-read"].append(e.value)
        stale.sort(key=lambda t: -t[0])
        stats: dict[str, Any] = {
            "attempt-count": len(elements),
            "acknowledged-count": sum(1 for e in elements.values() if e.ok is not None),
            "stable-count": len(outcomes["stable"]),
            "lost-count": len(outcomes["lost"]),
            "lost": _listed(outcomes["lost"]),
            "never-read-count": len(outcomes["never-read"]),
            "never-read": _listed(outcomes["never-read"]),
            "stale-count": len(stale),
            "stale": _listed([e.value for _, e, _, _ in stale]),
            "worst-stale": [{"element": e.value, "stable-latency": lat, "known": kn[0],
                             "last-absent": la.index if la is not None else None}
                            for lat, e, kn, la in stale[:WORST_STALE_MAX]],
            "unexpected-count": counts.get("unexpected", 0),
            "malformed-read-count": counts.get("malformed-read", 0),
            "duplicated-count": duplicated,
            "read-count": len(reads),
            "final-read-missing": no_final,
        }
        lat = frequency_distribution(stable_lat) if stable_lat else None
        stats["headline"] = (
            f"{stats['attempt-count']} {self.add_f}s: {stats['stable-count']} stable, "
            f"{stats['lost-count']} lost, {stats['stale-count']} stale, "
            f"{stats['never-read-count']} never read"
            + (f"; stable latency ms: median {lat['0.5']}, p95 {lat['0.95']}, p99 "
               f"{lat['0.99']}, max {lat['1']}" if lat else ""))
        if stable_lat:
            stats["stable-latencies"] = lat
        if lost_lat:
            stats["lost-latencies"] = frequency_distribution(lost_lat)
        if self.linearizable and stale:
            for lat, e, kn, la in stale[:ANOMALIES_PER_NAME_MAX]:
                anomalies.append(Anomaly("stale", f"{e.value!r} was known at op {kn[0]} but "
                                         f"absent from read op {la.index}, {lat} ms later",
                                         [kn[0], la.index], {"element": e.value}))
        error = None
        if anomalies:
            valid: Any = False
        elif not outcomes["stable"]:
            valid = UNKNOWN
            error = ("no element is stable: nothing was added, or no read began after an "
                     "element was known")
        elif no_final:
            valid = UNKNOWN
            error = (f"the final read of {', '.join(no_final)} did not succeed: whether every "
                     f"node ended with every element is unknown")
        else:
            valid = True
        return Result(valid=valid, checker=self.name, anomalies=anomalies, stats=stats,
                      error=error)


def _listed(values: list) -> list:
    try:
        values = sorted(values)
    except TypeError:
        pass
    return values[:ELEMENTS_LISTED_MAX]


def make_broadcast_checker(options: dict) -> EventualSetChecker:
    """Registry factory `broadcast`: set-full over `broadcast` / `read` (Maelstrom's)."""
    return EventualSetChecker("broadcast", "broadcast",
                              linearizable=options.get("linearizable", False) is True)


def make_gset_checker(options: dict) -> EventualSetChecker:
    """Registry factory `g-set`: set-full over `add` / `read` (Maelstrom's)."""
    return EventualSetChecker("g-set", "add",
                              linearizable=options.get("linearizable", False) is True)
