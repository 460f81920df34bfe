"""Multi-Paxos as a sans-I/O core: a sequence of single-decree Paxos instances, one per log slot.

Every node plays proposer, acceptor and learner (Lamport, "Paxos Made Simple", section 3; the
leader/acceptor split of van Renesse & Altinbuken, "Paxos Made Moderately Complex").

Ballots are pairs (round, node id), compared lexicographically, so two proposers never issue the
same ballot. One promise covers every slot: a proposer that wants to lead runs phase 1 once
(PREPARE(b, from) to all; each acceptor that has promised nothing higher promises b and reports,
for every slot >= from, the value it knows chosen or its highest-ballot accepted value). With a
quorum of promises the new leader re-proposes, in ballot b, the highest-ballot value reported for
every unfinished slot, fills holes with no-ops, and from then on runs only phase 2 (a stable
leader skips phase 1): ACCEPT(b, slot, entries) batched, ACCEPTED back, a slot is chosen when a
quorum of acceptors accepted it in b.

Learning: ACCEPT and heartbeat messages carry the leader's `commit` (every slot <= commit is
chosen). A follower that accepted slot s in the leader's ballot knows that the accepted entry is the
chosen one (one proposer, one value per slot per ballot). Slots it cannot learn that way (it missed
the ACCEPT, or was down) are sent by the leader in LEARN messages when a heartbeat reply shows the
follower behind. Chosen entries are applied to the machine in slot order; no-ops are skipped, so
`applied_index` counts update commands only.

Durability (the Core's durability order does the rest): an acceptor appends its promise record,
and its accepted entries, in the same Ready as the PROMISE / ACCEPTED reply, so they are on disk
before the reply leaves. That is all Paxos needs for safety after any crash, including of every node
at once. For liveness a learner also records its commit point (and the chosen entries it learned
from LEARN messages, which its acceptor may not hold), so that a restarted node re-applies its
chosen prefix at once instead of waiting for a leader; a slot it learned through its own accepted
entry needs no copy, since a later overwrite of that entry carries a higher ballot and therefore
the same value (P2b).

Clients: only the leader takes requests (others answer error 11 with the leader's id when known).
Every request -- reads too -- is proposed into the log and answered when its slot is applied, which
makes reads linearizable without leases. The node that proposed a request answers it, even when it
has lost the leadership meanwhile (its slot may still be chosen). An entry carries its client and
msg_id; applying skips an entry whose (client, msg_id) was already applied, so a duplicated request
never applies twice.

Leader liveness: heartbeats every heartbeat_ms; a node that hears no leader for a randomized
election timeout in [election_timeout_ms, 2 * election_timeout_ms) starts phase 1 with a higher
round. As in the papers, a leader steps down only when it learns of a higher ballot (a NACK, a
PREPARE, an ACCEPT or heartbeat of a higher ballot); a leader cut off from a quorum keeps taking
requests that cannot be chosen, and their clients time out.
"""

from __future__ import annotations

from typing import Any

from .core import Core, ProtocolError, Ready
from .machines import ERR_TEMPORARILY_UNAVAILABLE

Ballot = tuple[int, str]
ZERO_BALLOT: Ballot = (0, "")
NOOP: dict = {"noop": True}

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


def _ballot(value: Any) -> Ballot:
    """A ballot from its JSON form [round, node]."""
    round_, node = value
    return (int(round_), str(node))


class MultiPaxosCore(Core):
    NAME = "multi-paxos"
    MODEL = "consensus"
    LOGS = "inputs"
    DESCRIPTION = ("Multi-Paxos: one Paxos instance per log slot, a stable leader that runs phase 1 "
                   "once per leadership and then only phase 2; the new leader re-proposes accepted "
                   "values and fills holes with no-ops.")
    BUGS = {
        "forget-promise": "an acceptor keeps its promises in memory only; after a crash it accepts "
                          "proposals of a lower ballot than it promised, so two values get chosen "
                          "for one slot",
        "no-reproposal": "a new leader ignores the values that acceptors report as accepted for "
                         "slots it has not learned, and puts its own commands there: chosen, "
                         "acknowledged commands are overwritten",
    }
    CRASH_POINTS = {
        "promise": "a ballot promised: the promise must survive a restart",
        "accepted": "a value accepted: it must be on disk before the proposer counts it",
        "accept": "values proposed by a leader that no acceptor holds yet",
    }
    OPTIONS = {
        "heartbeat_ms": ("interval of the leader's heartbeats (and retransmissions)", 50),
        "election_timeout_ms": ("minimum silence before a follower runs phase 1; randomized up to "
                                "twice that", 300),
        "accept_batch_max": ("most entries in one ACCEPT message", 64),
        "learn_batch_max": ("most chosen entries in one LEARN message (catch-up of a follower)",
                            1024),
        "resend_max": ("most unchosen slots a leader retransmits per heartbeat", 256),
        "pipeline_max": ("unchosen slots beyond which new commands wait and leave in one batched "
                         "ACCEPT (on the next ACCEPTED or tick) instead of one ACCEPT each", 4),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Acceptor (durable: promise and accepted entries are persisted before replies).
        self.promised: Ballot = ZERO_BALLOT
        self.accepted: dict[int, tuple[Ballot, dict]] = {}
        # Learner (volatile): chosen entries, the contiguous chosen prefix, the applied prefix.
        self.chosen: dict[int, dict] = {}
        self.commit = 0
        self.applied_slot = 0
        self.applied_ids: dict[str, set] = {}
        # Proposer.
        self.role = FOLLOWER
        self.ballot: Ballot = ZERO_BALLOT         # my ballot while candidate/leader
        self.max_round = 0                        # highest round seen anywhere
        self.leader_id: str | None = None
        self.leader_ballot: Ballot = ZERO_BALLOT  # ballot of the leader I follow
        self.promises: dict[str, dict] = {}
        self.prepare_from = 1
        self.proposals: dict[int, dict] = {}      # slot -> entry proposed in self.ballot
        self.votes: dict[int, set[str]] = {}      # slot -> acceptors that accepted it in ballot
        self.next_slot = 1
        self.waiting: dict[tuple[str, Any], dict] = {}  # (client, msg_id) -> request, to answer
        # Timers.
        self.last_now_ms = 0
        self.election_deadline_ms = 0
        self.heartbeat_due_ms = 0
        self.timeout_ms: int | None = None
        self.unsent_from: int | None = None       # leader: first proposal not yet sent (batching)
        self.hb_mark = 0                          # leader: next_slot at the previous heartbeat

    # ---- helpers -----------------------------------------------------------------------------

    def _check(self, cond: bool, what: str) -> None:
        """A cross-node invariant (Paxos safety). Bug switches break these on purpose, so they
        are only enforced with no bug on; the harness must then catch the consequences."""
        if not cond and not self.bugs:
            raise ProtocolError(f"{self.node_id}: {what}")

    def _reset_election(self, now_ms: int, fresh: bool = False) -> None:
        """Restart the election timer; `fresh` draws a new random timeout (after one fired), so
        that dueling proposers drift apart without an RNG draw per message."""
        t = self.options["election_timeout_ms"]
        if fresh or self.timeout_ms is None:
            self.timeout_ms = t + self.rng.randrange(t)
        self.election_deadline_ms = now_ms + self.timeout_ms

    def _see_round(self, b: Ballot) -> None:
        self.max_round = max(self.max_round, b[0])

    def describe(self) -> dict:
        return {"role": self.role, "ballot": list(self.ballot if self.role != FOLLOWER
                                                   else self.leader_ballot),
                "leader": self.leader_id, "commit": self.commit, "promised": list(self.promised)}

    def is_leader(self) -> bool:
        return self.role == LEADER

    # ---- recovery ----------------------------------------------------------------------------

    def on_recover(self, records: list[dict], now_ms: int) -> Ready:
        learned: dict[int, dict] = {}
        commit = 0
        for rec in records:
            t = rec.get("t")
            if t == "commit":
                commit = max(commit, rec["c"])
            elif t == "chosen":
                for i, entry in enumerate(rec["e"]):
                    learned[rec["s"] + i] = entry
            elif t == "promise":
                self.promised = max(self.promised, _ballot(rec["b"]))
            elif t == "accept":
                b = _ballot(rec["b"])
                for i, entry in enumerate(rec["e"]):
                    self.accepted[rec["s"] + i] = (b, entry)
                if "forget-promise" not in self.bugs:
                    # Accepting b is also a promise not to accept below b.
                    self.promised = max(self.promised, b)
            else:
                raise ProtocolError(f"{self.node_id}: unknown record {rec!r}")
        if "forget-promise" in self.bugs:
            self.promised = ZERO_BALLOT
        self._see_round(self.promised)
        for b, _ in self.accepted.values():
            self._see_round(b)
        # Re-apply what I knew chosen. A slot I learned from my own accepted entry still holds
        # the chosen value: a later overwrite has a higher ballot, hence the same value (P2b).
        for s in range(1, commit + 1):
            entry = learned.get(s)
            if entry is None and s in self.accepted:
                entry = self.accepted[s][1]
            if entry is None:
                self._check(False, f"slot {s} <= persisted commit {commit} has no value")
                break
            self.chosen[s] = entry
        self._advance_commit(Ready())       # nobody waits for these replies any more
        self.last_now_ms = now_ms
        self._reset_election(now_ms, fresh=True)
        return Ready()

    # ---- time --------------------------------------------------------------------------------

    def on_tick(self, now_ms: int) -> Ready:
        if now_ms < self.last_now_ms:
            # The clock jumped back: keep the timers' remaining durations.
            shift = self.last_now_ms - now_ms
            self.election_deadline_ms -= shift
            self.heartbeat_due_ms -= shift
        self.last_now_ms = now_ms
        ready = Ready()
        if self.role == LEADER:
            self._flush(ready)
            if now_ms >= self.heartbeat_due_ms:
                self._heartbeat(now_ms, ready)
        elif now_ms >= self.election_deadline_ms:
            self._start_phase1(now_ms, ready)
        return ready

    def _heartbeat(self, now_ms: int, ready: Ready) -> None:
        self.heartbeat_due_ms = now_ms + self.options["heartbeat_ms"]
        b = list(self.ballot)
        for p in self.peers:
            ready.send(p, {"type": "hb", "b": b, "commit": self.commit})
        # Retransmit unchosen proposals to the acceptors that have not accepted them (lost
        # ACCEPTs): only those proposed before the previous heartbeat, the newer ones are
        # most likely still in flight.
        budget = self.options["resend_max"]
        old_end, self.hb_mark = self.hb_mark, self.next_slot
        slots = [s for s in range(self.commit + 1, min(old_end, self.next_slot))
                 if s in self.proposals]
        for p in self.peers:
            missing = [s for s in slots[:budget] if p not in self.votes.get(s, ())]
            self._send_accepts(p, missing, ready)

    def _send_accepts(self, dest: str, slots: list[int], ready: Ready) -> None:
        """ACCEPT messages for `slots` (ascending), contiguous runs batched."""
        batch_max = self.options["accept_batch_max"]
        run: list[int] = []
        for s in slots + [None]:  # type: ignore[list-item]
            if run and (s is None or s != run[-1] + 1 or len(run) >= batch_max):
                ready.send(dest, {"type": "accept", "b": list(self.ballot), "s": run[0],
                                  "e": [self.proposals[x] for x in run], "commit": self.commit})
                run = []
            if s is not None:
                run.append(s)

    # ---- phase 1 (proposer) ------------------------------------------------------------------

    def _start_phase1(self, now_ms: int, ready: Ready) -> None:
        self.role = CANDIDATE
        self.max_round = max(self.max_round, self.promised[0]) + 1
        self.ballot = (self.max_round, self.node_id)
        self.leader_id = None
        self.proposals, self.votes = {}, {}
        self.promises = {}
        self.prepare_from = self.commit + 1
        self.unsent_from = None
        self._reset_election(now_ms, fresh=True)
        # My own acceptor promises first (persisted with the PREPAREs, before they leave).
        self._promise(self.node_id, {"type": "prepare", "b": list(self.ballot),
                                     "from": self.prepare_from}, ready)
        for p in self.peers:
            ready.send(p, {"type": "prepare", "b": list(self.ballot), "from": self.prepare_from})

    def _promise(self, src: str, body: dict, ready: Ready) -> None:
        """Acceptor: answer PREPARE(b, from). Promises b if nothing higher was promised (P1a)."""
        b = _ballot(body["b"])
        self._see_round(b)
        if b < self.promised:
            ready.send(src, {"type": "nack", "b": list(self.promised)})
            return
        if b > self.promised:
            self.promised = b
            if "forget-promise" not in self.bugs:
                ready.save({"t": "promise", "b": list(b)})
        if self.role != FOLLOWER and b != self.ballot:
            self._become_follower(None, ZERO_BALLOT, self.last_now_ms)
        frm = int(body["from"])
        # Report every slot >= from: chosen entries as such (ballot None), else the accepted one.
        report = []
        top = max(max(self.accepted, default=0), max(self.chosen, default=0))
        for s in range(frm, top + 1):
            if s in self.chosen:
                report.append([s, None, self.chosen[s]])
            elif s in self.accepted:
                ab, entry = self.accepted[s]
                report.append([s, list(ab), entry])
        reply = {"type": "promise", "b": list(b), "acc": report}
        if src == self.node_id:
            self._on_promise(self.node_id, reply, ready)
        else:
            ready.send(src, reply)

    def _on_promise(self, src: str, body: dict, ready: Ready) -> None:
        if self.role != CANDIDATE or _ballot(body["b"]) != self.ballot:
            return
        self.promises[src] = body
        if len(self.promises) >= self.quorum:
            self._become_leader(ready)

    def _become_leader(self, ready: Ready) -> None:
        assert self.role == CANDIDATE and len(self.promises) >= self.quorum
        self.role = LEADER
        self.leader_id = self.node_id
        self.leader_ballot = self.ballot
        now = self.last_now_ms
        # For every slot >= prepare_from: a value known chosen, else the highest-ballot accepted
        # value among the promises (P2c), else a no-op to fill the hole.
        best: dict[int, tuple[tuple, dict]] = {}
        for promise in self.promises.values():
            for s, ab, entry in promise["acc"]:
                rank = (1, ZERO_BALLOT) if ab is None else (0, _ballot(ab))
                if s not in best or rank > best[s][0]:
                    best[s] = (rank, entry)
        top = max(best, default=self.prepare_from - 1)
        if "no-reproposal" in self.bugs:
            # BUG: start from my own log end and ignore what the acceptors reported.
            best, top = {}, self.commit
        self.proposals = {}
        for s in range(self.prepare_from, top + 1):
            self.proposals[s] = best[s][1] if s in best else NOOP
        self.next_slot = top + 1
        self.votes = {}
        self.promises = {}
        self.unsent_from = None
        slots = sorted(self.proposals)
        self._accept_locally(slots, ready)
        for p in self.peers:
            self._send_accepts(p, slots, ready)
        self.heartbeat_due_ms = now  # announce the leadership at the next tick
        self._advance_commit_leader(ready)

    def _accept_locally(self, slots: list[int], ready: Ready) -> None:
        """The leader's own acceptor accepts its proposals (persisted before the ACCEPTs leave)."""
        if not slots:
            return
        assert self.ballot >= self.promised, "a leader's own acceptor promised a higher ballot"
        start = slots[0]
        assert slots == list(range(start, start + len(slots)))
        entries = [self.proposals[s] for s in slots]
        for s, e in zip(slots, entries):
            self.accepted[s] = (self.ballot, e)
            self.votes.setdefault(s, set()).add(self.node_id)
        ready.save({"t": "accept", "b": list(self.ballot), "s": start, "e": entries})

    # ---- phase 2 (acceptor) ------------------------------------------------------------------

    def _on_accept(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        b = _ballot(body["b"])
        self._see_round(b)
        if b < self.promised:
            ready.send(src, {"type": "nack", "b": list(self.promised)})
            return
        self._follow(src, b, now_ms)
        self.promised = b
        start, entries = int(body["s"]), body["e"]
        for i, entry in enumerate(entries):
            s = start + i
            if s in self.chosen:
                self._check(self.chosen[s] == entry,
                            f"slot {s} chosen as {self.chosen[s]} but {b} proposes {entry}")
            self.accepted[s] = (b, entry)
        ready.save({"t": "accept", "b": list(b), "s": start, "e": entries})
        ready.send(src, {"type": "accepted", "b": list(b), "s": start, "n": len(entries)})
        self._learn_commit(b, int(body["commit"]), ready)

    def _follow(self, leader: str, b: Ballot, now_ms: int) -> None:
        """A message from the leader of ballot b (>= promised): follow it."""
        if self.role != FOLLOWER and b > self.ballot:
            self._become_follower(leader, b, now_ms)
        if self.role == FOLLOWER:
            if b >= self.leader_ballot:
                self.leader_id, self.leader_ballot = leader, b
            self._reset_election(now_ms)

    def _become_follower(self, leader: str | None, b: Ballot, now_ms: int) -> None:
        self.role = FOLLOWER
        self.leader_id, self.leader_ballot = leader, b
        self.proposals, self.votes, self.promises = {}, {}, {}
        self.unsent_from = None
        self._reset_election(now_ms)

    def _on_heartbeat(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        b = _ballot(body["b"])
        self._see_round(b)
        if b < self.promised:
            ready.send(src, {"type": "nack", "b": list(self.promised)})
            return
        self._follow(src, b, now_ms)
        self._learn_commit(b, int(body["commit"]), ready)
        ready.send(src, {"type": "hb_ok", "b": list(b), "commit": self.commit,
                         "asked": int(body["commit"])})

    def _learn_commit(self, b: Ballot, leader_commit: int, ready: Ready) -> None:
        """Slots <= leader_commit that I accepted in the leader's ballot b hold the chosen entry."""
        s = self.commit + 1
        while s <= leader_commit:
            if s not in self.chosen:
                acc = self.accepted.get(s)
                if acc is None or acc[0] != b:
                    break
                self.chosen[s] = acc[1]
            s += 1
        self._advance_commit(ready)

    def _on_learn(self, src: str, body: dict, ready: Ready) -> None:
        start, entries = int(body["s"]), body["e"]
        first_new = None
        for i, entry in enumerate(entries):
            s = start + i
            if s in self.chosen:
                self._check(self.chosen[s] == entry, f"slot {s} learned twice, differently")
            else:
                self.chosen[s] = entry
                if first_new is None:
                    first_new = i
        if first_new is not None:
            # Not necessarily what my acceptor holds: keep the chosen values themselves.
            ready.save({"t": "chosen", "s": start + first_new, "e": entries[first_new:]})
        self._advance_commit(ready)
        # Ask for the next batch at once instead of waiting for a heartbeat.
        ready.send(src, {"type": "hb_ok", "b": body["b"], "commit": self.commit,
                         "asked": int(body["upto"])})

    # ---- phase 2 (leader) --------------------------------------------------------------------

    def _on_accepted(self, src: str, body: dict, ready: Ready) -> None:
        if self.role != LEADER or _ballot(body["b"]) != self.ballot:
            return
        start = int(body["s"])
        for s in range(start, start + int(body["n"])):
            if s > self.commit and s in self.proposals:
                self.votes.setdefault(s, set()).add(src)
        before = self.commit
        self._advance_commit_leader(ready)
        if self.commit > before:
            self._flush(ready)   # one batch per step of the commit point, not per ACCEPTED

    def _flush(self, ready: Ready) -> None:
        """Send the proposals held back while the pipeline was full, batched."""
        if self.unsent_from is None:
            return
        assert self.role == LEADER
        slots = list(range(self.unsent_from, self.next_slot))
        self.unsent_from = None
        for p in self.peers:
            self._send_accepts(p, slots, ready)

    def _advance_commit_leader(self, ready: Ready) -> None:
        s = self.commit + 1
        while s in self.proposals and len(self.votes.get(s, ())) >= self.quorum:
            entry = self.proposals[s]
            if s in self.chosen:
                self._check(self.chosen[s] == entry, f"slot {s}: two values chosen")
            else:
                self.chosen[s] = entry
            s += 1
        self._advance_commit(ready)
        # Chosen slots need no more bookkeeping.
        for done in [x for x in self.votes if x <= self.commit]:
            del self.votes[done]
        for done in [x for x in self.proposals if x <= self.commit]:
            del self.proposals[done]

    def _on_hb_ok(self, src: str, body: dict, ready: Ready) -> None:
        if self.role != LEADER or _ballot(body["b"]) != self.ballot:
            return
        theirs = int(body["commit"])
        # Only slots that the follower was told are chosen and could not learn by itself (under
        # load it always lags the newest commit a little: that needs no LEARN).
        if theirs < int(body["asked"]):
            # The follower cannot learn these from its accepted entries: send the chosen ones.
            batch_max = self.options["learn_batch_max"]
            upto = min(self.commit, int(body["asked"]), theirs + batch_max)
            ready.send(src, {"type": "learn", "b": list(self.ballot), "upto": body["asked"],
                             "s": theirs + 1,
                             "e": [self.chosen[s] for s in range(theirs + 1, upto + 1)]})

    def _on_nack(self, src: str, body: dict, now_ms: int) -> None:
        b = _ballot(body["b"])
        self._see_round(b)
        if self.role != FOLLOWER and b > self.ballot:
            self._become_follower(None, ZERO_BALLOT, now_ms)

    # ---- learning and applying ---------------------------------------------------------------

    def _advance_commit(self, ready: Ready) -> None:
        before = self.commit
        while self.commit + 1 in self.chosen:
            self.commit += 1
        if self.commit > before:
            # So that a restarted node applies its chosen prefix without waiting for a leader.
            ready.save({"t": "commit", "c": self.commit})
        assert self.applied_slot <= self.commit
        while self.applied_slot < self.commit:
            self.applied_slot += 1
            self._apply(self.chosen[self.applied_slot], ready)
        assert self.applied_slot == self.commit

    def _apply(self, entry: dict, ready: Ready) -> None:
        if entry.get("noop"):
            return
        client, msg_id = entry["cl"], entry["id"]
        seen = self.applied_ids.setdefault(client, set())
        if msg_id in seen:
            return  # a duplicated request: applied once already
        seen.add(msg_id)
        result = self.machine.apply(entry["op"])
        request = self.waiting.pop((client, msg_id), None)
        if request is not None:
            ready.reply(client, request, result)

    # ---- inputs ------------------------------------------------------------------------------

    def on_peer(self, src: str, body: dict, now_ms: int) -> Ready:
        self.last_now_ms = max(self.last_now_ms, now_ms)
        ready = Ready()
        t = body.get("type")
        if t == "prepare":
            self._promise(src, body, ready)
        elif t == "promise":
            self._on_promise(src, body, ready)
        elif t == "accept":
            self._on_accept(src, body, now_ms, ready)
        elif t == "accepted":
            self._on_accepted(src, body, ready)
        elif t == "hb":
            self._on_heartbeat(src, body, now_ms, ready)
        elif t == "hb_ok":
            self._on_hb_ok(src, body, ready)
        elif t == "learn":
            self._on_learn(src, body, ready)
        elif t == "nack":
            self._on_nack(src, body, now_ms)
        else:
            raise ProtocolError(f"{self.node_id}: unknown peer message {t!r} from {src}")
        return ready

    def on_client(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        if self.role != LEADER:
            extra = {"leader": self.leader_id} if self.leader_id else {}
            ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE, "not the leader", **extra)
            return ready
        key = (src, body.get("msg_id"))
        if key in self.waiting or body.get("msg_id") in self.applied_ids.get(src, ()):
            return ready  # a duplicate of a request in progress or done: it applies once
        self.waiting[key] = body
        s = self.next_slot
        self.next_slot += 1
        self.proposals[s] = {"op": self.request_op(body), "cl": src, "id": body.get("msg_id")}
        self._accept_locally([s], ready)
        if self.unsent_from is None and s - 1 - self.commit < self.options["pipeline_max"]:
            for p in self.peers:
                self._send_accepts(p, [s], ready)
        elif self.unsent_from is None:
            self.unsent_from = s
        self._advance_commit_leader(ready)  # a one-node cluster chooses at once
        return ready
