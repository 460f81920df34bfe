"""A validated JSONL history held as columns: about 64 bytes per op instead of about 200.

`load_jsonl_columns(path)` reads and validates a JSONL history in one pass, as
`formats.load_history_ex` does (same checks, same one-line errors naming file, line and field),
but keeps each batch of ops as columns (jsonl.Batch: times in an array, types and names as
shared strings, dense indices and consecutive line numbers implicit) instead of one Op object
per line. The result, a `ColumnHistory`, is a re-iterable sequence of Ops: every iteration
builds the Ops afresh, one batch at a time, so a checker that streams the history (the
linearizability checker does) holds a batch of Op objects at most.

It also keeps what `splitbrain check` infers the model and the checkers from (`summary`), so
that inferring them does not build an Op per line either.
"""

from __future__ import annotations

import gc
from array import array
from typing import Callable, Iterator

from .jsonl import Batch, read_batches
from .op import NEMESIS, OK, Op
from .validate import HistoryValidator

__all__ = ["ColumnHistory", "load_jsonl_columns"]


class ColumnHistory:
    """The ops of a validated JSONL history, as columns; iterating yields Ops (see the module
    docstring). `len()` is the number of ops; `to_list()` builds them all."""

    def __init__(self, path: str):
        self.path = path
        self._batches: list[Batch] = []
        self._n = 0
        # For the inference of `splitbrain check`: the client ops' names, whether a client
        # op has a key, whether an ok read of a client returned a list.
        self.client_fs: set[str] = set()
        self.keyed = False
        self.read_lists = False

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Op]:
        for b in self._batches:
            yield from b.ops()

    def to_list(self) -> list[Op]:
        """Every op, as a list of Ops."""
        out: list[Op] = []
        for b in self._batches:
            out.extend(b.ops())
        return out

    def summary(self) -> tuple[set[str], bool, bool]:
        """(client ops' names, a client op has a key, an ok client read returned a list)."""
        return self.client_fs, self.keyed, self.read_lists

    def _add(self, b: Batch) -> None:
        n = len(b)
        procs = b.process
        nemesis = NEMESIS in procs
        if nemesis:
            self.client_fs.update(f for p, f in zip(procs, b.f) if p != NEMESIS)
        else:
            self.client_fs.update(b.f)
        if not self.keyed and b.key is not None:
            self.keyed = (any(k is not None for p, k in zip(procs, b.key) if p != NEMESIS)
                          if nemesis else b.key.count(None) != n)
        if not self.read_lists and list in set(map(type, b.value)):
            self.read_lists = any(ty == OK and f == "read" and isinstance(v, list)
                                  and p != NEMESIS
                                  for p, ty, f, v in zip(procs, b.type, b.f, b.value))
        # Times in an array: 8 bytes each, not an int object.
        try:
            b.time = array("q", b.time)
        except OverflowError:  # a time beyond 64 bits (json reads any integer): kept as is
            pass
        self._batches.append(b)
        self._n += n


def load_jsonl_columns(path: str, *, validate: bool = True,
                       on_warning: Callable[[str], None] | None = None) -> ColumnHistory:
    """Read (and validate) a JSONL history into a ColumnHistory; errors as
    `formats.read_jsonl_with_lines` raises them."""
    h = ColumnHistory(path)
    # Nothing read here makes a reference cycle: the cyclic garbage collector would only walk
    # the growing columns again and again (7% of the time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for b in read_batches(path, on_warning=on_warning,
                              validator=HistoryValidator(path) if validate else None):
            h._add(b)
    finally:
        if was_enabled:
            gc.freeze()     # what was allocated meanwhile goes to the oldest generation,
            gc.unfreeze()   # not to the next young collection (checker.py does the same)
            gc.enable()
    return h
