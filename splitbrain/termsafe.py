"""Text from a history on the terminal: escape what a terminal would interpret.

Values, keys, file names and error messages printed by `check`, `analyze` and `test` come from
input that splitbrain does not control. An ESC (CSI and OSC sequences: colours, cursor moves,
window titles, hyperlinks), a carriage return or a C1 control in a value would otherwise act on
the terminal, and a lone surrogate would not even encode as UTF-8. Every such character is shown
as its escape instead, the way Python's repr() shows it (`\\x1b`, `\\r`, `\\x9b`, `\\ud800`).

Rule: a character is kept when it is printable (str.isprintable: letters, digits, punctuation,
symbols, the space) or, in multi-line text, a newline or a tab; everything else -- C0 and C1
controls, DEL, format characters such as bidi overrides, line/paragraph separators, surrogates,
private-use and unassigned code points -- is escaped.
"""

from __future__ import annotations

import click

__all__ = ["safe_text", "safe_line", "echo"]

_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    o = ord(c)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _escape_line(line: str, keep_tab: bool) -> str:
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or (keep_tab and c == "\t") else _escape(c)
                   for c in line)


def safe_text(text: object) -> str:
    """`text` with every non-printable character escaped; newlines and tabs are kept."""
    s = str(text)
    if s.isprintable():
        return s
    return "\n".join(_escape_line(line, True) for line in s.split("\n"))


def safe_line(text: object) -> str:
    """`text` as ONE line: like safe_text, and newlines and tabs are escaped too."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _escape(c) for c in s)


def echo(text: object = "", *, err: bool = False, nl: bool = True) -> None:
    """click.echo of `safe_text(text)`. Everything in `text` is escaped, so styled output
    (click.style) is built from escaped parts and printed with click.echo directly."""
    click.echo(safe_text(text), err=err, nl=nl)
