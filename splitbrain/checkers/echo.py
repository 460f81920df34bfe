"""Maelstrom's echo checker: every ok `echo` reply carries exactly the payload that was sent.

Ops: `echo` with the payload as the invoke's value; the ok completion's value is the reply body
without its bookkeeping fields (the workload keeps `{"echo": payload}`, as Maelstrom keeps the
reply). Payloads compare as JSON values (splitbrain/history/values.py: `true` is not `1`).
Anomalies: `wrong-echo` (the reply echoed something else), `missing-echo` (an `echo_ok` without
an `echo` field). Verdict False with either; "unknown" when no echo completed ok; else True.

Decision: Maelstrom's own checker compares every completion, so an echo that timed out or got an
error (its value holds no echo) is an error there too. Here only ok replies are judged; echoes
that did not succeed count against the availability goal instead (`--availability total` makes
any of them fail the run), so a slow node is told apart from one that echoes the wrong thing.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..history.op import INVOKE, NEMESIS, OK
from ..history.values import json_equal
from .result import UNKNOWN, Anomaly, Result

NAME = "echo"
ANOMALIES_MAX = 1000


class EchoChecker:
    name = NAME

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        pending: dict[Any, Any] = {}
        anomalies: list[Anomaly] = []
        ok = wrong = attempted = 0
        for op in history:
            if op.process == NEMESIS or op.f != "echo":
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                attempted += 1
                continue
            inv = pending.pop(op.process, None)
            if op.type != OK or inv is None:
                continue
            ok += 1
            where = f"process {op.process}" + (f", node {op.node}" if op.node else "")
            if not isinstance(op.value, dict) or "echo" not in op.value:
                wrong += 1
                if len(anomalies) < ANOMALIES_MAX:
                    anomalies.append(Anomaly(
                        "missing-echo", f"echo op {op.index} ({where}) sent {inv.value!r} and "
                        f"got a reply without an echo field: {op.value!r:.200}",
                        [inv.index, op.index], {"sent": inv.value, "reply": op.value}))
            elif not json_equal(inv.value, op.value["echo"]):
                wrong += 1
                if len(anomalies) < ANOMALIES_MAX:
                    anomalies.append(Anomaly(
                        "wrong-echo", f"echo op {op.index} ({where}) sent {inv.value!r} but "
                        f"got back {op.value['echo']!r:.200}", [inv.index, op.index],
                        {"sent": inv.value, "received": op.value["echo"]}))
        stats = {"attempted": attempted, "ok": ok, "wrong": wrong}
        if anomalies:
            return Result(valid=False, checker=NAME, anomalies=anomalies, stats=stats)
        if ok == 0:
            return Result(valid=UNKNOWN, checker=NAME, stats=stats, error="no echo completed ok")
        return Result(valid=True, checker=NAME, stats=stats)


def make_checker(options: dict) -> EchoChecker:
    """Registry factory; no options."""
    return EchoChecker()
