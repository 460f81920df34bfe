"""Elle's list-append inference: version orders from reads, then ww / wr / rw edges.

Micro-ops: `["append", k, v]` appends v to the list at key k; `["r", k, list]` reads it (null
in an invocation). Appended values must be unique per key (the workload guarantees it), so an
element names the transaction that appended it.

Version order of a key: its longest read by a committed transaction. Every other committed read
must be a prefix of it, else `incompatible-order` (two reads that cannot come from one history of
the key). Given the order [e0, e1, ...] with writers W(e):
  ww  W(e_i) -> W(e_i+1)          (different transactions)
  wr  W(last element) -> reader   (of a transaction's external read: its first access of the key)
  rw  reader -> W(e_m)            (a read of length m; the next append overwrote what it read)

A read that ends at an intermediate append (G1b) gives no wr / rw edge: the G1b report explains
it, and its edges would add a cycle through the half-seen transaction.

Non-cycle anomalies (Elle's names), all found from the version order in one pass per key, since
every compatible read is a prefix of it:
  G1a                 a committed read saw an element appended by a failed transaction
  G1b                 a committed read ended at an element its writer appended to the key before
                      another element of its own: it saw the transaction half done
  dirty-update        the version order holds a failed transaction's element followed by an
                      element of a committed one (a write built on an aborted state)
  duplicate-elements  a read holds one element twice
  garbage-read        a read holds an element that no transaction appended (splitbrain's name)
  internal            a transaction's read of a key disagrees with its own earlier read and
                      appends of that key
  lost-update         two committed transactions read the same version of a key and both
                      appended to it
  incompatible-order  (above)

Cost: one pass over the micro-ops (dict look-ups of plain int/str keys and values, no per-value
objects), then per key one comparison of each read with the version order. A key with nothing to
report (the usual case: `_clean_key`) is checked with C-level passes (map / all / compress) over
its reads instead of a Python loop, and the wr / rw / ww edges of all such keys come from one
numpy pass at the end (`_CleanKeys`); any other key goes through `_key_general`, the per-read
loop that words each anomaly. list_append_reference.py keeps the implementation before this
split; tests/test_txn_fast.py checks on generated histories with injected anomalies that both
report the same edges, anomalies and verdicts. (A fully vectorized pass over all micro-ops, with
numpy columns, was tried and measured 1.3-2x SLOWER than this loop at 100k and 1M transactions:
every extra pass over millions of Python objects costs about as much as the loop's work.)
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import eq, itemgetter
from typing import Any

from .graph import RW, WR, WW, Edges
from .history import FAIL_S, OK_S, TxnHistory, validate_mops
from .values import fast_key

_PLAIN = frozenset((int, str))
_first = itemgetter(0)     # a (txn, read, external) tuple's txn
_second = itemgetter(1)    # a (txn, read, external) tuple's read
_third = itemgetter(2)     # a (txn, read, external) tuple's external flag
FOUND_PER_NAME_MAX = 100   # anomaly instances kept per name (the count goes on in stats)


def _state(mark: tuple) -> list:
    """The full per-key state (see ListAppend.run) from a first micro-op's cheap mark: (read,)
    for a read, (value, fast key) for an append."""
    if len(mark) == 1:
        return [mark[0], [], mark[0], None]
    v, vk = mark
    return [None, [v], None, vk]


class _CleanKeys:
    """The reads of the clean keys (`ListAppend._clean_key`), gathered with C-level extends,
    and their ww / wr / rw edges computed in one numpy pass: the same edges `_key_general`
    adds read by read. Each key's writers go into one concatenated list `W` at an offset."""

    def __init__(self) -> None:
        self.W: list[int] = []
        self.key_len: list[int] = []            # per key: its number of elements in W
        self.t: list[int] = []                  # per read: reader, length, external?, its
        self.m: list[int] = []
        self.ext: list[bool] = []
        self.off: list[int] = []
        self.end: list[int] = []                # key's start and end in W

    def add(self, W: list, reads: list, ms: list) -> None:
        off = len(self.W)
        self.W.extend(W)
        self.key_len.append(len(W))
        self.t.extend(map(_first, reads))
        self.m.extend(ms)
        self.ext.extend(map(_third, reads))
        self.off.extend(repeat(off, len(reads)))
        self.end.extend(repeat(off + len(W), len(reads)))

    def add_edges(self, edges: Edges) -> None:
        import numpy as np
        W = np.array(self.W, dtype=np.int64)
        if len(W) > 1:
            # ww between neighbours of one key's version order, by different transactions
            key_of = np.repeat(np.arange(len(self.key_len)), self.key_len)
            ww = (key_of[1:] == key_of[:-1]) & (W[1:] != W[:-1])
            edges.add_arrays(W[:-1][ww], W[1:][ww], WW)
        if not self.t:
            return
        ext = np.array(self.ext, dtype=bool)
        t = np.array(self.t, dtype=np.int64)[ext]
        m = np.array(self.m, dtype=np.int64)[ext]
        off = np.array(self.off, dtype=np.int64)[ext]
        end = np.array(self.end, dtype=np.int64)[ext]
        Wx = np.append(W, -1)
        # wr: the writer of the read's last element -> the reader (an external read)
        last = np.where(m > 0, off + m - 1, len(W))
        w = Wx[last]
        wr = (w >= 0) & (w != t)
        edges.add_arrays(w[wr], t[wr], WR)
        # rw: the reader -> the writer of the next element in the version order
        nxt = np.where(off + m < end, off + m, len(W))
        w = Wx[nxt]
        rw = (w >= 0) & (w != t)
        edges.add_arrays(t[rw], w[rw], RW)


class Found:
    """One non-cycle anomaly: its name, the transactions that show it, words, JSON details."""

    __slots__ = ("name", "txns", "message", "details")

    def __init__(self, name: str, txns: list[int], message: str, details: dict):
        self.name, self.txns, self.message, self.details = name, txns, message, details


class Findings:
    """Anomalies by name, bounded per name; counts are exact."""

    def __init__(self) -> None:
        self.items: dict[str, list[Found]] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, txns: list[int], message: str, details: dict | None = None) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        lst = self.items.setdefault(name, [])
        if len(lst) < FOUND_PER_NAME_MAX:
            lst.append(Found(name, txns, message, details or {}))


class ListAppend:
    """The inference for one history; `run()` fills `edges` and `found`."""

    kind = "list-append"

    def __init__(self, h: TxnHistory):
        self.h = h
        self.edges = Edges()
        self.found = Findings()
        self.key_ids: dict[Any, int] = {}
        self.keys: list[Any] = []
        self.orders: list[list] = []           # per key: the version order (a list)
        self.order_writers: list[list[int]] = []

    def _t(self, t: int) -> str:
        return f"T{t}"

    def run(self) -> None:
        h = self.h
        status, mops_all = h.status, self.h.mops
        key_ids, keys = self.key_ids, self.keys
        writers: list[dict] = []        # per key: value fast key -> (txn, position in its appends)
        failed: list[dict] = []         # per key: value fast key -> failed txn
        inter: list[dict] = []          # per key: value fast key -> txn (an intermediate append)
        reads: list[list] = []          # per key: (txn, list, external?) of committed reads
        plain: list[bool] = []          # per key: every appended value is a plain int or str
        lost: dict[tuple, list[int]] = {}
        found = self.found
        for t, (st, mops) in enumerate(zip(status, mops_all)):
            # key -> what this transaction did to it: after one micro-op a cheap mark (the
            # 1-tuple (read list,), or the 2-tuple (appended value, fast key)); from the
            # second on, the list [its value as far as known (None: not read yet), own appends
            # since, the external read (None: the first access was an append), last append's
            # fast key (None: none yet)]
            local: dict[int, Any] = {}
            try:
                for f, k, v in mops:
                    kid = key_ids.get(k if type(k) in _PLAIN else fast_key(k))
                    if kid is None:
                        kid = len(keys)
                        key_ids[fast_key(k)] = kid
                        keys.append(k)
                        writers.append({})
                        failed.append({})
                        inter.append({})
                        reads.append([])
                        plain.append(True)
                    if f == "append":
                        if type(v) in _PLAIN:
                            vk = v
                        else:
                            vk = fast_key(v)
                            plain[kid] = False
                        if st == FAIL_S:
                            failed[kid][vk] = t
                            continue
                        w = writers[kid]
                        if vk in w:
                            raise ValueError(
                                f"key {k!r}: value {v!r} appended twice (by ops "
                                f"{h.op_of(w[vk]).index} and {h.op_of(t).index}); list-append "
                                "needs unique appended values per key")
                        w[vk] = t
                        loc = local.get(kid)
                        if loc is None:
                            local[kid] = (v, vk)      # first access: this append (cheap mark)
                        else:
                            if type(loc) is not list:
                                loc = local[kid] = _state(loc)
                            if loc[3] is not None:
                                inter[kid][loc[3]] = t
                            elif loc[2] is not None and st == OK_S:
                                # read the key first, then appended: a read-modify-write
                                r = loc[2]
                                lost.setdefault((kid, fast_key(r[-1]) if r else None),
                                                []).append(t)
                            loc[1].append(v)
                            loc[3] = vk
                    elif f == "r":
                        if st != OK_S:
                            continue
                        if type(v) is not list:
                            if v is None:
                                v = []          # a key never written (Elle: nil is empty)
                            else:
                                raise ValueError(f"op {h.op_of(t).index}: a read of key "
                                                 f"{k!r} must return a list, got {v!r}")
                        loc = local.get(kid)
                        if loc is None:
                            local[kid] = (v,)          # first access: this read (cheap mark)
                            reads[kid].append((t, v, True))
                            continue
                        reads[kid].append((t, v, False))
                        if type(loc) is not list:
                            loc = local[kid] = _state(loc)
                        self._internal(t, k, loc, v)
                    else:
                        raise ValueError(f"op {h.op_of(t).index}: micro-op {f!r} is not part of "
                                         "list-append (append, r)")
            except (TypeError, ValueError) as e:
                validate_mops(h, t)
                raise ValueError(str(e)) from None
        self._clean = _CleanKeys()
        for kid in range(len(keys)):
            self._key(kid, writers[kid], failed[kid], inter[kid], reads[kid], plain[kid])
        self._clean.add_edges(self.edges)
        del self._clean
        for (kid, _), ts in lost.items():
            if len(ts) > 1:
                k = keys[kid]
                found.add("lost-update", ts,
                          f"{', '.join(self._t(t) for t in ts)} all read the same version of key "
                          f"{k!r} and all appended to it: one overwrote the others' update",
                          {"key": k})
        writers.clear()

    def _internal(self, t: int, k: Any, loc: list, v: list) -> None:
        known, own = loc[0], loc[1]
        if known is not None:
            expect = known + own
            ok = v == expect
        else:
            expect = None
            ok = len(v) >= len(own) and (not own or v[len(v) - len(own):] == own)
        if not ok:
            want = (f"{expect!r}" if expect is not None
                    else f"a list ending with its own appends {own!r}")
            self.found.add("internal", [t],
                           f"{self._t(t)} read key {k!r} as {v!r}, but its own earlier "
                           f"micro-ops mean it should have read {want}",
                           {"key": k, "read": v, "expected": expect, "own_appends": own})
        loc[0], loc[1] = v, []

    def _key(self, kid: int, writers: dict, failed: dict, inter: dict, reads: list,
             plain: bool) -> None:
        """One key: its version order, writers, non-cycle anomalies and edges. A clean key
        (the usual case) goes through `_clean_key`, C-level passes over its reads with the
        edges left to one numpy pass over all clean keys; any other key through
        `_key_general`, the per-read loop that words every anomaly."""
        if not (plain and self._clean_key(writers, inter, reads)):
            self._key_general(kid, writers, failed, inter, reads, plain)

    def _clean_key(self, writers: dict, inter: dict, reads: list) -> bool:
        """Take the key when nothing about it needs words: every element of its longest read L
        a plain int or str appended (once) by a committed-or-info transaction, every read a
        prefix of L (with `_key_general`'s rule that true must not equal 1), and no read
        ending at another transaction's intermediate append (G1b). Then the version order
        and writers are recorded and its reads queued for the edges (`_CleanKeys`); False
        (nothing done) otherwise."""
        rs = list(map(_second, reads))
        ms = list(map(len, rs))
        n = max(ms, default=0)
        L = rs[ms.index(n)] if rs else []      # the longest read (the first of that length)
        if n and not set(map(type, L)) <= _PLAIN:
            return False
        W = list(map(writers.get, L))
        if None in W or len(set(L)) != n:
            return False                       # garbage, aborted or duplicate elements
        if not all(map(eq, rs, map(L.__getitem__, map(slice, ms)))):
            return False                       # incompatible-order
        # where == could take a bool for 0 or 1 (L holds each at most once): the types
        for x in (0, 1):
            if x in writers:
                try:
                    i = L.index(x)
                except ValueError:
                    continue
                if set(map(type, map(itemgetter(i), compress(rs, map(i.__lt__, ms))))) - {int}:
                    return False
        if inter:
            # a read ending at an intermediate append: G1b unless the reader appended it
            IW1 = [-1]
            IW1.extend(map(inter.get, L, repeat(-1)))
            ends = list(map(IW1.__getitem__, ms))
            for j in compress(range(len(ms)), map((-1).__lt__, ends)):
                if reads[j][0] != ends[j]:
                    return False
        self.orders.append(L)
        self.order_writers.append(W)
        self._clean.add(W, reads, ms)
        return True

    def _key_general(self, kid: int, writers: dict, failed: dict, inter: dict, reads: list,
                     plain: bool) -> None:
        k = self.keys[kid]
        found = self.found
        L = max(map(_second, reads), key=len, default=[])   # the longest read
        n = len(L)
        # Writers of the version order; -1 for elements of failed or unknown writers.
        W = [-1] * n
        seen: dict[Any, int] = {}
        first_failed = -1
        bools = []      # positions where Python equality could take a bool for 0 or 1
        for i, e in enumerate(L):
            te = type(e)
            ek = e if te is int or te is str else fast_key(e)
            if te is not str and (e == 0 or e == 1):
                bools.append(i)
            if ek in seen:
                found.add("duplicate-elements", [t for t, r, _ in reads if r is L][:1],
                          f"a read of key {k!r} holds {e!r} twice (positions {seen[ek]} and "
                          f"{i}): {L!r}", {"key": k, "element": e, "read": L})
                continue
            seen[ek] = i
            w = writers.get(ek)
            if w is not None:
                W[i] = w
                continue
            fw = failed.get(ek)
            if fw is not None:
                if first_failed < 0:
                    first_failed = i
                continue
            found.add("garbage-read", [t for t, r, _ in reads if r is L][:1],
                      f"a read of key {k!r} holds {e!r}, which no transaction appended to it",
                      {"key": k, "element": e})
        if first_failed >= 0:
            after = [W[j] for j in range(first_failed + 1, n) if W[j] >= 0]
            if after:
                fw = failed[fast_key(L[first_failed])]
                found.add("dirty-update", [fw, after[0]],
                          f"key {k!r}: {self._t(after[0])}'s append came after {L[first_failed]!r}"
                          f", which {self._t(fw)} appended before it failed (aborted)",
                          {"key": k, "aborted": L[first_failed],
                           "version_order": L[:first_failed + 2]})
        self.orders.append(L)
        self.order_writers.append(W)
        edges = self.edges
        # ww along the version order
        es, ed = [], []
        prev = -1
        for w in W:
            if w >= 0 and prev >= 0 and w != prev:
                es.append(prev)
                ed.append(w)
            if w >= 0:
                prev = w
        edges.add_many(es, ed, WW)
        # every committed read against the version order (the hot loop: keep it lean)
        wr_s, wr_d, rw_s, rw_d = [], [], [], []
        failed_pos = ([i for i, e in enumerate(L) if W[i] < 0 and fast_key(e) in failed]
                      if failed else ())
        first_failed_read = failed_pos[0] if failed_pos else n
        # IW[i]: the writer of L[i] when it is one of its writer's intermediate appends
        IW = ([inter.get(e if type(e) in _PLAIN else fast_key(e), -1) for e in L]
              if inter else None)
        for t, r, external in reads:
            m = len(r)
            if r is not L:
                if plain:
                    same = r == L[:m]
                    if same and bools:
                        for i in bools:
                            if i < m and type(r[i]) is not type(L[i]):
                                same = False
                else:
                    same = [fast_key(x) for x in r] == [fast_key(x) for x in L[:m]]
                if not same:
                    found.add("incompatible-order", [t],
                              f"{self._t(t)} read key {k!r} as {r!r}, which is not a prefix of "
                              f"its longest read {L!r}: the two cannot come from one order of "
                              "appends", {"key": k, "read": r, "longest": L})
                    self._odd_read(t, k, r, writers, failed, inter, external)
                    continue
            if m > first_failed_read:
                e = L[first_failed_read]
                fw = failed[fast_key(e)]
                found.add("G1a", [t, fw],
                          f"{self._t(t)} read key {k!r} as {r!r}, which holds {e!r}: "
                          f"{self._t(fw)} appended it and failed (aborted)",
                          {"key": k, "read": r, "element": e})
            if m:
                w = W[m - 1]
                if w != t and w >= 0:
                    if IW is not None and IW[m - 1] >= 0:
                        # An intermediate read: G1b says it all; its wr / rw edges would only
                        # add a cycle through the half-seen transaction.
                        found.add("G1b", [t, IW[m - 1]],
                                  f"{self._t(t)} read key {k!r} as {r!r}, ending at "
                                  f"{L[m - 1]!r}, which {self._t(IW[m - 1])} appended before "
                                  "another append of its own to the key: it saw the "
                                  "transaction half done", {"key": k, "read": r,
                                                            "element": L[m - 1]})
                        continue
                    if external:
                        wr_s.append(w)
                        wr_d.append(t)
            if external and m < n:
                w = W[m]
                if w != t and w >= 0:
                    rw_s.append(t)
                    rw_d.append(w)
        edges.add_many(wr_s, wr_d, WR)
        edges.add_many(rw_s, rw_d, RW)

    def _odd_read(self, t: int, k: Any, r: list, writers: dict, failed: dict, inter: dict,
                  external: bool) -> None:
        """The element checks for a read outside the version order (incompatible-order)."""
        seen = set()
        for e in r:
            ek = fast_key(e)
            if ek in seen:
                self.found.add("duplicate-elements", [t],
                               f"{self._t(t)} read key {k!r} as {r!r}: {e!r} appears twice",
                               {"key": k, "element": e, "read": r})
            seen.add(ek)
            if ek in failed:
                fw = failed[ek]
                self.found.add("G1a", [t, fw],
                               f"{self._t(t)} read key {k!r} as {r!r}, which holds {e!r}: "
                               f"{self._t(fw)} appended it and failed (aborted)",
                               {"key": k, "read": r, "element": e})
            elif ek not in writers:
                self.found.add("garbage-read", [t],
                               f"{self._t(t)} read key {k!r} as {r!r}, which holds {e!r}; no "
                               "transaction appended it", {"key": k, "element": e})

    # ---- explanations ----------------------------------------------------------------------

    def explain(self, a: int, b: int, kind: int) -> str:
        """Why edge a -> b of `kind` holds, in words (recomputed from the micro-ops)."""
        h = self.h
        ta, tb = self._t(a), self._t(b)
        for kid in _common_keys(h.mops[a], h.mops[b], self.key_ids):
            L, W, k = self.orders[kid], self.order_writers[kid], self.keys[kid]
            if kind == WW:
                prev = None
                for i, w in enumerate(W):
                    if w == b and prev is not None and W[prev] == a:
                        return (f"{ta} appended {L[prev]!r} to key {k!r} and {tb} appended "
                                f"{L[i]!r} right after it")
                    if w >= 0:
                        prev = i
            elif kind in (WR, RW):
                reader = b if kind == WR else a
                r = _external_read(h.mops[reader], k)
                if r is None:
                    continue
                m = len(r)
                if kind == WR and m and W[m - 1] == a:
                    return (f"{tb} read key {k!r} as {r!r}, whose last element {L[m - 1]!r} "
                            f"{ta} appended")
                if kind == RW and m < len(L) and W[m] == b:
                    seen = f"as {r!r}" if r else "as empty"
                    return (f"{ta} read key {k!r} {seen}, without {L[m]!r}, which {tb} "
                            "appended next")
        return f"{ta} precedes {tb}"


def _external_read(mops: list, k: Any) -> list | None:
    kk = fast_key(k)
    for f, k2, v in mops:
        if fast_key(k2) == kk:
            return v if f == "r" and isinstance(v, list) else None
    return None


def _common_keys(a: list, b: list, key_ids: dict) -> list[int]:
    """Ids of the keys both micro-op lists touch, in a's order."""
    kb = {fast_key(m[1]) for m in b}
    out = []
    for m in a:
        kk = fast_key(m[1])
        if kk in kb and kk in key_ids and key_ids[kk] not in out:
            out.append(key_ids[kk])
    return out
