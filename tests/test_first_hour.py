"""Issue 18's first-hour friction: what a new user meets in the first commands."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def sb(*args, columns=80):
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "splitbrain", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_systems_is_compact_at_80_columns_with_whole_bug_names():
    from splitbrain.systems.registry import available_systems
    p = sb("systems")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert len(lines) <= 60, len(lines)
    assert max(len(line) for line in lines) <= 80
    assert "…" not in p.stdout
    for cls in available_systems().values():
        for bug in cls.BUGS:
            assert any(line.split("│")[3].strip() == bug for line in lines
                       if line.count("│") >= 4), bug


def test_systems_system_shows_options_and_bugs_in_one_spelling():
    from splitbrain.systems.registry import get_system
    for name in ("raft", "multi-paxos"):
        cls = get_system(name)
        p = sb("systems", name, columns=120)
        assert p.returncode == 0, p.stderr
        for k in cls.OPTIONS:
            assert k.replace("_", "-") in p.stdout
            assert "_ms" not in p.stdout
        for b in cls.BUGS:
            assert b in p.stdout
    p = sb("systems", "nosuch")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown system" in p.stderr


def test_system_options_accept_both_spellings_and_replay_in_one(tmp_path):
    for spelling in ("election-timeout-ms", "election_timeout_ms"):
        p = sb("test", "--backend", "sim", "--system", "multi-paxos", "--time-limit", "0.5",
               "--seed", "1", "--opt", f"{spelling}=250", "--store", str(tmp_path))
        assert p.returncode == 0, p.stderr
        assert "--opt election-timeout-ms=250" in p.stdout
    # The core itself takes either spelling (the local backend's node processes build it).
    from splitbrain.systems.registry import get_system
    from splitbrain.systems.machines import KvMachine
    import random
    cls = get_system("raft")
    core = cls("n1", ["n1", "n2", "n3"], KvMachine(), random.Random(1),
               options={"election_timeout_ms": 222})
    assert core.options["election-timeout-ms"] == 222
    p = sb("test", "--backend", "sim", "--system", "raft", "--opt", "nope=1")
    assert p.returncode == 2 and "election-timeout-ms" in p.stderr


def test_nemesis_help_lists_every_nemesis_and_the_defaults():
    from splitbrain.commands.test import NEMESES, SIM_NEMESES
    from splitbrain.harness.nemesis import FAULTS
    from splitbrain.harness.sim.schedule import KINDS
    assert tuple(FAULTS) == NEMESES and tuple(KINDS) == SIM_NEMESES
    p = sb("test", "--help", columns=200)
    text = " ".join(p.stdout.split())
    line = text[text.index("--nemesis TEXT"):text.index("--time-limit FLOAT")]
    for n in FAULTS:
        assert n in line
    assert "default none" in line
    assert "default 30 (sim: 10)" in text


def test_g_counter_is_listed_where_it_is_accepted():
    p = sb("workloads", "--json")
    assert '"g-counter"' in p.stdout
    p = sb("check", "--help", columns=200)
    assert "g-counter" in p.stdout


def test_check_and_analyze_run_the_checkers_recorded_in_test_json(tmp_path):
    import json
    p = sb("test", "--backend", "sim", "--system", "raft", "--workload", "append-log",
           "--nemesis", "partition", "--time-limit", "1", "--seed", "4", "--store", str(tmp_path))
    assert p.returncode == 0, p.stderr
    run = tmp_path / "raft-append-log" / "latest"
    recorded = json.loads((run / "test.json").read_text())["checkers"]
    assert recorded == ["log", "convergence", "stats"]
    c = sb("check", str(run), columns=200)
    assert c.returncode == 0 and "[log, convergence, stats]" in c.stdout, c.stdout
    a = sb("analyze", str(run), "--no-write", columns=200)
    assert a.returncode == 0
    assert [x.split(":")[0].strip() for x in a.stdout.splitlines()
            if x.startswith("  ") and not x.startswith("   ")] == recorded


def test_progress_line_shows_every_fault_of_the_interval_and_no_repeated_last_line(monkeypatch):
    import io
    from splitbrain.harness.report import progress as prog_mod
    from splitbrain.history.op import Op
    clock = {"t": 100.0}
    monkeypatch.setattr(prog_mod.time, "monotonic", lambda: clock["t"])
    out = io.StringIO()
    ops = [Op(0, 0, 0, "invoke", "read"), Op(1, 1, 0, "ok", "read", 1),
           Op(2, 2, "nemesis", "invoke", "start-partition"),
           Op(3, 3, "nemesis", "info", "start-partition", "halves"),
           Op(4, 4, "nemesis", "invoke", "stop-partition"),
           Op(5, 5, "nemesis", "info", "stop-partition"),
           Op(6, 6, "nemesis", "invoke", "kill"), Op(7, 7, "nemesis", "info", "kill", ["n1"]),
           Op(8, 8, 0, "invoke", "read")]
    with prog_mod.Progress("t", stream=out) as p:
        p.record(ops[0])                 # the first line, at the start
        for op in ops[1:]:
            clock["t"] += 1.0            # 8 s later: the next op prints a line
            p.record(op)
        # In force now: only the kill; the partition came and went within the interval.
        assert "faults: kill" in p.line()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines        # the closing line repeats nothing: not printed
    assert lines[-1].endswith("faults: kill, partition"), lines


def test_local_run_logs_partition_start_and_stop_and_router_only_with_a_router(tmp_path):
    from splitbrain.harness.runner import _router_note

    class NoRouter:                       # netns, docker, databases: TcpClusterBackend's stats
        stats = {"client": 3, "refused": 0, "malformed": 0}

    class WithRouter:                     # local: the router counts delivered messages
        stats = {"delivered": 5, "dropped": 1, "client": 3}
    assert _router_note(NoRouter()) == ""
    assert _router_note(WithRouter()).startswith("; router {'delivered': 5")
    p = sb("test", "--system", "raft", "--workload", "register", "--nemesis", "partition",
           "--time-limit", "2", "--seed", "5", "--store", str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "; router {'delivered'" in p.stdout
    log = (tmp_path / "raft-register" / "latest" / "splitbrain.log").read_text()
    starts = [x for x in log.splitlines() if "nemesis start-partition at" in x]
    stops = [x for x in log.splitlines() if "nemesis stop-partition at" in x]
    assert starts and len(stops) >= len(starts) - 1
    assert '"grudge"' in starts[0]
