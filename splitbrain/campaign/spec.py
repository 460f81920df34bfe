"""A campaign file (TOML) read into cells: targets x workloads x nemeses, each with its seeds.

    [campaign]
    name = "nightly"
    backend = "sim"                      # or local, netns, docker
    systems = ["raft", "vr"]             # in-house systems (clean variants)
    bins = ["python3 tests/nodes/linkv.py"]   # Maelstrom node programs
    dbs = ["etcd"]                       # real databases
    bugs = ["raft/stale-reads", "commit-on-f"]   # or "all": every bug switch of the systems
    workloads = ["append-log"]
    nemeses = ["partition,kill"]         # one entry per nemesis combination ("none", "all")
    seeds = [1, 2]                       # or test_count = N (seeds 0 .. N-1)
    time_limit = 5
    # optional: nodes, concurrency, rate, expect, clean, jobs, stop_on_catch, shrink,
    # shrink_examples, opts = {k = v}

    [target."raft/commit-old-term"]      # per-target settings (a system, system/bug, bin, db)
    workloads = ["append-log"]
    nemeses = ["kill,pause"]
    seeds = [234]
    time_limit = 10
    opts = {"election-timeout-ms" = 300, "workload.key_count" = 3}
    expect = "invalid"

Decisions (README "Campaigns"):
- A target is a system's clean variant (`clean = false` drops them), one bug switch of a system
  (`system/bug`, or a bare bug name that exactly one listed system has), a `--bin` program or a
  `--db` database. A cell is one target with one workload and one nemesis combination.
- `expect`: a bug switch defaults to "invalid" (the campaign passes when it is caught), every
  other target to "valid"; `expect` in [campaign] sets it for the targets without a bug switch
  (a known-bad `--bin` or database mode), `expect` in a target table for that target, and the
  command's `--expect` for every cell.
- A cell that expects "invalid" passes when at least one of its runs is invalid (a bug is found
  by some seeds, not all), and with `stop_on_catch = true` (the default) its remaining seeds are
  not run. A cell that expects "valid" passes when every run is valid. A cell with no
  expectation (`expect = "none"`) only records its verdicts; it fails the campaign only on a
  harness error.
- Every cell is checked with the same option checks as `splitbrain test` (commands/test.py
  build_test) before anything runs, so a typo fails the whole file at once, exit 2.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import UserError

BACKENDS = ("sim", "local", "netns", "docker")
EXPECTS = ("valid", "invalid", "none")
CAMPAIGN_KEYS = {
    "name": str, "backend": str, "systems": list, "bins": list, "dbs": list, "bugs": (list, str),
    "workloads": list, "nemeses": list, "seeds": list, "test_count": int, "time_limit": (int, float),
    "nodes": int, "concurrency": (int, str), "rate": (int, float), "expect": str, "clean": bool,
    "jobs": int, "stop_on_catch": bool, "shrink": bool, "shrink_examples": int, "opts": dict,
}
TARGET_KEYS = {
    "workloads": list, "nemeses": list, "seeds": list, "test_count": int,
    "time_limit": (int, float), "nodes": int, "concurrency": (int, str), "rate": (int, float),
    "expect": str, "opts": dict,
}
TOP_KEYS = ("campaign", "target")
DEFAULTS = {"nemeses": ["none"], "clean": True, "jobs": 1, "stop_on_catch": True,
            "shrink": True, "shrink_examples": 60}


@dataclass
class Cell:
    """One target x workload x nemesis combination, with the `splitbrain test` dict of each seed.

    `id` is "TARGET/WORKLOAD/NEMESIS[/BUG]" (the campaign.json contract)."""

    id: str
    kind: str                 # system | bin | db
    name: str                 # the system, the bin's command line, the database
    bug: str | None
    workload: str
    nemesis: str              # as written in the file: "partition,kill", "none", "all"
    expect: str | None        # valid | invalid | None
    tests: list[dict] = field(default_factory=list)    # one build_test dict per seed

    def target_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "bug": self.bug}


@dataclass
class Campaign:
    name: str
    file: str
    text: str
    backend: str
    cells: list[Cell]
    jobs: int
    stop_on_catch: bool
    shrink: bool
    shrink_examples: int


def _line_of(text: str, key: str) -> int | None:
    """The first line that assigns or opens `key` (for one-line errors; tomllib gives none)."""
    pat = re.compile(r'^\s*(\[+\s*)?("?)' + re.escape(key) + r'\2\s*(=|\.|\])')
    for i, line in enumerate(text.splitlines(), 1):
        if pat.search(line):
            return i
    return None


class _Err:
    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text

    def __call__(self, key: str, msg: str, line_key: str | None = None) -> UserError:
        line = _line_of(self.text, line_key or key.split(".")[-1])
        where = f"{self.path}:{line}" if line else self.path
        return UserError(f"{where}: {key}: {msg}")


def _check_types(table: dict, allowed: dict, prefix: str, err: _Err) -> None:
    import difflib
    for k, v in table.items():
        if k not in allowed:
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise err(f"{prefix}{k}", f"unknown key{hint}; known: {', '.join(allowed)}", k)
        typ = allowed[k]
        if isinstance(v, bool) and typ is not bool and bool not in (typ if isinstance(typ, tuple)
                                                                     else (typ,)):
            raise err(f"{prefix}{k}", f"expected {_tname(typ)}, got {v!r}", k)
        if not isinstance(v, typ):
            raise err(f"{prefix}{k}", f"expected {_tname(typ)}, got {v!r}", k)
        if isinstance(v, list) and k != "bugs":
            want = int if k == "seeds" else str
            bad = [x for x in v if not isinstance(x, want) or isinstance(x, bool)]
            if bad:
                raise err(f"{prefix}{k}", f"expected a list of {want.__name__}, got {bad[0]!r}", k)


def _tname(typ) -> str:
    names = {str: "a string", list: "a list", int: "an integer", float: "a number",
             bool: "true or false", dict: "a table"}
    if isinstance(typ, tuple):
        return " or ".join(names[t] for t in typ)
    return names[typ]


def load(path: str | Path, *, backend: str | None = None, expect: str | None = None,
         test_count: int | None = None, store: str | None = "store") -> Campaign:
    """Read and check a campaign file; UserError (one line naming file, line, key) on a mistake.

    `backend`, `expect` and `test_count` are the command line's overrides."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    err = _Err(path, text)
    for k in data:
        if k not in TOP_KEYS:
            raise err(k, f"unknown table (a campaign file has [campaign] and [target.NAME])", k)
    c = data.get("campaign")
    if not isinstance(c, dict):
        raise UserError(f"{path}: no [campaign] table")
    _check_types(c, CAMPAIGN_KEYS, "campaign.", err)
    targets_tbl = data.get("target", {})
    if not isinstance(targets_tbl, dict):
        raise err("target", "expected tables [target.NAME]")
    for tname, t in targets_tbl.items():
        if not isinstance(t, dict):
            raise err(f"target.{tname}", "expected a table", tname)
        _check_types(t, TARGET_KEYS, f"target.{tname}.", err)

    backend = backend or c.get("backend") or "local"
    if backend not in BACKENDS:
        raise err("campaign.backend", f"{backend!r}: choose from {', '.join(BACKENDS)}", "backend")
    if "seeds" in c and "test_count" in c:
        raise err("campaign.test_count", "give seeds or test_count, not both", "test_count")
    for k in ("expect",):
        if k in c and c[k] not in EXPECTS:
            raise err(f"campaign.{k}", f"{c[k]!r}: choose from {', '.join(EXPECTS)}", k)
    name = c.get("name") or Path(path).stem

    # ---- targets --------------------------------------------------------------------------
    from ..systems.registry import SYSTEM_PATHS, get_system
    systems = c.get("systems", [])
    classes = {}
    for s in systems:
        if s not in SYSTEM_PATHS:
            raise err("campaign.systems", f"unknown system {s!r} (known: "
                      f"{', '.join(SYSTEM_PATHS)})", "systems")
        try:
            classes[s] = get_system(s)
        except (ImportError, AttributeError) as e:
            raise err("campaign.systems", f"{s}: not available ({e})", "systems")
    targets: list[tuple[str, str, str | None]] = []    # (kind, name, bug)
    if c.get("clean", DEFAULTS["clean"]):
        targets += [("system", s, None) for s in systems]
    bugs = c.get("bugs", [])
    if isinstance(bugs, str):
        if bugs != "all":
            raise err("campaign.bugs", f"{bugs!r}: expected a list of bug switches or \"all\"",
                      "bugs")
        targets += [("system", s, b) for s in systems for b in classes[s].BUGS]
    else:
        for b in bugs:
            if not isinstance(b, str):
                raise err("campaign.bugs", f"expected bug names, got {b!r}", "bugs")
            if "/" in b:
                s, _, bug = b.partition("/")
                if s not in classes:
                    raise err("campaign.bugs", f"{b!r}: {s} is not in systems", "bugs")
                if bug not in classes[s].BUGS:
                    raise err("campaign.bugs", f"{b!r}: {s} has no such bug switch (known: "
                              f"{', '.join(classes[s].BUGS)})", "bugs")
                targets.append(("system", s, bug))
            else:
                owners = [s for s in systems if b in classes[s].BUGS]
                if not owners:
                    raise err("campaign.bugs", f"{b!r}: no listed system has this bug switch "
                              f"(`splitbrain systems` lists them)", "bugs")
                if len(owners) > 1:
                    raise err("campaign.bugs", f"{b!r}: several systems have it ("
                              f"{', '.join(owners)}); write SYSTEM/{b}", "bugs")
                targets.append(("system", owners[0], b))
    targets += [("bin", b, None) for b in c.get("bins", [])]
    targets += [("db", d, None) for d in c.get("dbs", [])]
    if not targets:
        raise UserError(f"{path}: the campaign has no target (give systems, bugs, bins or dbs)")
    keys = {(n if b is None else f"{n}/{b}") for _, n, b in targets}
    for tname in targets_tbl:
        if tname not in keys:
            raise err(f"target.{tname}", f"names no target of this campaign (targets: "
                      f"{', '.join(sorted(keys))})", tname)

    # ---- cells ----------------------------------------------------------------------------
    from ..commands.test import build_test, parse_bin, program_label
    cells: list[Cell] = []
    for kind, tname, bug in targets:
        key = tname if bug is None else f"{tname}/{bug}"
        t = {**c, **targets_tbl.get(key, {})}
        if "seeds" in targets_tbl.get(key, {}):
            t.pop("test_count", None)
        if "test_count" in targets_tbl.get(key, {}):
            t.pop("seeds", None)
        where = f"target.{key}" if key in targets_tbl else "campaign"
        exp = expect or t.get("expect") or ("invalid" if bug else "valid")
        if bug and expect is None and "expect" in c and "expect" not in targets_tbl.get(key, {}):
            exp = "invalid"      # the file's global expect is for the clean targets
        if exp not in EXPECTS:
            raise err(f"{where}.expect", f"{exp!r}: choose from {', '.join(EXPECTS)}", "expect")
        if test_count is not None:
            seeds = list(range(test_count))
        elif "seeds" in t:
            seeds = list(t["seeds"])
        elif "test_count" in t:
            if t["test_count"] < 1:
                raise err(f"{where}.test_count", "must be >= 1", "test_count")
            seeds = list(range(t["test_count"]))
        else:
            seeds = [0]
        if not seeds:
            raise err(f"{where}.seeds", "empty", "seeds")
        opts = [f"{k}={v if isinstance(v, str) else _json(v)}"
                for k, v in {**c.get("opts", {}), **t.get("opts", {})}.items()]
        workloads = t.get("workloads") or [None]
        for wl in workloads:
            for nem in t.get("nemeses") or DEFAULTS["nemeses"]:
                cell_tests = []
                for seed in seeds:
                    try:
                        prog, args = parse_bin(tname) if kind == "bin" else (None, [])
                        test = build_test(
                            system=tname if kind == "system" else None,
                            bin_path=prog, bin_args=args, db=tname if kind == "db" else None,
                            workload=wl, nemesis=nem, time_limit=t.get("time_limit"),
                            nodes=t.get("nodes"), concurrency=t.get("concurrency"),
                            rate=t.get("rate"), seed=seed, bugs=[bug] if bug else [],
                            opts=opts, backend=backend, store=store, name=None, schedule=None)
                    except UserError as e:
                        raise UserError(f"{path}: {where}: {e.format_message()}") from None
                    cell_tests.append(test)
                label = tname if kind != "bin" else program_label(prog, args)
                wl_name = cell_tests[0]["workload"]
                nem_txt = ",".join(cell_tests[0].get("nemesis") or []) or "none"
                cid = f"{label}/{wl_name}/{nem_txt}" + (f"/{bug}" if bug else "")
                cells.append(Cell(cid, kind, tname, bug, wl_name, nem_txt,
                                  None if exp == "none" else exp, cell_tests))
    ids = [x.id for x in cells]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise UserError(f"{path}: cell {dup} appears twice (a repeated workload or nemesis?)")
    jobs = c.get("jobs", DEFAULTS["jobs"])
    se = c.get("shrink_examples", DEFAULTS["shrink_examples"])
    if jobs < 1:
        raise err("campaign.jobs", "must be >= 1", "jobs")
    if se < 1:
        raise err("campaign.shrink_examples", "must be >= 1", "shrink_examples")
    return Campaign(name=name, file=path, text=text, backend=backend, cells=cells, jobs=jobs,
                    stop_on_catch=c.get("stop_on_catch", DEFAULTS["stop_on_catch"]),
                    shrink=c.get("shrink", DEFAULTS["shrink"]) and backend == "sim",
                    shrink_examples=se)


def _json(v: Any) -> str:
    import json
    return json.dumps(v)
