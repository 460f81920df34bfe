"""A tiny test-only core: n1 is a fixed primary that applies each request, persists it, and answers.

Followers answer error 11 with `"leader": "n1"`. It has no replication at all (the point is to
test the runtime and harness, not a protocol). Bug switch `no-persist`: the primary answers before
persisting (an acknowledged write is lost when it is killed). Bug `unsynced`: records are written
with sync=False (lost by the lost-unsynced-writes fault only).
"""

from splitbrain.systems.core import Core, Ready
from splitbrain.systems.machines import ERR_TEMPORARILY_UNAVAILABLE


class TinyCore(Core):
    NAME = "tiny"
    MODEL = "primary-backup"
    LOGS = "inputs"
    BUGS = {"no-persist": "answers before persisting", "unsynced": "never fsyncs"}
    OPTIONS = {}

    def on_recover(self, records, now_ms):
        for r in records:
            self.machine.apply(r["op"])
        return Ready()

    def on_peer(self, src, body, now_ms):
        return Ready()

    def on_client(self, src, body, now_ms):
        ready = Ready()
        if self.node_id != "n1":
            ready.error(src, body, ERR_TEMPORARILY_UNAVAILABLE, "not the primary", leader="n1")
            return ready
        op = self.request_op(body)
        if op.get("type") == "read":
            ready.reply(src, body, self.machine.query(op))
            return ready
        reply = self.machine.apply(op)
        if "no-persist" not in self.bugs:
            ready.save({"op": op})
        ready.sync = "unsynced" not in self.bugs
        ready.reply(src, body, reply)
        return ready

    def on_tick(self, now_ms):
        return Ready()

    def is_leader(self):
        return self.node_id == "n1"

    def describe(self):
        return {"role": "leader" if self.node_id == "n1" else "follower"}
