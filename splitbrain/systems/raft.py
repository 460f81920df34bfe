"""Raft (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm") as a sans-I/O core.

One RaftCore is one server. It follows figure 2 of the paper, with the thesis' additions that a
production Raft needs, each named below:

- Elections with randomized timeouts: a follower that hears nothing from a leader for a timeout
  drawn uniformly from [election-timeout-ms, 2 * election-timeout-ms) (from `self.rng`) becomes a
  candidate. Optional pre-vote (thesis 9.6): a would-be candidate first asks whether it could win
  without raising anyone's term; voters refuse while they hear from a leader.
- Log replication with the log-matching check (prevLogIndex / prevLogTerm), truncation of
  conflicting suffixes, and a fast back-off: a rejection carries a hint (the follower's next index,
  or the first index of the conflicting term) so the leader skips a whole term per round trip.
- The commit rule of section 5.4.2 (figure 8): a leader commits an index only when a majority
  stores it AND the entry is of the leader's current term; older entries commit indirectly. A new
  leader appends a no-op entry at the start of its term so that this happens without waiting for a
  client.
- Persistence before answering: the current term, the vote and the log are written as records in
  the same Ready as the vote grant / append acknowledgement, and the Core API's durability order
  puts them on disk before the message leaves.
- Linearizable reads (option `reads`): "read-index" (thesis 6.4) — the leader takes its commit index
  (at least its term's no-op), confirms it still leads with a heartbeat round acknowledged by a
  majority, then answers once it has applied up to that index; or "log" — the read is appended
  to the log and answered when applied.
- Check-quorum (thesis 6.2, option `check-quorum`): a leader that has not heard from a majority for
  an election timeout steps down, so clients of a deposed leader get error 11 instead of silence.

Durable records (JSON dicts, replayed in order by `on_recover`):
  {"k": "hs", "term": T, "vote": V}          the hard state changed (term and/or vote)
  {"k": "trunc", "from": i}                   entries i.. were removed (a conflicting suffix)
  {"k": "ents", "at": i, "e": [entry, ...]}   entries appended starting at index i
  {"k": "commit", "i": n}                     entries 1..n were known committed (a hint)
An entry is {"t": term, "op": op-or-null, "c": client, "id": msg_id}; op null is a no-op. The
commit index rides along, as the last record, on Readies that persist something anyway (no
extra fsync): on restart the server re-applies its log up to the last one into its empty state
machine, so it does not come back empty, and learns the rest from a leader. Safety does not
depend on it (a committed prefix is never truncated).

Clients (Maelstrom bodies). Only the leader serves; others answer error 11 with "leader" when they
know one. A write is answered when its entry is applied (committed on a majority). If the entry is
overwritten by a later leader its fate is unknown to this server and it answers error 13
(indefinite). Reads that cannot be served (leadership lost) get error 11, since a read has no effect.
A repeated request (same client and msg_id) still pending on the leader is not appended twice.

Invariants are asserted where they must hold (ProtocolError): one leader per term as this server
sees it, Log Matching when a duplicate entry arrives, committed entries never truncated, commit
index monotonic, applied <= commit. With a bug switch on, a broken invariant is counted in
`violations` instead of raised, so the run reaches the checkers, which must find the damage.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .core import Core, ProtocolError, Ready
from .machines import ERR_CRASH, ERR_NOT_SUPPORTED, ERR_TEMPORARILY_UNAVAILABLE, is_read

FOLLOWER = "follower"
PRE_CANDIDATE = "pre-candidate"
CANDIDATE = "candidate"
LEADER = "leader"

VIOLATIONS_MAX = 100        # invariant breaks kept (bug switches on) for describe() and debugging
HINT_SCAN_MAX = 10_000      # entries a follower walks back to find the first index of a term


class RaftCore(Core):
    """One Raft server. See the module docstring for the protocol, records and client contract."""

    NAME = "raft"
    MODEL = "consensus"
    LOGS = "inputs"
    DESCRIPTION = ("Raft: randomized elections, log replication with the log-matching check, "
                   "current-term commit rule with a no-op per term, read-index or log reads.")
    BUGS = {
        "commit-old-term": (
            "the leader commits an entry of an earlier term as soon as a majority stores it "
            "(the figure 8 mistake), and so sees no need for a no-op at the start of its term: "
            "a later leader can overwrite the entry, so an acknowledged write is lost and "
            "replicas apply different entries at the same index"),
        "vote-not-persisted": (
            "a vote is granted before it is written to disk (the term is saved, the vote is "
            "not): a server that restarts can vote again in the same term, two leaders are "
            "elected in one term and their logs diverge"),
        "stale-reads": (
            "the leader answers reads from its local state without confirming that it still "
            "leads: a deposed leader that has not noticed returns stale values"),
        "txn-local-reads": (
            "the leader evaluates a transaction's reads against its own applied state when the "
            "request arrives, outside the log, and only the writes are ordered by the log: a "
            "transaction committed in between is missed by the reads (read skew, lost "
            "updates: G-single, G2-item) although every write is applied in order"),
        "ack-before-persist": (
            "a follower acknowledges AppendEntries but marks the log records unsynced (no "
            "fsync): after a crash that loses unsynced writes, an entry counted for a majority "
            "is gone from that follower, and a committed write can be lost"),
    }
    CRASH_POINTS = {
        "rv_r.granted": "a vote granted: the vote must be on disk before it leaves",
        "ae.own": "entries of the leader's own term sent: its log is ahead of every follower's",
        "ae_r": "entries acknowledged: they must be on the follower's disk",
    }

    @staticmethod
    def crash_point_names(body: dict) -> tuple[str, ...]:
        """"ae.own": an AppendEntries carrying entries of the sender's own term (new writes),
        as opposed to older entries a new leader re-sends (figure 8 needs the second to arrive
        and the first to be lost)."""
        if body.get("type") == "ae":
            ents = body.get("ents")
            if ents and ents[-1].get("t") == body.get("term"):
                return ("ae.own",)
        return ()

    OPTIONS = {
        "reads": ("how reads are linearized: 'read-index' (confirm leadership with a heartbeat "
                  "round, answer once applied to the commit index) or 'log' (append the read)",
                  "read-index"),
        "election-timeout-ms": ("minimum election timeout; each wait is uniform in [t, 2t)", 300),
        "heartbeat-interval-ms": ("how often a leader sends heartbeats", 50),
        "pre-vote": ("run a pre-vote round before raising the term (thesis 9.6)", False),
        "check-quorum": ("a leader that has not heard from a majority for an election timeout "
                         "steps down (thesis 6.2)", True),
        "append-entries-max": ("most entries carried by one AppendEntries message", 128),
        "inflight-max": ("most unacknowledged AppendEntries with entries per follower", 2),
        "uncommitted-max": ("most uncommitted entries a leader holds before it refuses clients "
                            "with error 11", 10_000),
    }

    # ---- construction and recovery -----------------------------------------------------------

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        if o["reads"] not in ("read-index", "log"):
            raise ValueError(f"raft: option reads must be 'read-index' or 'log', got {o['reads']!r}")
        for name in ("election-timeout-ms", "heartbeat-interval-ms", "append-entries-max",
                     "inflight-max", "uncommitted-max"):
            if not isinstance(o[name], int) or isinstance(o[name], bool) or o[name] < 1:
                raise ValueError(f"raft: option {name} must be a positive integer, got {o[name]!r}")
        self.election_timeout_ms: int = o["election-timeout-ms"]
        self.heartbeat_interval_ms: int = o["heartbeat-interval-ms"]
        self.append_entries_max: int = o["append-entries-max"]
        self.inflight_max: int = o["inflight-max"]
        self.uncommitted_max: int = o["uncommitted-max"]
        # Retransmit unacknowledged appends after this long (messages may be lost).
        self.append_retry_ms: int = 2 * self.heartbeat_interval_ms

        # Persistent state (figure 2).
        self.term = 0
        self.voted_for: str | None = None
        self.log: list[dict] = [{"t": 0, "op": None}]   # index 0 is a sentinel: log[i] is entry i
        # Volatile state.
        self.commit_index = 0
        self.applied = 0                                  # last log index applied to the machine
        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.violations: list[str] = []
        self._commit_saved = 0                            # the last commit index recorded
        self._last_tick_ms = 0
        self._election_elapsed_ms = 0
        self._election_deadline_ms = 0
        self._votes: set[str] = set()
        self._vote_retry_elapsed_ms = 0
        # Leader state, reset by _become_leader.
        self._next: dict[str, int] = {}
        self._match: dict[str, int] = {}
        self._inflight: dict[str, int] = {}
        self._append_wait_ms: dict[str, int] = {}
        self._active: set[str] = set()
        self._heartbeat_elapsed_ms = 0
        self._quorum_elapsed_ms = 0
        self._term_start_index = 0                        # index of this leader's no-op
        self._pending: dict[int, tuple[str, Any]] = {}    # log index -> (client, msg_id)
        self._pending_ids: dict[tuple[str, Any], int] = {}
        # Read index (thesis 6.4): rounds of heartbeats numbered by _read_seq.
        self._read_seq = 0
        self._read_acks: dict[str, int] = {}
        self._reads_unsent: list[tuple[str, dict]] = []
        self._reads_sent: deque[tuple[int, int, str, dict]] = deque()   # seq, index, client, body
        self._reads_confirmed: deque[tuple[int, str, dict]] = deque()  # index, client, body

    def on_recover(self, records: list[dict], now_ms: int) -> Ready:
        for rec in records:
            kind = rec.get("k")
            if kind == "hs":
                self.term, self.voted_for = rec["term"], rec["vote"]
            elif kind == "trunc":
                assert 1 <= rec["from"] <= len(self.log), f"truncation record {rec} past the log"
                del self.log[rec["from"]:]
            elif kind == "commit":
                self.commit_index = max(self.commit_index, min(rec["i"], self.last_index))
                continue
            elif kind == "ents":
                if rec["at"] != len(self.log):
                    raise ProtocolError(f"{self.node_id}: entries record at {rec['at']} but the "
                                        f"log ends at {len(self.log) - 1}")
                self.log.extend(rec["e"])
            else:
                raise ProtocolError(f"{self.node_id}: unknown record {rec!r}")
        self._last_tick_ms = now_ms
        self._commit_saved = self.commit_index
        self._reset_election_timer()
        ready = Ready()
        self._apply(ready)
        return ready

    # ---- small helpers -----------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return len(self.log) - 1

    @property
    def last_term(self) -> int:
        return self.log[-1]["t"]

    def _invariant(self, ok: bool, what: str) -> None:
        """Raise on a broken invariant; with a bug switch on, count it instead (see docstring)."""
        if ok:
            return
        if not self.bugs:
            raise ProtocolError(f"{self.node_id} (term {self.term}): {what}")
        if len(self.violations) < VIOLATIONS_MAX:
            self.violations.append(what)

    def _reset_election_timer(self) -> None:
        self._election_elapsed_ms = 0
        t = self.election_timeout_ms
        self._election_deadline_ms = t + self.rng.randrange(t)

    def _save_hard_state(self, ready: Ready) -> None:
        ready.save({"k": "hs", "term": self.term, "vote": self.voted_for})

    def _append(self, ready: Ready, entries: list[dict]) -> None:
        """Append entries to the log and persist them (before the Ready's messages leave)."""
        at = len(self.log)
        self.log.extend(entries)
        ready.save({"k": "ents", "at": at, "e": entries})

    def _truncate(self, ready: Ready, start: int) -> None:
        """Remove entries start.. (a conflicting suffix); they must not be committed."""
        self._invariant(start > self.commit_index,
                        f"truncating from {start} would remove committed entries "
                        f"(commit index {self.commit_index})")
        del self.log[start:]
        ready.save({"k": "trunc", "from": start})
        # Requests whose entries are gone: this server no longer knows their fate.
        for idx in [i for i in self._pending if i >= start]:
            client, msg_id = self._pending.pop(idx)
            self._pending_ids.pop((client, msg_id), None)
            ready.error(client, {"msg_id": msg_id}, ERR_CRASH,
                        "entry overwritten by another leader; outcome unknown")
        if self.applied > self.last_index:
            # Only reachable when a bug let a committed entry be truncated.
            self.applied = self.commit_index = self.last_index

    def _learn_leader(self, src: str) -> None:
        self._invariant(self.role != LEADER,
                        f"two leaders in term {self.term}: this server and {src}")
        self._invariant(self.leader_id in (None, src),
                        f"two leaders in term {self.term}: {self.leader_id} and {src}")
        self.leader_id = src

    # ---- role transitions (an impossible one is a ProtocolError) -----------------------------

    def _become_follower(self, ready: Ready, term: int, leader: str | None) -> None:
        if term < self.term:
            raise ProtocolError(f"{self.node_id}: term would go back from {self.term} to {term}")
        was_leader = self.role == LEADER
        if term > self.term:
            self.term, self.voted_for = term, None
            self._save_hard_state(ready)
            self.leader_id = None
        self.role = FOLLOWER
        if leader is not None:
            self._learn_leader(leader)
        self._reset_election_timer()
        if was_leader:
            self._drop_leader_state(ready)

    def _become_pre_candidate(self, ready: Ready) -> None:
        if self.role == LEADER:
            raise ProtocolError(f"{self.node_id}: a leader cannot start a pre-vote")
        self.role = PRE_CANDIDATE
        self.leader_id = None
        self._votes = {self.node_id}
        self._reset_election_timer()
        self._request_votes(ready, self.term + 1, pre=True)

    def _become_candidate(self, ready: Ready) -> None:
        if self.role == LEADER:
            raise ProtocolError(f"{self.node_id}: a leader cannot become a candidate")
        self.role = CANDIDATE
        self.term += 1
        self.voted_for = self.node_id
        self.leader_id = None
        self._save_hard_state(ready)
        self._votes = {self.node_id}
        self._reset_election_timer()
        self._request_votes(ready, self.term, pre=False)

    def _request_votes(self, ready: Ready, term: int, pre: bool) -> None:
        if len(self._votes) >= self.quorum:       # a one-server cluster wins alone
            self._won_votes(ready, pre)
            return
        self._vote_retry_elapsed_ms = 0
        for p in self.peers:
            if p not in self._votes:
                ready.send(p, {"type": "rv", "term": term, "li": self.last_index,
                               "lt": self.last_term, "pre": pre})

    def _won_votes(self, ready: Ready, pre: bool) -> None:
        if pre:
            self._become_candidate(ready)
        else:
            self._become_leader(ready)

    def _become_leader(self, ready: Ready) -> None:
        if self.role != CANDIDATE:
            raise ProtocolError(f"{self.node_id}: only a candidate can become leader "
                                f"(was {self.role})")
        self._invariant(self.leader_id is None,
                        f"elected in term {self.term} which already has leader {self.leader_id}")
        self.role = LEADER
        self.leader_id = self.node_id
        nxt = self.last_index + 1
        self._next = {p: nxt for p in self.peers}
        self._match = {p: 0 for p in self.peers}
        self._inflight = {p: 0 for p in self.peers}
        self._append_wait_ms = {p: 0 for p in self.peers}
        self._active = set()
        self._heartbeat_elapsed_ms = 0
        self._quorum_elapsed_ms = 0
        self._read_acks = {p: 0 for p in self.peers}
        # Section 8: a no-op of the new term lets older entries commit (figure 8) and gives
        # read-index a point at which this leader knows every committed entry. The
        # commit-old-term bug commits old entries by counting, so it needs no no-op.
        if "commit-old-term" not in self.bugs:
            self._append(ready, [{"t": self.term, "op": None}])
        self._term_start_index = self.last_index
        self._broadcast_append(ready)
        self._maybe_commit(ready)

    def _drop_leader_state(self, ready: Ready) -> None:
        """Leadership lost: reads waiting for confirmation can fail definitely (no effect)."""
        hint = {"leader": self.leader_id} if self.leader_id else {}
        for _, _, client, body in self._reads_sent:
            ready.error(client, body, ERR_TEMPORARILY_UNAVAILABLE, "leadership lost", **hint)
        for client, body in self._reads_unsent:
            ready.error(client, body, ERR_TEMPORARILY_UNAVAILABLE, "leadership lost", **hint)
        for _, client, body in self._reads_confirmed:
            ready.error(client, body, ERR_TEMPORARILY_UNAVAILABLE, "leadership lost", **hint)
        self._reads_sent.clear()
        self._reads_unsent.clear()
        self._reads_confirmed.clear()
        # Pending writes stay: their entries may still commit under the next leader, and this
        # server answers them if it applies them at the same index.

    # ---- inputs ------------------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> Ready:
        return self._note_commit(self._on_tick(now_ms))

    def on_peer(self, src: str, body: dict, now_ms: int) -> Ready:
        return self._note_commit(self._on_peer(src, body))

    def on_client(self, src: str, body: dict, now_ms: int) -> Ready:
        return self._note_commit(self._on_client(src, body))

    def _note_commit(self, ready: Ready) -> Ready:
        """Record the commit index after this Ready's other records, if they need a write."""
        if ready.persist and self.commit_index > self._commit_saved:
            ready.save({"k": "commit", "i": self.commit_index})
            self._commit_saved = self.commit_index
        return ready

    def _on_tick(self, now_ms: int) -> Ready:
        ready = Ready()
        delta = max(0, now_ms - self._last_tick_ms)   # a clock that jumps back stalls timers
        self._last_tick_ms = now_ms
        if self.role == LEADER:
            self._tick_leader(ready, delta)
            return ready
        if self.role in (CANDIDATE, PRE_CANDIDATE):
            # Section 5.1: "servers retry RPCs if they do not receive a response in a timely
            # manner" - ask again those that have not granted (requests or replies get lost).
            self._vote_retry_elapsed_ms += delta
            if self._vote_retry_elapsed_ms >= self.heartbeat_interval_ms:
                pre = self.role == PRE_CANDIDATE
                self._request_votes(ready, self.term + 1 if pre else self.term, pre)
        self._election_elapsed_ms += delta
        if self._election_elapsed_ms >= self._election_deadline_ms:
            if self.options["pre-vote"]:
                self._become_pre_candidate(ready)
            else:
                self._become_candidate(ready)
        return ready

    def _tick_leader(self, ready: Ready, delta: int) -> None:
        self._quorum_elapsed_ms += delta
        if self._quorum_elapsed_ms >= self.election_timeout_ms:
            self._quorum_elapsed_ms = 0
            if self.options["check-quorum"] and len(self._active) + 1 < self.quorum:
                self.leader_id = None
                self._become_follower(ready, self.term, None)
                return
            self._active = set()
        for p in self.peers:
            if self._inflight[p]:
                self._append_wait_ms[p] += delta
                if self._append_wait_ms[p] >= self.append_retry_ms:
                    # Appends or their acks were lost: probe again from the last known match.
                    self._next[p] = self._match[p] + 1
                    self._inflight[p] = 0
                    self._send_append(ready, p)
        self._heartbeat_elapsed_ms += delta
        if self._heartbeat_elapsed_ms >= self.heartbeat_interval_ms:
            self._heartbeat_elapsed_ms = 0
            self._broadcast_heartbeat(ready)

    def _on_peer(self, src: str, body: dict) -> Ready:
        ready = Ready()
        kind = body.get("type")
        term = body.get("term")
        if not isinstance(term, int):
            raise ProtocolError(f"{self.node_id}: peer message without a term: {body!r}")
        if kind == "rv":
            self._on_request_vote(ready, src, body)
            return ready
        if kind == "rv_r" and body["pre"] and body["granted"]:
            # A granted pre-vote carries the term we asked about, not the voter's.
            if self.role == PRE_CANDIDATE and term == self.term + 1:
                self._count_vote(ready, src, pre=True)
            return ready
        if term > self.term:
            leader = src if kind in ("ae", "hb") else None
            self._become_follower(ready, term, leader)
        elif term < self.term:
            # A stale leader learns the newer term from the rejection.
            if kind == "ae":
                ready.send(src, {"type": "ae_r", "term": self.term, "ok": False,
                                 "rej": body["prev"], "hint": self.last_index + 1})
            elif kind == "hb":
                ready.send(src, {"type": "hb_r", "term": self.term, "rs": 0})
            return ready
        handler = _PEER_HANDLERS.get(kind)
        if handler is None:
            raise ProtocolError(f"{self.node_id}: unknown peer message {kind!r}")
        handler(self, ready, src, body)
        return ready

    def _on_client(self, src: str, body: dict) -> Ready:
        ready = Ready()
        if self.role != LEADER:
            hint = {"leader": self.leader_id} if self.leader_id else {}
            ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE, "not the leader", **hint)
            return ready
        if body["type"] not in self.machine.ops:
            ready.error(src, body, ERR_NOT_SUPPORTED,
                        f"{self.machine.name} does not support {body['type']!r}")
            return ready
        op = self.request_op(body)
        if "txn-local-reads" in self.bugs and op.get("type") == "txn":
            # The bug: the reads are answered from this replica's state now, not in log order.
            early, _ = self.machine.execute(op)
            if early.get("type") == "txn_ok":
                op = {**op, "reads_at_arrival": early["txn"]}
        if is_read(op) and self.options["reads"] == "read-index":
            self._read_index(ready, src, body)
            return ready
        msg_id = body.get("msg_id")
        if (src, msg_id) in self._pending_ids:
            return ready                     # a duplicate of a request already in the log
        if self.last_index - self.commit_index >= self.uncommitted_max:
            ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE,
                        f"{self.uncommitted_max} entries are not committed yet",
                        leader=self.node_id)
            return ready
        self._append(ready, [{"t": self.term, "op": op, "c": src, "id": msg_id}])
        self._pending[self.last_index] = (src, msg_id)
        self._pending_ids[(src, msg_id)] = self.last_index
        for p in self.peers:
            if self._inflight[p] < self.inflight_max:
                self._send_append(ready, p)
        self._maybe_commit(ready)
        return ready

    # ---- elections ---------------------------------------------------------------------------

    def _on_request_vote(self, ready: Ready, src: str, body: dict) -> None:
        term, pre = body["term"], body["pre"]
        up_to_date = (body["lt"], body["li"]) >= (self.last_term, self.last_index)
        if pre:
            # Thesis 9.6: grant only if a real election could succeed and we have no leader.
            heard_leader = (self.leader_id is not None
                            and self._election_elapsed_ms < self.election_timeout_ms)
            granted = term > self.term and up_to_date and not heard_leader
            ready.send(src, {"type": "rv_r", "term": term if granted else self.term,
                             "granted": granted, "pre": True})
            return
        if term > self.term:
            self._become_follower(ready, term, None)
        granted = (term == self.term and self.voted_for in (None, src) and up_to_date)
        if granted and self.voted_for is None:
            self.voted_for = src
            if "vote-not-persisted" not in self.bugs:
                self._save_hard_state(ready)   # on disk before the grant leaves (durability order)
            self._reset_election_timer()
        ready.send(src, {"type": "rv_r", "term": self.term, "granted": granted, "pre": False})

    def _on_vote_response(self, ready: Ready, src: str, body: dict) -> None:
        # Same term here (on_peer handled newer and older ones); pre-vote grants never get here.
        if body["pre"] or self.role != CANDIDATE or not body["granted"]:
            return
        self._count_vote(ready, src, pre=False)

    def _count_vote(self, ready: Ready, src: str, pre: bool) -> None:
        self._votes.add(src)
        if len(self._votes) == self.quorum:
            self._won_votes(ready, pre)

    # ---- replication: leader side ------------------------------------------------------------

    def _send_append(self, ready: Ready, peer: str) -> None:
        nxt = self._next[peer]
        assert 1 <= nxt <= self.last_index + 1, f"next index {nxt} for {peer} outside the log"
        prev = nxt - 1
        end = min(self.last_index, prev + self.append_entries_max)
        entries = self.log[nxt:end + 1]
        ready.send(peer, {"type": "ae", "term": self.term, "prev": prev,
                          "pt": self.log[prev]["t"], "ents": entries,
                          "commit": self.commit_index})
        if entries:
            self._next[peer] = end + 1                # optimistic pipelining
            if self._inflight[peer] == 0:
                self._append_wait_ms[peer] = 0
            self._inflight[peer] += 1

    def _broadcast_append(self, ready: Ready) -> None:
        for p in self.peers:
            self._send_append(ready, p)

    def _broadcast_heartbeat(self, ready: Ready) -> None:
        for p in self.peers:
            # min(match, commit): the follower's log is known to agree with ours up to there.
            ready.send(p, {"type": "hb", "term": self.term,
                           "commit": min(self._match[p], self.commit_index),
                           "rs": self._read_seq})

    def _on_append_response(self, ready: Ready, src: str, body: dict) -> None:
        if self.role != LEADER:
            return
        self._active.add(src)
        if body["ok"]:
            match = body["match"]
            self._invariant(match <= self.last_index,
                            f"{src} acknowledged index {match} beyond our log ({self.last_index})")
            if match > self._match[src]:
                self._match[src] = match
                self._maybe_commit(ready)
            self._next[src] = max(self._next[src], self._match[src] + 1)
            self._inflight[src] = max(0, self._inflight[src] - 1)
            self._append_wait_ms[src] = 0
        else:
            if body["rej"] <= self._match[src]:
                # Stale (reordered behind a later ack): the follower holds match entries. Only a
                # follower that lost acknowledged entries (a bug) rejects there for real; then
                # it stays behind and the heartbeat retries it, without a reject-resend storm.
                return
            self._next[src] = max(self._match[src] + 1, min(body["hint"], body["rej"]))
            self._inflight[src] = 0
        if self._next[src] <= self.last_index and self._inflight[src] < self.inflight_max:
            self._send_append(ready, src)

    def _on_heartbeat_response(self, ready: Ready, src: str, body: dict) -> None:
        if self.role != LEADER:
            return
        self._active.add(src)
        if body["rs"] > self._read_acks[src]:
            self._read_acks[src] = body["rs"]
            self._confirm_reads(ready)
        if self._match[src] < self.last_index and self._inflight[src] == 0:
            self._send_append(ready, src)

    def _maybe_commit(self, ready: Ready) -> None:
        """Commit the highest index stored on a majority, if it is of the current term (5.4.2)."""
        matches = sorted([self.last_index, *self._match.values()], reverse=True)
        n = matches[self.quorum - 1]
        if n <= self.commit_index:
            return
        if self.log[n]["t"] != self.term and "commit-old-term" not in self.bugs:
            return     # figure 8: counting replicas of an older term's entry proves nothing
        self._commit_to(ready, n)

    # ---- replication: follower side ----------------------------------------------------------

    def _on_append(self, ready: Ready, src: str, body: dict) -> None:
        # Same term (on_peer handled newer and older ones).
        if self.role != FOLLOWER:
            if self.role == LEADER:
                self._invariant(False, f"append from {src} in my own term {self.term}")
                return
            self._become_follower(ready, self.term, src)
        else:
            self._learn_leader(src)
        self._reset_election_timer()
        prev, prev_term, entries = body["prev"], body["pt"], body["ents"]
        if prev > self.last_index:
            ready.send(src, {"type": "ae_r", "term": self.term, "ok": False, "rej": prev,
                             "hint": self.last_index + 1})
            return
        if self.log[prev]["t"] != prev_term:
            # Log-matching check failed. Hint: the first index of our conflicting term, so the
            # leader skips it in one round trip (bounded walk, never into the committed prefix).
            conflict = self.log[prev]["t"]
            hint, floor = prev, max(self.commit_index + 1, prev - HINT_SCAN_MAX)
            while hint > floor and self.log[hint - 1]["t"] == conflict:
                hint -= 1
            ready.send(src, {"type": "ae_r", "term": self.term, "ok": False, "rej": prev,
                             "hint": hint})
            return
        # Skip entries we already hold (a duplicated or reordered append must not truncate).
        k, n = 0, len(entries)
        while k < n and prev + 1 + k <= self.last_index:
            mine, theirs = self.log[prev + 1 + k], entries[k]
            if mine["t"] != theirs["t"]:
                self._truncate(ready, prev + 1 + k)
                break
            self._invariant(mine == theirs,
                            f"Log Matching: index {prev + 1 + k} term {mine['t']} holds "
                            f"different entries")
            k += 1
        if k < n:
            self._append(ready, entries[k:])
            if "ack-before-persist" in self.bugs:
                ready.sync = False
        last_new = prev + n
        ready.send(src, {"type": "ae_r", "term": self.term, "ok": True, "match": last_new})
        if body["commit"] > self.commit_index:
            self._commit_to(ready, min(body["commit"], last_new))

    def _on_heartbeat(self, ready: Ready, src: str, body: dict) -> None:
        if self.role == LEADER:
            self._invariant(False, f"heartbeat from {src} in my own term {self.term}")
            return
        if self.role != FOLLOWER:
            self._become_follower(ready, self.term, src)
        else:
            self._learn_leader(src)
        self._reset_election_timer()
        ready.send(src, {"type": "hb_r", "term": self.term, "rs": body["rs"]})
        if body["commit"] > self.commit_index:
            self._commit_to(ready, min(body["commit"], self.last_index))

    # ---- commit and apply --------------------------------------------------------------------

    def _commit_to(self, ready: Ready, index: int) -> None:
        if index <= self.commit_index:
            return
        self._invariant(index <= self.last_index,
                        f"commit index {index} beyond the log ({self.last_index})")
        self.commit_index = min(index, self.last_index)
        self._apply(ready)

    def _apply(self, ready: Ready) -> None:
        while self.applied < self.commit_index:
            self.applied += 1
            entry = self.log[self.applied]
            op = entry["op"]
            if op is None:
                continue
            result = self.machine.apply(op)
            pending = self._pending.pop(self.applied, None)
            if pending is not None:
                self._pending_ids.pop(pending, None)
                if pending == (entry.get("c"), entry.get("id")):
                    ready.reply(pending[0], {"msg_id": pending[1]}, result)
        assert self.applied <= self.commit_index <= self.last_index, (
            f"applied {self.applied} <= commit {self.commit_index} <= last {self.last_index}")
        self._serve_confirmed_reads(ready)

    # ---- read index (thesis 6.4) -------------------------------------------------------------

    def _read_index(self, ready: Ready, client: str, body: dict) -> None:
        if "stale-reads" in self.bugs:
            # The bug: trust that we still lead and answer from local state.
            ready.reply(client, body, self.machine.query(self.request_op(body)))
            return
        self._reads_unsent.append((client, body))
        if not self._reads_sent:
            self._start_read_round(ready)

    def _start_read_round(self, ready: Ready) -> None:
        # Everything committed before the read arrived is at or below max(commit, our no-op).
        index = max(self.commit_index, self._term_start_index)
        self._read_seq += 1
        for client, body in self._reads_unsent:
            self._reads_sent.append((self._read_seq, index, client, body))
        self._reads_unsent.clear()
        self._broadcast_heartbeat(ready)
        self._confirm_reads(ready)

    def _confirm_reads(self, ready: Ready) -> None:
        acks = sorted([self._read_seq, *self._read_acks.values()], reverse=True)
        confirmed = acks[self.quorum - 1]
        while self._reads_sent and self._reads_sent[0][0] <= confirmed:
            _, index, client, body = self._reads_sent.popleft()
            self._reads_confirmed.append((index, client, body))
        self._serve_confirmed_reads(ready)
        if not self._reads_sent and self._reads_unsent:
            self._start_read_round(ready)

    def _serve_confirmed_reads(self, ready: Ready) -> None:
        while self._reads_confirmed and self._reads_confirmed[0][0] <= self.applied:
            _, client, body = self._reads_confirmed.popleft()
            ready.reply(client, body, self.machine.query(self.request_op(body)))

    # ---- introspection -----------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.role == LEADER

    def describe(self) -> dict:
        out = {"role": self.role, "term": self.term, "leader": self.leader_id,
               "commit_index": self.commit_index, "last_index": self.last_index,
               "log_applied": self.applied}
        if self.violations:
            out["violations"] = list(self.violations)
        return out

    def committed_ops(self) -> list[dict | None]:
        """The committed log (entries 1..commit_index) as ops, no-ops as None (for tests)."""
        return [e["op"] for e in self.log[1:self.commit_index + 1]]


_PEER_HANDLERS = {
    "rv_r": RaftCore._on_vote_response,
    "ae": RaftCore._on_append,
    "ae_r": RaftCore._on_append_response,
    "hb": RaftCore._on_heartbeat,
    "hb_r": RaftCore._on_heartbeat_response,
}
