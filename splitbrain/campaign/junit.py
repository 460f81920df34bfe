"""JUnit XML for CI (`--junit FILE` of `test`, `check` and `campaign`), written with junitparser.

One <testcase> per run: name "seed N" (or the history file for `check`), classname the cell or
test, time the run's wall seconds. A run whose verdict does not meet the expectation is a
<failure> whose message is "expected VALID, got INVALID" and whose text lists the anomalies by
checker and name (count, first message) and the replay command; a harness error is an <error>; an
undecided verdict (unknown) where one was expected is a <failure> too (a CI gate must not pass on
"could not tell"). Every text is stripped of the characters XML 1.0 cannot carry (node output may
hold any byte), so a JUnit reader never chokes on a file we wrote.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_XML_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(s) -> str:
    return _XML_BAD.sub("\ufffd", str(s))


@dataclass
class Case:
    """One run as a JUnit test case. outcome: passed | failure | error | skipped."""

    name: str
    classname: str
    time_s: float = 0.0
    outcome: str = "passed"
    message: str = ""
    text: str = ""
    stdout: str = ""


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)


def write(path: str | os.PathLike, suites: list[Suite], name: str = "splitbrain") -> None:
    """Write the suites to `path` (atomically: a CI reader never sees half a file)."""
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite
    xml = JUnitXml(xml_text(name))
    for s in suites:
        suite = TestSuite(xml_text(s.name))
        for c in s.cases:
            tc = TestCase(xml_text(c.name), xml_text(c.classname), round(float(c.time_s), 3))
            if c.outcome in ("failure", "error", "skipped"):
                cls = {"failure": Failure, "error": Error, "skipped": Skipped}[c.outcome]
                r = cls(xml_text(c.message))
                if c.text:
                    r.text = xml_text(c.text)
                tc.result = [r]
            if c.stdout:
                tc.system_out = xml_text(c.stdout)
            suite.add_testcase(tc)
        suite.update_statistics()
        xml.add_testsuite(suite)
    xml.update_statistics()
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    xml.write(str(tmp), pretty=True)
    os.replace(tmp, p)


def anomaly_lines(results: dict | None) -> list[str]:
    """`checker: name xN: first message` for every anomaly of a composed Result's JSON."""
    out: list[str] = []
    for cname, child in _leaves(results or {}, ""):
        names: dict[str, list[dict]] = {}
        for a in child.get("anomalies") or []:
            names.setdefault(str(a.get("name")), []).append(a)
        for aname, items in names.items():
            out.append(f"{cname}: {aname} x{len(items)}: {items[0].get('message', '')}")
        if child.get("valid") is False and not names:
            out.append(f"{cname}: invalid" + (f" ({child['error']})" if child.get("error")
                                                else ""))
        elif child.get("valid") not in (True, False) and child.get("error"):
            out.append(f"{cname}: unknown ({child['error']})")
    return out


def anomaly_counts(results: dict | None) -> dict[str, int]:
    """{anomaly name: count} over every checker of a composed Result's JSON."""
    counts: dict[str, int] = {}
    for _, child in _leaves(results or {}, ""):
        for a in child.get("anomalies") or []:
            n = str(a.get("name"))
            counts[n] = counts.get(n, 0) + 1
    return counts


def _leaves(r: dict, prefix: str):
    children = r.get("children") or {}
    if not children:
        yield (prefix or r.get("checker") or "checker"), r
        return
    for name, child in children.items():
        yield from _leaves(child, f"{prefix}/{name}" if prefix else name)


def verdict_of(valid) -> str:
    return {True: "valid", False: "invalid"}.get(valid, "unknown")


def run_case(*, name: str, classname: str, verdict: str, expect: str | None, results: dict | None,
             replay: str | None, time_s: float, run_dir: str | None = None,
             error: str | None = None) -> Case:
    """A Case for one run: a failure when `verdict` does not meet `expect` (None: only errors
    fail), with the anomalies and the replay command in the text."""
    lines = anomaly_lines(results)
    if error:
        lines.insert(0, error)
    if run_dir:
        lines.append(f"store: {run_dir}")
    if replay:
        lines.append(f"replay: {replay}")
    text = "\n".join(lines)
    if verdict == "error":
        return Case(name, classname, time_s, "error", f"harness error: {error or 'failed'}", text)
    if expect is not None and verdict != expect:
        return Case(name, classname, time_s, "failure",
                    f"expected {expect.upper()}, got {verdict.upper()}", text)
    return Case(name, classname, time_s, "passed", stdout=f"verdict {verdict.upper()}\n{text}")
