"""The transactional checker (Elle's method): list-append and rw-register histories.

Registered as "list-append" and "rw-register" (splitbrain/checkers/registry.py). Options:
  consistency_models  the models the history must satisfy (default ["strict-serializable"],
                      Maelstrom's and Elle's default); names in models.py (MODEL_IMPLIES);
  out_dir             where to write one HTML picture per cycle (transactions/<name>-<n>.html);
  time_limit          seconds for all cycle searches (default 10); past it a component that
                      has no cycle explained yet leaves the verdict unknown.

How it decides (one file per step):
  history.py      pair invocations with completions; number the transactions; process and
                  real-time orders
  list_append.py / rw_register.py   version orders, ww / wr / rw edges, non-cycle anomalies
                  (list_append_reference.py: the plain per-read version, for the tests only)
  graph.py        strongly connected components of all edges (scipy on the whole graph,
                  networkx below 20,000 nodes), then in each non-trivial one the shortest
                  cycle of each kind (networkx + BFS over edge-constraint states); a kind
                  that a worse cycle found in the same component implies is not searched
  models.py       which anomalies the chosen models forbid; "not" / "also-not"
  explain.py      each cycle in words and as an SVG/HTML picture

Verdict: invalid when an anomaly the chosen models forbid is found (`anomalies` lists exactly
those); "unknown" when no transaction committed (nothing was observed), or when a cycle search
hit its bound while a component still had no cycle of a forbidden kind explained; valid
otherwise. Anomalies the chosen models allow (a G-single under read-committed) are not
failures; they appear in stats["allowed_anomalies"]. stats["not"] / stats["also-not"] say which
models the history rules out (from every anomaly found); stats["still_possible"] the strongest
models it may satisfy.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Iterable, Sequence

from ..result import UNKNOWN, Anomaly, Result
from . import models as cm
from .explain import cycle_details, describe_cycle, write_cycle_html
from .graph import (DATA, PROCESS, RW, Deadline, SEARCH_TIME_S, adjacency, classify,
                    component_edges, component_graph, components, cycle_specs, kinds_present,
                    process_pairs, realtime_pairs, shortest_cycle)
from .history import OK_S, is_txn_history, parse, realtime_chain
from .list_append import ListAppend
from .rw_register import RwRegister

__all__ = ["TxnChecker", "make_list_append_checker", "make_rw_register_checker",
           "infer_kind", "is_txn_history"]

CYCLES_PER_NAME_MAX = 20        # cycles explained per anomaly name (the count goes on)
HTML_FILES_MAX = 50             # pictures written per check


def infer_kind(history: Sequence[Any]) -> str | None:
    """"list-append" or "rw-register" for a transactional history, by its micro-ops; None if
    the history has no transactions (or both kinds of write, which neither checker reads)."""
    fs: set[str] = set()
    for op in history:
        if op.f != "txn" or not isinstance(op.value, list):
            continue
        for m in op.value:
            if isinstance(m, (list, tuple)) and m:
                fs.add(m[0])
        if "append" in fs and "w" in fs:
            return None
    if "append" in fs:
        return "list-append"
    if "w" in fs:
        return "rw-register"
    if "r" in fs:
        # Reads alone: a list read is list-append's, anything else a register's.
        for op in history:
            if op.f == "txn" and op.type == "ok" and isinstance(op.value, list):
                for m in op.value:
                    if isinstance(m, (list, tuple)) and len(m) == 3 and m[2] is not None:
                        return "list-append" if isinstance(m[2], list) else "rw-register"
        return "list-append"
    return None


class TxnChecker:
    """See the module docstring."""

    def __init__(self, kind: str, consistency_models: Iterable[str] | None = None,
                 out_dir: str | None = None, search_time_s: float = SEARCH_TIME_S):
        assert kind in ("list-append", "rw-register"), kind
        self.kind = kind
        self.name = kind
        ms = list(consistency_models or cm.DEFAULT_MODELS)
        self.models = [cm.canonical(m) for m in ms]   # ValueError for an unknown model
        self.out_dir = out_dir
        self.search_time_s = search_time_s

    def check(self, history: Sequence[Any], test: dict | None = None) -> Result:
        """Check `history` (see the module docstring). The cyclic garbage collector is paused
        for the duration: the check allocates millions of small containers (micro-op states,
        read tuples, edge lists) and no reference cycles that matter, while every automatic
        collection would walk the whole history again (about a quarter of the CPU time at
        100,000 transactions). It is re-enabled afterwards if it was on."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._check(history, test)
        finally:
            if was_enabled:
                gc.enable()

    def _check(self, history: Sequence[Any], test: dict | None) -> Result:
        t_start = time.perf_counter()
        test = test or {}
        out_dir = self.out_dir or test.get("out_dir")
        h = parse(history)
        n = len(h)
        committed = h.status.count(OK_S)
        stats: dict[str, Any] = {"transactions": n, "committed": committed,
                                 "consistency_models": list(self.models)}
        if committed == 0:
            stats["reason"] = "no transaction committed: nothing was observed"
            return Result(valid=UNKNOWN, checker=self.name, stats=stats,
                          error=stats["reason"] if n == 0 else None)
        if self.kind == "list-append":
            inf: Any = ListAppend(h)
        else:
            # Real-time version order only when every model checked implies strict
            # serializability (so per-key linearizability): rw_register.py's docstring.
            lin = set(self.models) == {"strict-serializable"}
            inf = RwRegister(h, linearizable_keys=lin)
            stats["linearizable_keys"] = lin
        inf.run()
        edges = inf.edges
        edges.add_many(h.proc_src, h.proc_dst, PROCESS)
        stats["keys"] = len(inf.keys)
        stats["edges"] = len(edges) + len(h)   # data and process edges, plus the real-time chain
        t_inferred = time.perf_counter()

        # Cycles: components of the whole graph, then the shortest cycle of each kind in each.
        comps = components(n, edges, DATA | PROCESS, realtime_chain(h))
        stats["components"] = len(comps)
        stats["component_sizes"] = [len(c) for c in comps[:20]]   # the smallest 20
        deadline = Deadline(self.search_time_s)
        cycles: dict[str, list] = {}
        cycle_counts: dict[str, int] = {}
        undecided = 0
        for comp, triples in zip(comps, component_edges(edges, comps)):
            names_here = set()
            g = component_graph(comp, triples,
                                realtime_pairs(comp, h.inv, h.done, h.status, OK_S),
                                process_pairs(comp, h.process, h.inv))
            adj = adjacency(g)
            present = kinds_present(adj)
            implied: set[str] = set()
            for spec in cycle_specs():
                if deadline.over():
                    break
                if spec.name in implied or (spec.need & present) != spec.need or (
                        spec.rw != "none" and not present & RW):
                    # A worse cycle already found here implies this kind (a G-single is a
                    # G-single-process too), or the component lacks the edges it needs.
                    continue
                cyc = shortest_cycle(adj, spec, deadline)
                if cyc is None:
                    continue
                name = classify([k for _, _, k in cyc])
                if name in names_here:
                    continue
                names_here.add(name)
                implied |= cm.implied_anomalies([name])
                cycle_counts[name] = cycle_counts.get(name, 0) + 1
                lst = cycles.setdefault(name, [])
                if len(lst) < CYCLES_PER_NAME_MAX:
                    lst.append(cyc)
            if not names_here:
                undecided += 1   # a component without any explained cycle (bound hit)
        t_cycles = time.perf_counter()

        found_names = set(inf.found.counts) | set(cycle_counts)
        forbidden = cm.prohibited(self.models)
        anomalies: list[Anomaly] = []
        files: list[str] = []
        for name in sorted(inf.found.items):
            if name not in forbidden:
                continue
            for f in inf.found.items[name]:
                ops = [h.op_of(t).index for t in f.txns]
                anomalies.append(Anomaly(name, f.message, ops, {**f.details, "txns": f.txns}))
        for name in sorted(cycles):
            if name not in forbidden:
                continue
            for i, cyc in enumerate(cycles[name]):
                text = describe_cycle(name, cyc, h, inf.explain)
                details: dict[str, Any] = {"cycle": cycle_details(cyc, h, inf.explain)}
                if out_dir and len(files) < HTML_FILES_MAX:
                    path = os.path.join(out_dir, "transactions", f"{name}-{i}.html")
                    files.append(write_cycle_html(path, name, text, cyc, h))
                    details["file"] = path
                anomalies.append(Anomaly(name, text, [h.op_of(a).index for a, _, _ in cyc],
                                         details))
        counts = {**inf.found.counts, **cycle_counts}
        stats["anomaly_counts"] = dict(sorted(counts.items()))
        stats["allowed_anomalies"] = sorted(found_names - forbidden)
        stats.update(cm.boundary(found_names))
        stats["still_possible"] = cm.still_possible(found_names)
        stats["time_s"] = {"infer": round(t_inferred - t_start, 4),
                           "cycles": round(t_cycles - t_inferred, 4)}
        if anomalies:
            valid: Any = False
        elif undecided:
            valid = UNKNOWN
            stats["reason"] = (f"{undecided} strongly connected component(s) not fully searched "
                               f"within {self.search_time_s} s")
        else:
            valid = True
        return Result(valid=valid, checker=self.name, anomalies=anomalies, files=files,
                      stats=stats)


def _models(options: dict) -> list[str] | None:
    ms = options.get("consistency_models") or options.get("consistency_model")
    if isinstance(ms, str):
        ms = [m.strip() for m in ms.split(",") if m.strip()]
    return ms


def _make(kind: str, options: dict) -> TxnChecker:
    limit = options.get("time_limit")
    return TxnChecker(kind, _models(options), options.get("out_dir"),
                      search_time_s=float(limit) if limit else SEARCH_TIME_S)


def make_list_append_checker(options: dict) -> TxnChecker:
    """Registry factory. Options: consistency_models (list), out_dir, time_limit (seconds of
    cycle search; past it a component not yet explained makes the verdict unknown)."""
    return _make("list-append", options)


def make_rw_register_checker(options: dict) -> TxnChecker:
    """Registry factory. Options as make_list_append_checker's."""
    return _make("rw-register", options)
