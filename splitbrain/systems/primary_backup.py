"""Primary-backup replication (the seed's active-passive model): the primary logs STATE CHANGES.

Only the primary executes client operations: `reply, change = machine.execute(op)`. It appends
the resulting change (not the request) to its change log, replicates the log to the backups, and
answers the client once a majority (itself included) holds the change durably. Backups
`apply_change` the committed changes in log order and never execute anything.

The primary is chosen by a majority in an epoch (the "view" of the primary-backup literature,
Alsberg & Day, Oki & Liskov). `EpochLogCore`, the shared engine below, does the ordering; it is
also the sequencer of the active-active system (active_active.py), which logs inputs instead:

- Epochs: a backup whose primary goes quiet for `election_timeout_ms` (randomized) asks for votes
  in epoch+1; a node grants one vote per epoch, persisted before the grant, and only to a
  candidate whose log is at least as up to date ((last entry's epoch, last index) compared
  lexicographically). Whoever gathers a majority is primary of that epoch: at most one per epoch.
- Fencing: every node persists the highest epoch it has seen and rejects messages of lower
  epochs; a primary that sees a higher epoch steps down. A primary acknowledges nothing before a
  majority has acknowledged, in its epoch, the entries concerned; so an old primary cut off by a
  failover can never acknowledge again.
- Catch-up: the new primary appends an epoch-start marker (a no-op, not applied to the machine)
  and brings each backup's log to its own with appends that carry (prev index, prev epoch):
  a backup whose log does not match rejects with a hint and the primary backs up; a backup
  truncates any conflicting suffix (never committed entries) before appending.
- Commit: an entry is committed once a majority holds it AND it belongs to the primary's current
  epoch (earlier epochs' entries commit with it): counting replicas for an old epoch's entry is
  unsafe (Raft's figure 8).
- Reads and ops that change nothing (a failed cas): not logged; answered from the primary's
  state once every change before them is committed and a heartbeat round started after they
  arrived has been acknowledged by a majority in the primary's epoch (a read index), so a
  deposed primary cannot serve a stale read.

Durable records (one JSON dict each):
  {"t": "epoch", "epoch": e, "vote": node|None}       the epoch seen and the vote given in it
  {"t": "log", "i": first, "es": [entry, ...]}        the log from index `first` on (truncates)
Entries are {"e": epoch, "c": change} or {"e": epoch, "noop": true}; indexes start at 1.
A restarted node starts with an empty machine and commit 0 and re-applies as it learns the commit.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from .core import Core, ProtocolError, Ready
from .machines import (ERR_TEMPORARILY_UNAVAILABLE, ERR_TIMEOUT, StateMachine)

ROLE_BACKUP = "backup"
ROLE_CANDIDATE = "candidate"
ROLE_PRIMARY = "primary"

ENGINE_OPTIONS: dict[str, tuple[str, Any]] = {
    "election_timeout_ms": ("ms without hearing the primary before a backup stands for election "
                            "(randomized up to twice that)", 300),
    "heartbeat_ms": ("ms between the primary's heartbeat rounds", 50),
    "batch_max": ("entries per append message at most", 64),
    "reorder_max": ("out-of-order append messages a backup buffers at most", 64),
}


class EpochLogCore(Core):
    """An epoch-numbered leader that orders a log and commits it on a majority.

    Subclasses decide what an entry holds and what committing it means:
      _entry_committed(index, entry, ready)   apply one committed entry (called in index order)
      _became_primary(ready) / _stepped_down(ready)   role changes (clean up pending requests)
      _on_arrival(first_index, entries)       every batch of entries as it arrives (before it is
                                              accepted or buffered); a hook for bug switches
    and may use `_append_local(entries, ready)` (primary only) and `_read_barrier(...)`.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.epoch = 0
        self.vote: str | None = None
        self.log: list[dict] = []
        self.commit = 0
        self.applied = 0          # log index applied to the machine (entries, not machine ops)
        self.role = ROLE_BACKUP
        self.leader_id: str | None = None
        self.votes: set[str] = set()
        self.heard_ms = 0         # last time this node heard from the primary of its epoch
        self.deadline_ms = 0
        # primary state
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.acked_round: dict[str, int] = {}
        self.ack_ms: dict[str, int] = {}
        self.round = 0
        self.broadcast_ms = 0
        self.reads: list[tuple[int, int, Any]] = []   # (read index, round needed, request)
        # backup state
        self.reorder: OrderedDict[int, tuple[str, dict]] = OrderedDict()
        self.nacked_at: tuple | None = None

    # ---- options ----------------------------------------------------------------------------

    @property
    def election_timeout_ms(self) -> int:
        return int(self.options["election_timeout_ms"])

    def _reset_deadline(self, now_ms: int) -> None:
        t = self.election_timeout_ms
        self.deadline_ms = now_ms + t + self.rng.randrange(t)

    # ---- recovery ---------------------------------------------------------------------------

    def on_recover(self, records: list[dict], now_ms: int) -> Ready:
        for r in records:
            self._replay(r)
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        return Ready()

    def _replay(self, r: dict) -> None:
        """Rebuild durable state from one record; subclasses extend for their own records."""
        t = r.get("t")
        if t == "epoch":
            assert r["epoch"] >= self.epoch, "epoch records must not go backwards"
            self.epoch, self.vote = r["epoch"], r["vote"]
        elif t == "log":
            first = r["i"]
            assert 1 <= first <= len(self.log) + 1, f"log record at {first} leaves a hole"
            del self.log[first - 1:]
            self.log.extend(r["es"])

    # ---- helpers ----------------------------------------------------------------------------

    def last_epoch(self) -> int:
        return self.log[-1]["e"] if self.log else 0

    def entry_epoch(self, index: int) -> int:
        return self.log[index - 1]["e"] if index >= 1 else 0

    def is_leader(self) -> bool:
        return self.role == ROLE_PRIMARY

    def describe(self) -> dict:
        return {"role": self.role, "epoch": self.epoch, "leader": self.leader_id,
                "commit": self.commit, "log_length": len(self.log)}

    def _save_epoch(self, ready: Ready) -> None:
        ready.save({"t": "epoch", "epoch": self.epoch, "vote": self.vote})

    def _adopt_epoch(self, epoch: int, ready: Ready, now_ms: int) -> None:
        """A higher epoch exists: persist it and follow (fencing: lower epochs are refused now)."""
        assert epoch > self.epoch
        was_primary = self.role == ROLE_PRIMARY
        self.epoch, self.vote = epoch, None
        self._save_epoch(ready)
        self.role = ROLE_BACKUP
        self.leader_id = None
        self.votes = set()
        self._reset_deadline(now_ms)
        if was_primary:
            self._leave_primary(ready)

    def _leave_primary(self, ready: Ready) -> None:
        for _, _, req in self.reads:
            self._fail_read(req, ready)
        self.reads = []
        self._stepped_down(ready)

    # ---- elections --------------------------------------------------------------------------

    def _campaign(self, now_ms: int) -> Ready:
        ready = Ready()
        if self.role == ROLE_PRIMARY:
            self.role = ROLE_BACKUP
            self._leave_primary(ready)
        self.epoch += 1
        self.vote = self.node_id
        self._save_epoch(ready)
        self.role = ROLE_CANDIDATE
        self.leader_id = None
        self.votes = {self.node_id}
        self._reset_deadline(now_ms)
        for p in self.peers:
            ready.send(p, {"type": "vote_req", "epoch": self.epoch,
                           "last_i": len(self.log), "last_e": self.last_epoch()})
        if len(self.votes) >= self.quorum:    # a one-node cluster
            self._become_primary(ready, now_ms)
        return ready

    def _on_vote_req(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if m["epoch"] > self.epoch:
            if self.role == ROLE_PRIMARY and "no-fencing" in self.bugs:
                return
            self._adopt_epoch(m["epoch"], ready, now_ms)
        up_to_date = (m["last_e"], m["last_i"]) >= (self.last_epoch(), len(self.log))
        granted = (m["epoch"] == self.epoch and up_to_date and self.vote in (None, src))
        if granted and self.vote is None:
            self.vote = src
            self._save_epoch(ready)          # persisted before the grant leaves
            self._reset_deadline(now_ms)
        ready.send(src, {"type": "vote", "epoch": self.epoch, "granted": granted})

    def _on_vote(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if m["epoch"] > self.epoch:
            self._adopt_epoch(m["epoch"], ready, now_ms)
            return
        if self.role != ROLE_CANDIDATE or m["epoch"] != self.epoch or not m["granted"]:
            return
        self.votes.add(src)
        if len(self.votes) >= self.quorum:
            self._become_primary(ready, now_ms)

    def _become_primary(self, ready: Ready, now_ms: int) -> None:
        assert self.role == ROLE_CANDIDATE and self.vote == self.node_id
        self.role = ROLE_PRIMARY
        self.leader_id = self.node_id
        self.round = 0
        self.reads = []
        self.next_index = {p: len(self.log) + 1 for p in self.peers}
        self.match_index = {p: 0 for p in self.peers}
        self.acked_round = {p: 0 for p in self.peers}
        self.ack_ms = {p: now_ms for p in self.peers}
        self._became_primary(ready)
        # The epoch-start marker: committing it commits every earlier entry of the log.
        self._append_local([{"e": self.epoch, "noop": True}], ready)
        self._broadcast(ready, now_ms)

    # ---- replication (primary side) ---------------------------------------------------------

    def _append_local(self, entries: list[dict], ready: Ready) -> int:
        """Primary: append entries to its own log (persisted first); returns the last index."""
        assert self.role == ROLE_PRIMARY
        first = len(self.log) + 1
        for e in entries:
            assert e["e"] == self.epoch, "a primary appends entries of its own epoch only"
        self.log.extend(entries)
        ready.save({"t": "log", "i": first, "es": entries})
        if len(self.log) and self.quorum == 1:
            self._advance_commit(ready)
        return len(self.log)

    def _send_append(self, p: str, ready: Ready) -> None:
        nxt = self.next_index[p]
        assert 1 <= nxt <= len(self.log) + 1
        es = self.log[nxt - 1: nxt - 1 + int(self.options["batch_max"])]
        ready.send(p, {"type": "append", "epoch": self.epoch, "prev_i": nxt - 1,
                       "prev_e": self.entry_epoch(nxt - 1), "es": es, "commit": self.commit,
                       "round": self.round})
        self.next_index[p] = nxt + len(es)   # pipelining: a reject moves it back

    def _broadcast(self, ready: Ready, now_ms: int) -> None:
        """One heartbeat round: every backup gets the entries it lacks (or none)."""
        self.round += 1
        self.broadcast_ms = now_ms
        for p in self.peers:
            self._send_append(p, ready)

    def _replicate_new(self, ready: Ready) -> None:
        """Send freshly appended entries to backups that are caught up (pipelined)."""
        for p in self.peers:
            if self.next_index[p] <= len(self.log):
                self._send_append(p, ready)

    def _on_append_ack(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if m["epoch"] > self.epoch:
            if not (self.role == ROLE_PRIMARY and "no-fencing" in self.bugs):
                self._adopt_epoch(m["epoch"], ready, now_ms)
                return
            # BUG (no-fencing): the old primary never hears it was replaced.
        if self.role != ROLE_PRIMARY or m["for"] != self.epoch:
            return
        self.ack_ms[src] = now_ms
        self.acked_round[src] = max(self.acked_round[src], m["round"])
        if m["ok"]:
            match = min(m["match"], len(self.log))
            self.match_index[src] = max(self.match_index[src], match)
            self.next_index[src] = max(self.next_index[src], self.match_index[src] + 1)
            self._advance_commit(ready)
            if self.next_index[src] <= len(self.log):
                self._send_append(src, ready)
        else:
            # The backup's log does not match at prev: back up to its hint and resend.
            hint = min(m["have"], len(self.log))
            back = max(hint + 1, self.match_index[src] + 1)
            if back < self.next_index[src]:
                self.next_index[src] = back
                self._send_append(src, ready)
        self._serve_reads(ready)

    def _advance_commit(self, ready: Ready) -> None:
        matches = sorted([len(self.log)] + [self.match_index[p] for p in self.peers],
                         reverse=True)
        n = matches[self.quorum - 1]
        # Only an entry of the current epoch is committed by counting replicas (figure 8).
        if n > self.commit and self.entry_epoch(n) == self.epoch:
            self._set_commit(n, ready)

    def _majority_round(self) -> int:
        rounds = sorted([self.round] + [self.acked_round[p] for p in self.peers], reverse=True)
        return rounds[self.quorum - 1]

    # ---- replication (backup side) ----------------------------------------------------------

    def _on_append(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if m["es"]:
            self._on_arrival(m["prev_i"] + 1, m["es"])
        fenced = m["epoch"] < self.epoch
        if fenced and "no-fencing" not in self.bugs:
            ready.send(src, {"type": "append_ack", "epoch": self.epoch, "for": m["epoch"],
                             "ok": False, "have": len(self.log), "round": m["round"]})
            return
        if m["epoch"] > self.epoch:
            if self.role == ROLE_PRIMARY and "no-fencing" in self.bugs:
                return
            self._adopt_epoch(m["epoch"], ready, now_ms)
        if not fenced:
            if self.role == ROLE_PRIMARY:
                raise ProtocolError(f"{self.node_id}: two primaries in epoch {self.epoch} "
                                    f"({self.node_id} and {src})")
            self.role = ROLE_BACKUP
            self.leader_id = src
        elif self.role == ROLE_PRIMARY:
            return                            # BUG mode: a primary ignores the other primary
        else:
            self.leader_id = src              # BUG (no-fencing): follow whoever sends changes
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        prev_i = m["prev_i"]
        if prev_i > len(self.log):
            # Arrived ahead of a lost or delayed predecessor: keep it for when the gap fills.
            self.reorder[prev_i] = (src, m)
            while len(self.reorder) > int(self.options["reorder_max"]):
                self.reorder.popitem(last=False)
            # One nack per gap and heartbeat round: pipelined successors need not repeat it,
            # but a lost nack is repeated at the next round.
            gap = (m["epoch"], m["round"], len(self.log))
            if self.nacked_at != gap:
                self.nacked_at = gap
                ready.send(src, {"type": "append_ack", "epoch": self.epoch, "for": m["epoch"],
                                 "ok": False, "have": len(self.log), "round": m["round"]})
            return
        self._accept(src, m, ready)
        # Buffered successors may now fit.
        while len(self.log) in self.reorder:
            s, buffered = self.reorder.pop(len(self.log))
            if buffered["epoch"] == self.epoch or "no-fencing" in self.bugs:
                self._accept(s, buffered, ready)

    def _accept(self, src: str, m: dict, ready: Ready) -> None:
        prev_i, es = m["prev_i"], m["es"]
        assert prev_i <= len(self.log)
        if self.entry_epoch(prev_i) != m["prev_e"]:
            # Skip back over the whole conflicting epoch at once (committed entries match).
            conflict_e, hint = self.entry_epoch(prev_i), prev_i - 1
            while hint > self.commit and self.entry_epoch(hint) == conflict_e:
                hint -= 1
            ready.send(src, {"type": "append_ack", "epoch": self.epoch, "for": m["epoch"],
                             "ok": False, "have": hint, "round": m["round"]})
            return
        # Skip the entries we already hold (same index and epoch means the same entry).
        k = 0
        while k < len(es) and prev_i + 1 + k <= len(self.log) and \
                self.entry_epoch(prev_i + 1 + k) == es[k]["e"]:
            k += 1
        if k < len(es):
            first = prev_i + 1 + k
            if first <= self.commit and "no-fencing" not in self.bugs:
                raise ProtocolError(f"{self.node_id}: append would truncate committed index "
                                    f"{first} (commit {self.commit})")
            del self.log[first - 1:]
            self.log.extend(es[k:])
            ready.save({"t": "log", "i": first, "es": es[k:]})
        match = prev_i + len(es)
        self.nacked_at = None
        ready.send(src, {"type": "append_ack", "epoch": self.epoch, "for": m["epoch"], "ok": True,
                         "match": match, "round": m["round"]})
        new_commit = min(m["commit"], match)
        if new_commit > self.commit:
            self._set_commit(new_commit, ready)

    # ---- commit and apply -------------------------------------------------------------------

    def _set_commit(self, n: int, ready: Ready) -> None:
        assert n > self.commit, "commit index is monotonic"
        assert n <= len(self.log), f"commit {n} beyond log {len(self.log)}"
        self.commit = n
        while self.applied < self.commit:
            self.applied += 1
            self._entry_committed(self.applied, self.log[self.applied - 1], ready)
        assert self.applied == self.commit

    # ---- reads ------------------------------------------------------------------------------

    def _read_barrier(self, request: Any, ready: Ready, now_ms: int) -> None:
        """Primary: serve `request` (via _serve_read) once every entry now in the log is
        committed and a majority has acknowledged a round started after this call."""
        assert self.role == ROLE_PRIMARY
        self.reads.append((len(self.log), self.round + 1, request))
        self._broadcast(ready, now_ms)
        self._serve_reads(ready)

    def _serve_reads(self, ready: Ready) -> None:
        if not self.reads or self.role != ROLE_PRIMARY:
            return
        majority_round = self._majority_round()
        keep = []
        for read_index, needed, req in self.reads:
            if self.commit >= read_index and majority_round >= needed:
                self._serve_read(req, ready)
            else:
                keep.append((read_index, needed, req))
        self.reads = keep

    # ---- inputs -----------------------------------------------------------------------------

    def on_peer(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        t = body.get("type")
        if t == "append":
            self._on_append(src, body, now_ms, ready)
        elif t == "append_ack":
            self._on_append_ack(src, body, now_ms, ready)
        elif t == "vote_req":
            self._on_vote_req(src, body, now_ms, ready)
        elif t == "vote":
            self._on_vote(src, body, now_ms, ready)
        else:
            self._on_other_peer(src, body, now_ms, ready)
        return ready

    def on_tick(self, now_ms: int) -> Ready:
        if self.role == ROLE_PRIMARY:
            ready = Ready()
            if now_ms - self.broadcast_ms >= int(self.options["heartbeat_ms"]) or \
                    now_ms < self.broadcast_ms:
                self._broadcast(ready, now_ms)
            # Check quorum: a primary that has not heard a majority for an election timeout
            # steps down, so clients look elsewhere (safety does not depend on it).
            if "no-fencing" not in self.bugs:
                recent = 1 + sum(1 for p in self.peers
                                 if now_ms - self.ack_ms[p] < 2 * self.election_timeout_ms)
                if recent < self.quorum:
                    self.role = ROLE_BACKUP
                    self.leader_id = None
                    self._leave_primary(ready)
                    self._reset_deadline(now_ms)
            return ready
        if now_ms >= self.deadline_ms:
            return self._campaign(now_ms)
        return Ready()

    def _not_primary(self, src: str, body: dict, ready: Ready) -> None:
        extra = {"leader": self.leader_id} if self.leader_id else {}
        ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE,
                    f"{self.node_id} is not the {self.ROLE_NAME}", **extra)

    ROLE_NAME = "primary"

    # ---- subclass hooks ---------------------------------------------------------------------

    def _entry_committed(self, index: int, entry: dict, ready: Ready) -> None:
        raise NotImplementedError

    def _became_primary(self, ready: Ready) -> None:
        pass

    def _stepped_down(self, ready: Ready) -> None:
        pass

    def _on_arrival(self, first_index: int, entries: list[dict]) -> None:
        pass

    def _on_other_peer(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        pass

    def _serve_read(self, request: Any, ready: Ready) -> None:
        raise NotImplementedError

    def _fail_read(self, request: Any, ready: Ready) -> None:
        pass


def clone_machine(machine: StateMachine) -> StateMachine:
    """A deep, independent copy of a machine (the primary's speculative state)."""
    twin = type(machine)()
    twin.restore(copy.deepcopy(machine.state()), machine.applied_index)
    return twin


class PrimaryBackupCore(EpochLogCore):
    NAME = "primary-backup"
    MODEL = "primary-backup"
    LOGS = "state changes"
    DESCRIPTION = ("Active-passive replication: the primary of an epoch executes every operation "
                   "and replicates the resulting state changes; backups apply the changes in "
                   "order. Failover elects the backup with the most up-to-date change log by a "
                   "majority in a higher epoch; old primaries are fenced by epoch.")
    BUGS = {
        "ack-before-replicate": "the primary answers a write as soon as the change is in its own "
                                "log, before a majority holds it; a failover loses acknowledged "
                                "writes",
        "no-fencing": "backups accept changes from a primary of an older epoch and an old primary "
                      "never steps down, so after a failover two primaries acknowledge writes and "
                      "overwrite each other's changes",
    }
    OPTIONS = dict(ENGINE_OPTIONS)
    CRASH_POINTS = {
        "vote": "an epoch vote given: it must be on disk",
        "append_ack": "a state change acknowledged: it must be on the backup's disk",
        "append": "state changes sent by a primary that no backup holds yet",
    }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.spec: StateMachine | None = None       # primary: state after every logged change
        self.pending: dict[int, tuple[str, dict, dict]] = {}   # index -> (client, request, reply)

    def _became_primary(self, ready: Ready) -> None:
        # The speculative machine: committed state plus every change already in the log.
        spec = clone_machine(self.machine)
        for e in self.log[self.applied:]:
            if not e.get("noop"):
                spec.apply_change(e["c"])
        self.spec = spec
        self.pending = {}

    def _stepped_down(self, ready: Ready) -> None:
        self.spec = None
        for client, req, _ in self.pending.values():
            # The change may still commit under the next primary: the outcome is unknown.
            ready.error(client, req, ERR_TIMEOUT, "primary stepped down; outcome unknown")
        self.pending = {}

    def _entry_committed(self, index: int, entry: dict, ready: Ready) -> None:
        if not entry.get("noop"):
            self.machine.apply_change(entry["c"])
        waiting = self.pending.pop(index, None)
        if waiting is not None:
            client, req, reply = waiting
            ready.reply(client, req, reply)

    def on_client(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        if self.role != ROLE_PRIMARY:
            self._not_primary(src, body, ready)
            return ready
        assert self.spec is not None
        op = self.request_op(body)
        reply, change = self.spec.execute(op)
        if change is None:
            # Nothing to log (a read, a failed cas): an observation of the state after every
            # logged change; answer once they are committed and we are still primary.
            self._read_barrier((src, body, reply), ready, now_ms)
            return ready
        self.spec.apply_change(change)
        if "ack-before-replicate" in self.bugs:
            ready.reply(src, body, reply)      # BUG: before any backup has the change
        else:
            self.pending[len(self.log) + 1] = (src, body, reply)
        self._append_local([{"e": self.epoch, "c": change}], ready)
        self._replicate_new(ready)
        return ready

    def _serve_read(self, request: Any, ready: Ready) -> None:
        client, req, reply = request
        ready.reply(client, req, reply)

    def _fail_read(self, request: Any, ready: Ready) -> None:
        client, req, _ = request
        ready.error(client, req, ERR_TEMPORARILY_UNAVAILABLE, "primary stepped down")
