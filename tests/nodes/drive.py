#!/usr/bin/env python3
"""Drive a Maelstrom node program without the harness: a development aid for the test nodes.

    python3 tests/nodes/drive.py --nodes 3 --workload broadcast --ops 200 -- ./node ARGS

Starts the nodes, sends init (and broadcast's topology: a line), routes every message by its
`dest` with `src` kept as written (as Maelstrom does), serves "lin-kv" and "seq-kv" as one
linearizable map (seq-kv being linearizable is allowed), sends `--ops` requests of the workload
round-robin to the nodes a few at a time, waits, then sends each node a final read and prints
one JSON line per request/reply pair and a last line with the final reads. No checking: it is
for looking at what a node does, the real verdicts come from `splitbrain test`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys

SERVICES = ("lin-kv", "seq-kv", "lww-kv")


def requests(workload: str, rng: random.Random):
    for i in itertools.count(1):
        if workload == "echo":
            yield {"type": "echo", "echo": f"hello {i}"}
        elif workload == "unique-ids":
            yield {"type": "generate"}
        elif workload == "broadcast":
            yield {"type": "broadcast", "message": i} if i % 3 else {"type": "read"}
        elif workload == "g-set":
            yield {"type": "add", "element": i} if i % 3 else {"type": "read"}
        elif workload in ("g-counter", "pn-counter"):
            d = rng.randrange(5) if workload == "g-counter" else rng.randrange(-5, 6)
            yield {"type": "add", "delta": d} if i % 3 else {"type": "read"}
        elif workload == "lin-kv":
            k = rng.randrange(3)
            yield rng.choice([{"type": "read", "key": k},
                              {"type": "write", "key": k, "value": rng.randrange(5)},
                              {"type": "cas", "key": k, "from": rng.randrange(5),
                               "to": rng.randrange(5)}])
        elif workload == "kafka":
            k = f"k{rng.randrange(2)}"
            yield rng.choice([{"type": "send", "key": k, "msg": i},
                              {"type": "poll", "offsets": {k: 0}},
                              {"type": "commit_offsets", "offsets": {k: 1}},
                              {"type": "list_committed_offsets", "keys": [k]}])
        elif workload == "txn-list-append":
            yield {"type": "txn", "txn": [["r", rng.randrange(3), None],
                                          ["append", rng.randrange(3), i]]}
        elif workload == "txn-rw-register":
            yield {"type": "txn", "txn": [["r", rng.randrange(3), None],
                                          ["w", rng.randrange(3), i]]}
        else:
            raise SystemExit(f"drive.py: unknown workload {workload}")


FINAL = {"broadcast": {"type": "read"}, "g-set": {"type": "read"},
         "g-counter": {"type": "read"}, "pn-counter": {"type": "read"},
         "kafka": {"type": "poll", "offsets": {"k0": 0, "k1": 0}},
         "txn-list-append": {"type": "txn", "txn": [["r", 0, None], ["r", 1, None],
                                                    ["r", 2, None]]},
         "txn-rw-register": {"type": "txn", "txn": [["r", 0, None], ["r", 1, None],
                                                    ["r", 2, None]]},
         "lin-kv": {"type": "read", "key": 0}}


class Cluster:
    def __init__(self, cmd: list[str], n: int):
        self.cmd = cmd
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.kv: dict = {}
        self.waiting: dict[tuple[str, int], asyncio.Future] = {}
        self.msg_ids = itertools.count(1)

    async def start(self) -> None:
        for nid in self.ids:
            p = await asyncio.create_subprocess_exec(
                *self.cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=1 << 24)
            self.procs[nid] = p
            asyncio.create_task(self.pump(nid, p))

    async def pump(self, nid: str, p) -> None:
        while True:
            line = await p.stdout.readline()
            if not line:
                print(json.dumps({"exit": nid, "code": await p.wait()}), flush=True)
                return
            try:
                msg = json.loads(line)
            except ValueError:
                print(json.dumps({"garbage": nid, "line": line[:200].decode(errors="replace")}))
                continue
            self.route(msg)

    def deliver(self, msg: dict) -> None:
        p = self.procs.get(msg["dest"])
        if p is not None and p.returncode is None:
            p.stdin.write((json.dumps(msg) + "\n").encode())

    def route(self, msg: dict) -> None:
        dest, body = msg["dest"], msg["body"]
        if dest in self.procs:
            self.deliver(msg)
        elif dest in SERVICES:
            self.deliver({"src": dest, "dest": msg["src"], "body": self.service(body)})
        elif dest.startswith("c"):
            fut = self.waiting.pop((dest, body.get("in_reply_to")), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        else:
            print(json.dumps({"unknown-dest": msg}), flush=True)

    def service(self, body: dict) -> dict:
        t, k = body["type"], json.dumps(body.get("key"))
        r = {"in_reply_to": body.get("msg_id")}
        if t == "read":
            if k not in self.kv:
                return dict(r, type="error", code=20, text="missing")
            return dict(r, type="read_ok", value=self.kv[k])
        if t == "write":
            self.kv[k] = body["value"]
            return dict(r, type="write_ok")
        if t == "cas":
            if k not in self.kv and not body.get("create_if_not_exists"):
                return dict(r, type="error", code=20, text="missing")
            if k in self.kv and self.kv[k] != body["from"]:
                return dict(r, type="error", code=22, text="mismatch")
            self.kv[k] = body["to"]
            return dict(r, type="cas_ok")
        return dict(r, type="error", code=10, text="unsupported")

    async def call(self, client: str, dest: str, body: dict, timeout_s: float = 2.0):
        mid = next(self.msg_ids)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[(client, mid)] = fut
        self.deliver({"src": client, "dest": dest, "body": dict(body, msg_id=mid)})
        try:
            return (await asyncio.wait_for(fut, timeout_s))["body"]
        except asyncio.TimeoutError:
            self.waiting.pop((client, mid), None)
            return None


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--ops", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=5)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("cmd", nargs="+")
    a = ap.parse_args()
    c = Cluster(a.cmd, a.nodes)
    await c.start()
    await asyncio.gather(*(c.call("c0", n, {"type": "init", "node_id": n, "node_ids": c.ids})
                           for n in c.ids))
    if a.workload == "broadcast":
        topo = {n: [m for m in c.ids if abs(int(m[1:]) - int(n[1:])) == 1] for n in c.ids}
        await asyncio.gather(*(c.call("c0", n, {"type": "topology", "topology": topo})
                               for n in c.ids))
    gen = requests(a.workload, random.Random(1))
    lock = asyncio.Lock()
    count = itertools.count()

    async def worker(w: int) -> None:
        while True:
            async with lock:
                i = next(count)
                if i >= a.ops:
                    return
                req = next(gen)
            rep = await c.call(f"c{w + 1}", c.ids[i % len(c.ids)], req)
            print(json.dumps({"req": req, "rep": rep}), flush=True)

    await asyncio.gather(*(worker(w) for w in range(a.concurrency)))
    await asyncio.sleep(a.settle)
    if a.workload in FINAL:
        finals = {n: await c.call("c99", n, FINAL[a.workload]) for n in c.ids}
        print(json.dumps({"final": finals}), flush=True)
    for p in c.procs.values():
        if p.returncode is None:
            p.kill()
            await p.wait()


if __name__ == "__main__":
    asyncio.run(main())
