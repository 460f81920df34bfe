"""`splitbrain campaign FILE` (splitbrain/campaign/): the file's checks, the files a campaign
writes (the campaign.json contract that `splitbrain serve` reads), JUnit XML read back with a
JUnit parser, --expect, the exit code, and the Hypothesis shrink of a sim failure whose replay
command reproduces it. Also `test --junit/--expect` and `check --junit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from junitparser import JUnitXml

from conftest import REPO

TINY = """
[campaign]
name = "tiny"
backend = "sim"
systems = ["raft"]
bugs = ["stale-reads"]
workloads = ["register"]
nemeses = ["partition"]
seeds = [3]
time_limit = 1
jobs = 2

[target."raft/stale-reads"]
nemeses = ["partition,kill,clock"]
seeds = [23, 53]
time_limit = 5
"""


def sb(*args, cwd=None, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "splitbrain", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def _cases(path):
    xml = JUnitXml.fromfile(str(path))
    return [(suite.name, case) for suite in xml for case in suite]


def test_tiny_sim_campaign_files_junit_shrink_and_replay(tmp_path):
    f = tmp_path / "tiny.toml"
    f.write_text(TINY)
    store = tmp_path / "store"
    junit_path = tmp_path / "out" / "junit.xml"
    p = sb("campaign", str(f), "--store", str(store), "--junit", str(junit_path),
           "--shrink-time", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    base = store / "campaigns" / "tiny"
    latest = base / "latest"
    assert latest.is_symlink()
    d = base / os.readlink(latest)
    assert (d / "campaign.toml").read_text() == TINY
    state = json.loads((d / "campaign.json").read_text())
    assert state["name"] == "tiny" and state["backend"] == "sim" and state["exit_code"] == 0
    assert state["started"].endswith("Z") and state["finished"].endswith("Z")
    assert state["file"] == str(f)
    cells = {c["id"]: c for c in state["cells"]}
    assert set(cells) == {"raft/register/partition",
                          "raft/register/partition,kill,clock/stale-reads"}
    clean = cells["raft/register/partition"]
    assert clean["target"] == {"kind": "system", "name": "raft", "bug": None}
    assert clean["expect"] == "valid" and clean["workload"] == "register"
    [run] = clean["runs"]
    assert run["seed"] == 3 and run["verdict"] == "valid" and run["ok"] is True
    assert (store / run["run_dir"] / "test.json").is_file()
    assert run["replay"].startswith("splitbrain test --backend sim --system raft")
    bug = cells["raft/register/partition,kill,clock/stale-reads"]
    assert bug["expect"] == "invalid" and bug["ok"] is True
    # Seed 23 catches the bug; stop_on_catch may leave seed 53 unrun (or running alongside).
    first = bug["runs"][0] if bug["runs"][0]["seed"] == 23 else bug["runs"][1]
    assert first["verdict"] == "invalid" and first["ok"] is True
    assert first["anomalies"].get("nonlinearizable", 0) >= 1
    # The Hypothesis shrink: fewer faults than the seeded schedule, and its command replays it.
    sh = first["shrunk"]
    assert sh["status"] == "shrunk", sh
    assert sh["faults"] < sh["faults_before"]
    assert "--schedule" in sh["replay"] and "--seed 23" in sh["replay"]
    import shlex
    argv = shlex.split(sh["replay"])
    assert argv[:2] == ["splitbrain", "test"]
    r = sb(*argv[1:], "--store", str(tmp_path / "replay"))
    assert r.returncode == 1 and "verdict: INVALID" in r.stdout, r.stdout + r.stderr
    # JUnit XML, in the campaign folder and at --junit, read back with a JUnit parser.
    for path in (d / "junit.xml", junit_path):
        cases = _cases(path)
        assert len(cases) == len(clean["runs"]) + len(bug["runs"])
        assert all(c.is_passed for _, c in cases)
    # The summary table names every cell and the replay command of each failure.
    assert "raft/register/partition,kill,clock/stale-reads" in p.stdout
    assert "shrunk to" in p.stdout and "replay: splitbrain test" in p.stdout


def test_expect_valid_fails_the_gate_with_anomalies_and_replay_in_junit(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TINY.replace("seeds = [23, 53]", "seeds = [23]"))
    store = tmp_path / "store"
    p = sb("campaign", str(f), "--store", str(store), "--expect", "valid", "--no-shrink",
           "--junit", str(tmp_path / "j.xml"))
    assert p.returncode == 1, p.stdout + p.stderr
    failed = [(s, c) for s, c in _cases(tmp_path / "j.xml") if not c.is_passed]
    assert len(failed) == 1
    suite, case = failed[0]
    assert "stale-reads" in suite
    [res] = case.result
    assert res.message == "expected VALID, got INVALID"
    assert "nonlinearizable" in res.text and "replay: splitbrain test" in res.text
    state = json.loads((store / "campaigns" / "tiny" / "latest" / "campaign.json").read_text())
    assert state["exit_code"] == 1


def test_a_bug_never_caught_fails(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TINY.replace('nemeses = ["partition,kill,clock"]', 'nemeses = ["none"]')
                 .replace("time_limit = 5", "time_limit = 1").replace("seeds = [23, 53]",
                                                                      "seeds = [23]"))
    p = sb("campaign", str(f), "--store", str(tmp_path / "store"), "--no-shrink")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL" in p.stdout


@pytest.mark.parametrize("text,expected", [
    ("[campaign\nname = 1", "not valid TOML"),
    ('[campaign]\nsystems = ["raft"]\nworkload = ["register"]\n', "c.toml:3: campaign.workload: "
     "unknown key (did you mean workloads?)"),
    ('[campaign]\nname = "x"\nsystems = ["raft", "nosuch"]\n', "c.toml:3: campaign.systems: "
     "unknown system 'nosuch'"),
    ('[campaign]\nsystems = ["raft"]\nbugs = ["nosuch"]\n', "campaign.bugs: 'nosuch': no listed "
     "system has this bug switch"),
    ('[campaign]\nsystems = ["raft"]\nseeds = [1, "2"]\n', "campaign.seeds: expected a list of "
     "int"),
    ('[campaign]\nsystems = ["raft"]\n[target.vr]\nseeds = [1]\n', "target.vr: names no target"),
    ('[campaign]\nsystems = ["raft"]\nworkloads = ["nope"]\n', "--workload: unknown workload"),
    ('[campaign]\nbackend = "sim"\nsystems = ["raft"]\nnemeses = ["partition,bogus"]\n',
     "--nemesis 'bogus'"),
    ('[campaign]\nsystems = ["raft"]\n[other]\n', "other: unknown table"),
])
def test_bad_campaign_files_are_one_line_exit_2(tmp_path, text, expected):
    f = tmp_path / "c.toml"
    f.write_text(text)
    p = sb("campaign", str(f), "--store", str(tmp_path / "store"))
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], p.stderr
    assert lines[0].startswith(f"splitbrain: {f}")
    assert not (tmp_path / "store").exists()     # nothing ran


def test_shipped_bugs_campaign_covers_every_bug_switch_and_clean_variant():
    from splitbrain.campaign import spec
    from splitbrain.systems.registry import available_systems
    camp = spec.load(REPO / "campaigns" / "bugs.toml", store=None)
    assert camp.backend == "sim"
    systems = available_systems()
    bugs = {(c.name, c.bug) for c in camp.cells if c.bug}
    assert bugs == {(s, b) for s, cls in systems.items() for b in cls.BUGS}
    assert all(c.expect == "invalid" for c in camp.cells if c.bug)
    clean = {c.name for c in camp.cells if not c.bug}
    assert clean == set(systems)
    assert all(c.expect == "valid" for c in camp.cells if not c.bug)
    # --expect overrides the file for every cell.
    assert {c.expect for c in spec.load(REPO / "campaigns" / "bugs.toml", store=None,
                                        expect="valid").cells} == {"valid"}


def test_test_command_junit_and_expect(tmp_path):
    args = ["test", "--backend", "sim", "--system", "raft", "--workload", "register",
            "--nemesis", "partition,kill,clock", "--time-limit", "5", "--seed", "23",
            "--bug", "stale-reads", "--store", str(tmp_path / "store")]
    p = sb(*args, "--expect", "invalid", "--junit", str(tmp_path / "a.xml"))
    assert p.returncode == 0, p.stdout + p.stderr
    [(_, case)] = _cases(tmp_path / "a.xml")
    assert case.is_passed and case.name == "seed 23"
    p = sb(*args, "--junit", str(tmp_path / "b.xml"))
    assert p.returncode == 1
    [(_, case)] = _cases(tmp_path / "b.xml")
    [res] = case.result
    assert res.message == "expected VALID, got INVALID"
    assert "nonlinearizable" in res.text and "--bug stale-reads" in res.text
    # check --junit on the stored history: one case, failing with the same anomaly.
    hist = tmp_path / "store" / "raft-register" / "latest" / "history.jsonl"
    p = sb("check", str(hist), "--junit", str(tmp_path / "c.xml"))
    assert p.returncode == 1
    [(_, case)] = _cases(tmp_path / "c.xml")
    [res] = case.result
    assert "nonlinearizable" in res.text and "replay: splitbrain check" in res.text


def test_local_campaign_of_bin_programs_in_parallel(tmp_path):
    nodes = REPO / "tests" / "nodes"
    f = tmp_path / "bins.toml"
    f.write_text(f"""
[campaign]
name = "bins"
backend = "local"
bins = ["python3 {nodes}/echo.py", "{nodes}/echo-wrong.sh"]
workloads = ["echo"]
seeds = [1]
time_limit = 1
jobs = 2

[target."{nodes}/echo-wrong.sh"]
expect = "invalid"
""")
    store = tmp_path / "store"
    p = sb("campaign", str(f), "--store", str(store))
    assert p.returncode == 0, p.stdout + p.stderr
    state = json.loads((store / "campaigns" / "bins" / "latest" / "campaign.json").read_text())
    assert state["jobs"] == 2
    cells = {c["id"]: c for c in state["cells"]}
    assert set(cells) == {"echo.py/echo/none", "echo-wrong.sh/echo/none"}
    assert cells["echo.py/echo/none"]["target"] == {"kind": "bin", "name": f"python3 {nodes}/echo.py",
                                                    "bug": None}
    [bad] = cells["echo-wrong.sh/echo/none"]["runs"]
    assert bad["verdict"] == "invalid" and bad["ok"] and bad["anomalies"]
    assert bad["replay"].startswith(f"splitbrain test --backend local --bin {nodes}/echo-wrong.sh")
    assert "shrunk" not in bad                  # shrinking is the simulator's


def test_database_and_netns_campaigns_run_one_test_at_a_time(tmp_path):
    from splitbrain.campaign import spec
    from splitbrain.campaign.run import CampaignRun
    f = tmp_path / "n.toml"
    f.write_text('[campaign]\nbackend = "netns"\nsystems = ["raft"]\njobs = 4\n')
    camp = spec.load(f, store=str(tmp_path / "store"))
    r = CampaignRun(camp, str(tmp_path / "store"))
    assert r.jobs == 1 and "one test at a time" in r.jobs_note
    assert json.loads((r.dir / "campaign.json").read_text())["finished"] is None


def test_test_count_and_per_target_settings(tmp_path):
    from splitbrain.campaign import spec
    f = tmp_path / "c.toml"
    f.write_text(TINY.replace("seeds = [3]", "test_count = 4"))
    camp = spec.load(f, store=None)
    seeds = {c.id: [t["seed"] for t in c.tests] for c in camp.cells}
    assert seeds == {"raft/register/partition": [0, 1, 2, 3],
                     "raft/register/partition,kill,clock/stale-reads": [23, 53]}
    bug = next(c for c in camp.cells if c.bug)
    assert bug.tests[0]["time_limit"] == 5 and bug.tests[0]["bugs"] == ["stale-reads"]
    assert {len(c.tests) for c in spec.load(f, store=None, test_count=7).cells} == {7}
