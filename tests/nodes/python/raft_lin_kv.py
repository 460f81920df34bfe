#!/usr/bin/env python3
"""A Raft lin-kv node in plain Python (Maelstrom's lin-kv workload: read / write / cas by key).

Written the way Maelstrom's Raft tutorial has users write it: in memory (no disk: it is tested
under partitions, not kills), one lock, a 20 ms ticker for elections and heartbeats, every
client operation (reads too) goes through the log and is answered when applied.

The forwarding idiom: a follower passes a client's request UNCHANGED to the leader, `src` still
the client's id, and the leader replies straight to the client. Requests that arrive while no
leader is known wait (bounded, PENDING_MAX / PENDING_TTL_S) and go to the first leader heard of,
so the cluster's first election costs no client operation. The node that appended an entry is
the one that replies when it is applied (a deposed leader whose entry still committed replies
too; one whose entry was lost never does: the client times out, an indefinite result).

`main(local_reads=True)` is the WRONG variant (raft_lin_kv_local_reads.py): every node answers
reads from its own applied state at once, without the log. Followers apply a heartbeat behind the
leader, and a partitioned old leader keeps answering: stale reads, not linearizable.
"""

from __future__ import annotations

import random
import threading
import time

from maelstrom import Node

ELECTION_TIMEOUT_S = (0.15, 0.30)   # randomized per election
HEARTBEAT_S = 0.05
TICK_S = 0.02
ENTRIES_PER_APPEND_MAX = 200
PENDING_MAX = 1000                  # client requests held while no leader is known
PENDING_TTL_S = 1.0

ERR_TEMPORARILY_UNAVAILABLE, ERR_KEY_DOES_NOT_EXIST, ERR_PRECONDITION_FAILED = 11, 20, 22
FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


class Raft:
    def __init__(self, node: Node, local_reads: bool):
        self.node = node
        self.local_reads = local_reads
        self.lock = threading.Lock()
        self.term = 0
        self.voted_for: str | None = None
        self.log: list[dict] = [{"term": 0, "op": None, "by": None}]   # 1-based, sentinel at 0
        self.commit_index = 0
        self.last_applied = 0
        self.role = FOLLOWER
        self.leader: str | None = None
        self.votes: set[str] = set()
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.deadline = 0.0
        self.last_heartbeat = 0.0
        self.kv: dict = {}
        self.pending: list[tuple[float, dict]] = []

    # ---- helpers (lock held) ------------------------------------------------------------------

    def others(self) -> list[str]:
        return [n for n in self.node.node_ids if n != self.node.node_id]

    def majority(self) -> int:
        return len(self.node.node_ids) // 2 + 1

    def reset_election_timer(self) -> None:
        self.deadline = time.monotonic() + random.uniform(*ELECTION_TIMEOUT_S)

    def last_index(self) -> int:
        return len(self.log) - 1

    def step_down(self, term: int) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
            self.leader = None        # a new term: its leader is not known yet
        if self.leader == self.node.node_id:
            self.leader = None
        if self.role != FOLLOWER:
            self.node.log(f"term {self.term}: follower")
        self.role = FOLLOWER
        self.reset_election_timer()

    # ---- elections ------------------------------------------------------------------------------

    def tick(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.role == LEADER:
                if now - self.last_heartbeat >= HEARTBEAT_S:
                    self.replicate()
            elif now >= self.deadline:
                self.become_candidate()
            self.expire_pending(now)

    def become_candidate(self) -> None:
        self.role = CANDIDATE
        self.term += 1
        self.voted_for = self.node.node_id
        self.leader = None
        self.votes = {self.node.node_id}
        self.reset_election_timer()
        self.node.log(f"term {self.term}: candidate")
        for peer in self.others():
            self.node.send(peer, {"type": "request_vote", "term": self.term,
                                  "candidate_id": self.node.node_id,
                                  "last_log_index": self.last_index(),
                                  "last_log_term": self.log[-1]["term"]})
        self.maybe_win()

    def maybe_win(self) -> None:
        if self.role == CANDIDATE and len(self.votes) >= self.majority():
            self.role = LEADER
            self.leader = self.node.node_id
            self.node.log(f"term {self.term}: leader")
            self.next_index = {p: self.last_index() + 1 for p in self.others()}
            self.match_index = {p: 0 for p in self.others()}
            # A no-op of the new term commits the older entries (Raft section 5.4.2).
            self.log.append({"term": self.term, "op": None, "by": self.node.node_id})
            self.flush_pending()
            self.replicate()

    def on_request_vote(self, msg: dict) -> None:
        b = msg["body"]
        with self.lock:
            if b["term"] > self.term:
                self.step_down(b["term"])
            up_to_date = (b["last_log_term"], b["last_log_index"]) >= \
                (self.log[-1]["term"], self.last_index())
            grant = (b["term"] == self.term and up_to_date
                     and self.voted_for in (None, b["candidate_id"]))
            if grant:
                self.voted_for = b["candidate_id"]
                self.reset_election_timer()
            self.node.send(msg["src"], {"type": "request_vote_res", "term": self.term,
                                        "vote_granted": grant})

    def on_request_vote_res(self, msg: dict) -> None:
        b = msg["body"]
        with self.lock:
            if b["term"] > self.term:
                self.step_down(b["term"])
                return
            if self.role == CANDIDATE and b["term"] == self.term and b["vote_granted"]:
                self.votes.add(msg["src"])
                self.maybe_win()

    # ---- replication ----------------------------------------------------------------------------

    def replicate(self) -> None:
        self.last_heartbeat = time.monotonic()
        for peer in self.others():
            ni = self.next_index[peer]
            entries = self.log[ni:ni + ENTRIES_PER_APPEND_MAX]
            self.node.send(peer, {"type": "append_entries", "term": self.term,
                                  "leader_id": self.node.node_id,
                                  "prev_log_index": ni - 1,
                                  "prev_log_term": self.log[ni - 1]["term"],
                                  "entries": entries, "leader_commit": self.commit_index})

    def on_append_entries(self, msg: dict) -> None:
        b = msg["body"]
        with self.lock:
            if b["term"] < self.term:
                self.node.send(msg["src"], {"type": "append_entries_res", "term": self.term,
                                            "success": False, "match_index": 0})
                return
            if b["term"] > self.term or self.role != FOLLOWER:
                self.step_down(b["term"])
            self.reset_election_timer()
            if self.leader != b["leader_id"]:
                self.leader = b["leader_id"]
                self.flush_pending()
            prev = b["prev_log_index"]
            if prev > self.last_index() or self.log[prev]["term"] != b["prev_log_term"]:
                self.node.send(msg["src"], {"type": "append_entries_res", "term": self.term,
                                            "success": False,
                                            "match_index": min(prev - 1, self.last_index())})
                return
            for i, e in enumerate(b["entries"]):
                idx = prev + 1 + i
                if idx <= self.last_index():
                    if self.log[idx]["term"] == e["term"]:
                        continue
                    del self.log[idx:]          # a conflicting suffix goes
                self.log.append(e)
            match = prev + len(b["entries"])
            if b["leader_commit"] > self.commit_index:
                self.commit_index = min(b["leader_commit"], match)
                self.apply()
            self.node.send(msg["src"], {"type": "append_entries_res", "term": self.term,
                                        "success": True, "match_index": match})

    def on_append_entries_res(self, msg: dict) -> None:
        b = msg["body"]
        peer = msg["src"]
        with self.lock:
            if b["term"] > self.term:
                self.step_down(b["term"])
                return
            if self.role != LEADER or b["term"] != self.term:
                return
            if b["success"]:
                self.match_index[peer] = max(self.match_index[peer], b["match_index"])
                self.next_index[peer] = self.match_index[peer] + 1
                self.advance_commit()
            else:
                self.next_index[peer] = max(1, min(self.next_index[peer] - 1,
                                                   b["match_index"] + 1))

    def advance_commit(self) -> None:
        for n in range(self.last_index(), self.commit_index, -1):
            if self.log[n]["term"] != self.term:
                break                      # only entries of this term are counted (5.4.2)
            acks = 1 + sum(1 for p in self.others() if self.match_index[p] >= n)
            if acks >= self.majority():
                self.commit_index = n
                self.apply()
                break

    # ---- the state machine -----------------------------------------------------------------------

    def apply(self) -> None:
        while self.last_applied < self.commit_index:
            self.last_applied += 1
            e = self.log[self.last_applied]
            if e["op"] is None:
                continue
            reply = self.execute(e["op"]["body"])
            if e["by"] == self.node.node_id:
                self.node.reply(e["op"], reply)

    def execute(self, body: dict) -> dict:
        t, k = body["type"], body.get("key")
        key = repr(k)      # JSON keys: 1 and "1" are different keys
        if t == "read":
            if key not in self.kv:
                return {"type": "error", "code": ERR_KEY_DOES_NOT_EXIST, "text": "no such key"}
            return {"type": "read_ok", "value": self.kv[key]}
        if t == "write":
            self.kv[key] = body["value"]
            return {"type": "write_ok"}
        if t == "cas":
            if key not in self.kv:
                if body.get("create_if_not_exists"):
                    self.kv[key] = body["to"]
                    return {"type": "cas_ok"}
                return {"type": "error", "code": ERR_KEY_DOES_NOT_EXIST, "text": "no such key"}
            if self.kv[key] != body["from"] or type(self.kv[key]) is not type(body["from"]):
                return {"type": "error", "code": ERR_PRECONDITION_FAILED,
                        "text": f"expected {body['from']!r}, had {self.kv[key]!r}"}
            self.kv[key] = body["to"]
            return {"type": "cas_ok"}
        return {"type": "error", "code": 10, "text": f"unsupported {t}"}

    # ---- clients ---------------------------------------------------------------------------------

    def on_client(self, msg: dict) -> None:
        with self.lock:
            if self.local_reads and msg["body"]["type"] == "read":
                # THE BUG: answer from this node's applied state, outside the log.
                self.node.reply(msg, self.execute(msg["body"]))
                return
            self.route(msg)

    def route(self, msg: dict) -> None:
        if self.role == LEADER:
            self.log.append({"term": self.term, "op": msg, "by": self.node.node_id})
        elif self.leader is not None:
            self.node.forward(msg, self.leader)        # src stays the client
        elif len(self.pending) < PENDING_MAX:
            self.pending.append((time.monotonic() + PENDING_TTL_S, msg))
        else:
            self.node.reply(msg, {"type": "error", "code": ERR_TEMPORARILY_UNAVAILABLE,
                                  "text": "no leader known"})

    def flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        for _, msg in pending:
            self.route(msg)

    def expire_pending(self, now: float) -> None:
        # Requests never sent anywhere: a definite failure is true.
        while self.pending and self.pending[0][0] <= now:
            _, msg = self.pending.pop(0)
            self.node.reply(msg, {"type": "error", "code": ERR_TEMPORARILY_UNAVAILABLE,
                                  "text": "no leader known"})


def main(local_reads: bool = False) -> None:
    node = Node(inline=True)
    raft = Raft(node, local_reads)
    node.on_init(raft.reset_election_timer)
    for t in ("read", "write", "cas"):
        node.handler(t)(raft.on_client)
    node.handler("request_vote")(raft.on_request_vote)
    node.handler("request_vote_res")(raft.on_request_vote_res)
    node.handler("append_entries")(raft.on_append_entries)
    node.handler("append_entries_res")(raft.on_append_entries_res)
    node.every(TICK_S, raft.tick)
    node.run()


if __name__ == "__main__":
    main()
