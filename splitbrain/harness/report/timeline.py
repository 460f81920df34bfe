"""timeline.html: one self-contained page showing every client operation as a bar in its
process's lane on a time axis (green ok, red fail, orange info, grey never completed), with the
nemesis's fault intervals shaded behind, like Jepsen's timeline checker. Hovering a bar shows the
operation. `timeline.html#op=N` scrolls to the operation whose invoke or completion is history
index N and outlines it; with a message diagram (messages.html, same op ids) next to it, clicking a
bar opens the diagram at that operation. Histories longer than TIMELINE_OPS_MAX operations are drawn up to that many and the page
says so in its header (never a silent cut).
"""

from __future__ import annotations

import html
import json
import os
from typing import Sequence

from jinja2 import Environment

from ...history.op import INVOKE, NEMESIS, Op
from .intervals import fault_intervals

TIMELINE_OPS_MAX = 20_000
LANE_PX = 18
WIDTH_PX = 1400

_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }} timeline</title>
<style>
body{font:12px system-ui,sans-serif;margin:12px;color:#222}
#wrap{position:relative;overflow-x:auto;border:1px solid #ccc}
#canvas{position:relative;height:{{ height }}px;width:{{ width }}px}
.lane{position:absolute;left:0;height:{{ lane }}px;border-bottom:1px solid #f0f0f0;width:100%}
.lbl{position:absolute;left:2px;font-size:10px;color:#777}
.op{position:absolute;height:{{ lane - 4 }}px;border-radius:2px;min-width:2px;opacity:.85}
.ok{background:#43a047}.fail{background:#e53935}.info{background:#fb8c00}.open{background:#9e9e9e}
.fault{position:absolute;top:0;height:100%;opacity:.18}
#tip{position:fixed;background:#fff;border:1px solid #999;padding:4px 6px;display:none;
     font-family:monospace;white-space:pre;pointer-events:none;z-index:9}
.legend span{display:inline-block;padding:1px 6px;margin-right:6px;color:#fff;border-radius:2px}
.sel{outline:3px solid #000;outline-offset:1px;opacity:1;z-index:5}
{% if messages_link %}.op{cursor:pointer}{% endif %}
</style></head><body>
<h2>{{ title }}</h2>
{% if messages_link %}<p><a href="messages.html">messages.html</a>: the message diagram (click an
operation to see its messages)</p>{% endif %}
<p>{{ summary }}</p>
{% if truncated %}<p><b>Showing the first {{ shown }} of {{ total }} operations</b>
(limit {{ limit }}); the full history is history.jsonl.</p>{% endif %}
<p class="legend"><span class="ok">ok</span><span class="fail">fail</span>
<span class="info">info</span><span class="open">no completion</span>
{% for f in faults %}<span style="background:{{ f.color }}">{{ f.name }}</span>{% endfor %}</p>
<div id="wrap"><div id="canvas">
{% for f in fault_boxes %}<div class="fault" style="left:{{ f.x }}px;width:{{ f.w }}px;background:{{ f.color }}" title="{{ f.title }}"></div>{% endfor %}
{% for l in lanes %}<div class="lane" style="top:{{ l.y }}px"><span class="lbl">{{ l.name }}</span></div>{% endfor %}
</div></div>
<div id="tip"></div>
<script>
const OPS = {{ ops_json }};
const canvas = document.getElementById('canvas'), tip = document.getElementById('tip');
const frag = document.createDocumentFragment();
OPS.forEach((o, i) => {
  const d = document.createElement('div');
  d.className = 'op ' + o.c; d.style.left = o.x + 'px'; d.style.width = o.w + 'px';
  d.style.top = (o.y + 2) + 'px'; d.dataset.i = i; frag.appendChild(d);
});
canvas.appendChild(frag);
{% if messages_link %}canvas.addEventListener('click', e => {
  const i = e.target.dataset && e.target.dataset.i;
  if (i !== undefined) location.href = 'messages.html#op=' + OPS[i].i;
});{% endif %}
function showOp() {
  const m = /op=([0-9]+)/.exec(location.hash);
  document.querySelectorAll('.sel').forEach(d => d.classList.remove('sel'));
  if (!m) return;
  const n = Number(m[1]), k = OPS.findIndex(o => o.i === n || o.j === n);
  if (k < 0) return;
  const d = canvas.querySelector('[data-i="' + k + '"]');
  d.classList.add('sel');
  d.scrollIntoView({block: 'center', inline: 'center'});
}
window.addEventListener('hashchange', showOp);
showOp();
canvas.addEventListener('mousemove', e => {
  const i = e.target.dataset && e.target.dataset.i;
  if (i === undefined) { tip.style.display = 'none'; return; }
  tip.textContent = OPS[i].t; tip.style.display = 'block';
  tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
});
</script></body></html>
"""

_FAULT_COLORS = ["#1e88e5", "#8e24aa", "#fdd835", "#00897b", "#d81b60", "#546e7a"]


def _describe(inv: Op, comp: Op | None) -> str:
    def one(op: Op) -> str:
        parts = [f"#{op.index} {op.type} {op.f}", f"value={json.dumps(op.value)}"]
        if op.key is not None:
            parts.append(f"key={json.dumps(op.key)}")
        if op.node:
            parts.append(f"node={op.node}")
        if op.error:
            parts.append(f"error={op.error}")
        parts.append(f"t={op.time / 1e6:.3f}ms")
        return " ".join(parts)
    lines = [f"process {inv.process}", one(inv)]
    if comp is not None:
        lines.append(one(comp))
        lines.append(f"latency {(comp.time - inv.time) / 1e6:.3f} ms")
    return "\n".join(lines)


def render_timeline(history: Sequence[Op], title: str = "splitbrain",
                    messages_link: bool = False) -> str:
    """The timeline page as a string (see the module docstring); `messages_link`: a
    messages.html is written next to it (bars link to it)."""
    total = sum(1 for op in history if op.process != NEMESIS and op.type == INVOKE)
    end_ns = max((op.time for op in history), default=0) or 1
    scale = (WIDTH_PX - 60) / end_ns
    pending: dict[object, Op] = {}
    bars: list[tuple[Op, Op | None]] = []
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.type == INVOKE:
            if len(bars) + len(pending) < TIMELINE_OPS_MAX:
                pending[op.process] = op
        elif op.process in pending:
            bars.append((pending.pop(op.process), op))
    bars.extend((inv, None) for inv in pending.values())
    processes = sorted({inv.process for inv, _ in bars}, key=lambda p: (str(type(p)), p))
    lane_of = {p: k for k, p in enumerate(processes)}
    ops = []
    for inv, comp in bars:
        end = comp.time if comp is not None else end_ns
        ops.append({"i": inv.index, "j": comp.index if comp is not None else -1,
                    "x": 40 + int(inv.time * scale), "w": max(2, int((end - inv.time) * scale)),
                    "y": lane_of[inv.process] * LANE_PX,
                    "c": comp.type if comp is not None else "open",
                    "t": _describe(inv, comp)})
    intervals = fault_intervals(history)
    names = sorted({i.name for i in intervals})
    colour = {n: _FAULT_COLORS[k % len(_FAULT_COLORS)] for k, n in enumerate(names)}
    fault_boxes = [{"x": 40 + int(i.start_ns * scale),
                    "w": max(2, int((i.end_ns - i.start_ns) * scale)), "color": colour[i.name],
                    "title": html.escape(f"{i.name} {json.dumps(i.value)} "
                                         f"{i.start_ns / 1e9:.2f}s-{i.end_ns / 1e9:.2f}s")}
                   for i in intervals]
    counts = {"ok": 0, "fail": 0, "info": 0, "open": 0}
    for o in ops:
        counts[o["c"]] += 1
    summary = (f"{total} client operations over {end_ns / 1e9:.2f} s: {counts['ok']} ok, "
               f"{counts['fail']} fail, {counts['info']} info, {counts['open']} without completion;"
               f" {len(intervals)} fault intervals.")
    env = Environment(autoescape=True)
    # The ops JSON goes into a <script>: escape "</" so no value can close the tag.
    ops_json = json.dumps(ops).replace("</", "<\\/")
    from markupsafe import Markup
    return env.from_string(_TEMPLATE).render(
        title=title, summary=summary, truncated=len(bars) < total, shown=len(bars), total=total,
        limit=TIMELINE_OPS_MAX, height=max(1, len(processes)) * LANE_PX, width=WIDTH_PX,
        lane=LANE_PX, lanes=[{"y": k * LANE_PX, "name": p} for p, k in lane_of.items()],
        faults=[{"name": n, "color": colour[n]} for n in names], fault_boxes=fault_boxes,
        ops_json=Markup(ops_json), messages_link=messages_link)


def write_timeline(out_dir: str, history: Sequence[Op], title: str = "splitbrain",
                   messages_link: bool = False) -> str:
    path = os.path.join(out_dir, "timeline.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_timeline(history, title, messages_link))
    return path
