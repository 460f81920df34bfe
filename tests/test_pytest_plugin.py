"""The pytest plugin (splitbrain/pytest_plugin.py): its fixture runs a splitbrain test inside a
user's own pytest suite and fails with the anomalies and the replay command."""

from __future__ import annotations

import importlib.metadata
import os
import tomllib

from conftest import REPO

pytest_plugins = ["pytester"]

USER_SUITE = '''
def test_clean_raft_is_valid(splitbrain_test):
    s = splitbrain_test(system="raft", workload="register", backend="sim",
                        nemesis="partition", time_limit=1, seed=3)
    assert s.valid is True and s.run_dir

def test_stale_reads_caught(splitbrain_test):
    splitbrain_test(system="raft", bug="stale-reads", workload="register", backend="sim",
                    nemesis="partition,kill,clock", time_limit=5, seed=23, expect="invalid")

def test_stale_reads_unexpected(splitbrain_test):
    splitbrain_test(system="raft", bug="stale-reads", workload="register", backend="sim",
                    nemesis="partition,kill,clock", time_limit=5, seed=23)

def test_bad_option(splitbrain_test):
    splitbrain_test(system="raft", workload="no-such-workload", backend="sim")
'''


def _plugin_registered() -> bool:
    return any(ep.value == "splitbrain.pytest_plugin"
               for ep in importlib.metadata.entry_points(group="pytest11"))


def test_pyproject_declares_the_pytest11_entry_point():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert data["project"]["entry-points"]["pytest11"]["splitbrain"] == "splitbrain.pytest_plugin"
    import splitbrain.pytest_plugin as plugin
    assert hasattr(plugin, "splitbrain_test") and hasattr(plugin, "pytest_addoption")


def test_fixture_in_a_user_suite(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_user=USER_SUITE)
    store = tmp_path / "store"
    # Installed (pip install -e .), pytest loads the plugin by its entry point; a source tree
    # that is not installed loads it with -p.
    args = [] if _plugin_registered() else ["-p", "splitbrain.pytest_plugin"]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider",
                                           f"--splitbrain-store={store}", "-rf")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    # The unexpected failure names its anomaly, its store directory and the replay command.
    assert "expected VALID, got INVALID" in out
    assert "nonlinearizable" in out
    assert "replay: splitbrain test --backend sim --system raft --workload register" in out
    assert "--seed 23 --bug stale-reads" in out
    assert f"store: {store}" in out
    # A bad option is splitbrain's one-line message, not a traceback.
    assert "splitbrain: --workload:" in out
    assert "Traceback" not in out
    # Runs were stored where asked: the clean one and the two stale-reads runs.
    runs = sorted(p.parent.parent.name for p in store.glob("*/*/test.json")
                  if not p.parent.is_symlink())
    assert runs == ["raft-register"] * 3
