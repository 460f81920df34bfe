"""Viewstamped Replication (Liskov & Cowling, "Viewstamped Replication Revisited", 2012) as a
sans-I/O core.

Normal operation (section 4.1). The primary of view v is node_ids[v mod n]. It assigns the next
op-number to a client request, appends it to its log and sends PREPARE(v, entries, n, k) to the
backups; a backup in view v with status normal appends entries in op-number order and answers
PREPARE-OK(v, n). A gap is refused and the reply says where the backup's log ends; the primary
then sends the missing ops one batch per acknowledgement (state transfer within a view, section
5.2). The primary commits op n once f+1 replicas (itself included) hold it; commits travel
piggybacked on PREPAREs, or in COMMIT(v, k) every heartbeat_ms when idle. Backups execute
committed ops in order; only the node that took a request replies to the client. While more than
pipeline_max ops are uncommitted, new ops wait and leave in one PREPARE when the commit number
advances (or at the next tick), which batches under load without delaying a lone request.

View change (section 4.2). A backup that hears nothing from its primary for a (randomized)
view_change_timeout_ms, or any replica that hears of a later view, moves to view v+1 with status
view-change and sends START-VIEW-CHANGE(v). With f START-VIEW-CHANGEs from others, it sends
DO-VIEW-CHANGE(v, log, last normal view, n, k) to the new primary, which, with f+1 of them
(its own included), takes the log of the replica with the largest last-normal view and then the
largest op-number, sets k to the largest commit number, and sends START-VIEW(v, log, n, k) (the
log from the lowest commit number among the DO-VIEW-CHANGEs: every sender holds the prefix). A
backup installs that log and sends PREPARE-OKs for its uncommitted suffix. A replica that missed
the START-VIEW (it sees PREPARE or COMMIT of view v while behind it) asks the primary with
GETSTATE(v, k) for the log after its commit number and keeps its old log and last-normal view until
NEWSTATE arrives: claiming last-normal view v with only a prefix of v's initial log would let a
later view change choose a log that lacks committed operations.

Recovery (section 4.3) and what is persisted -- a decision, documented here. VR Revisited assumes a
recovering replica lost its state and that at most f replicas fail at once. Our crash model keeps
what was persisted and allows every node to crash at once, so this core persists, synchronously
and before any message that depends on it: the view number with the last normal view (on every
change), the log (appended / truncated as records) and the commit number (so that a restarted
replica executes its committed prefix at once). With that, a restarted replica has not
lost anything it ever acknowledged, and the cluster survives a crash of every node. A restarted
replica still runs the recovery protocol before it takes part again, because its memory (commit
number, status, the view others reached) is gone: it sends RECOVERY(x) with a fresh nonce and
waits for f+1 RECOVERY-RESPONSEs with that nonce from replicas in normal status, including the
primary of the latest view among them, and a view at least its own; it then installs that
primary's view, log and commit number. If no such set answers within recovery_timeout_ms (for
instance every node restarted at once, so nobody is normal), it resumes from its disk (normal in
its last normal view, or the view change it was in), which is safe because everything it claimed
is there.

Reads go through the log like writes (linearizable without leases). An entry carries its client
and msg_id; executing skips an entry whose (client, msg_id) already ran, so a duplicated request
runs once (the paper's client table, reduced to what we need).
"""

from __future__ import annotations

from typing import Any

from .core import Core, ProtocolError, Ready
from .machines import ERR_TEMPORARILY_UNAVAILABLE

NORMAL, VIEW_CHANGE, RECOVERING = "normal", "view-change", "recovering"


class VrCore(Core):
    NAME = "vr"
    MODEL = "consensus"
    LOGS = "inputs"
    DESCRIPTION = ("Viewstamped Replication (Revisited): a primary per view, PREPARE/PREPARE-OK "
                   "with commit on f+1, view change by START-VIEW-CHANGE/DO-VIEW-CHANGE/START-VIEW, "
                   "and the recovery protocol; log and view persisted.")
    BUGS = {
        "highest-view-log": "the new primary takes the log of the replica that had reached the "
                            "highest view number instead of the one with the most recent normal "
                            "view: a replica that kept timing out in a minority wins with a stale "
                            "log and committed operations disappear",
        "recover-without-primary": "a recovering replica installs the state of any f+1 "
                                   "responders (the one with the highest view) without waiting "
                                   "for the primary's answer, so it may adopt a backup's shorter "
                                   "log and drop committed operations it had acknowledged",
        "commit-on-f": "an off-by-one in the quorum size: the primary commits an op once f "
                       "replicas (itself included) hold it instead of f+1, so an acknowledged op "
                       "can be missing from every log a view change looks at",
    }
    CRASH_POINTS = {
        "prepare_ok": "an op acknowledged by a backup: a restart must not lose it",
        "prepare": "ops sent by the primary that no backup holds yet",
        "do_view_change": "a log handed to the next primary",
        "start_view": "a new view announced by its primary",
    }
    OPTIONS = {
        "heartbeat_ms": ("the primary's COMMIT / retransmission interval", 50),
        "view_change_timeout_ms": ("minimum silence of the primary before a view change; "
                                   "randomized up to twice that", 300),
        "recovery_retry_ms": ("interval between RECOVERY messages of a recovering replica", 100),
        "recovery_timeout_ms": ("a recovering replica that has no f+1 answers by then resumes "
                                "from its disk", 1000),
        "prepare_batch_max": ("most entries in one PREPARE", 1024),
        "pipeline_max": ("uncommitted ops beyond which new ops wait and leave in one batched "
                         "PREPARE (on the next PREPARE-OK or tick) instead of one PREPARE each", 4),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view = 0
        self.last_normal = 0
        self.prev_view = 0            # the view I was in before the current view change
        self.vr_status = NORMAL
        self.log: list[dict] = []     # op-number i is self.log[i - 1]
        self.commit = 0
        self.applied = 0
        self.applied_ids: dict[str, set] = {}
        self.waiting: dict[tuple[str, Any], dict] = {}
        # Primary.
        self.acked: dict[str, int] = {}
        # Backups behind (state transfer): one batch at a time, the next when the last one is
        # acknowledged, instead of every op; the value is the last op-number sent to it.
        self.probe: dict[str, int] = {}
        self.hb_acked: dict[str, int | None] = {}   # acked at the previous heartbeat
        self.heard_ms: dict[str, int] = {}
        # View change.
        self.svc_from: set[str] = set()
        self.dvc: dict[str, dict] = {}
        self.dvc_sent = False
        # Recovery.
        self.nonce: int | None = None
        self.responses: dict[str, dict] = {}
        self.recovery_deadline_ms = 0
        self.recovery_retry_due_ms = 0
        self.state_asked_ms = -(10 ** 12)
        self.timeout_ms: int | None = None
        self.unsent_from: int | None = None   # primary: first op not yet sent (batching)
        # Timers.
        self.last_now_ms = 0
        self.deadline_ms = 0
        self.heartbeat_due_ms = 0

    # ---- helpers -----------------------------------------------------------------------------

    def primary(self, view: int) -> str:
        return self.node_ids[view % len(self.node_ids)]

    @property
    def op_number(self) -> int:
        return len(self.log)

    def is_leader(self) -> bool:
        return self.vr_status == NORMAL and self.primary(self.view) == self.node_id

    def describe(self) -> dict:
        return {"view": self.view, "replica_status": self.vr_status, "last_normal_view": self.last_normal,
                "primary": self.primary(self.view), "op_number": self.op_number,
                "commit": self.commit}

    def _check(self, cond: bool, what: str) -> None:
        """A cross-replica invariant; bug switches break these on purpose, so only enforced with
        no bug on (the harness must catch the consequences of a bug, not an assertion)."""
        if not cond and not self.bugs:
            raise ProtocolError(f"{self.node_id}: {what}")

    def _reset_timer(self, now_ms: int, fresh: bool = False) -> None:
        """Restart the view-change timer; `fresh` draws a new random timeout (after one fired),
        without an RNG draw per message."""
        t = self.options["view_change_timeout_ms"]
        if fresh or self.timeout_ms is None:
            self.timeout_ms = t + self.rng.randrange(t)
        self.deadline_ms = now_ms + self.timeout_ms

    def _save_view(self, ready: Ready) -> None:
        ready.save({"t": "view", "v": self.view, "ln": self.last_normal})

    def _append(self, entries: list[dict], ready: Ready) -> None:
        if entries:
            ready.save({"t": "log", "n": self.op_number + 1, "e": entries})
            self.log.extend(entries)

    def _truncate(self, n: int, ready: Ready) -> None:
        """Keep op-numbers 1..n."""
        if n < self.op_number:
            ready.save({"t": "log", "n": n + 1, "e": []})
            del self.log[n:]

    def _replace_log(self, base: int, entries: list[dict], ready: Ready) -> None:
        """Make my log log[:base] + entries, persisting only the part that changes."""
        assert base <= self.op_number
        i = 0
        while (i < len(entries) and base + i < self.op_number
               and self.log[base + i] == entries[i]):
            i += 1
        self._truncate(base + i, ready)
        self._append(entries[i:], ready)

    def _set_commit(self, k: int, ready: Ready) -> None:
        """Raise the commit number to k (never lower) and execute what became committed."""
        if k > self.commit:
            self.commit = k
            # So that a restarted replica executes its committed prefix without waiting for a
            # view: my log up to my commit number is never truncated (it is in every later log).
            ready.save({"t": "commit", "k": k})
        assert self.applied <= self.commit
        # Under a bug the installed log may be shorter than what was committed before.
        upto = min(self.commit, self.op_number)
        while self.applied < upto:
            self.applied += 1
            self._execute(self.log[self.applied - 1], ready)

    def _execute(self, entry: dict, ready: Ready) -> None:
        client, msg_id = entry["cl"], entry["id"]
        seen = self.applied_ids.setdefault(client, set())
        if msg_id in seen:
            return
        seen.add(msg_id)
        result = self.machine.apply(entry["op"])
        request = self.waiting.pop((client, msg_id), None)
        if request is not None:
            ready.reply(client, request, result)

    # ---- recovery ----------------------------------------------------------------------------

    def on_recover(self, records: list[dict], now_ms: int) -> Ready:
        commit = 0
        for rec in records:
            t = rec.get("t")
            if t == "view":
                self._check(rec["v"] >= self.view and rec["ln"] >= self.last_normal,
                            f"view record {rec} after view {self.view}")
                self.view, self.last_normal = rec["v"], rec["ln"]
            elif t == "commit":
                commit = max(commit, rec["k"])
            elif t == "log":
                n = rec["n"]
                assert 1 <= n <= len(self.log) + 1, f"log record at {n} after {len(self.log)}"
                del self.log[n - 1:]
                self.log.extend(rec["e"])
            else:
                raise ProtocolError(f"{self.node_id}: unknown record {rec!r}")
        self._check(commit <= self.op_number, f"persisted commit {commit} beyond the log")
        self._set_commit(min(commit, self.op_number), Ready())   # nobody waits for replies
        self.last_now_ms = now_ms
        self._reset_timer(now_ms, fresh=True)
        ready = Ready()
        if records:
            self.vr_status = RECOVERING
            self.recovery_deadline_ms = now_ms + self.options["recovery_timeout_ms"]
            self._send_recovery(now_ms, ready)
        return ready

    def _send_recovery(self, now_ms: int, ready: Ready) -> None:
        self.nonce = self.rng.getrandbits(48)
        self.responses = {}
        self.recovery_retry_due_ms = now_ms + self.options["recovery_retry_ms"]
        for p in self.peers:
            ready.send(p, {"type": "recovery", "x": self.nonce})

    def _on_recovery(self, src: str, body: dict, ready: Ready) -> None:
        if self.vr_status != NORMAL:
            return
        ready.send(src, {"type": "recovery_response", "v": self.view, "x": body["x"],
                         "primary": self.is_leader(), "log": list(self.log),
                         "k": self.commit})

    def _on_recovery_response(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        if self.vr_status != RECOVERING or body["x"] != self.nonce:
            return
        self.responses[src] = body
        # f+1 replicas must vouch for the latest view: f answers plus my own disk, which kept my
        # view (the paper's replica has no disk and needs f+1 answers).
        if len(self.responses) < self.quorum - 1:
            return
        latest = max([self.view] + [r["v"] for r in self.responses.values()])
        if "recover-without-primary" in self.bugs:
            # BUG: take the freshest-looking answer, primary or not.
            chosen = max(self.responses.values(), key=lambda r: (r["v"], r["primary"]))
        else:
            chosen = self.responses.get(self.primary(latest))
            if chosen is None or chosen["v"] != latest or not chosen["primary"]:
                if self.primary(latest) == self.node_id and latest == self.view:
                    # I was the primary of the latest view: my disk holds its log.
                    self._resume_from_disk(now_ms, ready)
                return   # keep waiting for the primary of the latest view
        v = chosen["v"]
        self.view, self.last_normal, self.vr_status = v, v, NORMAL
        self._save_view(ready)
        self._replace_log(0, chosen["log"], ready)
        self.nonce, self.responses = None, {}
        self._reset_timer(now_ms)
        self._set_commit(min(chosen["k"], self.op_number), ready)

    def _resume_from_disk(self, now_ms: int, ready: Ready) -> None:
        """No f+1 answers in time: what is on disk is everything this replica ever claimed."""
        self.nonce, self.responses = None, {}
        self._reset_timer(now_ms)
        if self.view == self.last_normal:
            self.vr_status = NORMAL
            self.acked, self.probe, self.hb_acked = {}, {}, {}
            self.unsent_from = None
            self.heard_ms = {p: now_ms for p in self.peers}
            self.heartbeat_due_ms = now_ms
        else:
            self.vr_status = VIEW_CHANGE
            self.svc_from, self.dvc, self.dvc_sent = {self.node_id}, {}, False
            for p in self.peers:
                ready.send(p, {"type": "start_view_change", "v": self.view})

    # ---- time --------------------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> Ready:
        if now_ms < self.last_now_ms:
            shift = self.last_now_ms - now_ms   # the clock jumped back: keep remaining durations
            self.deadline_ms -= shift
            self.heartbeat_due_ms -= shift
            self.recovery_deadline_ms -= shift
            self.recovery_retry_due_ms -= shift
        self.last_now_ms = now_ms
        ready = Ready()
        if self.vr_status == RECOVERING:
            if now_ms >= self.recovery_deadline_ms:
                self._resume_from_disk(now_ms, ready)
            elif now_ms >= self.recovery_retry_due_ms:
                self._send_recovery(now_ms, ready)
        elif self.is_leader():
            self._flush(ready)
            if now_ms >= self.heartbeat_due_ms:
                self._heartbeat(now_ms, ready)
            quiet = 2 * self.options["view_change_timeout_ms"]
            live = 1 + sum(1 for p in self.peers if now_ms - self.heard_ms.get(p, now_ms) < quiet)
            if live < self.quorum:
                self._start_view_change(self.view + 1, now_ms, ready)   # cut off: step aside
        elif now_ms >= self.deadline_ms:
            self._start_view_change(self.view + 1, now_ms, ready)
        return ready

    def _heartbeat(self, now_ms: int, ready: Ready) -> None:
        self.heartbeat_due_ms = now_ms + self.options["heartbeat_ms"]
        for p in self.peers:
            acked = self.acked.get(p)
            stalled = acked == self.hb_acked.get(p)    # no progress since the last heartbeat
            self.hb_acked[p] = acked
            if acked is not None and acked < self.op_number and stalled:
                end = self._send_prepare(p, acked + 1, ready)   # lost PREPAREs
                if p in self.probe:
                    self.probe[p] = end
            else:
                ready.send(p, {"type": "commit", "v": self.view, "k": self.commit,
                               "n": self.op_number})

    def _send_prepare(self, dest: str, start: int, ready: Ready) -> int:
        """PREPARE of ops start.. (at most prepare_batch_max); returns the last op-number sent."""
        end = min(self.op_number, start - 1 + self.options["prepare_batch_max"])
        ready.send(dest, {"type": "prepare", "v": self.view, "n": start,
                          "e": self.log[start - 1:end], "k": self.commit})
        return end

    # ---- normal operation --------------------------------------------------------------------

    def on_client(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        if not self.is_leader():
            extra = {"leader": self.primary(self.view)} if self.vr_status == NORMAL else {}
            ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE, "not the primary", **extra)
            return ready
        key = (src, body.get("msg_id"))
        if key in self.waiting or body.get("msg_id") in self.applied_ids.get(src, ()):
            return ready   # a duplicate of a request in progress or done: it runs once
        self.waiting[key] = body
        start = self.op_number + 1
        self._append([{"v": self.view, "op": self.request_op(body), "cl": src,
                       "id": body.get("msg_id")}], ready)
        if self.unsent_from is None and start - 1 - self.commit < self.options["pipeline_max"]:
            for p in self.peers:
                if p not in self.probe:
                    self._send_prepare(p, start, ready)
        elif self.unsent_from is None:
            self.unsent_from = start
        self._advance_commit(ready)   # a one-node cluster commits at once
        return ready

    def _need_state(self, v: int, now_ms: int, ready: Ready) -> None:
        """A normal-operation message of view v while I am behind it (a later view, or the view I
        am changing to): I missed its START-VIEW. Ask the primary of v for its log after my
        commit number (GETSTATE, section 5.2) and take part only once it arrived.

        Until then my log and last-normal view stay what they were: claiming last-normal view v
        with only a prefix of v's initial log would let a later view change pick a log that lacks
        committed operations."""
        assert v >= self.view
        if v > self.view:
            self.prev_view = self.view
            self.view, self.vr_status = v, VIEW_CHANGE
            self.svc_from, self.dvc, self.dvc_sent = {self.node_id}, {}, False
            self.acked, self.probe, self.hb_acked = {}, {}, {}
            self.unsent_from = None
            self._save_view(ready)
        assert self.vr_status == VIEW_CHANGE
        self._reset_timer(now_ms)     # the primary of v is alive
        if now_ms - self.state_asked_ms >= self.options["heartbeat_ms"]:
            self.state_asked_ms = now_ms
            ready.send(self.primary(v), {"type": "get_state", "v": v, "k": self.commit})

    def _on_get_state(self, src: str, body: dict, ready: Ready) -> None:
        if not self.is_leader() or body["v"] != self.view:
            return
        k = body["k"]
        assert k <= self.op_number or self.bugs, f"{src} committed {k} beyond my log"
        ready.send(src, {"type": "new_state", "v": self.view, "s": k + 1,
                         "e": self.log[k:], "k": self.commit})

    def _on_new_state(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        v, base = body["v"], body["s"] - 1
        if v != self.view or self.vr_status != VIEW_CHANGE or base > min(self.commit,
                                                                       self.op_number):
            return
        # My ops up to my commit number are committed, hence the same in v's log.
        self._replace_log(base, body["e"], ready)
        self.last_normal, self.vr_status = v, NORMAL
        self._save_view(ready)
        self._reset_timer(now_ms)
        ready.send(src, {"type": "prepare_ok", "v": v, "n": self.op_number})
        self._set_commit(min(body["k"], self.op_number), ready)

    def _on_prepare(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        v = body["v"]
        if v < self.view or self.vr_status == RECOVERING:
            return
        if v > self.view or self.vr_status == VIEW_CHANGE:
            self._need_state(v, now_ms, ready)
            return
        if self.is_leader():
            raise ProtocolError(f"{self.node_id}: PREPARE from {src} in my own view {v}")
        self._reset_timer(now_ms)
        start, entries = body["n"], body["e"]
        if start > self.op_number + 1:
            ready.send(src, {"type": "prepare_ok", "v": v, "n": self.op_number, "gap": True})
            return
        skip = self.op_number + 1 - start     # entries I already hold: identical in view v
        for i in range(min(skip, len(entries))):
            self._check(self.log[start - 1 + i] == entries[i],
                        f"op {start + i} differs from the primary's in view {v}")
        self._append(entries[skip:], ready)
        ready.send(src, {"type": "prepare_ok", "v": v, "n": self.op_number})
        self._set_commit(min(body["k"], self.op_number), ready)

    def _on_commit(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        v = body["v"]
        if v < self.view or self.vr_status == RECOVERING:
            return
        if v > self.view or self.vr_status == VIEW_CHANGE:
            self._need_state(v, now_ms, ready)
            return
        self._reset_timer(now_ms)
        gap = self.op_number < body["n"]
        ready.send(src, {"type": "prepare_ok", "v": v, "n": self.op_number, "gap": gap})
        self._set_commit(min(body["k"], self.op_number), ready)

    def _on_prepare_ok(self, src: str, body: dict, ready: Ready) -> None:
        if not self.is_leader() or body["v"] != self.view:
            return
        n = body["n"]
        assert n <= self.op_number or self.bugs, f"{src} acknowledged op {n} I never prepared"
        self.acked[src] = n
        self.heard_ms[src] = self.last_now_ms
        # State transfer: a backup that refused a gap gets the missing ops one batch per ack
        # (not one batch per refused PREPARE, which would flood a backup that is far behind).
        if src in self.probe:
            if n >= self.probe[src]:              # it has the whole batch: the next one
                if n < self.op_number:
                    self.probe[src] = self._send_prepare(src, n + 1, ready)
                else:
                    del self.probe[src]
        elif body.get("gap"):
            self.probe[src] = self._send_prepare(src, n + 1, ready)
        before = self.commit
        self._advance_commit(ready)
        if self.commit > before:
            self._flush(ready)   # one batch per step of the commit number, not per PREPARE-OK

    def _flush(self, ready: Ready) -> None:
        """Send the ops held back while the pipeline was full, batched."""
        if self.unsent_from is None:
            return
        assert self.is_leader()
        start, self.unsent_from = self.unsent_from, None
        batch_max = self.options["prepare_batch_max"]
        for p in self.peers:
            if p not in self.probe:
                for s in range(start, self.op_number + 1, batch_max):
                    self._send_prepare(p, s, ready)

    def _advance_commit(self, ready: Ready) -> None:
        """Commit the highest op-number that f+1 replicas (me included) hold in this view."""
        assert self.is_leader()
        held = sorted([self.op_number] + [self.acked.get(p, 0) for p in self.peers],
                      reverse=True)
        needed = self.quorum - 1 if "commit-on-f" in self.bugs else self.quorum   # BUG: f
        k = min(held[max(needed, 1) - 1], self.op_number)
        if k > self.commit:
            self._set_commit(k, ready)

    # ---- view change -------------------------------------------------------------------------

    def _start_view_change(self, v: int, now_ms: int, ready: Ready) -> None:
        assert v > self.view, f"view change to {v} from {self.view}"
        self.prev_view = self.view
        self.view, self.vr_status = v, VIEW_CHANGE
        self.svc_from, self.dvc, self.dvc_sent = {self.node_id}, {}, False
        self.acked, self.probe, self.hb_acked = {}, {}, {}
        self.unsent_from = None
        self._save_view(ready)          # persisted before the START-VIEW-CHANGEs leave
        self._reset_timer(now_ms, fresh=True)
        for p in self.peers:
            ready.send(p, {"type": "start_view_change", "v": v})

    def _on_start_view_change(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        v = body["v"]
        if self.vr_status == RECOVERING or v < self.view:
            return
        if v > self.view:
            self._start_view_change(v, now_ms, ready)
        elif self.vr_status != VIEW_CHANGE:
            return   # that view change is over
        self.svc_from.add(src)
        if len(self.svc_from) >= self.quorum:
            self._send_do_view_change(ready)

    def _do_view_change_body(self) -> dict:
        return {"type": "do_view_change", "v": self.view, "log": list(self.log),
                "ln": self.last_normal, "pv": self.prev_view, "n": self.op_number,
                "k": self.commit}

    def _send_do_view_change(self, ready: Ready) -> None:
        if self.dvc_sent:
            return
        self.dvc_sent = True
        body = self._do_view_change_body()
        new_primary = self.primary(self.view)
        if new_primary == self.node_id:
            self._on_do_view_change(self.node_id, body, self.last_now_ms, ready)
        else:
            ready.send(new_primary, body)

    def _on_do_view_change(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        v = body["v"]
        if self.vr_status == RECOVERING or v < self.view:
            return
        if v > self.view:
            self._start_view_change(v, now_ms, ready)
        elif self.vr_status != VIEW_CHANGE:
            return
        assert self.primary(v) == self.node_id, f"DO-VIEW-CHANGE for view {v} sent to me"
        self.dvc[src] = body
        if self.node_id not in self.dvc:
            # I am in view change for v: my own state is a valid DO-VIEW-CHANGE.
            self.dvc_sent = True
            self.dvc[self.node_id] = self._do_view_change_body()
        if len(self.dvc) >= self.quorum:
            self._start_view(now_ms, ready)

    def _start_view(self, now_ms: int, ready: Ready) -> None:
        """The new primary: install the most up-to-date log among f+1 and announce the view."""
        assert self.vr_status == VIEW_CHANGE and self.primary(self.view) == self.node_id
        if "highest-view-log" in self.bugs:
            best = max(self.dvc.values(), key=lambda d: (d["pv"], d["n"]))   # BUG
        else:
            best = max(self.dvc.values(), key=lambda d: (d["ln"], d["n"]))
        k = max(d["k"] for d in self.dvc.values())
        self._check(k <= best["n"], f"view {self.view}: chosen log ({best['n']}) lacks "
                                    f"committed op {k}")
        self._replace_log(0, best["log"], ready)
        self.last_normal, self.vr_status = self.view, NORMAL
        self._save_view(ready)
        self.acked, self.probe, self.hb_acked = {}, {}, {}
        self.unsent_from = None
        self.heard_ms = {p: now_ms for p in self.peers}
        base = min(d["k"] for d in self.dvc.values())   # every DVC sender holds 1..base
        for p in self.peers:
            ready.send(p, {"type": "start_view", "v": self.view, "s": base + 1,
                           "e": self.log[base:], "k": k})
        self.dvc, self.svc_from = {}, set()
        self.heartbeat_due_ms = now_ms + self.options["heartbeat_ms"]
        self._set_commit(min(k, self.op_number), ready)

    def _on_start_view(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        v = body["v"]
        if self.vr_status == RECOVERING or v < self.view:
            return
        if v == self.view and self.vr_status == NORMAL:
            return   # a duplicate
        assert self.primary(v) == src, f"START-VIEW for {v} from {src}"
        base = body["s"] - 1
        if base > min(self.commit, self.op_number):
            # My ops between my commit number and `base` may be uncommitted strays, and the
            # message does not carry v's log from there: fetch it by state transfer.
            self._need_state(v, now_ms, ready)
            return
        self._replace_log(base, body["e"], ready)
        self.view, self.last_normal, self.vr_status = v, v, NORMAL
        self._save_view(ready)
        self._reset_timer(now_ms)
        ready.send(src, {"type": "prepare_ok", "v": v, "n": self.op_number})
        self._set_commit(min(body["k"], self.op_number), ready)

    # ---- dispatch ----------------------------------------------------------------------------

    def on_peer(self, src: str, body: dict, now_ms: int) -> Ready:
        self.last_now_ms = max(self.last_now_ms, now_ms)
        ready = Ready()
        t = body.get("type")
        if t == "prepare":
            self._on_prepare(src, body, now_ms, ready)
        elif t == "prepare_ok":
            self._on_prepare_ok(src, body, ready)
        elif t == "commit":
            self._on_commit(src, body, now_ms, ready)
        elif t == "start_view_change":
            self._on_start_view_change(src, body, now_ms, ready)
        elif t == "do_view_change":
            self._on_do_view_change(src, body, now_ms, ready)
        elif t == "start_view":
            self._on_start_view(src, body, now_ms, ready)
        elif t == "get_state":
            self._on_get_state(src, body, ready)
        elif t == "new_state":
            self._on_new_state(src, body, now_ms, ready)
        elif t == "recovery":
            self._on_recovery(src, body, ready)
        elif t == "recovery_response":
            self._on_recovery_response(src, body, now_ms, ready)
        else:
            raise ProtocolError(f"{self.node_id}: unknown peer message {t!r} from {src}")
        return ready
