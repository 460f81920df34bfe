"""A tiny test-only system for the simulator's own tests: one fixed sequencer, async followers.

n1 is the sequencer forever: it executes every update, persists it (fsynced) and only then
replies; it streams its log to the followers, which apply it in order. Reads are served by the
sequencer. Safe (linearizable, prefix-agreeing logs) but unavailable while n1 is down.

Bugs:
  unsynced-ack    the sequencer acknowledges updates persisted without fsync (sync=False): a crash
                  with lost unsynced writes forgets acknowledged writes
  follower-reads  followers answer reads from their own, possibly stale, state
"""

from __future__ import annotations

from splitbrain.systems.core import Core, Ready
from splitbrain.systems.machines import ERR_TEMPORARILY_UNAVAILABLE, is_read

BATCH_MAX = 64


class ToySequencerCore(Core):
    NAME = "toy-sequencer"
    MODEL = "active-active"
    LOGS = "inputs"
    DESCRIPTION = "test-only: one fixed sequencer"
    BUGS = {"unsynced-ack": "acks updates before they are fsynced",
            "follower-reads": "followers serve stale local reads"}

    def on_recover(self, records, now_ms):
        self.log = []
        self.acked = {p: 0 for p in self.peers}
        for r in records:
            self._apply(r["op"])
        return Ready()

    def _apply(self, op):
        self.log.append(op)
        return self.machine.apply(op)

    @property
    def sequencer(self):
        return self.node_ids[0]

    def is_leader(self):
        return self.node_id == self.sequencer

    def on_client(self, src, body, now_ms):
        ready = Ready()
        op = self.request_op(body)
        if self.node_id != self.sequencer:
            if is_read(op) and "follower-reads" in self.bugs:
                ready.reply(src, body, self.machine.query(op))
            else:
                ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE, "not the sequencer",
                            leader=self.sequencer)
            return ready
        if is_read(op):
            ready.reply(src, body, self.machine.query(op))
            return ready
        reply = self._apply(op)
        ready.save({"op": op})
        ready.sync = "unsynced-ack" not in self.bugs
        ready.reply(src, body, reply)
        return ready

    def on_peer(self, src, body, now_ms):
        ready = Ready()
        if body["type"] == "entries":
            if body["start"] == len(self.log):
                for op in body["ops"]:
                    self._apply(op)
                    ready.save({"op": op})
            ready.send(src, {"type": "ack", "len": len(self.log)})
        elif body["type"] == "ack":
            self.acked[src] = body["len"]
        return ready

    def on_tick(self, now_ms):
        ready = Ready()
        if self.node_id == self.sequencer:
            for p in self.peers:
                start = min(self.acked[p], len(self.log))
                ready.send(p, {"type": "entries", "start": self.acked[p],
                               "ops": self.log[start:start + BATCH_MAX]})
        return ready
