"""Errors raised for bad history input.

A HistoryError always names where the problem is (file, line, field) so that the CLI can print a
single line and exit with the usage code; it is never shown as a traceback.
"""

from __future__ import annotations


class HistoryError(ValueError):
    """A history (or an imported log) is malformed or breaks Jepsen's operation semantics."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ":".join(where[:2]) if where else ""
        if len(where) == 3:
            prefix = f"{prefix}: {where[2]}"
        elif len(where) == 1 and self.field is not None:
            prefix = where[0]
        return f"{prefix}: {self.message}" if prefix else self.message
