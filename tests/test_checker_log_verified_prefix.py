"""The log checker type-checks only the entries of a read it has not verified before
(`_KeyState.canon_read`): the results must be those of checking every entry (`canon_log`), above
all where a later read puts `true` / `false` / `1.0` / NaN where an earlier one held 1 / 0."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers import log as log_checker
from splitbrain.checkers.log import LogChecker
from splitbrain.history.op import Op


def history(appends: list, reads: list[list]) -> list[Op]:
    ops: list[Op] = []

    def add(p, typ, f, value, node=None):
        ops.append(Op(len(ops), len(ops) * 1000, p, typ, f, value, "k", node))

    for i, v in enumerate(appends):
        add(i % 3, "invoke", "append", v)
        add(i % 3, "ok", "append", v)
    for j, r in enumerate(reads):
        add(10 + j % 2, "invoke", "read", None, f"n{j % 2}")
        add(10 + j % 2, "ok", "read", r, f"n{j % 2}")
    return ops


def outcome(result):
    return (result.valid, sorted((a.name, a.message) for a in result.anomalies),
            {k: v for k, v in result.stats.items() if "time" not in k})


def full_check(ops):
    """The checker with every entry of every read type-checked (the behaviour before)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(log_checker._KeyState, "canon_read",
                   lambda self, log: log_checker.canon_log(log))
        return LogChecker().check(ops, {})


@pytest.mark.parametrize("reads", [
    [[2, 1], [2, True, 3]],            # true where the verified read held 1
    [[2, 3, 1], [2, 3, True]],         # ... at the end of the trusted prefix
    [[0, 2], [False, 2, 3]],           # false for 0 at the start
    [[2, 3], [2, 3, True]],            # a bool in the unverified rest
    [[2, 3], [2.0, 3, 1]],             # 2.0 is the JSON value 2: valid
    [[2, 3], [2, float("nan")]],       # NaN is not 3
])
def test_bools_after_a_verified_read_are_still_seen(reads):
    ops = history([2, 1, 3, 0], reads)
    got = LogChecker().check(ops, {})
    assert outcome(got) == outcome(full_check(ops))
    if any(type(x) is bool or x != x for r in reads for x in r):
        assert got.valid is False


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(1, 12), st.integers(1, 6))
def test_same_results_as_checking_every_entry(seed, n, n_reads):
    rnd = random.Random(seed)
    appends = list(range(n))
    rnd.shuffle(appends)
    committed = list(appends)
    reads = []
    for _ in range(n_reads):
        r = committed[:rnd.randint(0, n)]
        if rnd.random() < 0.3:                 # the same list object again
            r = reads[-1] if reads else r
        elif r and rnd.random() < 0.5:
            i = rnd.randrange(len(r))
            r = list(r)
            r[i] = rnd.choice([True, False, float(r[i]), float("nan"), str(r[i]), [r[i]]])
        reads.append(r)
    ops = history(appends, reads)
    assert outcome(LogChecker().check(ops, {})) == outcome(full_check(ops))
