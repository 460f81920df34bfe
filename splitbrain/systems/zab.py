"""ZAB, ZooKeeper's atomic broadcast (Junqueira, Reed, Serafini, "Zab: High-performance broadcast
for primary-backup systems", DSN 2011), as a sans-I/O core.

ZAB is primary-backup flavoured: the leader executes each request and broadcasts the resulting
idempotent state change (a ZooKeeper "txn"), so LOGS is "state changes". Every txn carries a
zxid = (epoch, counter); zxids order everything. A node runs four phases:

0. Election (fast leader election): a LOOKING node votes for the best candidate it has heard
   of, ordered by (currentEpoch, last zxid, id), and re-broadcasts whenever it changes its vote;
   when a quorum's votes in its election round agree with its own it decides: LEADING or
   FOLLOWING. Nodes that already follow or lead answer a LOOKING node with their leader, so a
   restarted node joins. The election only proposes a leader; safety comes from phases 1-2.
1. Discovery: followers send FOLLOWERINFO(acceptedEpoch); on a quorum, the prospective leader
   picks e = max(acceptedEpoch) + 1 and sends NEWEPOCH(e). A follower accepts e only if it is
   above its acceptedEpoch, persists it and answers ACKEPOCH(currentEpoch, last zxid). A leader
   that learns a follower is more up to date than itself gives up and goes back to election.
2. Synchronization: with a quorum of ACKEPOCH the leader sets currentEpoch = e and sends each
   follower NEWLEADER(e) with what brings the follower's history to its own: DIFF (the txns after
   the follower's last zxid), TRUNC (drop the follower's txns the leader never had, then DIFF) or
   SNAP (the whole history). The follower installs it, persists currentEpoch = e, and acks. On a
   quorum of ACKNEWLEADER the leader commits its whole history (UPTODATE) and only then
3. Broadcast: PROPOSAL(txns) to synchronized followers, who append in zxid order and ACK; the
   leader commits a txn once a quorum (itself included) acked it. Proposals carry the previous
   zxid: the simulated network, unlike ZooKeeper's TCP, reorders and drops, so a follower with a
   gap asks for the txns after its last zxid (and gets them resent or a fresh NEWLEADER sync).
   Batching: one PROPOSAL message in flight per follower; what is proposed meanwhile leaves in
   one batch on its ACK. The commit point rides on every PROPOSAL and PING (COMMIT messages
   only after a follower's resync), so the steady state costs about one message per op.

Reads and ops that change nothing are answered by the leader after every txn before them is
committed and a quorum acknowledged a PING sent after they arrived (ZooKeeper's reads are local
and only sequentially consistent; we serve linearizable ones, like `sync` + read).

Durable records:
  {"t": "accepted", "epoch": e, "leader": id}    acceptedEpoch (the NEWEPOCH this node acked)
  {"t": "current", "epoch": e}                   currentEpoch (the NEWLEADER this node acked)
  {"t": "hist", "i": first, "txns": [...]}       history from index `first` (1-based; truncates)
  {"t": "commit", "n": n}                        the commit point (committed txns never truncate)
A txn is {"z": [epoch, counter], "c": change}. A restarted node re-applies its history up to its
last recorded commit point, then learns the rest from its leader.

Determinism: nothing iterates over a set (string hashes differ between processes; the simulator
replays a seed byte for byte), so followers are always visited in node order.
"""

from __future__ import annotations

from typing import Any

from .core import Core, ProtocolError, Ready
from .machines import ERR_TEMPORARILY_UNAVAILABLE, ERR_TIMEOUT, StateMachine
from .primary_backup import clone_machine

LOOKING, FOLLOWING, LEADING = "looking", "following", "leading"
DISCOVERY, SYNC, BROADCAST = "discovery", "sync", "broadcast"
ZERO = (0, 0)


def zx(z: Any) -> tuple[int, int]:
    return (int(z[0]), int(z[1]))


class ZabCore(Core):
    NAME = "zab"
    MODEL = "primary-backup"
    LOGS = "state changes"
    DESCRIPTION = ("ZooKeeper atomic broadcast: fast leader election by (currentEpoch, last zxid, "
                   "id); discovery agrees a new epoch with a quorum; synchronization brings "
                   "followers to the leader's history (DIFF/TRUNC/SNAP) before anything new is "
                   "proposed; then PROPOSAL/ACK/COMMIT of idempotent state changes (txns) ordered "
                   "by zxid = (epoch, counter). The leader executes; followers apply txns.")
    BUGS = {
        "ack-before-fsync": "txns are logged without waiting for the fsync (ZooKeeper's "
                            "forceSync=no) and ACKed at once, by followers and the leader alike: "
                            "a crash of enough nodes loses txns that a quorum acknowledged, so "
                            "acknowledged writes vanish",
        "election-ignores-zxid": "leader election orders votes by server id alone (a bully "
                                 "election) and discovery does not check that the quorum's "
                                 "histories are no newer than the leader's: a lagging leader "
                                 "TRUNCs followers' committed txns away (and they reload their "
                                 "state from the shortened log)",
    }
    CRASH_POINTS = {
        "ackepoch": "a new epoch accepted: it must be on disk",
        "ack": "a proposal acknowledged: it must be on the follower's disk",
        "proposal": "a transaction proposed by a leader that no follower holds yet",
    }
    OPTIONS = {
        "election_timeout_ms": ("ms without hearing the leader (or a quorum, for the leader) "
                                "before going back to election (randomized up to twice that)", 300),
        "heartbeat_ms": ("ms between the leader's PINGs", 50),
        "notify_ms": ("ms between re-broadcasts of a LOOKING node's vote", 100),
        "finalize_ms": ("ms a LOOKING node waits for better votes once a quorum agrees", 50),
        "batch_max": ("txns per PROPOSAL message at most", 64),
    }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.accepted_epoch = 0
        self.accepted_leader: str | None = None
        self.current_epoch = 0
        self.history: list[dict] = []
        self.index: dict[tuple[int, int], int] = {}    # zxid -> position (1-based)
        self.commit = 0
        self.state = LOOKING
        self.phase = DISCOVERY
        self.leader_id: str | None = None
        self.heard_ms = 0
        self.deadline_ms = 0
        # election
        self.round = 0
        self.vote: tuple = ()
        self.votes: dict[str, tuple] = {}
        self.finalize_vote: tuple | None = None
        self.finalize_at_ms = 0
        self.notify_ms = 0
        # leader
        self.epoch = 0                        # the epoch being established / led
        self.infos: dict[str, int] = {}       # follower -> acceptedEpoch (discovery)
        self.ackepochs: dict[str, tuple] = {} # follower -> (currentEpoch, last zxid)
        self.synced: set[str] = set()         # followers that acked NEWLEADER
        self.acked: dict[str, int] = {}       # follower -> history position acked
        self.sent: dict[str, int] = {}        # follower -> history position proposed up to
        self.ping_wanted = False              # a read waits for a PING round not yet sent
        self.pong_round: dict[str, int] = {}
        self.pong_ms: dict[str, int] = {}
        self.ping_round = 0
        self.ping_ms = 0
        self.counter = 0
        self.spec: StateMachine | None = None
        self.pending: dict[int, tuple[str, dict, dict]] = {}
        self.reads: list[tuple[int, int, tuple]] = []
        # follower
        self.reorder: dict[tuple[int, int], dict] = {}
        self.gap_nacked: tuple[int, int] | None = None
        self.sent_info_ms = 0
        self.pong_last: dict[str, tuple[int, int]] = {}

    # ---- recovery and history -----------------------------------------------------------------

    def on_recover(self, records: list[dict], now_ms: int) -> Ready:
        commit = 0
        for r in records:
            t = r["t"]
            if t == "accepted":
                self.accepted_epoch, self.accepted_leader = r["epoch"], r["leader"]
            elif t == "current":
                self.current_epoch = r["epoch"]
            elif t == "hist":
                self._install(r["i"], r["txns"])
            elif t == "commit":
                commit = r["n"]
        assert self.current_epoch <= self.accepted_epoch
        ready = Ready()
        # Committed txns are never truncated, so the recorded commit point still holds: the
        # machine serves them again before any leader is found (a whole-cluster restart).
        assert commit <= len(self.history), f"{self.node_id}: commit {commit} past the history"
        self._set_commit(commit, ready, save=False)
        self._look(ready, now_ms)
        return ready

    def last_zxid(self) -> tuple[int, int]:
        return zx(self.history[-1]["z"]) if self.history else ZERO

    def _install(self, first: int, txns: list[dict]) -> None:
        """History from position `first` on becomes `txns` (truncating what was there)."""
        assert 1 <= first <= len(self.history) + 1
        for t in self.history[first - 1:]:
            del self.index[zx(t["z"])]
        del self.history[first - 1:]
        for t in txns:
            z = zx(t["z"])
            assert z > self.last_zxid(), f"{self.node_id}: zxid {z} after {self.last_zxid()}"
            self.history.append(t)
            self.index[z] = len(self.history)

    def _save_history(self, first: int, txns: list[dict], ready: Ready) -> None:
        if first <= self.commit:
            if "election-ignores-zxid" not in self.bugs:
                raise ProtocolError(f"{self.node_id}: would truncate committed position {first} "
                                    f"(commit {self.commit})")
            # BUG consequence: like ZooKeeper after a TRUNC, reload the state from the
            # shortened log; the committed txns past `first` are gone.
            self.machine.restore(type(self.machine)().state(), 0)
            for t in self.history[:first - 1]:
                self.machine.apply_change(t["c"])
            self.commit = first - 1
            ready.save({"t": "commit", "n": self.commit})
        self._install(first, txns)
        ready.save({"t": "hist", "i": first, "txns": txns})
        if "ack-before-fsync" in self.bugs and self.phase == BROADCAST:
            ready.sync = False                       # BUG: ACKed before it is on disk

    def _set_commit(self, n: int, ready: Ready, save: bool = True) -> None:
        n = min(n, len(self.history))
        if n <= self.commit:
            return
        for t in self.history[self.commit:n]:
            self.machine.apply_change(t["c"])
        self.commit = n
        assert self.machine.applied_index <= n, "applied <= commit"
        if save:
            ready.save({"t": "commit", "n": n})
            if "ack-before-fsync" in self.bugs and self.phase == BROADCAST:
                ready.sync = False                   # BUG: nothing is fsynced while broadcasting
        if self.state == LEADING:
            for i in [i for i in self.pending if i <= n]:
                client, req, reply = self.pending.pop(i)
                ready.reply(client, req, reply)

    # ---- status -------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.state == LEADING and self.phase == BROADCAST

    def describe(self) -> dict:
        return {"role": self.state, "phase": self.phase, "epoch": self.current_epoch,
                "accepted_epoch": self.accepted_epoch, "leader": self.leader_id,
                "last_zxid": list(self.last_zxid()), "commit": self.commit}

    # The shared randomized tests read `log` and `commit` like the other log-based cores.
    @property
    def log(self) -> list[dict]:
        return self.history

    def _reset_deadline(self, now_ms: int) -> None:
        t = int(self.options["election_timeout_ms"])
        self.deadline_ms = now_ms + t + self.rng.randrange(t)

    # ---- phase 0: fast leader election ---------------------------------------------------------

    def _my_vote(self) -> tuple:
        return (self.current_epoch, list(self.last_zxid()), self.node_id)

    def _key(self, v: Any) -> tuple:
        if "election-ignores-zxid" in self.bugs:
            return (v[2],)                           # BUG: the highest id wins, whatever it has
        return (v[0], zx(v[1]), v[2])

    def _look(self, ready: Ready, now_ms: int) -> None:
        """Go (back) to LOOKING: a new election round voting for ourselves."""
        if self.state == LEADING:
            for client, req, _ in self.pending.values():
                ready.error(client, req, ERR_TIMEOUT, "leader lost its quorum; outcome unknown")
            for _, _, (client, req, _) in self.reads:
                ready.error(client, req, ERR_TEMPORARILY_UNAVAILABLE, "leader lost its quorum")
        self.pending, self.reads, self.spec = {}, [], None
        self.state, self.phase, self.leader_id = LOOKING, DISCOVERY, None
        self.reorder = {}
        self.round += 1
        self.vote = self._my_vote()
        self.votes = {self.node_id: self.vote}
        self.finalize_vote = None
        self._notify_all(ready, now_ms)
        self._reset_deadline(now_ms)
        self._check_votes(now_ms)

    def _notify_all(self, ready: Ready, now_ms: int) -> None:
        self.notify_ms = now_ms
        for p in self.peers:
            ready.send(p, self._notification())

    def _notification(self) -> dict:
        if self.state == LOOKING:
            return {"type": "notify", "round": self.round, "vote": list(self.vote),
                    "state": LOOKING}
        return {"type": "notify", "round": self.round, "state": self.state,
                "vote": [self.current_epoch, list(self.last_zxid()), self.leader_id]}

    def _on_notify(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != LOOKING:
            if m["state"] == LOOKING:
                ready.send(src, self._notification())   # tell it who leads
            return
        if m["state"] != LOOKING:
            # src follows or leads an established leader: join it once a quorum says so (or the
            # leader itself does); discovery will refuse it if it is not really leading.
            # Only the leader's own word counts: a follower's view may be stale or circular.
            if m["state"] == LEADING and m["vote"][2] == src:
                self._decide(src, ready, now_ms)
            return
        if m["round"] > self.round:
            self.round = m["round"]
            self.votes = {}
            self.vote = max(self._my_vote(), m["vote"], key=self._key)
            self.votes[self.node_id] = self.vote
            self._notify_all(ready, now_ms)
        elif m["round"] < self.round:
            ready.send(src, self._notification())
            return
        elif self._key(m["vote"]) > self._key(self.vote):
            self.vote = tuple(m["vote"])
            self.votes[self.node_id] = self.vote
            self._notify_all(ready, now_ms)
        self.votes[src] = tuple(m["vote"])
        self._check_votes(now_ms)

    def _check_votes(self, now_ms: int) -> None:
        """A quorum agreeing with our vote starts the finalize wait (ZooKeeper's finalizeWait):
        a better vote arriving meanwhile cancels it; on expiry (on_tick) we decide."""
        mine = self._key(self.vote)
        if sum(1 for v in self.votes.values() if self._key(v) == mine) >= self.quorum:
            if self.finalize_vote != mine:
                self.finalize_vote = mine
                self.finalize_at_ms = now_ms + int(self.options["finalize_ms"])
        else:
            self.finalize_vote = None

    def _decide(self, leader: str, ready: Ready, now_ms: int) -> None:
        self.leader_id = leader
        self.phase = DISCOVERY
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        if leader == self.node_id:
            self.state = LEADING
            self.infos = {self.node_id: self.accepted_epoch}
            self.ackepochs, self.synced, self.acked, self.sent = {}, set(), {}, {}
            self.pong_round, self.pong_ms = {}, {}
            self.epoch = 0
            self._maybe_new_epoch(ready)
        else:
            self.state = FOLLOWING
            self._send_info(ready, now_ms)

    # ---- phase 1: discovery --------------------------------------------------------------------

    def _send_info(self, ready: Ready, now_ms: int) -> None:
        self.sent_info_ms = now_ms
        ready.send(self.leader_id, {"type": "followerinfo", "accepted": self.accepted_epoch})

    def _on_followerinfo(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != LEADING:
            ready.send(src, {"type": "notleader"})
            return
        self.pong_ms[src] = now_ms
        if self.epoch == 0:
            self.infos[src] = m["accepted"]
            self._maybe_new_epoch(ready)
        elif m["accepted"] <= self.epoch:
            # A late follower, or a retransmission. Once this epoch is established (a quorum
            # acked it), a follower may join even if it acked this same epoch number for a
            # rival that never reached a quorum (ZooKeeper's late learners).
            ready.send(src, {"type": "newepoch", "epoch": self.epoch,
                             "established": self.phase != DISCOVERY})
        elif self.phase != DISCOVERY:
            # It promised a newer epoch to a rival: it can never join ours. Step down so that
            # the next discovery picks an epoch above every promise (else it stays out forever).
            self._look(ready, now_ms)

    def _maybe_new_epoch(self, ready: Ready) -> None:
        if len(self.infos) < self.quorum:
            return
        self.epoch = max(self.infos.values()) + 1
        self._accept_epoch(self.epoch, self.node_id, ready)
        self.ackepochs = {self.node_id: (self.current_epoch, self.last_zxid())}
        for f in self.infos:
            if f != self.node_id:
                ready.send(f, {"type": "newepoch", "epoch": self.epoch})

    def _accept_epoch(self, epoch: int, leader: str, ready: Ready) -> None:
        assert epoch > self.accepted_epoch, "acceptedEpoch only grows"
        self.accepted_epoch, self.accepted_leader = epoch, leader
        self._save_accepted(ready)

    def _save_accepted(self, ready: Ready) -> None:
        ready.save({"t": "accepted", "epoch": self.accepted_epoch,
                    "leader": self.accepted_leader})

    def _on_newepoch(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != FOLLOWING or src != self.leader_id:
            return
        e = m["epoch"]
        if e > self.accepted_epoch:
            self._accept_epoch(e, src, ready)      # persisted before the ACKEPOCH leaves
        elif e == self.accepted_epoch and self.accepted_leader != src and m.get("established"):
            self.accepted_leader = src             # the rival never reached a quorum
            self._save_accepted(ready)
        elif not (e == self.accepted_epoch and self.accepted_leader == src):
            self._look(ready, now_ms)              # promised a newer epoch (or this one elsewhere)
            return
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        self.phase = SYNC
        self._send_ackepoch(ready, now_ms)

    def _send_ackepoch(self, ready: Ready, now_ms: int) -> None:
        """ACKEPOCH(currentEpoch, last zxid) for our acceptedEpoch: sent on NEWEPOCH and resent
        while we wait in SYNC for a NEWLEADER, which may have been lost (each resend asks the
        leader for a fresh one)."""
        assert self.state == FOLLOWING and self.phase == SYNC
        self.sent_info_ms = now_ms
        ready.send(self.leader_id, {"type": "ackepoch", "epoch": self.accepted_epoch,
                                    "current": self.current_epoch,
                                    "last": list(self.last_zxid())})

    def _on_ackepoch(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != LEADING or m["epoch"] != self.epoch:
            return
        theirs = (m["current"], zx(m["last"]))
        if self.phase == DISCOVERY and "election-ignores-zxid" not in self.bugs and \
                theirs > (self.ackepochs[self.node_id][0], self.ackepochs[self.node_id][1]):
            # A follower has a more recent history than ours: we must not lead (ZooKeeper's
            # "follower is ahead of the leader"). Only while the epoch is being agreed: once a
            # quorum acked it, our history holds every committed txn, and a late follower's
            # currentEpoch may already be ours (it synced with us before, then lost track).
            self._look(ready, now_ms)
            return
        assert theirs[0] <= self.epoch, f"{src}: currentEpoch {theirs[0]} > epoch {self.epoch}"
        self.pong_ms[src] = now_ms
        self.ackepochs[src] = theirs
        if self.phase == DISCOVERY:
            if len(self.ackepochs) >= self.quorum:
                self._start_sync(ready, now_ms)
        else:
            # The follower waits in SYNC for a NEWLEADER: this is a late joiner, or one whose
            # NEWLEADER (or ACKNEWLEADER) was lost, or one that went back to election and
            # rejoined while we still counted it as synchronized. It is not synchronized until
            # it acks a fresh NEWLEADER (else it would wait forever, kept alive by our PINGs).
            self.synced.discard(src)
            self._send_newleader(src, theirs[1], ready)

    # ---- phase 2: synchronization --------------------------------------------------------------

    def _start_sync(self, ready: Ready, now_ms: int) -> None:
        assert self.state == LEADING and self.phase == DISCOVERY
        self.phase = SYNC
        self.current_epoch = self.epoch
        ready.save({"t": "current", "epoch": self.epoch})
        self.counter = 0
        self.synced = {self.node_id}
        self.acked, self.sent = {}, {}
        for f, (_, last) in self.ackepochs.items():
            if f != self.node_id:
                self._send_newleader(f, last, ready)
        if len(self.synced) >= self.quorum:
            self._start_broadcast(ready, now_ms, commit_all=True)

    def _sync_payload(self, last: tuple[int, int]) -> dict:
        """DIFF, TRUNC or SNAP: what brings a follower whose last zxid is `last` to our history."""
        if last == ZERO or last in self.index:
            i = self.index.get(last, 0)
            return {"mode": "diff", "from": i + 1, "txns": self.history[i:]}
        # The follower has txns we never had. Those of an epoch we also have entries of are its
        # uncommitted tail: truncate to our last txn of that epoch and send what follows.
        same = [t for t in self.history if t["z"][0] == last[0]]
        if same and zx(same[-1]["z"]) < last:
            i = self.index[zx(same[-1]["z"])]
            return {"mode": "trunc", "from": i + 1, "txns": self.history[i:]}
        return {"mode": "snap", "from": 1, "txns": list(self.history)}

    def _send_newleader(self, f: str, last: tuple[int, int], ready: Ready) -> None:
        body = {"type": "newleader", "epoch": self.epoch, **self._sync_payload(last)}
        i = body["from"] - 1
        body["prev"] = list(zx(self.history[i - 1]["z"]) if i else ZERO)
        ready.send(f, body)

    def _on_newleader(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != FOLLOWING or src != self.leader_id or m["epoch"] != self.accepted_epoch:
            return
        first, txns = m["from"], m["txns"]
        if first - 1 > len(self.history) or \
                (zx(self.history[first - 2]["z"]) if first > 1 else ZERO) != zx(m["prev"]):
            return                                  # a stale sync; a fresh one will come
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        # Keep the common part (same zxids), replace the rest: TRUNC and SNAP never touch
        # committed txns, which every quorum member, the leader included, holds.
        k = 0
        while k < len(txns) and first - 1 + k < len(self.history) and \
                self.history[first - 1 + k]["z"] == txns[k]["z"]:
            k += 1
        if k < len(txns):
            self._save_history(first + k, txns[k:], ready)
        elif first - 1 + k < len(self.history) and \
                self.history[first - 1 + k]["z"][0] < m["epoch"]:
            # Txns of older epochs past what the leader sent are ones it never had (TRUNC).
            # Txns of this epoch are its later proposals: a duplicated or late NEWLEADER
            # (all of whose txns we hold) must not cut them off.
            self._save_history(first + k, [], ready)
        self.reorder = {}
        self.current_epoch = m["epoch"]
        ready.save({"t": "current", "epoch": self.current_epoch})
        self.phase = BROADCAST
        ready.send(src, {"type": "acknewleader", "epoch": m["epoch"],
                         "last": list(self.last_zxid())})

    def _on_acknewleader(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != LEADING or m["epoch"] != self.epoch:
            return
        self.pong_ms[src] = now_ms
        self.synced.add(src)
        z = zx(m["last"])
        self.acked[src] = max(self.acked.get(src, 0), self.index.get(z, 0))
        if self.phase == SYNC and len(self.synced) >= self.quorum:
            self._start_broadcast(ready, now_ms, commit_all=True)
        elif self.phase == BROADCAST:
            self._advance_commit(ready)
            self.sent[src] = self.acked[src]
            self._send_proposals(src, ready)
            ready.send(src, {"type": "commit", "epoch": self.epoch,
                             "z": list(self._commit_zxid())})

    def _start_broadcast(self, ready: Ready, now_ms: int, commit_all: bool) -> None:
        self.phase = BROADCAST
        spec = clone_machine(self.machine)
        for t in self.history[self.commit:]:
            spec.apply_change(t["c"])
        self.spec = spec
        self.ping_round = 0
        self.pong_round = {}
        self.ping_wanted = False
        if commit_all:
            # UPTODATE: a quorum holds our whole history in our epoch: it is committed. The
            # followers learn it from the next PING (sent just below) or PROPOSAL.
            self._set_commit(len(self.history), ready)
        self._ping(ready, now_ms)

    def _synced_peers(self) -> list[str]:
        # In node order, never set order: set iteration follows string hashes, which differ
        # between processes, and the simulator must replay a seed byte for byte.
        return [f for f in self.peers if f in self.synced]

    def _commit_zxid(self) -> tuple[int, int]:
        return zx(self.history[self.commit - 1]["z"]) if self.commit else ZERO

    # ---- phase 3: broadcast --------------------------------------------------------------------
    # Batching: at most one PROPOSAL message is in flight per follower; txns proposed meanwhile
    # go out together when it is acknowledged (or resent when a PONG shows no progress). Every
    # PROPOSAL and PING carries the commit point, so there are no separate COMMIT messages in
    # the steady state: about two messages per follower per batch.

    def _propose(self, change: dict, ready: Ready) -> int:
        self.counter += 1
        txn = {"z": [self.epoch, self.counter], "c": change}
        self._save_history(len(self.history) + 1, [txn], ready)
        for f in self._synced_peers():
            if self.sent.get(f, 0) <= self.acked.get(f, 0):
                self._send_proposals(f, ready)
        if self.quorum == 1:
            self._advance_commit(ready)
        return len(self.history)

    def _send_proposals(self, f: str, ready: Ready) -> None:
        """Send `f` the txns after what it acked (one batch of at most batch_max)."""
        i = self.acked.get(f, 0)
        if i >= len(self.history):
            return
        txns = self.history[i: i + int(self.options["batch_max"])]
        ready.send(f, {"type": "proposal", "epoch": self.epoch,
                       "prev": list(zx(self.history[i - 1]["z"]) if i else ZERO), "txns": txns,
                       "commit": list(self._commit_zxid())})
        self.sent[f] = i + len(txns)

    def _on_proposal(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != FOLLOWING or src != self.leader_id or m["epoch"] != self.accepted_epoch:
            return
        if self.phase != BROADCAST:
            return                                   # not synchronized yet: NEWLEADER first
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        prev, last = zx(m["prev"]), self.last_zxid()
        zs = [zx(t["z"]) for t in m["txns"]]
        contiguous = prev == last or last in zs or (last != ZERO and last > zs[-1])
        if not contiguous:
            if prev > last:
                self.reorder[prev] = m               # ahead of a gap: keep it for later
            # Ask for what follows our last zxid (once per gap).
            if self.gap_nacked != last:
                self.gap_nacked = last
                ready.send(src, {"type": "ack", "epoch": m["epoch"], "last": list(last),
                                 "gap": True})
            return
        commit = zx(m["commit"])
        while True:
            new = [t for t in m["txns"] if zx(t["z"]) > self.last_zxid()]
            if new:
                self._save_history(len(self.history) + 1, new, ready)
            nxt = self.reorder.pop(self.last_zxid(), None)
            if nxt is None:
                break
            m = nxt
            commit = max(commit, zx(m["commit"]))
        self.gap_nacked = None
        self._commit_to(commit, ready)
        ready.send(src, {"type": "ack", "epoch": self.accepted_epoch,
                         "last": list(self.last_zxid())})

    def _commit_to(self, z: tuple[int, int], ready: Ready) -> None:
        """Commit through the txn with zxid `z` if we hold it (a leader's commit point)."""
        if self.phase != BROADCAST:
            return
        i = self.index.get(z)
        if i is not None:
            self._set_commit(i, ready)

    def _on_ack(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != LEADING or m["epoch"] != self.epoch or src not in self.synced:
            return
        self.pong_ms[src] = now_ms
        z = zx(m["last"])
        i = self.index.get(z, 0 if z == ZERO else None)
        if i is None:
            # The follower's history is not a prefix of ours: synchronize it again.
            self.synced.discard(src)
            self._send_newleader(src, z, ready)
            return
        if i > self.acked.get(src, 0):
            self.acked[src] = i
        if m.get("gap") or self.acked[src] >= self.sent.get(src, 0):
            self._send_proposals(src, ready)         # the next batch, or a resend after a gap
        self._advance_commit(ready)

    def _advance_commit(self, ready: Ready) -> None:
        if self.phase != BROADCAST:
            return
        positions = sorted([len(self.history)] + [self.acked.get(f, 0) for f in self.synced
                                                  if f != self.node_id], reverse=True)
        if len(positions) >= self.quorum:
            n = positions[self.quorum - 1]
            if n > self.commit:
                self._set_commit(n, ready)
        self._serve_reads(ready)

    def _on_commit(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != FOLLOWING or src != self.leader_id or m["epoch"] != self.accepted_epoch:
            return
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        self._commit_to(zx(m["z"]), ready)

    # ---- heartbeats, reads, clients ------------------------------------------------------------

    def _ping(self, ready: Ready, now_ms: int) -> None:
        self.ping_round += 1
        self.ping_ms = now_ms
        self.ping_wanted = False
        z, last = list(self._commit_zxid()), list(self.last_zxid())
        for f in self._synced_peers():
            ready.send(f, {"type": "ping", "epoch": self.epoch, "round": self.ping_round,
                           "z": z, "last": last})

    def _on_ping(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != FOLLOWING or src != self.leader_id or m["epoch"] != self.accepted_epoch:
            return
        if self.phase != BROADCAST:
            # Not synchronized with this leader, which counts us as synchronized (it missed that
            # we went back to election, or our ACKNEWLEADER is in flight). No PONG: it would
            # vouch for a history we have not synced. In SYNC, ask again for the NEWLEADER;
            # the PING does not keep us from timing out if the NEWLEADER never arrives.
            if self.phase == SYNC:
                self._send_ackepoch(ready, now_ms)
            return
        self.heard_ms = now_ms
        self._reset_deadline(now_ms)
        self._commit_to(zx(m["z"]), ready)
        ready.send(src, {"type": "pong", "epoch": m["epoch"], "round": m["round"],
                         "last": list(self.last_zxid())})

    def _on_pong(self, src: str, m: dict, now_ms: int, ready: Ready) -> None:
        if self.state != LEADING or m["epoch"] != self.epoch or src not in self.synced:
            return
        self.pong_ms[src] = now_ms
        if m["round"] > self.pong_round.get(src, 0):
            self.pong_round[src] = m["round"]
        z = zx(m["last"])
        stuck = self.pong_last.get(src) == z
        self.pong_last[src] = z
        i = 0 if z == ZERO else self.index.get(z)
        if i is not None and i < len(self.history) and stuck:
            # No progress since the last PONG: the batch in flight was lost. Resend.
            self.acked[src] = max(self.acked.get(src, 0), i)
            self._send_proposals(src, ready)
        self._serve_reads(ready)
        if self.ping_wanted and self._confirmed_round() >= self.ping_round:
            self._ping(ready, now_ms)                # the round that waiting reads need

    def _confirmed_round(self) -> int:
        """The highest PING round that a quorum (the leader included) answered."""
        rounds = sorted([self.ping_round] + [self.pong_round.get(f, 0) for f in self.synced
                                             if f != self.node_id], reverse=True)
        return rounds[self.quorum - 1] if len(rounds) >= self.quorum else 0

    def _serve_reads(self, ready: Ready) -> None:
        if not self.reads:
            return
        confirmed = self._confirmed_round()
        keep = []
        for need_commit, need_round, (client, req, reply) in self.reads:
            if self.commit >= need_commit and confirmed >= need_round:
                ready.reply(client, req, reply)
            else:
                keep.append((need_commit, need_round, (client, req, reply)))
        self.reads = keep

    def on_client(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        if not self.is_leader():
            extra = {"leader": self.leader_id} if self.leader_id and self.state != LOOKING else {}
            ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE,
                        f"{self.node_id} is not the leader", **extra)
            return ready
        assert self.spec is not None
        reply, change = self.spec.execute(self.request_op(body))
        if change is None:
            # A read waits for every txn before it to commit and for a quorum to answer a PING
            # round sent after it arrived (we still led then). Reads share rounds: if a round
            # is in flight, the read waits for the next one, sent when that one is confirmed.
            self.reads.append((len(self.history), self.ping_round + 1, (src, body, reply)))
            if self._confirmed_round() >= self.ping_round:
                self._ping(ready, now_ms)
            else:
                self.ping_wanted = True
            self._serve_reads(ready)
            return ready
        self.spec.apply_change(change)
        self.pending[len(self.history) + 1] = (src, body, reply)
        self._propose(change, ready)
        return ready

    # ---- dispatch and timers -------------------------------------------------------------------

    HANDLERS = {
        "notify": "_on_notify", "followerinfo": "_on_followerinfo", "newepoch": "_on_newepoch",
        "ackepoch": "_on_ackepoch", "newleader": "_on_newleader",
        "acknewleader": "_on_acknewleader", "proposal": "_on_proposal", "ack": "_on_ack",
        "commit": "_on_commit", "ping": "_on_ping", "pong": "_on_pong",
    }

    def on_peer(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        t = body.get("type")
        if t == "notleader":
            if self.state == FOLLOWING and src == self.leader_id:
                self._look(ready, now_ms)
            return ready
        name = self.HANDLERS.get(t)
        if name is not None:
            getattr(self, name)(src, body, now_ms, ready)
        return ready

    def on_tick(self, now_ms: int) -> Ready:
        ready = Ready()
        timeout = int(self.options["election_timeout_ms"])
        if self.state == LOOKING:
            if now_ms - self.notify_ms >= int(self.options["notify_ms"]) or now_ms < self.notify_ms:
                self._notify_all(ready, now_ms)
            if self.finalize_vote is not None and now_ms >= self.finalize_at_ms:
                self._decide(self.vote[2], ready, now_ms)
            elif now_ms >= self.deadline_ms:
                self._look(ready, now_ms)           # a new round
        elif self.state == FOLLOWING:
            if now_ms >= self.deadline_ms:
                self._look(ready, now_ms)
            elif now_ms - self.sent_info_ms >= int(self.options["notify_ms"]) or \
                    now_ms < self.sent_info_ms:
                # Retransmit what a lost message would leave us waiting for forever.
                if self.phase == DISCOVERY:
                    self._send_info(ready, now_ms)
                elif self.phase == SYNC:
                    self._send_ackepoch(ready, now_ms)
        else:
            # A leader without a quorum of live followers for a while goes back to election.
            live = 1 + sum(1 for f, t in self.pong_ms.items()
                           if f != self.node_id and now_ms - t < 2 * timeout)
            if live < self.quorum and now_ms - self.heard_ms > 2 * timeout:
                self._look(ready, now_ms)
                return ready
            if self.phase == BROADCAST and (now_ms - self.ping_ms >= int(
                    self.options["heartbeat_ms"]) or now_ms < self.ping_ms):
                self._ping(ready, now_ms)
            elif self.phase != BROADCAST and now_ms - self.heard_ms > 4 * timeout:
                self._look(ready, now_ms)           # discovery or sync did not complete
        return ready
