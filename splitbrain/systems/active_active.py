"""Active-active replication (the seed's state-machine model): a sequencer orders INPUTS.

Every replica accepts client requests, but none decides their order: it forwards each input to
the sequencer, which stamps it with the next sequence number and multicasts it. Every replica
executes every input (`machine.apply(op)`) in sequence-number order once the number is committed,
and the replica that received the request answers the client with the result of its own
execution. Deterministic machines fed the same inputs in the same order end in the same state:
that is the whole replication argument, so the order is the only thing replicated.

The sequencer is the epoch-numbered leader of `EpochLogCore` (primary_backup.py): elected by a
majority in a higher epoch with the most up-to-date input log, fenced by epoch, and a sequence
number counts as committed only once a majority holds the input durably in the sequencer's
epoch (a new sequencer's epoch-start marker commits the prefix it recovered). So a sequencer
crash loses no committed number and never hands out a number twice.

Reads (option `reads`):
- "log" (default): a read is an input like any other; the receiving replica answers it when it
  executes it at its sequence number. Linearizable.
- "local": the receiving replica answers from its current state at once. Every replica applies
  the same sequence, so reads are sequentially consistent, but a lagging replica returns stale
  values: under partitions the linearizability checker rejects the history.

Duplicates: the network may duplicate a forwarded input. The sequencer drops submits it has
numbered recently, and every replica skips an input whose (receiving node, client, msg_id) it has
already executed; that is a function of the log prefix, so all replicas skip the same entries.

Definite errors: a client gets error 11 (definite: the op never happens) only when its input
certainly never entered any log: the receiving replica knew no sequencer, or the node it forwarded
to refused the submit AND vouches that it never numbered it ("sure" in the submit_nack). A refusal
alone proves nothing, because the network duplicates submits: the first copy may have been numbered
while the node led, and a second copy refused after it stepped down (simulator seed 664). A node
vouches only when it has numbered nothing it could have forgotten: it led the submit's epoch in
this incarnation (so every epoch it led since the submit was sent is in memory too) and its
memory of the submits it numbered (`recent`) is complete. Otherwise the request stays waiting:
answered when its input executes here, or never (the client times out: indefinite).

Durable records: those of EpochLogCore ("epoch", "log"; entries are {"e": epoch, "in": input} with
input = {"op": op, "o": receiving node, "c": client, "m": msg_id}) and {"t": "sequencer",
"epoch": e} when a node becomes sequencer (informative; the sequencer-forgets bug reads it).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from .core import Ready
from .machines import ERR_TEMPORARILY_UNAVAILABLE, is_read
from .primary_backup import ENGINE_OPTIONS, ROLE_CANDIDATE, ROLE_PRIMARY, EpochLogCore

WAITING_MAX = 10_000      # client requests a replica remembers while their inputs are ordered
RECENT_MAX = 10_000       # submits a sequencer remembers to drop duplicated messages


class ActiveActiveCore(EpochLogCore):
    NAME = "active-active"
    MODEL = "active-active"
    LOGS = "inputs"
    ROLE_NAME = "sequencer"
    DESCRIPTION = ("State-machine replication behind a sequencer: any replica takes requests and "
                   "forwards the inputs to an epoch-numbered sequencer elected by a majority; "
                   "every replica executes every input in sequence order once a majority holds "
                   "it; reads go through the log (linearizable) or, with reads=local, are "
                   "answered from the local state (sequentially consistent).")
    BUGS = {
        "arrival-order": "replicas execute inputs in the order the sequencer's messages arrive "
                         "(trusting a FIFO network) instead of sequence-number order; reordered or "
                         "retransmitted messages leave replicas in different states at the same "
                         "applied_index",
        "sequencer-forgets": "the sequencer only checkpoints its next sequence number every "
                             "`checkpoint_every` inputs and, restarted, resumes its epoch from the "
                             "checkpoint without an election, handing out numbers that replicas "
                             "already hold for other inputs",
    }
    CRASH_POINTS = {
        "append_ack": "an input acknowledged: it must be on the replica's disk",
        "append": "inputs sent by the sequencer that no replica holds yet",
        "submit": "an input handed to the sequencer",
    }
    OPTIONS = {
        **ENGINE_OPTIONS,
        "reads": ("'log': reads are sequenced (linearizable); 'local': answered from the "
                  "receiving replica's state (sequentially consistent)", "log"),
        "checkpoint_every": ("inputs between checkpoints of the sequencer's counter "
                             "(used by the sequencer-forgets bug)", 16),
    }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.options["reads"] not in ("log", "local"):
            raise ValueError(f"{self.NAME}: option reads must be 'log' or 'local', "
                             f"got {self.options['reads']!r}")
        self.waiting: OrderedDict[tuple[str, Any], dict] = OrderedDict()
        self.sequencer_epoch = 0          # last epoch this node recorded as its own sequencer
        self.checkpoint = 1               # sequencer-forgets: last checkpointed next number
        self.arrivals: deque[int] = deque()   # arrival-order: indexes in arrival order
        self.arrived: set[int] = set()
        self.executed: set[int] = set()
        self.seen: set[tuple] = set()     # (origin, client, msg_id) of every input executed
        self.recent: OrderedDict[tuple, None] = OrderedDict()   # sequencer: recently numbered
        # Whether `recent` still holds every submit this incarnation numbered (none evicted) and
        # the epochs this incarnation was elected sequencer of: what a "sure" submit_nack needs.
        self.recent_complete = True
        self.led_epochs: set[int] = set()

    # ---- recovery ---------------------------------------------------------------------------

    def _replay(self, r: dict) -> None:
        t = r.get("t")
        if t == "sequencer":
            self.sequencer_epoch = r["epoch"]
        elif t == "checkpoint":
            self.checkpoint = r["next"]
        else:
            super()._replay(r)

    def on_recover(self, records: list[dict], now_ms: int) -> Ready:
        ready = super().on_recover(records, now_ms)
        if "sequencer-forgets" in self.bugs and self.sequencer_epoch == self.epoch > 0 \
                and self.vote == self.node_id:
            # BUG: resume sequencing in the same epoch from the checkpointed counter; the inputs
            # numbered after the checkpoint are forgotten and their numbers handed out again.
            nxt = min(self.checkpoint, len(self.log) + 1)
            del self.log[nxt - 1:]
            ready.save({"t": "log", "i": nxt, "es": []})
            self.role = ROLE_CANDIDATE
            self.votes = set(self.node_ids)
            self._become_primary(ready, now_ms)
            # The previous incarnation numbered submits in this epoch that this one never saw.
            self.led_epochs.discard(self.epoch)
        return ready

    # ---- roles ------------------------------------------------------------------------------

    def _became_primary(self, ready: Ready) -> None:
        self.sequencer_epoch = self.epoch
        self.led_epochs.add(self.epoch)
        ready.save({"t": "sequencer", "epoch": self.epoch})

    def _append_local(self, entries: list[dict], ready: Ready) -> int:
        first = len(self.log) + 1
        last = super()._append_local(entries, ready)
        self._on_arrival(first, entries)
        if "sequencer-forgets" in self.bugs and last + 1 - self.checkpoint >= \
                int(self.options["checkpoint_every"]):
            self.checkpoint = last + 1
            ready.save({"t": "checkpoint", "next": self.checkpoint})
        return last

    # ---- clients ----------------------------------------------------------------------------

    def on_client(self, src: str, body: dict, now_ms: int) -> Ready:
        ready = Ready()
        op = self.request_op(body)
        if is_read(op) and self.options["reads"] == "local":
            ready.reply(src, body, self.machine.query(op))
            return ready
        inp = {"op": op, "o": self.node_id, "c": src, "m": body.get("msg_id")}
        if (src, inp["m"]) in self.waiting or (self.node_id, src, inp["m"]) in self.seen:
            # A duplicated request: its input is already on its way (or executed and answered);
            # refusing the copy would contradict the original's outcome.
            return ready
        if self.role == ROLE_PRIMARY:
            self._remember(inp, body)
            self._sequence(inp, ready)
        elif self.leader_id is not None:
            self._remember(inp, body)
            ready.send(self.leader_id, {"type": "submit", "epoch": self.epoch, "in": inp})
        else:
            self._not_primary(src, body, ready)
        return ready

    def _remember(self, inp: dict, body: dict) -> None:
        self.waiting[(inp["c"], inp["m"])] = body
        while len(self.waiting) > WAITING_MAX:
            self.waiting.popitem(last=False)   # that client has long timed out

    def _sequence(self, inp: dict, ready: Ready) -> None:
        self._append_local([{"e": self.epoch, "in": inp}], ready)
        self._replicate_new(ready)

    def _on_other_peer(self, src: str, body: dict, now_ms: int, ready: Ready) -> None:
        t = body.get("type")
        if t == "submit":
            if self.role == ROLE_PRIMARY:
                inp = body["in"]
                ident = (inp["o"], inp["c"], inp["m"])
                if ident in self.recent:
                    return                    # a duplicated message: numbered already
                self.recent[ident] = None
                while len(self.recent) > RECENT_MAX:
                    self.recent.popitem(last=False)
                    self.recent_complete = False
                self._sequence(inp, ready)
            else:
                ready.send(src, {"type": "submit_nack", "in": body["in"],
                                 "leader": self.leader_id,
                                 "sure": self._never_numbered(body)})
        elif t == "submit_nack":
            inp = body["in"]
            if not body.get("sure"):
                # Maybe a duplicate refused after the first copy was numbered: the outcome is
                # unknown, so keep waiting for the input to execute here (or the client's timeout).
                return
            req = self.waiting.pop((inp["c"], inp["m"]), None)
            if req is not None:
                extra = {"leader": body["leader"]} if body.get("leader") else {}
                ready.error(inp["c"], req, ERR_TEMPORARILY_UNAVAILABLE,
                            f"{src} is not the sequencer", **extra)

    def _never_numbered(self, submit: dict) -> bool:
        """Whether this node certainly never numbered the input of `submit` (any copy of it).

        The submit was sent to this node as the sequencer of its epoch E, so every copy arrived
        after this node led E and could only have been numbered in E or a later epoch. If this
        incarnation was elected in E, it led all those epochs itself (a restart loses the role and
        the next election is in a higher epoch), and `recent` saw every submit it numbered unless
        some were evicted. Anything less is not proof.
        """
        assert self.role != ROLE_PRIMARY
        inp = submit["in"]
        return (submit.get("epoch") in self.led_epochs and self.recent_complete
                and (inp["o"], inp["c"], inp["m"]) not in self.recent)

    # ---- execution --------------------------------------------------------------------------

    def _on_arrival(self, first_index: int, entries: list[dict]) -> None:
        if "arrival-order" not in self.bugs:
            return
        for k in range(len(entries)):
            i = first_index + k
            if i not in self.arrived:
                self.arrived.add(i)
                self.arrivals.append(i)

    def _entry_committed(self, index: int, entry: dict, ready: Ready) -> None:
        if "arrival-order" in self.bugs:
            # BUG: take the earliest-arrived committed input, not the one numbered `index`.
            while self.arrivals and self.arrivals[0] in self.executed:
                self.arrivals.popleft()
            pick = next((j for j in self.arrivals
                         if j <= self.commit and j not in self.executed), index)
            self.executed.add(pick)
            entry = self.log[pick - 1]
        if entry.get("noop"):
            return
        inp = entry["in"]
        ident = (inp["o"], inp["c"], inp["m"])
        if ident in self.seen:
            # The network duplicated a submit and the sequencer numbered it twice: every replica
            # skips the second copy alike (a function of the log prefix), so states still agree.
            return
        self.seen.add(ident)
        reply = self.machine.apply(inp["op"])
        if inp["o"] == self.node_id:
            req = self.waiting.pop((inp["c"], inp["m"]), None)
            if req is not None:
                ready.reply(inp["c"], req, reply)
