"""messages.html: the message diagram of a run (a Lamport diagram, like Maelstrom's messages.svg).

    write_messages(run_dir, history, test)   # reads run_dir/messages.jsonl, writes messages.html

One vertical lane per client, node and service, time running down; one arrow per message from its
send to its receipt, labelled with the body's `type`. Messages that never arrived end in a cross:
`dropped` (partition or loss) half-way to their destination, `lost` (destination down) at the
destination's lane, `unknown-dest` at a lane "?" (the name they were sent to is kept), `pending`
(in flight at teardown) dashed to the end of the run. Client operations are bars on their client's
lane (invoke to completion, green ok, red fail, orange info, grey never completed), linked to their
messages by the message log's `op` field (the history index of the invoke). The nemesis's fault
intervals are shaded across the diagram, and darker on the lanes they target (a partition's sides
in different colours, as grouped by its grudge; killed, paused or clock-skewed nodes), with a
caption such as "partition halves: n1 n2 | n3 n4 n5" or "kill n3".

The page is one self-contained file (no network access): the data is embedded as gzip-compressed
JSON (base64) and drawn on a canvas by the page's script, which renders only the visible time
window, so runs of 25 nodes and 100k+ messages stay usable. Zoom (Ctrl+wheel, +/-), pan (wheel,
drag), filters by lane, message type, fate and control traffic, and a focus on the messages of
one lane; hovering shows a message or an
operation, clicking pins it with the whole body. `messages.html#op=N` opens at the operation whose
invoke or completion is history index N (zoomed to it, its messages highlighted); `#t=2.5` at 2.5 s
since the start (`#t=2.5&w=0.1` with a 0.1 s window); `#msg=ID` at a message. Operations link to
`timeline.html#op=N` and the timeline links back.

Bounds (never a silent cut, the page says what it left out): at most DIAGRAM_MESSAGES_MAX messages
(the first in send order), a body's JSON longer than BODY_CHARS_MAX characters is shortened (the
whole one stays in messages.jsonl), at most ANOMALIES_MAX anomalies are listed. Unreadable lines of
messages.jsonl are skipped, counted and named on the page.

Decisions: client lanes are per client *worker* when test.json gives the concurrency (a worker goes
on under a new process and client id after an `info`, as Jepsen's do, so per-id lanes would grow
without bound with timeouts): lane "c3" carries c3, c3+C, c3+2C, ... The harness's own client c0
(control traffic, `"control": true`) has a lane of its own and can be hidden. Times on the page are
the history's clock in microseconds.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson
from jinja2 import Environment, FileSystemLoader

from ...history.op import INVOKE, NEMESIS, Op
from .colors import fault_color
from .intervals import fault_intervals

DIAGRAM_MESSAGES_MAX = 1_000_000   # messages drawn (the first in send order)
BODY_CHARS_MAX = 2_000             # a body's JSON beyond this is shortened on the page
OP_TEXT_CHARS_MAX = 400            # an operation's value/result text on the page
ANOMALIES_MAX = 200                # anomalies listed on the page
SKIPPED_SHOWN_MAX = 5              # unreadable lines named on the page (all are counted)
GZIP_LEVEL = 6

FATES = ("delivered", "dropped", "lost", "unknown-dest", "pending")
SERVICES = ("lin-kv", "seq-kv", "lww-kv", "lin-tso")   # Maelstrom's service names
UNKNOWN_LANE = "?"
CONTROL_CLIENT = "c0"
OP_KINDS = ("ok", "fail", "info", "open")

_CLIENT_RE = re.compile(r"^c(\d+)$")
_DATA_RE = re.compile(r'<script id="diagram-data" type="application/octet-stream">'
                      r'([A-Za-z0-9+/=\s]*)</script>')
_TEMPLATES = Path(__file__).with_name("templates")


class MessageLogError(ValueError):
    """messages.jsonl cannot be read at all (not a file, not text)."""


@dataclass
class MessageLog:
    """The readable part of a messages.jsonl, in compact columns (a run's log can hold millions
    of messages: about 60 bytes a message plus its body's JSON, not a dict per message).

    Row k: `ids[k]`; `src[k]`/`dest[k]` are codes into `names`; `sent[k]`/`recv[k]` ns (`recv`
    meaningful only when delivered); `fate[k]` the index in FATES; `op[k]` the history index of
    the operation's invoke or -1; `control[k]` 0/1; `type[k]` a code into `types`; `bodies[k]`
    the body's JSON text (shortened past BODY_CHARS_MAX). Rows are in file order.
    `skipped` counts lines that were not valid records and `skipped_examples` names the first few
    (`line N: reason`); `harness_truncated` is the `logged` count of the harness's own truncation
    marker (harness.message_log_max), None if none; `cut` counts the lines beyond the reader's
    limit (counted, not decoded).
    """

    ids: array = field(default_factory=lambda: array("q"))
    src: array = field(default_factory=lambda: array("i"))
    dest: array = field(default_factory=lambda: array("i"))
    sent: array = field(default_factory=lambda: array("q"))
    recv: array = field(default_factory=lambda: array("q"))
    fate: bytearray = field(default_factory=bytearray)
    op: array = field(default_factory=lambda: array("q"))
    control: bytearray = field(default_factory=bytearray)
    type: array = field(default_factory=lambda: array("i"))
    bodies: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    harness_truncated: int | None = None
    cut: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fine(rec: Any) -> bool:
    """The common case of _problem, fast: a well-formed delivered or undelivered record."""
    return (type(rec) is dict and type(rec.get("src")) is str and type(rec.get("dest")) is str
            and type(rec.get("sent")) is int and type(rec.get("body", {})) is dict
            and type(rec.get("op", 0)) is int
            and ((rec.get("fate") == "delivered" and type(rec.get("recv")) is int)
                 or rec.get("fate") in FATES[1:]) and rec["src"] != "" and rec["dest"] != "")


def _problem(rec: Any) -> str | None:
    """Why a decoded line is not a message record (None when it is one).

    What a node wrote is drawn as it is: a `src`/`dest` that is not a string (a node's mistake
    the harness logs as unknown-dest) becomes its JSON text, a body that is not an object is
    shown with the type "(not an object)". So this normalizes those two in place."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    for k in ("src", "dest"):
        if rec.get(k) is None or rec.get(k) == "":
            return f"'{k}' is missing"
        if not isinstance(rec[k], str):
            rec[k] = json.dumps(rec[k], default=str)
    if not _is_int(rec.get("sent")) and not isinstance(rec.get("sent"), float):
        return "'sent' must be a number (ns)"
    fate = rec.get("fate")
    if fate not in FATES:
        return f"'fate' must be one of {', '.join(FATES)}, got {fate!r}"
    recv = rec.get("recv")
    if fate == "delivered" and not (_is_int(recv) or isinstance(recv, float)):
        return "a delivered message needs 'recv' (ns)"
    if rec.get("op") is not None and not _is_int(rec.get("op")):
        return "'op' must be a history index"
    return None


def _decode(line: str) -> Any:
    """orjson (fast) for the common case; json for what only it reads (NaN, Infinity)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def read_message_log(path: str | os.PathLike, limit: int = DIAGRAM_MESSAGES_MAX) -> MessageLog:
    """Read messages.jsonl (format: contracts.md); bad lines are counted, never fatal.

    Raises MessageLogError only when the file cannot be opened or is not UTF-8 text.
    """
    log = MessageLog()
    name_code: dict[str, int] = {}
    type_code: dict[str, int] = {}
    try:
        fh = open(path, "r", encoding="utf-8")
    except OSError as e:
        raise MessageLogError(f"{path}: cannot read ({e.strerror or e})") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if len(log) >= limit and '"truncated"' not in line:
                    log.cut += 1        # past the limit lines are counted, not decoded
                    continue
                try:
                    rec = _decode(line)
                except ValueError as e:
                    why: str | None = f"not JSON ({getattr(e, 'msg', e)})"
                else:
                    if _fine(rec):
                        why = None
                    elif isinstance(rec, dict) and rec.get("truncated") is True:
                        logged = rec.get("logged")
                        log.harness_truncated = logged if _is_int(logged) else lineno - 1
                        continue
                    else:
                        why = _problem(rec)
                if why is not None:
                    log.skipped += 1
                    if len(log.skipped_examples) < SKIPPED_SHOWN_MAX:
                        log.skipped_examples.append(f"line {lineno}: {why}")
                    continue
                if len(log) >= limit:
                    log.cut += 1
                    continue
                _append(log, rec, name_code, type_code)
        except UnicodeDecodeError as e:
            raise MessageLogError(f"{path}: not UTF-8 text ({e.reason})") from None
    return log


def _natural(name: str) -> tuple:
    """n2 before n10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def _short(value: Any, limit: int) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _code(table: dict[str, int], names: list[str], name: str) -> int:
    k = table.get(name)
    if k is None:
        k = table[name] = len(names)
        names.append(name)
    return k


def _append(log: MessageLog, rec: dict, name_code: dict[str, int],
            type_code: dict[str, int]) -> None:
    """One valid record into the log's columns."""
    body = rec.get("body", {})
    typ = body.get("type", "?") if type(body) is dict else "(not an object)"
    if type(typ) is not str:
        typ = json.dumps(typ, default=str)
    fate = rec["fate"]
    mid = rec.get("id")
    op = rec.get("op")
    log.ids.append(mid if type(mid) is int else len(log.ids))
    log.src.append(_code(name_code, log.names, rec["src"]))
    log.dest.append(_code(name_code, log.names, rec["dest"]))
    log.sent.append(int(rec["sent"]))
    log.recv.append(int(rec["recv"]) if fate == "delivered" else 0)
    log.fate.append(FATES.index(fate))
    log.op.append(op if type(op) is int and op >= 0 else -1)
    log.control.append(1 if rec.get("control") else 0)
    log.type.append(_code(type_code, log.types, typ))
    log.bodies.append(_body_json(body).decode("utf-8"))   # str: orjson's bytes keep 1 KiB


def _body_json(body: Any) -> bytes:
    """The body as the page shows it: its JSON, or past BODY_CHARS_MAX characters its head.
    Non-finite numbers become null (the browser's JSON has none); integers beyond 64 bits (which
    orjson cannot write) go through json."""
    try:
        text = orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        try:
            text = json.dumps(body, default=str, allow_nan=False).encode("utf-8")
        except ValueError:
            text = b'"(a body with numbers the page cannot show: see messages.jsonl)"'
    if len(text) <= BODY_CHARS_MAX:
        return text
    head = text.decode("utf-8", "replace")
    return orjson.dumps({"type": body.get("type") if isinstance(body, dict) else "(not an object)",
                         "(shortened)": f"{len(head)} chars of JSON; the whole body is in "
                                        "messages.jsonl",
                         "head": head[:BODY_CHARS_MAX]}, default=str)


class _Lanes:
    """Lane names in display order: c0, client workers, nodes, services, '?'."""

    def __init__(self, concurrency: int | None, nodes: Sequence[str]):
        self.concurrency = concurrency if concurrency and concurrency > 0 else None
        self.clients: set[str] = set()
        self.client_ids: dict[str, set[str]] = {}
        self.nodes: set[str] = set(nodes)
        self.services: set[str] = set()
        self.unknown = False

    def client_lane(self, cid: str) -> str:
        m = _CLIENT_RE.match(cid)
        assert m is not None, cid
        n = int(m.group(1))
        if n == 0 or self.concurrency is None:
            lane = cid
        else:
            lane = f"c{(n - 1) % self.concurrency + 1}"
        self.clients.add(lane)
        ids = self.client_ids.setdefault(lane, set())
        if len(ids) < 50:
            ids.add(cid)
        return lane

    def lane(self, name: str) -> str:
        if _CLIENT_RE.match(name):
            return self.client_lane(name)
        if name in SERVICES:
            self.services.add(name)
        else:
            self.nodes.add(name)
        return name

    def order(self) -> list[tuple[str, str]]:
        out = [(c, "client") for c in sorted(self.clients, key=_natural)]
        out += [(n, "node") for n in sorted(self.nodes, key=_natural)]
        out += [(s, "service") for s in SERVICES if s in self.services]
        if self.unknown:
            out.append((UNKNOWN_LANE, "unknown"))
        return out


def _fault_targets(value: Any, lane_index: dict[str, int]) -> list[list[int]]:
    """[[lane, group], ...] the fault acts on: a partition's sides (nodes grouped by the set of
    nodes they drop), or the nodes of a kill/pause/clock skew; [] for a network-wide fault."""
    if not isinstance(value, dict):
        if isinstance(value, list):
            return [[lane_index[n], 0] for n in value if isinstance(n, str) and n in lane_index]
        return []
    grudge = value.get("grudge")
    if isinstance(grudge, dict):
        groups: dict[tuple, int] = {}
        out = []
        for node in sorted(grudge, key=_natural):
            dropped = grudge[node]
            if node not in lane_index or not isinstance(dropped, list):
                continue
            key = tuple(sorted(map(str, dropped)))
            out.append([lane_index[node], groups.setdefault(key, len(groups))])
        return out
    for k in ("nodes", "offsets_ms"):
        v = value.get(k)
        if isinstance(v, (list, dict)):
            return [[lane_index[n], 0] for n in v if isinstance(n, str) and n in lane_index]
    return []


def _fault_label(name: str, value: Any, targets: list[list[int]],
                 order: list[tuple[str, str]]) -> str:
    """A short caption: "partition halves: n1 n2 | n3 n4 n5", "kill n3", "loss {...}"."""
    label = name
    if isinstance(value, dict) and isinstance(value.get("shape"), str):
        label += " " + value["shape"]
    if targets:
        groups: dict[int, list[str]] = {}
        for lane, g in targets:
            groups.setdefault(g, []).append(order[lane][0])
        label += (": " if name == "partition" else " ") + " | ".join(
            " ".join(ns) for _, ns in sorted(groups.items()))
    elif isinstance(value, dict) and value.get("grudge") == {}:
        label += ": nobody cut off"            # a shape that drops nothing for this cluster
    elif value is not None and not (isinstance(value, dict) and set(value) <= {"shape"}):
        label += " " + _short(value, 80)
    return label[:200]


ANOMALY_OPS_MAX = 20        # operations of one anomaly drawn in the diagram


def _read_anomalies(run_dir: str) -> list[dict]:
    """Anomalies of results.json that name operations (the timeline's reader), each with at
    most ANOMALY_OPS_MAX of its operations."""
    from .timeline import read_anomalies
    return [{**a, "ops": a["ops"][:ANOMALY_OPS_MAX]} for a in read_anomalies(run_dir)]


def build_diagram_data(log: MessageLog, history: Sequence[Op], test: dict | None = None,
                       anomalies: Sequence[dict] = ()) -> dict:
    """The page's data: compact columns, times in microseconds of the history's clock.

    Keys: lanes [[name, kind, tooltip]], types [name], msgs {id, s, d, t0, t1, f, y, o, c}
    (parallel arrays sorted by send time: lane of src and dest, sent, recv or -1, fate index in
    FATES, type index, op invoke index or -1, control 0/1), bodies (parallel), xdest {row: name}
    (unknown destinations), ops {i, j, l, t0, t1, k, f, d} (invoke index, completion index or -1,
    lane, times, kind index in OP_KINDS, f, text), faults [{name, t0, t1, value, targets}], nemesis
    [[index, t]], anomalies, start and end (µs; start is 0 or the first message's send time,
    negative for the init handshake logged before the history's clock started), notes [text],
    counts.
    """
    test = test or {}
    concurrency = test.get("concurrency")
    # The runner records the node ids as "node_ids" ("nodes" is their number there).
    nodes = next((v for v in (test.get("node_ids"), test.get("nodes")) if isinstance(v, list)), [])
    lanes = _Lanes(concurrency if _is_int(concurrency) else None,
                   [n for n in nodes if isinstance(n, str)])

    n = len(log)
    names = log.names
    client_code = [bool(_CLIENT_RE.match(name)) for name in names]
    rows: Sequence[int] = range(n)
    sent = log.sent
    if any(sent[k] > sent[k + 1] for k in range(n - 1)):
        # Lines are written when a message's fate is known; the page needs send-time order.
        rows = sorted(rows, key=sent.__getitem__)
    # Client operations and the client that sent them.
    op_client: dict[int, str] = {}
    for k in range(n):
        o = log.op[k]
        if o >= 0 and o not in op_client:
            for end in (log.src[k], log.dest[k]):
                if client_code[end]:
                    op_client[o] = names[end]
                    break
    pending: dict[Any, Op] = {}
    pairs: list[tuple[Op, Op | None]] = []
    nemesis: list[list[int]] = []
    end_ns = 0
    for op in history:
        end_ns = max(end_ns, op.time)
        if op.process == NEMESIS:
            nemesis.append([op.index, op.time // 1000])
            continue
        if op.type == INVOKE:
            pending[op.process] = op
        elif op.process in pending:
            pairs.append((pending.pop(op.process), op))
    pairs.extend((inv, None) for inv in pending.values())
    pairs.sort(key=lambda p: p[0].index)
    delivered = FATES.index("delivered")
    unknown = FATES.index("unknown-dest")
    if n:
        end_ns = max(end_ns, max(sent), max((log.recv[k] for k in range(n)
                                             if log.fate[k] == delivered), default=0))

    # Lanes: every endpoint, every op's client.
    used = set(log.src) | {log.dest[k] for k in range(n) if log.fate[k] != unknown}
    lanes.unknown = unknown in log.fate
    lane_of_code = {c: lanes.lane(names[c]) for c in sorted(used, key=lambda c: _natural(names[c]))}
    op_lane_name: list[str] = []
    for inv, _ in pairs:
        # A client process p speaks as "c<p+1>" (client.py); client processes are integers.
        cid = op_client.get(inv.index) or f"c{int(inv.process) + 1}"
        op_lane_name.append(lanes.client_lane(cid) if _CLIENT_RE.match(cid) else lanes.lane(cid))
    order = lanes.order()
    lane_index = {name: k for k, (name, _) in enumerate(order)}
    lane_rows = []
    for name, kind in order:
        tip = kind
        if kind == "client":
            ids = sorted(lanes.client_ids.get(name, ()), key=_natural)
            tip = ("harness control client" if name == CONTROL_CLIENT
                   else "client ids " + ", ".join(ids[:12]) + (" ..." if len(ids) > 12 else ""))
        elif kind == "unknown":
            tip = "messages to unknown destinations"
        lane_rows.append([name, kind, tip])

    # The message columns, in send-time order, as compact arrays (encode_data writes them).
    lane_no = [lane_index[lane_of_code[c]] if c in lane_of_code else -1 for c in range(len(names))]
    unknown_lane = lane_index.get(UNKNOWN_LANE, -1)
    fate, recv = log.fate, log.recv
    xdest: dict[int, str] = {}
    for row, k in enumerate(rows):
        if fate[k] == unknown:
            xdest[row] = names[log.dest[k]]
    t0 = array("q", (sent[k] // 1000 for k in rows))
    cols = {
        "id": array("q", (log.ids[k] for k in rows)),
        "s": array("i", (lane_no[log.src[k]] for k in rows)),
        "d": array("i", (lane_no[log.dest[k]] if fate[k] != unknown else unknown_lane
                         for k in rows)),
        "t0": t0,
        "t1": array("q", (max(t, recv[k] // 1000) if fate[k] == delivered else -1
                          for t, k in zip(t0, rows))),
        "f": array("b", (fate[k] for k in rows)),
        "y": array("i", (log.type[k] for k in rows)),
        "o": array("q", (log.op[k] for k in rows)),
        "c": array("b", (log.control[k] for k in rows)),
    }
    bodies = [log.bodies[k] for k in rows]
    fate_counts = {f: fate.count(k) for k, f in enumerate(FATES)}

    ocols: dict[str, list] = {k: [] for k in ("i", "j", "l", "t0", "t1", "k", "f", "d")}
    kind_counts = dict.fromkeys(OP_KINDS, 0)
    for (inv, comp), lane in zip(pairs, op_lane_name):
        kind = comp.type if comp is not None else "open"
        kind_counts[kind] += 1
        ocols["i"].append(inv.index)
        ocols["j"].append(comp.index if comp is not None else -1)
        ocols["l"].append(lane_index[lane])
        ocols["t0"].append(inv.time // 1000)
        ocols["t1"].append(comp.time // 1000 if comp is not None else -1)
        ocols["k"].append(OP_KINDS.index(kind))
        ocols["f"].append(inv.f)
        text = [f"process {inv.process}: {inv.f} {_short(inv.value, OP_TEXT_CHARS_MAX)}"
                + (f" key={_short(inv.key, 80)}" if inv.key is not None else "")]
        if comp is not None:
            text.append(f"{comp.type} {_short(comp.value, OP_TEXT_CHARS_MAX)}"
                        + (f" node={comp.node}" if comp.node else "")
                        + (f" error={comp.error}" if comp.error else ""))
        ocols["d"].append("\n".join(text))

    faults = []
    for iv in fault_intervals(history):
        targets = _fault_targets(iv.value, lane_index)
        faults.append({"name": iv.name, "t0": iv.start_ns // 1000, "t1": iv.end_ns // 1000,
                       "value": _short(iv.value, 600), "targets": targets,
                       "label": _fault_label(iv.name, iv.value, targets, order),
                       "color": fault_color(iv.name)})

    notes = []
    if log.harness_truncated is not None:
        notes.append(f"The harness stopped logging messages after {log.harness_truncated} "
                     "(harness.message_log_max); later messages are not drawn.")
    if log.cut:
        notes.append(f"Only the first {n} messages are drawn (limit "
                     f"{DIAGRAM_MESSAGES_MAX}); {log.cut} more lines are in messages.jsonl.")
    if log.skipped:
        notes.append(f"{log.skipped} unreadable lines of messages.jsonl skipped: "
                     + "; ".join(log.skipped_examples) + (" ..." if log.skipped > len(
                         log.skipped_examples) else ""))
    listed = list(anomalies)[:ANOMALIES_MAX]
    if len(anomalies) > len(listed):
        notes.append(f"{len(anomalies)} anomalies; the first {len(listed)} are listed "
                     "(all are in results.json).")
    return {"lanes": lane_rows, "types": list(log.types), "msgs": cols, "bodies": bodies,
            "xdest": xdest, "ops": ocols, "faults": faults, "nemesis": nemesis,
            "anomalies": listed, "start": min(0, min(sent, default=0)) // 1000,
            "end": end_ns // 1000,
            "notes": notes,
            "counts": {"messages": n, "fates": fate_counts, "ops": kind_counts}}


def _json_chunks(data: dict):
    """The data's JSON in pieces (the message columns and bodies without one big copy)."""
    yield b"{"
    for k, (key, value) in enumerate(data.items()):
        yield (b"," if k else b"") + orjson.dumps(key) + b":"
        if key == "msgs":
            yield b"{" + b",".join(orjson.dumps(name) + b":" + orjson.dumps(col.tolist())
                                   for name, col in value.items()) + b"}"
        elif key == "bodies":
            yield b"["
            for start in range(0, len(value), 10_000):
                yield ((b"," if start else b"")
                       + ",".join(value[start:start + 10_000]).encode("utf-8"))
            yield b"]"
        else:
            yield orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    yield b"}"


def data_json(data: dict) -> dict:
    """The data as the page decodes it (for tests and tools)."""
    return json.loads(b"".join(_json_chunks(data)))


def encode_data(data: dict) -> str:
    """The embedded form: base64 of gzip'd JSON (no '<' can occur, so it cannot end the script).

    Non-finite numbers (NaN, Infinity: not JSON, the browser could not parse them) become null.
    """
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)      # 31: the gzip format
    out = [z.compress(chunk) for chunk in _json_chunks(data)]
    out.append(z.flush())
    return base64.b64encode(b"".join(out)).decode("ascii")


def extract_data(page: str) -> dict:
    """The data embedded in a messages.html page (inverse of encode_data; for tests and tools)."""
    m = _DATA_RE.search(page)
    if m is None:
        raise ValueError("no diagram data in this page")
    return json.loads(gzip.decompress(base64.b64decode("".join(m.group(1).split()))))


def render_messages(log: MessageLog, history: Sequence[Op], test: dict | None = None,
                    anomalies: Sequence[dict] = (), title: str = "splitbrain") -> str:
    """The page as a string (see the module docstring)."""
    data = build_diagram_data(log, history, test, anomalies)
    c = data["counts"]
    end_s = data["end"] / 1e6
    summary = (f"{c['messages']} messages over {end_s:.2f} s ("
               + ", ".join(f"{n} {f}" for f, n in c["fates"].items() if n) + "); "
               f"{sum(c['ops'].values())} client operations; {len(data['faults'])} fault "
               f"intervals; {len(data['lanes'])} lanes.")
    env = Environment(loader=FileSystemLoader(str(_TEMPLATES)), autoescape=True)
    return env.get_template("messages.html.j2").render(
        title=title, summary=summary, notes=data["notes"], data_b64=encode_data(data))


def diagram_link(run_dir: str | os.PathLike | None, ops: Any) -> str | None:
    """`file:///.../messages.html#op=N` for the first operation an anomaly names, when run_dir has
    a messages.html (None otherwise): the summary prints it under the anomaly."""
    if not run_dir or not isinstance(ops, list) or not ops or not _is_int(ops[0]):
        return None
    page = Path(run_dir, "messages.html").resolve()
    if not page.is_file():
        return None
    return f"{page.as_uri()}#op={ops[0]}"


def write_messages(run_dir: str, history: Sequence[Op], test: dict | None = None,
                   title: str = "splitbrain") -> str | None:
    """Write run_dir/messages.html from run_dir/messages.jsonl; None when there is no log."""
    src = os.path.join(run_dir, "messages.jsonl")
    if not os.path.isfile(src):
        return None
    log = read_message_log(src)
    page = render_messages(log, history, test, _read_anomalies(run_dir), title)
    path = os.path.join(run_dir, "messages.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, path)
    return path
