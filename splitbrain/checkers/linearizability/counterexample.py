"""A counterexample a person can read: in words (the Anomaly message) and as one HTML file per key.

The words: the operation that cannot be linearized, the states the object could be in just before
(every alternative the search considered), and the longest linearizable prefix found (one
linearization of everything that completed before, with the state after each operation).

The HTML: one self-contained file (inline SVG and CSS, no script or network) with a lane per
process, every operation of the key as a bar on a time axis from invoke to completion (crashed ones
fade out to the right edge), the failing operation marked, and the partial linearization overlaid:
a numbered dot on each linearized operation, joined in order by a line.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from ..result import Anomaly
from .models import UNKNOWN, Call, Model
from .search import Failure, Partition

PREFIX_SHOWN_MAX = 12     # linearized operations listed in the message (the last ones)
STATES_SHOWN_MAX = 20     # possible states listed in the message
HTML_CALLS_MAX = 2_000    # operations drawn in the HTML (the ones nearest the failure)
FILENAME_MAX = 80


def describe_call(model: Model, c: Call) -> str:
    """`read -> 3`, `write 4`, `cas [1 4]`, `cas [1 4] failed (not 1)`."""
    show = model.describe
    if c.f == "cas-failed":
        return f"cas from {show(c.value)} failed (the value was not {show(c.value)})"
    if c.f == "absent":
        return "cas failed (key-does-not-exist: the value was absent)"
    arg = "" if c.value is None else " " + show(c.value)
    if c.result is UNKNOWN:
        return f"{c.f}{arg} (crashed: may or may not have happened)"
    if c.result is None or c.result == c.value:
        return f"{c.f}{arg}"
    return f"{c.f}{arg} -> {show(c.result)}"


def _call_line(model: Model, part: Partition, cid: int) -> str:
    done = part.complete_index[cid]
    when = f"invoked at index {part.invoke_index[cid]}"
    if part.crashed[cid]:
        when += (", never completed" if done is None else
                 f", {part.completion_type[cid]} at index {done}")
    else:
        when += f", {part.completion_type[cid]} at index {done}"
    return f"process {part.process[cid]}: {describe_call(model, part.calls[cid])} ({when})"


def key_label(key: Any) -> str:
    return "(no key)" if key is None else repr(key)


def describe(model: Model, part: Partition, failure: Failure, *, multi_key: bool) -> Anomaly:
    """The Anomaly "nonlinearizable" for one key, its message the counterexample in words."""
    cid = failure.call
    show = model.describe
    lines = []
    head = f"not linearizable (model {model.name})"
    lines.append(f"key {key_label(part.key)}: {head}" if multi_key or part.key is not None
                 else head)
    lines.append(f"  cannot linearize  {_call_line(model, part, cid)}")
    states = [show(s) for s in failure.states]
    more = "" if len(states) <= STATES_SHOWN_MAX else f" ... ({len(states)} in all)"
    lines.append(f"  states possible just before it: {', '.join(states[:STATES_SHOWN_MAX])}{more}")
    lin = failure.linearization
    lines.append(f"  longest linearizable prefix found: {len(lin)} operation(s)"
                 + (", state after each:" if lin else ""))
    start = max(0, len(lin) - PREFIX_SHOWN_MAX)
    if start:
        lines.append(f"    ... {start} earlier operation(s)")
    for pos in range(start, len(lin)):
        p = lin[pos]
        lines.append(f"    {pos + 1:>4}. index {part.invoke_index[p]:>6}  process "
                     f"{part.process[p]}: {describe_call(model, part.calls[p])}  => "
                     f"{show(failure.prefix_states[pos])}")
    concurrent = [c for c in failure.open_calls if c not in set(lin)]
    if concurrent:
        lines.append("  also open (not linearized in that prefix):")
        for c in concurrent[:PREFIX_SHOWN_MAX]:
            lines.append(f"    {_call_line(model, part, c)}")
    ops = [part.invoke_index[cid]]
    if part.complete_index[cid] is not None:
        ops.append(part.complete_index[cid])
    ops += [part.invoke_index[p] for p in lin[start:]]
    details = {
        "key": part.key,
        "model": model.name,
        "op": {"invoke_index": part.invoke_index[cid],
               "complete_index": part.complete_index[cid],
               "process": part.process[cid], "f": part.calls[cid].f,
               "description": describe_call(model, part.calls[cid])},
        "states_possible": states,
        "linearization": [part.invoke_index[p] for p in lin],
        "linearization_states": [show(s) for s in failure.prefix_states],
    }
    return Anomaly(name="nonlinearizable", message="\n".join(lines), ops=ops, details=details)


def _safe_name(key: Any) -> str:
    """A file name for a key: the key itself when it is tame, else tamed plus a short hash
    (so that keys "a b" and "a_b" do not share a file)."""
    raw = "history" if key is None else str(key)
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._") or "key"
    if text != raw or len(text) > FILENAME_MAX:
        digest = hashlib.sha1(repr(key).encode("utf-8")).hexdigest()[:8]
        text = f"{text[:FILENAME_MAX]}-{digest}"
    return text


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
 h1 { font-size: 1.3em; } pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
 .legend span { display: inline-block; margin-right: 1.5em; }
 .sw { display: inline-block; width: 1.2em; height: .8em; vertical-align: middle; margin-right: .3em; }
 svg text { font: 11px system-ui, sans-serif; }
 .op rect { stroke: #555; stroke-width: .5; }
 .op:hover rect { stroke: #000; stroke-width: 1.5; }
</style></head><body>
<h1>{{ title }}</h1>
<div class="legend">
 <span><i class="sw" style="background:#9ecae1"></i>ok</span>
 <span><i class="sw" style="background:#fdd0a2"></i>failed cas (an observation)</span>
 <span><i class="sw" style="background:linear-gradient(90deg,#ddd,#fff)"></i>crashed (info)</span>
 <span><i class="sw" style="background:#e6550d"></i>cannot be linearized</span>
 <span><i class="sw" style="background:#31a354;height:.25em"></i>the longest linearization found</span>
</div>
<svg xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}"
     viewBox="0 0 {{ width }} {{ height }}">
 <defs><linearGradient id="fade"><stop offset="0" stop-color="#ddd"/><stop offset="1" stop-color="#fff"/></linearGradient></defs>
 {% for lane in lanes %}
 <text x="4" y="{{ lane.y + 14 }}">process {{ lane.process }}</text>
 <line x1="{{ left }}" x2="{{ width - 10 }}" y1="{{ lane.y + 22 }}" y2="{{ lane.y + 22 }}" stroke="#eee"/>
 {% endfor %}
 {% for t in ticks %}
 <line x1="{{ t.x }}" x2="{{ t.x }}" y1="20" y2="{{ height - 20 }}" stroke="#f0f0f0"/>
 <text x="{{ t.x }}" y="14" text-anchor="middle">{{ t.label }}</text>
 {% endfor %}
 {% for b in bars %}
 <g class="op"><title>{{ b.tip }}</title>
  <rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="18" rx="3" fill="{{ b.fill }}"/>
  <text x="{{ b.x + 3 }}" y="{{ b.y + 13 }}">{{ b.label }}</text></g>
 {% endfor %}
 {% if path %}<polyline points="{{ path }}" fill="none" stroke="#31a354" stroke-width="1.5" stroke-opacity=".8"/>{% endif %}
 {% for d in dots %}
 <circle cx="{{ d.x }}" cy="{{ d.y }}" r="6" fill="#31a354"><title>{{ d.tip }}</title></circle>
 <text x="{{ d.x }}" y="{{ d.y + 3.5 }}" text-anchor="middle" fill="#fff" style="font-size:8px">{{ d.n }}</text>
 {% endfor %}
</svg>
<h2>In words</h2>
<pre>{{ message }}</pre>
</body></html>
"""


def render_html(model: Model, part: Partition, failure: Failure, out_dir: str) -> str:
    """Write out_dir/linearizability/<key>.html; returns its path."""
    import jinja2  # lazy: only invalid histories pay for it

    anomaly = describe(model, part, failure, multi_key=True)
    cid = failure.call
    n = len(part.calls)
    fail_time = part.complete_time[cid] or part.invoke_time[cid]
    # Draw the calls nearest the failure when there are too many.
    chosen = sorted(range(n), key=lambda c: abs(part.invoke_time[c] - fail_time))[:HTML_CALLS_MAX]
    chosen_set = set(chosen)
    t0 = min(part.invoke_time[c] for c in chosen)
    t1 = max(max(part.complete_time[c] or part.invoke_time[c] for c in chosen), fail_time)
    t1 = max(t1, t0 + 1)
    processes = sorted({part.process[c] for c in chosen}, key=lambda p: (str(type(p)), p))
    lane_of = {p: i for i, p in enumerate(processes)}
    left, lane_h = 110, 30
    width = max(900, min(4000, 40 * len(chosen) + left))
    height = 40 + lane_h * len(processes) + 20
    span = width - left - 20
    crash_end = t1 + (t1 - t0) * 0.03

    def x_of(t: float) -> float:
        return round(left + (t - t0) / (crash_end - t0) * span, 1)

    bars = []
    for c in chosen:
        call = part.calls[c]
        x0 = x_of(part.invoke_time[c])
        end = part.complete_time[c] if not part.crashed[c] else crash_end
        w = max(3.0, x_of(end) - x0)
        y = 30 + lane_h * lane_of[part.process[c]]
        if c == cid:
            fill = "#e6550d"
        elif part.crashed[c]:
            fill = "url(#fade)"
        elif call.f in ("cas-failed", "absent"):
            fill = "#fdd0a2"
        else:
            fill = "#9ecae1"
        label = describe_call(model, call)
        bars.append({"x": x0, "y": y, "w": w, "fill": fill,
                     "label": label if w > 7 * len(label) else "",
                     "tip": f"index {part.invoke_index[c]}: {_call_line(model, part, c)}"})
    dots, points = [], []
    for i, p in enumerate(failure.linearization):
        if p not in chosen_set:
            continue
        a = part.invoke_time[p]
        b = part.complete_time[p] if not part.crashed[p] and part.complete_time[p] else t1
        x = x_of((a + b) / 2)
        y = 30 + lane_h * lane_of[part.process[p]] + 9
        dots.append({"x": x, "y": y, "n": i + 1,
                     "tip": f"{i + 1}. {describe_call(model, part.calls[p])} => "
                            f"{model.describe(failure.prefix_states[i])}"})
        points.append(f"{x},{y}")
    ticks = []
    for k in range(11):
        t = t0 + (t1 - t0) * k / 10
        ticks.append({"x": x_of(t), "label": f"{(t - t0) / 1e6:.3g} ms"})
    title = f"Not linearizable: key {key_label(part.key)} (model {model.name})"
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(
        title=title, lanes=[{"process": p, "y": 30 + lane_h * i} for i, p in enumerate(processes)],
        ticks=ticks, bars=bars, dots=dots, path=" ".join(points), width=width, height=height,
        left=left, message=anomaly.message)
    directory = os.path.join(out_dir, "linearizability")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, _safe_name(part.key) + ".html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    return path
