"""Elle's rw-register inference: version orders from what registers reveal, then edges.

Micro-ops: `["w", k, v]` writes v to register k; `["r", k, v]` reads v (null: the initial, never
written state; null in an invocation). Written values must be unique per key, so a value names
its writer. A register shows far less than a list: the version order is only partly known.
Known version order facts per key (Elle's inference, without the optional real-time one):
  initial state   null precedes every written version;
  write follows read  a transaction that read v1 and then wrote v2 puts v1 before v2.
A cycle among one key's versions is `cyclic-versions`. From each fact v1 < v2:
  ww  W(v1) -> W(v2);   rw  every external reader of v1 -> W(v2);
and each external read of v gives wr  W(v) -> reader.
Only a transaction's final write of a key is visible to others (its external write); the
others are intermediate (G1b when someone reads them). Non-cycle anomalies: G1a, G1b,
garbage-read (a value nobody wrote), internal (a read that disagrees with the transaction's own
earlier read or write of the key), lost-update, cyclic-versions.

Real time ("where the model allows", Elle's `linearizable-keys?`): with `linearizable_keys`,
a version written or read by a transaction that completed before another transaction that wrote
a different version was invoked comes first. That holds only if every key is linearizable, so
the checker turns it on only when every model it checks implies strict serializability (the
default); the anomalies it then finds rule out strict serializability, and weaker models only
as far as the data alone shows (the "not" / "also-not" of such a result assume linearizable
keys). Off, every anomaly found is one of the data alone; real-time edges between transactions
still give the -realtime cycle kinds.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from .graph import RW, WR, WW, Edges
from .history import FAIL_S, OK_S, TxnHistory, validate_mops
from .list_append import Findings
from .values import fast_key

REALTIME_TOUCHES_MAX = 400  # transactions of one key for the pairwise real-time inference
_INITIAL = ("initial",)   # the version before any write (a key no value can equal)


class RwRegister:
    """The inference for one history; `run()` fills `edges` and `found`."""

    kind = "rw-register"

    def __init__(self, h: TxnHistory, linearizable_keys: bool = False):
        self.h = h
        self.linearizable_keys = linearizable_keys
        self.edges = Edges()
        self.found = Findings()
        self.key_ids: dict[Any, int] = {}
        self.keys: list[Any] = []
        self.writers: list[dict] = []
        self.follows: list[dict] = []    # per key: version -> versions right after it

    def _t(self, t: int) -> str:
        return f"T{t}"

    def run(self) -> None:
        h = self.h
        found = self.found
        key_ids, keys, writers = self.key_ids, self.keys, self.writers
        failed: list[dict] = []
        inter: list[dict] = []
        reads: list[list] = []              # per key: (txn, version) external committed reads
        wfr: list[list] = []                # per key: (read version, written version)
        lost: dict[tuple, list[int]] = {}
        for t in range(len(h.status)):
            st = h.status[t]
            local: dict[int, list] = {}     # key -> [current version, first read or None, wrote]
            try:
                for f, k, v in h.mops[t]:
                    kk = fast_key(k)
                    kid = key_ids.get(kk)
                    if kid is None:
                        kid = len(keys)
                        key_ids[kk] = kid
                        keys.append(k)
                        for lst in (writers, failed, inter, self.follows):
                            lst.append({})
                        reads.append([])
                        wfr.append([])
                    if f == "w":
                        vk = fast_key(v)
                        if v is None:
                            raise ValueError(f"op {h.op_of(t).index}: a write of null to key "
                                             f"{k!r}: null is the initial state")
                        if st == FAIL_S:
                            failed[kid][vk] = t
                            continue
                        if vk in writers[kid] or vk in inter[kid]:
                            raise ValueError(f"key {k!r}: value {v!r} written twice; "
                                             "rw-register needs unique written values per key")
                        loc = local.get(kid)
                        if loc is None:
                            local[kid] = [vk, None, True, v]
                        else:
                            if loc[2]:
                                inter[kid][loc[0]] = t
                                del writers[kid][loc[0]]
                            loc[0], loc[2], loc[3] = vk, True, v
                        writers[kid][vk] = t
                    elif f == "r":
                        if st != OK_S:
                            continue
                        vk = _INITIAL if v is None else fast_key(v)
                        loc = local.get(kid)
                        if loc is None:
                            local[kid] = [vk, vk, False, v]
                            reads[kid].append((t, vk, v))
                        elif loc[0] != vk:
                            found.add("internal", [t],
                                      f"{self._t(t)} read key {k!r} as {v!r}, but it had "
                                      f"{'written' if loc[2] else 'read'} {loc[3]!r} there "
                                      "earlier in the transaction",
                                      {"key": k, "read": v, "expected": loc[3]})
                    else:
                        raise ValueError(f"op {h.op_of(t).index}: micro-op {f!r} is not part of "
                                         "rw-register (r, w)")
            except (TypeError, ValueError) as e:
                validate_mops(h, t)
                raise ValueError(str(e)) from None
            if st == FAIL_S:
                continue
            for kid, loc in local.items():
                if loc[1] is not None and loc[2]:
                    wfr[kid].append((loc[1], loc[0]))
                    if st == OK_S:
                        lost.setdefault((kid, loc[1]), []).append(t)
        for kid in range(len(keys)):
            self._key(kid, failed[kid], inter[kid], reads[kid], wfr[kid])
        for (kid, _), ts in lost.items():
            if len(ts) > 1:
                found.add("lost-update", ts,
                          f"{', '.join(self._t(t) for t in ts)} all read the same version of key "
                          f"{keys[kid]!r} and all wrote it: one overwrote the others' update",
                          {"key": keys[kid]})

    def _key(self, kid: int, failed: dict, inter: dict, reads: list, wfr: list) -> None:
        k, W, found = self.keys[kid], self.writers[kid], self.found
        follows = self.follows[kid]
        follows[_INITIAL] = list(W)
        for v1, v2 in wfr:
            if v1 != _INITIAL:
                follows.setdefault(v1, []).append(v2)
        if self.linearizable_keys:
            for v1, v2 in self._realtime_order(W, reads):
                follows.setdefault(v1, []).append(v2)
        if len(follows) > 1:
            vg = nx.DiGraph((a, b) for a, bs in follows.items() if a != _INITIAL for b in bs)
            try:
                cyc = nx.find_cycle(vg)
            except nx.NetworkXNoCycle:
                cyc = None
            if cyc:
                versions = [a for a, _ in cyc]
                found.add("cyclic-versions", [W[v] for v in versions if v in W][:4],
                          f"key {k!r}: the versions {versions!r} each follow the previous one "
                          "(a transaction read one and wrote the next), in a circle",
                          {"key": k, "versions": versions})
        readers: dict[Any, list[int]] = {}
        wr_s, wr_d = [], []
        for t, vk, v in reads:
            readers.setdefault(vk, []).append(t)
            if vk == _INITIAL:
                continue
            w = W.get(vk)
            if w is not None:
                if w != t:
                    wr_s.append(w)
                    wr_d.append(t)
                continue
            if vk in failed:
                found.add("G1a", [t, failed[vk]],
                          f"{self._t(t)} read key {k!r} as {v!r}, which {self._t(failed[vk])} "
                          "wrote and then failed (aborted)", {"key": k, "value": v})
            elif vk in inter:
                found.add("G1b", [t, inter[vk]],
                          f"{self._t(t)} read key {k!r} as {v!r}, which {self._t(inter[vk])} "
                          "wrote and then overwrote in the same transaction: it saw the "
                          "transaction half done", {"key": k, "value": v})
            else:
                found.add("garbage-read", [t],
                          f"{self._t(t)} read key {k!r} as {v!r}, which no transaction wrote",
                          {"key": k, "value": v})
        ww_s, ww_d, rw_s, rw_d = [], [], [], []
        for v1, nexts in follows.items():
            w1 = W.get(v1)
            rs = readers.get(v1, ())
            for v2 in nexts:
                w2 = W.get(v2)
                if w2 is None:
                    continue
                if w1 is not None and w1 != w2:
                    ww_s.append(w1)
                    ww_d.append(w2)
                for r in rs:
                    if r != w2:
                        rw_s.append(r)
                        rw_d.append(w2)
        e = self.edges
        e.add_many(ww_s, ww_d, WW)
        e.add_many(wr_s, wr_d, WR)
        e.add_many(rw_s, rw_d, RW)

    def _realtime_order(self, W: dict, reads: list) -> list[tuple[Any, Any]]:
        """Version order from real time, for linearizable keys: a version that a committed
        transaction wrote or read, completing before the invocation of a transaction that wrote
        another version, comes first. Pairwise over the key's transactions, up to
        REALTIME_TOUCHES_MAX of them (a key touched more often gets no such inference)."""
        h = self.h
        touches = [(t, v) for v, t in W.items() if h.status[t] == OK_S]
        touches += [(t, vk) for t, vk, _ in reads if vk != _INITIAL]
        if len(touches) > REALTIME_TOUCHES_MAX:
            return []
        writes = [(t, v) for v, t in W.items()]
        out = []
        for ta, va in touches:
            da = h.done[ta]
            for tb, vb in writes:
                if va != vb and da < h.inv[tb]:
                    out.append((va, vb))
        return out

    # ---- explanations ----------------------------------------------------------------------

    def explain(self, a: int, b: int, kind: int) -> str:
        h = self.h
        ta, tb = self._t(a), self._t(b)
        ma, mb = h.mops[a], h.mops[b]
        for m in mb:
            k = m[1]
            kid = self.key_ids.get(fast_key(k))
            if kid is None:
                continue
            W = self.writers[kid]
            wa = _final_write(ma, k)
            wb = _final_write(mb, k)
            ra = _external_read(ma, k)
            rb = _external_read(mb, k)
            if kind == WR and rb is not None and rb is not _NONE and W.get(fast_key(rb)) == a:
                return f"{tb} read key {k!r} as {rb!r}, which {ta} wrote"
            if kind == WW and wa is not None and wb is not None and rb is not None \
                    and rb is not _NONE and fast_key(rb) == fast_key(wa):
                return (f"{ta} wrote {wa!r} to key {k!r}; {tb} read that version and then wrote "
                        f"{wb!r} over it")
            if kind == RW and ra is not None and wb is not None:
                seen = "its initial (empty) state" if ra is _NONE else repr(ra)
                return (f"{ta} read key {k!r} as {seen}; {tb} wrote {wb!r}, a later version "
                        "of the key")
        return f"{ta} precedes {tb}"


_NONE = object()


def _final_write(mops: list, k: Any) -> Any:
    kk = fast_key(k)
    out = None
    for f, k2, v in mops:
        if f == "w" and fast_key(k2) == kk:
            out = v
    return out


def _external_read(mops: list, k: Any) -> Any:
    kk = fast_key(k)
    for f, k2, v in mops:
        if fast_key(k2) == kk:
            if f != "r":
                return None
            return _NONE if v is None else v
    return None
