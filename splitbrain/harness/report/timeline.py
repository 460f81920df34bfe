"""timeline.html: one self-contained page (inline CSS and script, no network) showing every client
operation as a bar on a time axis (green ok, red fail, orange info, grey never completed), with
the nemesis's fault intervals shaded behind in their fixed colours (report/colors.py), like
Jepsen's timeline checker. Hovering a bar shows the operation.

- Time axis: a ruler of seconds (of the history's clock) along the top, with grid lines.
- Lanes: one per process (Jepsen's), or, with the "lanes per node" toggle (or `#lanes=node` in
  the address), one per node that served the operations (the completion's node, else the
  invoke's; operations with no node in a lane "(no node)").
- Anomalies: the anomalies of the run's results.json are listed above the timeline, each with
  links to the operations it names; every operation an anomaly names is marked (a red frame and
  a mark above it). With no `#op=` in the address the page opens at the first of them.
- `timeline.html#op=N` scrolls to the operation whose invoke or completion is history index N and
  outlines it; with a message diagram (messages.html, same op ids) next to it, clicking a bar
  opens the diagram at that operation.

Histories longer than TIMELINE_OPS_MAX operations are drawn up to that many and the page says so
in its header (never a silent cut). For tests and tools the page exposes its state on
`document.body.dataset`: ready, selected (the op selected), lanes ("process" or "node"),
anomalyOps (how many bars are marked).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

from jinja2 import Environment
from markupsafe import Markup

from ...history.op import INVOKE, NEMESIS, Op
from .colors import fault_color
from .context import fault_label, natural_key
from .intervals import fault_intervals

TIMELINE_OPS_MAX = 20_000
ANOMALIES_LISTED_MAX = 200      # anomalies listed above the timeline (all are marked)
ANOMALY_LINKS_MAX = 12          # operation links shown per listed anomaly
LANE_PX = 18
WIDTH_PX = 1400
LEFT_PX = 70                    # the lane labels' gutter
AXIS_PX = 22                    # the time ruler's height
TICKS_MAX = 14
NO_NODE = "(no node)"

_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }} timeline</title>
<style>
body{font:12px system-ui,sans-serif;margin:12px;color:#222}
#wrap{position:relative;overflow:auto;max-height:80vh;border:1px solid #ccc}
#canvas{position:relative;width:{{ width }}px}
#axis{position:sticky;top:0;height:{{ axis }}px;background:#fafafa;border-bottom:1px solid #bbb;z-index:7;width:{{ width }}px}
.tick{position:absolute;top:0;height:{{ axis }}px;border-left:1px solid #999;font-size:10px;padding-left:2px;color:#444}
.grid{position:absolute;top:0;width:0;border-left:1px dotted #ddd;height:100%}
.lane{position:absolute;left:0;height:{{ lane }}px;border-bottom:1px solid #f0f0f0;width:100%}
.lbl{position:sticky;left:0;display:inline-block;font-size:10px;color:#555;width:{{ left - 4 }}px;overflow:hidden;white-space:nowrap;background:rgba(255,255,255,.85);z-index:6;padding-left:2px}
.op{position:absolute;height:{{ lane - 4 }}px;border-radius:2px;min-width:2px;opacity:.85}
.ok{background:#43a047}.fail{background:#e53935}.info{background:#fb8c00}.open{background:#9e9e9e}
.anom{outline:2px solid #d50000;outline-offset:1px;opacity:1;z-index:4}
.anom::after{content:"\\25BC";position:absolute;top:-11px;left:0;font-size:9px;color:#d50000}
.fault{position:absolute;top:0;height:100%;opacity:.18}
#tip{position:fixed;background:#fff;border:1px solid #999;padding:4px 6px;display:none;
     font-family:monospace;white-space:pre;pointer-events:none;z-index:9}
.legend span{display:inline-block;padding:1px 6px;margin-right:6px;color:#fff;border-radius:2px}
.sel{outline:3px solid #000;outline-offset:1px;opacity:1;z-index:5}
#anomalies{border:1px solid #e57373;background:#fff5f5;padding:4px 8px;margin:6px 0}
#anomalies li{margin:2px 0}
#anomalies a{margin-right:4px}
{% if messages_link %}.op{cursor:pointer}{% endif %}
</style></head><body>
<h2>{{ title }}</h2>
{% if messages_link %}<p><a href="messages.html">messages.html</a>: the message diagram (click an
operation to see its messages)</p>{% endif %}
<p>{{ summary }}</p>
{% if truncated %}<p><b>Showing the first {{ shown }} of {{ total }} operations</b>
(limit {{ limit }}); the full history is history.jsonl.</p>{% endif %}
{% if anomalies %}<div id="anomalies"><b>Anomalies</b> (their operations are framed in red){% if anomalies_more %};
{{ anomalies_more }} more are in results.json{% endif %}:
<ul>{% for a in anomalies %}<li class="anomaly"><b>{{ a.name }}</b>: {{ a.message }}
{% for o in a.links %}<a class="oplink" href="#op={{ o }}">op {{ o }}</a>{% endfor %}{% if a.more %} and {{ a.more }} more{% endif %}</li>{% endfor %}</ul></div>{% endif %}
<p class="legend"><span class="ok">ok</span><span class="fail">fail</span>
<span class="info">info</span><span class="open">no completion</span>
{% for f in faults %}<span style="background:{{ f.color }}">{{ f.name }}</span>{% endfor %}
<label><input type="checkbox" id="bynode"> lanes per node</label></p>
<div id="wrap"><div id="axis">{% for t in ticks %}<span class="tick" style="left:{{ t.x }}px">{{ t.label }}</span>{% endfor %}</div>
<div id="canvas">
{% for t in ticks %}<div class="grid" style="left:{{ t.x }}px"></div>{% endfor %}
{% for f in fault_boxes %}<div class="fault" style="left:{{ f.x }}px;width:{{ f.w }}px;background:{{ f.color }}" title="{{ f.title }}"></div>{% endfor %}
</div></div>
<div id="tip"></div>
<script>
const OPS = {{ ops_json }};
const LANES = {{ lanes_json }};
const LANE = {{ lane }};
const canvas = document.getElementById('canvas'), tip = document.getElementById('tip');
const bynode = document.getElementById('bynode');
const bars = [];
const frag = document.createDocumentFragment();
OPS.forEach((o, i) => {
  const d = document.createElement('div');
  d.className = 'op ' + o.c + (o.a ? ' anom' : ''); d.style.left = o.x + 'px';
  d.style.width = o.w + 'px'; d.dataset.i = i; frag.appendChild(d); bars.push(d);
});
canvas.appendChild(frag);
const laneDivs = [];
function layout(mode) {
  const names = LANES[mode], key = mode === 'node' ? 'n' : 'p';
  laneDivs.forEach(d => d.remove()); laneDivs.length = 0;
  names.forEach((n, k) => {
    const l = document.createElement('div'); l.className = 'lane'; l.style.top = (k * LANE) + 'px';
    const s = document.createElement('span'); s.className = 'lbl'; s.textContent = n; s.title = n;
    l.appendChild(s); canvas.insertBefore(l, canvas.firstChild); laneDivs.push(l);
  });
  canvas.style.height = (Math.max(1, names.length) * LANE) + 'px';
  OPS.forEach((o, i) => { bars[i].style.top = (o[key] * LANE + 2) + 'px'; });
  document.body.dataset.lanes = mode;
  bynode.checked = mode === 'node';
}
bynode.addEventListener('change', () => { layout(bynode.checked ? 'node' : 'process'); showOp(); });
{% if messages_link %}canvas.addEventListener('click', e => {
  const i = e.target.dataset && e.target.dataset.i;
  if (i !== undefined) location.href = 'messages.html#op=' + OPS[i].i;
});{% endif %}
const FIRST_ANOMALY = {{ first_anomaly }};
function showOp() {
  const m = /op=([0-9]+)/.exec(location.hash);
  document.querySelectorAll('.sel').forEach(d => d.classList.remove('sel'));
  const n = m ? Number(m[1]) : FIRST_ANOMALY;
  if (n < 0) { document.body.dataset.selected = ''; return; }
  const k = OPS.findIndex(o => o.i === n || o.j === n);
  if (k < 0) { document.body.dataset.selected = ''; return; }
  bars[k].classList.add('sel');
  // Scroll the timeline's own box only (scrollIntoView would also scroll a page embedding it).
  const wrap = document.getElementById('wrap'), b = bars[k];
  wrap.scrollLeft = b.offsetLeft - wrap.clientWidth / 2;
  wrap.scrollTop = {{ axis }} + b.offsetTop - wrap.clientHeight / 2;
  if (window.top === window) wrap.scrollIntoView({block: 'nearest'});
  document.body.dataset.selected = String(OPS[k].i);
}
window.addEventListener('hashchange', showOp);
layout(/lanes=node/.test(location.hash) ? 'node' : 'process');
showOp();
document.body.dataset.anomalyOps = String(OPS.filter(o => o.a).length);
document.body.dataset.ready = '1';
canvas.addEventListener('mousemove', e => {
  const i = e.target.dataset && e.target.dataset.i;
  if (i === undefined) { tip.style.display = 'none'; return; }
  tip.textContent = OPS[i].t; tip.style.display = 'block';
  tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
});
</script></body></html>
"""


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


def _ticks(end_ns: int, scale: float) -> list[dict]:
    """Ruler ticks at a 1-2-5 step in seconds, at most TICKS_MAX of them."""
    end_s = end_ns / 1e9
    raw = max(end_s / TICKS_MAX, 1e-6)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    digits = max(0, -int(math.floor(math.log10(step))))
    out, k = [], 0
    while k * step <= end_s + 1e-12:
        t = k * step
        out.append({"x": LEFT_PX + int(t * 1e9 * scale), "label": f"{t:.{digits}f} s"})
        k += 1
    return out


def read_anomalies(run_dir: str) -> list[dict]:
    """The anomalies of run_dir/results.json as [{name, message (its first line), ops}] (every
    op they name); [] when there is none or the file cannot be read."""
    try:
        with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as fh:
            results = json.load(fh)
    except (OSError, ValueError):
        return []
    out = []
    for a in (results.get("anomalies") if isinstance(results, dict) else None) or []:
        if not isinstance(a, dict):
            continue
        ops = [o for o in a.get("ops") or [] if isinstance(o, int) and not isinstance(o, bool)]
        lines = str(a.get("message") or "").splitlines()
        out.append({"name": str(a.get("name")), "message": lines[0][:300] if lines else "",
                    "ops": ops})
    return out


def render_timeline(history: Sequence[Op], title: str = "splitbrain",
                    messages_link: bool = False, anomalies: Sequence[dict] = ()) -> str:
    """The timeline page as a string (see the module docstring); `messages_link`: a
    messages.html is written next to it (bars link to it); `anomalies`: [{name, message, ops}]
    (read_anomalies) to list and mark."""
    total = sum(1 for op in history if op.process != NEMESIS and op.type == INVOKE)
    end_ns = max((op.time for op in history), default=0) or 1
    scale = (WIDTH_PX - LEFT_PX - 20) / end_ns
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
    bars.sort(key=lambda b: b[0].index)
    processes = sorted({inv.process for inv, _ in bars}, key=lambda p: (str(type(p)), p))
    lane_of = {p: k for k, p in enumerate(processes)}

    def node_of(inv: Op, comp: Op | None) -> str:
        node = comp.node if comp is not None and comp.node else inv.node
        return str(node) if node else NO_NODE

    nodes = sorted({node_of(i, c) for i, c in bars} - {NO_NODE}, key=natural_key)
    if any(node_of(i, c) == NO_NODE for i, c in bars):
        nodes.append(NO_NODE)
    node_lane = {n: k for k, n in enumerate(nodes)}
    named: set[int] = set()
    for a in anomalies:
        named.update(a.get("ops") or ())
    ops = []
    for inv, comp in bars:
        end = comp.time if comp is not None else end_ns
        marked = inv.index in named or (comp is not None and comp.index in named)
        ops.append({"i": inv.index, "j": comp.index if comp is not None else -1,
                    "x": LEFT_PX + int(inv.time * scale),
                    "w": max(2, int((end - inv.time) * scale)),
                    "p": lane_of[inv.process], "n": node_lane[node_of(inv, comp)],
                    "c": comp.type if comp is not None else "open",
                    "t": _describe(inv, comp), "a": 1 if marked else 0})
    # Open at the first anomaly's first operation (the bad one: report/context.py).
    first_anomaly = next((a["ops"][0] for a in anomalies if a.get("ops")), -1)
    intervals = fault_intervals(history)
    names = sorted({i.name for i in intervals})
    fault_boxes = [{"x": LEFT_PX + int(i.start_ns * scale),
                    "w": max(2, int((i.end_ns - i.start_ns) * scale)),
                    "color": fault_color(i.name),
                    "title": f"{fault_label(i.name, i.value)} "
                             f"{i.start_ns / 1e9:.2f}s-{i.end_ns / 1e9:.2f}s"}
                   for i in intervals]
    counts = {"ok": 0, "fail": 0, "info": 0, "open": 0}
    for o in ops:
        counts[o["c"]] += 1
    summary = (f"{total} client operations over {end_ns / 1e9:.2f} s: {counts['ok']} ok, "
               f"{counts['fail']} fail, {counts['info']} info, {counts['open']} without completion;"
               f" {len(intervals)} fault intervals.")
    listed = [{"name": a.get("name"), "message": a.get("message"),
               "links": list(a.get("ops") or [])[:ANOMALY_LINKS_MAX],
               "more": max(0, len(a.get("ops") or []) - ANOMALY_LINKS_MAX)}
              for a in list(anomalies)[:ANOMALIES_LISTED_MAX]]

    def script_json(value: Any) -> Markup:
        # JSON inside a <script>: escape "</" so no value can close the tag.
        return Markup(json.dumps(value).replace("</", "<\\/"))

    env = Environment(autoescape=True)
    return env.from_string(_TEMPLATE).render(
        title=title, summary=summary, truncated=len(bars) < total, shown=len(bars), total=total,
        limit=TIMELINE_OPS_MAX, width=WIDTH_PX, left=LEFT_PX, axis=AXIS_PX, lane=LANE_PX,
        ticks=_ticks(end_ns, scale), faults=[{"name": n, "color": fault_color(n)} for n in names],
        fault_boxes=fault_boxes, ops_json=script_json(ops),
        lanes_json=script_json({"process": [str(p) for p in processes], "node": nodes}),
        messages_link=messages_link, anomalies=listed,
        anomalies_more=max(0, len(anomalies) - len(listed)), first_anomaly=int(first_anomaly))


def write_timeline(out_dir: str, history: Sequence[Op], title: str = "splitbrain",
                   messages_link: bool = False) -> str:
    """Write out_dir/timeline.html, marking the anomalies of out_dir/results.json."""
    path = os.path.join(out_dir, "timeline.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_timeline(history, title, messages_link, read_anomalies(out_dir)))
    return path
