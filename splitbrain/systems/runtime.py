"""The process runtime: runs one in-house protocol core as an OS process speaking the node protocol.

`python -m splitbrain.systems.node --system raft --data DIR` is a Maelstrom node: newline-delimited
JSON envelopes `{"src", "dest", "body"}` on a transport (stdin/stdout by default), logs on stderr,
the `init`/`init_ok` handshake, after which the core is built with the node ids and recovered from
the records in its data directory.

Durable state (DurableLog): `DIR/records.log`, an append-only file of framed records, one a line:

    <crc32 of the JSON, 8 hex digits><flag> <canonical JSON>\\n

`flag` is `S` when the record was covered by an fsync and `U` when it was written by a Ready with
`sync=False` and no fsync has happened since. The durability order of core.py is kept: every record
of a batch of Readies is written (and fsynced when any of them asks for it) BEFORE any message of
that batch leaves (group commit: the messages of Ready 1 wait for the one fsync covering Readies
1..k). On start the file is scanned; the first record that is torn (no final newline), fails its
checksum, or is not JSON ends the log: the file is cut there, and the cut is logged.

The lost-unsynced-writes fault (`cut_to_last_sync`) cuts the file after its last `S` record: what a
machine crash does to writes that were only in the page cache.

Clock: `now_ms` handed to the core is the monotonic clock plus an offset that the harness sets with
a control message `{"type": "splitbrain_clock", "offset_ms": n}` (answered
`splitbrain_clock_ok`); the offset is also saved in `DIR/clock_offset_ms` so that it survives a
restart, like a skewed hardware clock. Ticks are delivered every TICK_MS of real time.

Local reads: `{"type": "splitbrain_local_read", "op": {"type": "read", ...}}` is answered from the
node's own state machine (no protocol round): the final phase's "this node's committed state".

Status: `{"type": "status"}` is answered by the runtime from `core.status()` plus `is_leader`, so
the leader-isolating nemesis can find the leader.

Transports are pluggable (Transport): StdioTransport now; a TCP transport implements the same three
methods.
"""

from __future__ import annotations

import json
import os
import random
import select
import sys
import time
import zlib
from typing import Any, Protocol

from .core import Core, Ready
from .machines import canonical_json, make_machine

TICK_MS = 10
RECORDS_FILE = "records.log"
CLOCK_FILE = "clock_offset_ms"
BOOTS_FILE = "boots"
READ_CHUNK_BYTES = 1 << 16
LINE_BYTES_MAX = 64 << 20    # a single envelope larger than this is a protocol error
CONTROL_CLOCK = "splitbrain_clock"
CONTROL_LOCAL_READ = "splitbrain_local_read"
LOGGED_STATE = ("role", "term", "leader", "view", "epoch", "ballot", "primary", "status", "mode")


# ---- durable storage ------------------------------------------------------------------------

def frame(record: dict, synced: bool) -> bytes:
    data = canonical_json(record).encode()
    return b"%08x%s %s\n" % (zlib.crc32(data), b"S" if synced else b"U", data)


def scan(raw: bytes) -> tuple[list[dict], int, int, str | None]:
    """Parse framed records. Returns (records, good_end, last_sync_end, why_stopped).

    `good_end` is the byte offset just after the last valid record; `last_sync_end` the offset
    just after the last valid `S` record; `why_stopped` is None when the whole input was valid.
    """
    records: list[dict] = []
    pos = 0
    last_sync_end = 0
    n = len(raw)
    while pos < n:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            return records, pos, last_sync_end, f"torn record at byte {pos} (no newline)"
        line = raw[pos:nl]
        if len(line) < 10 or line[9:10] != b" " or line[8:9] not in (b"S", b"U"):
            return records, pos, last_sync_end, f"malformed frame at byte {pos}"
        data = line[10:]
        try:
            crc = int(line[:8], 16)
        except ValueError:
            return records, pos, last_sync_end, f"malformed checksum at byte {pos}"
        if zlib.crc32(data) != crc:
            return records, pos, last_sync_end, f"checksum mismatch at byte {pos}"
        try:
            rec = json.loads(data)
        except ValueError:
            return records, pos, last_sync_end, f"bad JSON at byte {pos}"
        records.append(rec)
        pos = nl + 1
        if line[8:9] == b"S":
            last_sync_end = pos
    return records, pos, last_sync_end, None


def cut_to_last_sync(path: str) -> int:
    """Truncate a records file after its last fsynced record; returns the bytes removed.

    Used by the lost-unsynced-writes nemesis on a killed node (never on a running one).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return 0
    _, good_end, last_sync_end, _ = scan(raw)
    keep = min(good_end, last_sync_end)
    if keep < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
    return len(raw) - keep


class DurableLog:
    """An append-only file of records with fsync; see the module docstring for the format."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1
        self.records_written = 0
        self.fsyncs = 0

    def open(self) -> tuple[list[dict], str | None]:
        """Read every valid record, cut a torn or corrupt tail, and open for appending.

        Returns (records, what_was_cut or None).
        """
        raw = b""
        if os.path.exists(self.path):
            with open(self.path, "rb") as fh:
                raw = fh.read()
        records, good_end, _, why = scan(raw)
        cut = None
        if why is not None:
            cut = f"{why}: cut {len(raw) - good_end} bytes"
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return records, cut

    def append(self, records: list[dict], sync: bool) -> None:
        """Write records (one write call) and fsync them when `sync`. Durable on return if sync."""
        assert self.fd >= 0, "DurableLog.append before open"
        if not records:
            return
        data = b"".join(frame(r, sync) for r in records)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.records_written += len(records)
        if sync:
            os.fsync(self.fd)
            self.fsyncs += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ---- transports -----------------------------------------------------------------------------

class Transport(Protocol):
    """How envelopes reach and leave the node. `receive` returns None once the peer closed."""

    def receive(self, timeout_s: float) -> list[dict] | None: ...

    def send(self, envelopes: list[dict]) -> None: ...

    def close(self) -> None: ...


class StdioTransport:
    """Newline-delimited JSON on stdin/stdout (Maelstrom's transport)."""

    def __init__(self, infd: int = 0, out=None):
        self.infd = infd
        self.out = out if out is not None else sys.stdout.buffer
        self._buf = b""
        self._eof = False

    def receive(self, timeout_s: float) -> list[dict] | None:
        if self._eof:
            return None
        ready, _, _ = select.select([self.infd], [], [], max(0.0, timeout_s))
        if not ready:
            return []
        chunk = os.read(self.infd, READ_CHUNK_BYTES)
        if not chunk:
            self._eof = True
            return None
        self._buf += chunk
        if b"\n" not in chunk:
            if len(self._buf) > LINE_BYTES_MAX:
                raise ValueError(f"an input line exceeds {LINE_BYTES_MAX} bytes")
            return []
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                env = json.loads(line)
            except ValueError:
                log(f"ignoring a line that is not JSON: {line[:200]!r}")
                continue
            if isinstance(env, dict) and isinstance(env.get("body"), dict):
                out.append(env)
            else:
                log(f"ignoring an envelope without a body: {line[:200]!r}")
        return out

    def send(self, envelopes: list[dict]) -> None:
        if not envelopes:
            return
        data = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in envelopes)
        self.out.write(data)
        self.out.flush()

    def close(self) -> None:
        try:
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass


def log(message: str) -> None:
    now = time.time()
    stamp = f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d}"
    print(f"{stamp} {message}", file=sys.stderr, flush=True)


# ---- the runtime ----------------------------------------------------------------------------

class NodeRuntime:
    """Drives one core over a transport with real time and a DurableLog. See the module docstring.

    `system` is a Core class; the core itself is built on `init` (node ids are known only then).
    """

    def __init__(self, system: type[Core], data_dir: str, transport: Transport, *,
                 machine: str = "kv", bugs: frozenset[str] = frozenset(),
                 options: dict[str, Any] | None = None, seed: int = 0):
        self.system = system
        self.data_dir = data_dir
        self.transport = transport
        self.machine = machine
        self.bugs = frozenset(bugs)
        self.options = dict(options or {})
        self.seed = seed
        self.node_id: str | None = None
        self.core: Core | None = None
        self.storage = DurableLog(os.path.join(data_dir, RECORDS_FILE))
        self.clock_offset_ms = self._read_int(CLOCK_FILE, 0)
        self._early: list[dict] = []   # envelopes that arrived before init
        self._next_tick_ms = 0.0
        self._last_describe: dict | None = None

    def _read_int(self, name: str, default: int) -> int:
        try:
            with open(os.path.join(self.data_dir, name)) as fh:
                return int(fh.read().strip() or default)
        except (FileNotFoundError, ValueError):
            return default

    def now_ms(self) -> int:
        return int(time.monotonic() * 1000) + self.clock_offset_ms

    # -- effects --

    def _commit(self, readies: list[tuple[Ready, list[dict]]]) -> None:
        """Group commit: persist every record (fsync if any Ready asks), then send everything."""
        records: list[dict] = []
        sync = False
        out: list[dict] = []
        for ready, extra in readies:
            if ready.persist:
                records.extend(ready.persist)
                sync = sync or ready.sync
            for env in ready.messages:
                out.append({"src": self.node_id, "dest": env.dest, "body": env.body})
            out.extend(extra)
        # THE DURABILITY ORDER: records (and their fsync) before any message of these Readies.
        self.storage.append(records, sync)
        self.transport.send(out)

    def _reply(self, env: dict, body: dict) -> dict:
        req = env["body"]
        if "msg_id" in req:
            body = {**body, "in_reply_to": req["msg_id"]}
        return {"src": self.node_id, "dest": env.get("src"), "body": body}

    def _handle(self, env: dict) -> tuple[Ready, list[dict]]:
        body = env["body"]
        typ = body.get("type")
        assert self.core is not None
        if typ == CONTROL_CLOCK:
            self.clock_offset_ms = int(body.get("offset_ms", 0))
            with open(os.path.join(self.data_dir, CLOCK_FILE), "w") as fh:
                fh.write(str(self.clock_offset_ms))
            log(f"clock offset set to {self.clock_offset_ms} ms")
            return Ready(), [self._reply(env, {"type": "splitbrain_clock_ok",
                                               "offset_ms": self.clock_offset_ms})]
        if typ == "status" and env.get("src") not in self.core.node_ids:
            st = {"type": "status_ok", **self.core.status(), "is_leader": self.core.is_leader(),
                  "clock_offset_ms": self.clock_offset_ms}
            return Ready(), [self._reply(env, st)]
        if typ == CONTROL_LOCAL_READ:
            op = body.get("op")
            if not isinstance(op, dict) or op.get("type") != "read":
                return Ready(), [self._reply(env, {"type": "error", "code": 12,
                                                   "text": "splitbrain_local_read needs a read op"})]
            return Ready(), [self._reply(env, self.core.machine.query(op))]
        if typ == "init":
            return Ready(), [self._reply(env, {"type": "init_ok"})]
        return self.core.step(env.get("src"), body, self.now_ms()), []

    def _init(self, env: dict) -> None:
        body = env["body"]
        node_id, node_ids = body.get("node_id"), body.get("node_ids")
        if not isinstance(node_id, str) or not isinstance(node_ids, list) or node_id not in node_ids:
            raise ValueError(f"bad init message: {body!r}")
        self.node_id = node_id
        os.makedirs(self.data_dir, exist_ok=True)
        boots = self._read_int(BOOTS_FILE, 0) + 1
        with open(os.path.join(self.data_dir, BOOTS_FILE), "w") as fh:
            fh.write(str(boots))
        records, cut = self.storage.open()
        if cut:
            log(f"recovery: {cut}")
        rng = random.Random(f"{self.seed}/{node_id}/{boots}")
        self.core = self.system(node_id, node_ids, make_machine(self.machine), rng,
                                bugs=self.bugs, options=self.options)
        now = self.now_ms()
        ready = self.core.recover(records, now)
        log(f"{node_id}: boot {boots}, recovered {len(records)} records, "
            f"clock offset {self.clock_offset_ms} ms, {self.system.NAME} "
            f"bugs={sorted(self.bugs)} options={self.options}")
        self._commit([(ready, [self._reply(env, {"type": "init_ok"})])])
        self._next_tick_ms = time.monotonic() * 1000 + TICK_MS

    def _log_changes(self) -> None:
        assert self.core is not None
        # Only the slowly changing protocol state: logging every commit would flood the log.
        d = {k: v for k, v in self.core.describe().items() if k in LOGGED_STATE}
        if d != self._last_describe:
            self._last_describe = d
            log(f"{self.node_id}: {json.dumps(d, default=str)[:300]}")

    def run(self) -> int:
        """Serve until the transport closes; returns the process exit code."""
        try:
            while True:
                if self.core is None:
                    envs = self.transport.receive(1.0)
                    if envs is None:
                        return 0
                    for i, env in enumerate(envs):
                        if env["body"].get("type") == "init":
                            self._init(env)
                            self._early.extend(envs[i + 1:])
                            break
                        self._early.append(env)
                    if self.core is not None and self._early:
                        early, self._early = self._early, []
                        self._commit([self._handle(e) for e in early])
                    continue
                wait_ms = self._next_tick_ms - time.monotonic() * 1000
                envs = self.transport.receive(max(0.0, wait_ms) / 1000)
                if envs is None:
                    return 0
                # One receive returns at most READ_CHUNK_BYTES of envelopes: the batch is bounded.
                readies = [self._handle(env) for env in envs]
                mono = time.monotonic() * 1000
                if mono >= self._next_tick_ms:
                    readies.append((self.core.tick(self.now_ms()), []))
                    # Skip missed ticks rather than bursting: a paused process sees one tick.
                    self._next_tick_ms += TICK_MS
                    if self._next_tick_ms <= mono:
                        self._next_tick_ms = mono + TICK_MS
                    self._log_changes()
                if readies:
                    self._commit(readies)
        except BrokenPipeError:
            return 0
        finally:
            self.storage.close()
            self.transport.close()


def parse_opts(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`k=v` pairs to a dict; values are JSON when they parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise ValueError(f"--opt {p!r}: expected KEY=VALUE")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out
