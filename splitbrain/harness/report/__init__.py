"""Reports written into a run's store directory: timeline.html, latency.png and rate.png (with the
nemesis's fault intervals shaded), messages.html (the message diagram, when the run has a
messages.jsonl), and the live Progress line shown while a test runs.

`write_reports(run_dir, history, test)` writes them all and returns the paths; a report that fails
to render is logged into the returned list's companion `errors` (never fails the test's verdict).
"""

from __future__ import annotations

from typing import Sequence

from ...history.op import Op
from .intervals import FaultInterval, fault_intervals
from .progress import Progress

__all__ = ["write_reports", "Progress", "fault_intervals", "FaultInterval"]


def write_reports(run_dir: str, history: Sequence[Op], test: dict | None = None) -> list[str]:
    """Write timeline.html, latency.png, rate.png and (when run_dir has messages.jsonl)
    messages.html into run_dir; returns the paths written.

    Raises nothing for a rendering problem of one report: that report is skipped and the reason
    is written to run_dir/report-errors.txt, so a broken plot never hides a verdict.
    """
    import os

    from .messages import write_messages
    from .plots import write_plots
    from .timeline import write_timeline

    test = test or {}
    title = " ".join(str(test[k]) for k in ("system", "workload", "name") if test.get(k)) or "splitbrain"
    written: list[str] = []
    errors: list[str] = []
    has_messages = os.path.isfile(os.path.join(run_dir, "messages.jsonl"))
    for name, fn in (("timeline", lambda: [write_timeline(run_dir, history, title,
                                                          messages_link=has_messages)]),
                     ("plots", lambda: write_plots(run_dir, history, title)),
                     ("messages", lambda: [p for p in [write_messages(run_dir, history, test, title)]
                                           if p])):
        try:
            written.extend(fn())
        except Exception as e:  # noqa: BLE001 - a report must never mask the verdict
            errors.append(f"{name}: {type(e).__name__}: {e}")
    if errors:
        with open(os.path.join(run_dir, "report-errors.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(errors) + "\n")
    return written
