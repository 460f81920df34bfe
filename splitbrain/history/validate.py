"""Semantic validation of a history, and pairing of invocations with their completions.

The JSONL reader (jsonl.py) and the importers check each op's *shape*; this module checks what
only the sequence can show, i.e. Jepsen's operation semantics (DESIGN.md, "The history"):

- a client process has at most one operation outstanding: a second `invoke` while busy is an error;
- every completion (`ok`/`fail`/`info`) answers the outstanding `invoke` of the same process with
  the same `f`: a completion with no invoke, or of another `f`, is an error;
- after an `info` a process never invokes again (the worker continues under a fresh process id);
- a completion does not happen before its invocation (`time` never goes backwards within a pair).

Nemesis ops (process "nemesis") are exempt: the nemesis may overlap its own events freely.
An invocation with no completion at all is legal (the recorder stopped); `pair_index` reports it as
unmatched and checkers treat it like an `info`.

Errors are HistoryErrors naming the file and line when the caller knows them (pass `lines`), or the
op's index otherwise, and the field at fault.
"""

from __future__ import annotations

import builtins
from typing import Iterable, Sequence

from .errors import HistoryError
from .op import FAIL, INFO, INVOKE, NEMESIS, OK, Op

__all__ = ["HistoryValidator", "validate_history", "pair_index", "pairs", "completion_of"]


class HistoryValidator:
    """Checks ops one at a time, so that a streaming reader can validate as it goes.

    `feed(op, line)` raises HistoryError at the first op that breaks the semantics above.
    `line` is the op's 1-based line in `path`; when it is None the error names the op's index.
    After the last op, `outstanding()` lists the invocations still without a completion.
    """

    def __init__(self, path: str | None = None):
        self.path = path
        # process -> (index, f, time, line) of its outstanding invocation.
        self._busy: dict[object, tuple[int, str, int, int | None]] = {}
        # process -> (index, line) of the info that ended it.
        self._dead: dict[object, tuple[int, int | None]] = {}
        self.count = 0

    def _where(self, index: int, line: int | None) -> str:
        return f"line {line}" if line is not None else f"op index {index}"

    def _error(self, op: Op, line: int | None, field: str, message: str) -> HistoryError:
        if line is None:
            message = f"op index {op.index}: {message}"
        return HistoryError(message, path=self.path, line=line, field=field)

    def feed(self, op: Op, line: int | None = None) -> None:
        self.count += 1
        p = op.process
        if p == NEMESIS:
            return
        if op.type == INVOKE:
            if p in self._busy:
                idx, f, _, bline = self._busy[p]
                raise self._error(op, line, "process",
                                  f"process {p} invokes {op.f!r} while its {f!r} invoked at "
                                  f"{self._where(idx, bline)} has not completed (a process has at "
                                  f"most one operation outstanding)")
            if p in self._dead:
                idx, dline = self._dead[p]
                raise self._error(op, line, "process",
                                  f"process {p} invokes {op.f!r} after its 'info' at "
                                  f"{self._where(idx, dline)} (a crashed process never invokes "
                                  f"again; use a fresh process id)")
            self._busy[p] = (op.index, op.f, op.time, line)
            return
        # A completion.
        if p not in self._busy:
            if p in self._dead:
                idx, dline = self._dead[p]
                raise self._error(op, line, "type",
                                  f"{op.type!r} completion of {op.f!r} by process {p}, which "
                                  f"already crashed with 'info' at {self._where(idx, dline)}")
            raise self._error(op, line, "type",
                              f"{op.type!r} completion of {op.f!r} by process {p} with no "
                              f"outstanding invoke")
        idx, f, t, bline = self._busy[p]
        if op.f != f:
            raise self._error(op, line, "f",
                              f"process {p} completes {op.f!r} but invoked {f!r} at "
                              f"{self._where(idx, bline)}")
        if op.time < t:
            raise self._error(op, line, "time",
                              f"completion at time {op.time} precedes its invoke at "
                              f"{self._where(idx, bline)} (time {t})")
        del self._busy[p]
        if op.type == INFO:
            self._dead[p] = (op.index, line)

    def feed_columns(self, index: Sequence[int], time: Sequence[int], process: Sequence,
                     type: Sequence[str], f: Sequence[str], lines: Sequence[int],
                     make_op) -> None:
        """`feed` for a batch of ops given as columns (the JSONL reader's batches), without an
        Op per line: ops whose types are one of op.TYPES' own str objects (the reader's).

        Same checks and state as `feed`; at the first op that may break a rule, `feed` itself
        runs on `make_op(i)` (the batch's i-th Op) and raises its error."""
        busy, dead = self._busy, self._dead
        pop = busy.pop
        type_ = builtins.type
        n = 0
        for n, (idx, t, p, ty, fn, line) in enumerate(zip(index, time, process, type, f, lines)):
            if type_(p) is not int:
                if p == NEMESIS:
                    continue
                break
            if ty is INVOKE:
                if p in busy or p in dead:
                    break
                busy[p] = (idx, fn, t, line)
                continue
            if not (ty is OK or ty is FAIL or ty is INFO):
                break
            b = pop(p, None)
            if b is None or b[1] != fn or t < b[2]:
                if b is not None:
                    busy[p] = b
                break
            if ty is INFO:
                dead[p] = (idx, line)
        else:
            self.count += len(lines)
            return
        self.count += n
        for i in range(n, len(lines)):  # the rest one by one, `feed` raising where it must
            self.feed(make_op(i), lines[i])

    def outstanding(self) -> list[int]:
        """Indices of invocations that never completed (legal: they count as `info`)."""
        return sorted(idx for idx, _, _, _ in self._busy.values())


def validate_history(history: Iterable[Op], *, path: str | None = None,
                     lines: Sequence[int] | None = None) -> None:
    """Raise HistoryError at the first op that breaks Jepsen's semantics; return None if none does.

    `lines[i]` is the file line of the i-th op, when known.
    """
    v = HistoryValidator(path)
    for i, op in enumerate(history):
        v.feed(op, lines[i] if lines is not None and i < len(lines) else None)


def pair_index(history: Sequence[Op]) -> list[int | None]:
    """For each op position, the position of its partner: invoke <-> completion; None if unmatched.

    Positions are list positions (equal to `op.index` in a dense history). Nemesis ops are paired
    too (an invoke with the next completion of the same `f` by the nemesis) because nemesis events
    are recorded as invoke/info pairs; an unmatched nemesis op maps to None. The history is assumed
    valid (see `validate_history`); a stray client completion maps to None.
    """
    out: list[int | None] = [None] * len(history)
    busy: dict[object, int] = {}
    nemesis_open: dict[str, list[int]] = {}
    for i, op in enumerate(history):
        if op.process == NEMESIS:
            if op.type == INVOKE:
                nemesis_open.setdefault(op.f, []).append(i)
            else:
                stack = nemesis_open.get(op.f)
                if stack:
                    j = stack.pop(0)
                    out[i], out[j] = j, i
            continue
        if op.type == INVOKE:
            busy[op.process] = i
        else:
            j = busy.pop(op.process, None)
            if j is not None:
                out[i], out[j] = j, i
    return out


def pairs(history: Sequence[Op]) -> list[tuple[Op, Op | None]]:
    """The client operations as (invoke, completion-or-None), in invocation order.

    Nemesis ops are left out. A None completion means the recorder never saw one (treat as `info`).
    """
    partner = pair_index(history)
    return [(op, history[partner[i]] if partner[i] is not None else None)
            for i, op in enumerate(history)
            if op.type == INVOKE and op.process != NEMESIS]


def completion_of(history: Sequence[Op]) -> dict[int, int]:
    """Each client invoke's `index` -> its completion's `index` (unmatched ones omitted)."""
    partner = pair_index(history)
    return {history[i].index: history[j].index for i, j in enumerate(partner)
            if j is not None and history[i].type == INVOKE and history[i].process != NEMESIS}
