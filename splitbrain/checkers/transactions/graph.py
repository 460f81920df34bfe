"""The transaction dependency graph: edges in compact arrays, SCCs, and minimal cycles by kind.

Edge kinds are bits, so that one pair of transactions can be tied by several relations:
  WW  T1's write of a key was overwritten by T2's (the next version in the version order)
  WR  T2 read the version T1 wrote
  RW  T1 read a version that T2's write overwrote (an anti-dependency)
  PROCESS   T2 is the same process's next transaction
  REALTIME  T1 completed before T2 was invoked

Scale. A million transactions give several million edges: building them as Python objects (or
a networkx graph) would take minutes and gigabytes. The edges live in `array`s of ints; the
strongly connected components of the whole graph come from scipy's compiled Tarjan on a sparse
matrix, with the real-time order as a chain of extra nodes (history.realtime_chain). A valid history has no component larger than one transaction, so nothing else runs.
Only the (usually small) non-trivial components become networkx graphs, in which the cycle
search runs: per anomaly kind (`CycleSpec`), a breadth-first search over (transaction, state)
pairs whose state tracks the edge constraint (how many rw edges, whether the last was rw, ...),
from each transaction of the component, keeping the shortest cycle found. A bound
(`search_starts_max`, `search_time_s`) keeps a huge component from running forever: past it
the cycles reported are real but may not be the shortest.
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import networkx as nx
import numpy as np

WW, WR, RW, PROCESS, REALTIME = 1, 2, 4, 8, 16
KIND_NAMES = {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "realtime"}
DATA = WW | WR | RW
ADJACENT_RW = 64   # search state only: two rw edges in a row were taken

SEARCH_STARTS_MAX = 2000        # start transactions tried per component and cycle kind
SEARCH_TIME_S = 10.0            # total time for all cycle searches of one check
SMALL_GRAPH_NODES_MAX = 20_000  # graphs up to this size get their SCCs from networkx


class Edges:
    """Edges as three parallel arrays: source, destination, kind bit."""

    __slots__ = ("src", "dst", "kind")

    def __init__(self) -> None:
        self.src = array("i")
        self.dst = array("i")
        self.kind = array("b")

    def add_many(self, src: Iterable[int], dst: Iterable[int], kind: int) -> None:
        s0 = len(self.src)
        self.src.extend(src)
        self.dst.extend(dst)
        assert len(self.src) == len(self.dst)
        self.kind.extend(bytes([kind]) * (len(self.src) - s0))

    def add_arrays(self, src: np.ndarray, dst: np.ndarray, kind: int) -> None:
        """`add_many` for numpy arrays of transaction numbers, without a Python loop."""
        assert len(src) == len(dst)
        self.src.frombytes(np.ascontiguousarray(src, dtype=np.int32).tobytes())
        self.dst.frombytes(np.ascontiguousarray(dst, dtype=np.int32).tobytes())
        self.kind.frombytes(bytes([kind]) * len(src))

    def __len__(self) -> int:
        return len(self.src)


def components(n: int, edges: Edges, mask: int, extra: tuple | None = None) -> list[list[int]]:
    """The strongly connected components with more than one transaction, of the graph of the
    edges whose kind is in `mask` plus `extra` = (src, dst, extra node count) (the real-time
    chain of history.realtime_chain), each as a sorted list of transaction numbers (extra
    nodes left out)."""
    if n == 0:
        return []
    src = np.frombuffer(edges.src, dtype=np.int32)
    dst = np.frombuffer(edges.dst, dtype=np.int32)
    kind = np.frombuffer(edges.kind, dtype=np.int8)
    sel = (kind & mask) != 0
    if not sel.all():
        src, dst = src[sel], dst[sel]
    size = n
    if extra is not None:
        src = np.concatenate([src, extra[0]])
        dst = np.concatenate([dst, extra[1]])
        size = n + extra[2]
    if len(src) == 0:
        return []
    if size <= SMALL_GRAPH_NODES_MAX:
        # networkx is quicker here than importing scipy (about a second on a busy machine)
        g = nx.DiGraph()
        g.add_edges_from(zip(src.tolist(), dst.tolist()))
        found = [sorted(t for t in c if t < n) for c in nx.strongly_connected_components(g)]
        return sorted((c for c in found if len(c) > 1), key=lambda c: (len(c), c[0]))
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    m = csr_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(size, size))
    _, labels = connected_components(m, directed=True, connection="strong")
    labels = labels[:n]
    counts = np.bincount(labels)
    big = np.nonzero(counts > 1)[0]
    if len(big) == 0:
        return []
    members = np.nonzero(np.isin(labels, big))[0]
    out: dict[int, list[int]] = {}
    for t, lab in zip(members.tolist(), labels[members].tolist()):
        out.setdefault(lab, []).append(t)
    return sorted(out.values(), key=lambda c: (len(c), c[0]))


RT_ALL_PAIRS_MAX = 3000   # component size up to which every real-time pair becomes an edge
RT_NEAREST = 16           # past it: edges from the latest completions before each invocation


def realtime_pairs(nodes: list[int], inv, done, status, ok_status: int) -> tuple[list, list]:
    """Real-time edges among `nodes`: a -> b when a completed OK (history index done[a]) before
    b was invoked (inv[b]). Every pair for a component of at most RT_ALL_PAIRS_MAX nodes (so
    cycles are truly shortest), else the RT_NEAREST latest completions before each invocation
    (real edges still; a shortest cycle may be missed for a longer one)."""
    nodes_a = np.array(nodes, dtype=np.int64)
    inv_a = np.array([inv[t] for t in nodes], dtype=np.int64)
    done_a = np.array([done[t] if status[t] == ok_status else -1 for t in nodes],
                      dtype=np.int64)
    okm = done_a >= 0
    if len(nodes) <= RT_ALL_PAIRS_MAX:
        pair = okm[:, None] & (done_a[:, None] < inv_a[None, :])
        a, b = np.nonzero(pair)
        return nodes_a[a].tolist(), nodes_a[b].tolist()
    oks = np.nonzero(okm)[0]
    oks = oks[np.argsort(done_a[oks])]
    ds = done_a[oks]
    src, dst = [], []
    for j in range(len(nodes)):
        hi = int(np.searchsorted(ds, inv_a[j], side="left"))
        for i in oks[max(0, hi - RT_NEAREST):hi].tolist():
            src.append(nodes[i])
            dst.append(nodes[j])
    return src, dst


def component_edges(edges: Edges, comps: list[list[int]]) -> list[tuple[list, list, list]]:
    """For each component, the (src, dst, kind) lists of the edges between its members: one
    numpy pass over all edges, whatever the number of components."""
    if not comps:
        return []
    src = np.frombuffer(edges.src, dtype=np.int32)
    dst = np.frombuffer(edges.dst, dtype=np.int32)
    kind = np.frombuffer(edges.kind, dtype=np.int8)
    top = max(int(src.max()) if len(src) else 0, int(dst.max()) if len(dst) else 0,
              max(max(c) for c in comps))
    label = np.full(top + 1, -1, dtype=np.int64)
    for i, c in enumerate(comps):
        label[c] = i
    ls = label[src]
    sel = (ls >= 0) & (ls == label[dst]) & (src != dst)
    ls, s2, d2, k2 = ls[sel], src[sel], dst[sel], kind[sel]
    order = np.argsort(ls, kind="stable")
    ls, s2, d2, k2 = ls[order], s2[order], d2[order], k2[order]
    bounds = np.searchsorted(ls, np.arange(len(comps) + 1))
    return [(s2[a:b].tolist(), d2[a:b].tolist(), k2[a:b].tolist())
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def process_pairs(nodes: list[int], process: list, inv) -> list[tuple[int, int]]:
    """Every pair (a, b) of `nodes` run by one process, a invoked first: the process order is
    total, so inside a component each pair is an edge (not only consecutive ones) and the
    cycles found are the shortest."""
    by: dict[Any, list[int]] = {}
    for t in nodes:
        by.setdefault(process[t], []).append(t)
    out = []
    for ts in by.values():
        ts.sort(key=lambda t: inv[t])
        for i, a in enumerate(ts):
            out.extend((a, b) for b in ts[i + 1:])
    return out


def component_graph(nodes: list[int], triples: tuple[list, list, list],
                    realtime: tuple[list, list] | None = None,
                    process: list[tuple[int, int]] | None = None) -> nx.DiGraph:
    """The networkx graph of one component: its edges (`component_edges`) plus the `realtime`
    (src, dst) pairs and the `process` pairs; each edge's attribute `k` is the OR of the kinds
    joining that pair. Edges go in sorted (src, dst, kind) order."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    pairs = list(zip(*triples))
    if realtime is not None:
        pairs.extend((s, d, REALTIME) for s, d in zip(*realtime))
    if process is not None:
        pairs.extend((s, d, PROCESS) for s, d in process)
    # Sorted, so that the graph (and so which of several shortest cycles the searches report)
    # depends on the set of edges only, not on the order the inference produced them in.
    pairs.sort()
    for s, d, k in pairs:
        if g.has_edge(s, d):
            g[s][d]["k"] |= k
        else:
            g.add_edge(s, d, k=k)
    return g


@dataclass(frozen=True)
class CycleSpec:
    """A kind of cycle (Elle's names): which edges it may use and what it must contain.

    `rw`: "none" (G0, G1c), "single" (exactly one rw: G-single), "nonadjacent" (at least two,
    no two in a row, also across the end: G-nonadjacent), "multiple" (at least two, some
    adjacent: G2-item). `need` is an edge kind that must appear at least once (wr for G1c,
    process or realtime for the variants).
    """

    name: str
    allowed: int
    rw: str = "none"
    need: int = 0


def cycle_specs() -> list[CycleSpec]:
    """Every cycle kind, in Elle's order of severity (worst first)."""
    base = [("G0", WW, "none", 0), ("G1c", WW | WR, "none", WR),
            ("G-single", DATA, "single", 0), ("G-nonadjacent", DATA, "nonadjacent", 0),
            ("G2-item", DATA, "multiple", 0)]
    out = [CycleSpec(n, a, r, need) for n, a, r, need in base]
    for suffix, extra in (("-process", PROCESS), ("-realtime", REALTIME | PROCESS)):
        need_v = PROCESS if suffix == "-process" else REALTIME
        for n, a, r, need in base:
            out.append(CycleSpec(n + suffix, a | extra, r, need | need_v))
    return out


def classify(kinds: list[int]) -> str:
    """Elle's name of a cycle from the kinds of its edges (each a bit set; a pair tied by
    several relations counts as the strongest data relation it has: ww, then wr, then rw)."""
    steps = [pick(k) for k in kinds]
    rw = sum(1 for k in steps if k == RW)
    wr = sum(1 for k in steps if k == WR)
    if rw == 1:
        base = "G-single"
    elif rw > 1:
        adjacent = any(steps[i] == RW and steps[i - 1] == RW for i in range(len(steps)))
        base = "G2-item" if adjacent else "G-nonadjacent"
    elif wr:
        base = "G1c"
    else:
        base = "G0"
    if any(k == REALTIME for k in steps):
        return base + "-realtime"
    if any(k == PROCESS for k in steps):
        return base + "-process"
    return base


def pick(k: int) -> int:
    """The one relation that explains an edge whose kinds are the bits of `k`."""
    for bit in (WW, WR, RW, PROCESS, REALTIME):
        if k & bit:
            return bit
    raise AssertionError(f"edge without a kind: {k}")


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def over(self) -> bool:
        return time.monotonic() > self.end


def adjacency(g: nx.DiGraph) -> dict[int, list[tuple[int, int]]]:
    """node -> [(successor, kind bits)]: the form the searches walk (built once per component)."""
    return {u: [(v, d["k"]) for v, d in g[u].items()] for u in g.nodes}


def kinds_present(adj: dict[int, list[tuple[int, int]]]) -> int:
    out = 0
    for succ in adj.values():
        for _, k in succ:
            out |= k
    return out


def shortest_cycle(g: nx.DiGraph | dict, spec: CycleSpec, deadline: Deadline,
                   starts_max: int = SEARCH_STARTS_MAX) -> list[tuple[int, int, int]] | None:
    """The shortest cycle of `g` that `spec` admits, as [(t1, t2, kind), ...] with each edge's
    chosen kind (one bit); None when there is none (or the bound was hit before one was found).

    BFS from each start over states (node, rw_count(0..2), last_was_rw, first_was_rw,
    need_seen); edges are taken as one chosen relation each, so a pair tied by ww and rw can
    serve as either. Starts go in increasing node order; a cycle of length 2 ends the search.
    """
    best: list[tuple[int, int, int]] | None = None
    full = adjacency(g) if isinstance(g, nx.DiGraph) else g
    allowed = spec.allowed
    adj = {u: [(v, k & allowed) for v, k in succ if k & allowed] for u, succ in full.items()}
    for i, start in enumerate(sorted(adj)):
        if i >= starts_max or (best is not None and len(best) == 2) or deadline.over():
            break
        found = _bfs_from(start, adj, spec, len(best) if best else None)
        if found is not None and (best is None or len(found) < len(best)):
            best = found
    return best


_BITS = [tuple(b for b in (WW, WR, RW, PROCESS, REALTIME) if k & b) for k in range(32)]


def _bits(k: int) -> tuple[int, ...]:
    return _BITS[k]


def _bfs_from(start: int, adj: dict, spec: CycleSpec,
              shorter_than: int | None) -> list[tuple[int, int, int]] | None:
    need = spec.need
    # state: (node, rw edges so far (capped at 2), last edge rw, first edge rw (None before the
    # first edge), the needed kinds seen plus ADJACENT_RW)
    init = (start, 0, False, None, 0)
    parent: dict[tuple, tuple | None] = {init: None}
    q = deque([(init, 0)])
    while q:
        state, depth = q.popleft()
        if shorter_than is not None and depth + 1 >= shorter_than:
            return None
        node, nrw, last_rw, first_rw, seen = state
        for v, k in adj.get(node, ()):
            for bit in _bits(k):
                if bit == REALTIME and k & PROCESS:
                    continue        # the process order says it more precisely
                is_rw = bit == RW
                if is_rw and spec.rw == "none":
                    continue
                if spec.rw == "single" and is_rw and nrw >= 1:
                    continue
                if spec.rw == "nonadjacent" and is_rw and last_rw:
                    continue
                nrw2 = min(nrw + (1 if is_rw else 0), 2)
                first2 = is_rw if first_rw is None else first_rw
                seen2 = seen | (bit & need) | (ADJACENT_RW if is_rw and last_rw else 0)
                if v == start:
                    if (seen2 & need) != need:
                        continue
                    if spec.rw == "single" and nrw2 != 1:
                        continue
                    if spec.rw == "nonadjacent" and (nrw2 < 2 or (is_rw and first2)):
                        continue
                    if spec.rw == "multiple" and not (
                            nrw2 >= 2 and (seen2 & ADJACENT_RW or (is_rw and first2))):
                        continue
                    path = [(node, v, bit)]
                    s = state
                    while parent[s] is not None:
                        prev, pbit = parent[s]
                        path.append((prev[0], s[0], pbit))
                        s = prev
                    path.reverse()
                    return path
                nxt = (v, nrw2, is_rw, first2, seen2)
                if nxt in parent:
                    continue
                parent[nxt] = (state, bit)
                q.append((nxt, depth + 1))
    return None
