"""Composition of checkers (Jepsen's `compose`).

`Compose({"log": LogChecker(), "stats": StatsChecker()})` runs every checker on the same history
and returns one Result whose children are theirs, by name. Validity merges False > "unknown" >
True; a checker that raises becomes an "unknown" child carrying the error (never a pass).
The history is materialised once as a list, since every checker reads it.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from . import registry
from .result import Checker, Result, merge_validity, safe_check

NAME = "compose"


class Compose:
    name = NAME

    def __init__(self, checkers: Mapping[str, Checker]):
        if not checkers:
            raise ValueError("compose needs at least one checker")
        self.checkers = dict(checkers)

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        history = history if isinstance(history, list) else list(history)
        test = test if test is not None else {}
        children = {name: safe_check(c, history, test) for name, c in self.checkers.items()}
        valid = merge_validity([r.valid for r in children.values()])
        errors = [f"{n}: {r.error}" for n, r in children.items()
                  if r.error and r.valid is not True]
        return Result(valid=valid, checker=NAME, children=children,
                      stats={"valid": {n: r.valid for n, r in children.items()}},
                      error="; ".join(errors) if errors else None)


def compose(checkers: Mapping[str, Checker]) -> Compose:
    return Compose(checkers)


def make_checker(options: dict) -> Compose:
    """Factory. Option `checkers`: a list of registry names, or a dict name -> options."""
    spec: Any = options.get("checkers")
    if isinstance(spec, (list, tuple)):
        spec = {name: {} for name in spec}
    if not isinstance(spec, dict) or not spec:
        raise ValueError("compose needs option 'checkers': a list of checker names or a dict "
                         "of name -> options")
    shared = {k: v for k, v in options.items() if k != "checkers"}
    return Compose({name: registry.make_checker(name, {**shared, **(opts or {})})
                    for name, opts in spec.items()})
