"""Checker results: three-valued, composable (Jepsen's design).

`valid` is True, False or "unknown". Composition merges with False > "unknown" > True; a checker
that raises gives "unknown" with the error recorded, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence, Union

Validity = Union[bool, Literal["unknown"]]
UNKNOWN: Validity = "unknown"


def merge_validity(values: Sequence[Validity]) -> Validity:
    """False beats "unknown" beats True. An empty sequence is True (nothing was contradicted)."""
    if any(v is False for v in values):
        return False
    if any(v is not True for v in values):
        return UNKNOWN
    return True


@dataclass
class Anomaly:
    """One named anomaly with the evidence a person needs.

    `name` is a stable kebab-case identifier (`divergent-logs`, `lost-append`, `nonlinearizable`,
    ...); `ops` are the history indices of the operations that prove it; `details` is free JSON.
    """

    name: str
    message: str
    ops: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "message": self.message, "ops": list(self.ops),
                "details": self.details}


@dataclass
class Result:
    """What a checker concluded.

    `checker` names the checker; `files` are paths it wrote (HTML, plots); `stats` is free JSON
    (counts, timings); `children` holds the sub-results of a composed check.
    """

    valid: Validity
    checker: str = ""
    anomalies: list[Anomaly] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    children: dict[str, "Result"] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.valid is True or self.valid is False or self.valid == UNKNOWN, self.valid

    def all_anomalies(self) -> list[Anomaly]:
        out = list(self.anomalies)
        for child in self.children.values():
            out.extend(child.all_anomalies())
        return out

    def to_json(self) -> dict:
        d: dict[str, Any] = {
            "valid": self.valid,
            "checker": self.checker,
            "anomalies": [a.to_json() for a in self.all_anomalies()],
            "anomaly_names": sorted({a.name for a in self.all_anomalies()}),
            "files": list(self.files),
            "stats": self.stats,
        }
        if self.error is not None:
            d["error"] = self.error
        if self.children:
            d["children"] = {k: v.to_json() for k, v in self.children.items()}
        return d


class Checker(Protocol):
    """A checker: `check(history, test) -> Result`.

    `history` is a list of Op; `test` is the test's metadata dict (options, nodes, model, out_dir),
    possibly empty. A checker must not mutate either.
    """

    name: str

    def check(self, history: list, test: dict) -> Result: ...


def safe_check(checker: Checker, history: list, test: dict) -> Result:
    """Run a checker; an exception becomes an "unknown" result carrying the error, never a pass."""
    try:
        result = checker.check(history, test)
    except Exception as e:  # noqa: BLE001 - any failure of a checker must degrade to unknown
        return Result(valid=UNKNOWN, checker=getattr(checker, "name", type(checker).__name__),
                      error=f"{type(e).__name__}: {e}")
    if not result.checker:
        result.checker = getattr(checker, "name", type(checker).__name__)
    return result


@dataclass
class FunctionChecker:
    """Adapts a plain function `(history, test) -> Result` to the Checker protocol."""

    name: str
    fn: Callable[[list, dict], Result]

    def check(self, history: list, test: dict) -> Result:
        return self.fn(history, test)
