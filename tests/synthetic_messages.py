"""A generator of synthetic runs for the message diagram's tests: history.jsonl, messages.jsonl
(the format of contracts.md) and test.json, shaped like a Maelstrom lin-kv run on a Raft-like
cluster: each client op is a request to a node, which forwards to a leader, which replicates to
the others and answers; some nodes talk to a lin-kv service; the harness's c0 sends control
traffic; a partition (with its grudge) and a kill drop and lose messages. Deterministic per seed.
"""

from __future__ import annotations

import json
import os
import random

MS = 1_000_000


def make_run(run_dir: str, *, ops: int = 40, nodes: int = 5, clients: int = 4, seed: int = 1,
             fanout: int | None = None, duration_s: float = 2.0, unknown_dest: bool = True,
             extra_lines: list[str] = ()) -> dict:
    """Write a synthetic run into run_dir; returns {"history": [...], "messages": [...], "test"}.

    `ops` client operations spread over duration_s; each produces 2 + 2*fanout messages (fanout
    defaults to nodes - 1). Faults: a partition halves n1..n2 | the rest over the second quarter,
    n3 killed over the third quarter.
    """
    rng = random.Random(seed)
    names = [f"n{k + 1}" for k in range(nodes)]
    fanout = nodes - 1 if fanout is None else fanout
    span = int(duration_s * 1e9)
    part = (span // 4, span // 2)
    kill = (span // 2 + span // 20, 3 * span // 4)
    side_a = set(names[:max(1, nodes // 2 - 0)][:2])

    def cut(a: str, b: str, t: int) -> bool:
        return part[0] <= t < part[1] and ((a in side_a) != (b in side_a)) and a in names and b in names

    def down(n: str, t: int) -> bool:
        return n == "n3" and kill[0] <= t < kill[1]

    history: list[dict] = []
    events: list[tuple[int, dict]] = []     # (time, history op) before indexing
    msgs: list[dict] = []
    msg_id = {}

    def send(src, dest, body, t, lat, op=None, control=False):
        msg_id[src] = msg_id.get(src, 0) + 1
        body = dict(body, msg_id=msg_id[src])
        rec = {"src": src, "dest": dest, "body": body, "sent": t, "recv": None}
        if dest not in names and not dest.startswith("c") and dest != "lin-kv":
            rec["fate"] = "unknown-dest"
        elif cut(src, dest, t):
            rec["fate"] = "dropped"
        elif down(dest, t + lat):
            rec["fate"] = "lost"
        elif t + lat > span + 50 * MS:
            rec["fate"] = "pending"
        else:
            rec["fate"] = "delivered"
            rec["recv"] = t + lat
        if op is not None:
            rec["op"] = op
        if control:
            rec["control"] = True
        msgs.append(rec)
        return rec

    # nemesis: partition and kill (invoke, then info with the value the nemesis records)
    grudge = {n: sorted(set(names) - side_a) if n in side_a else sorted(side_a) for n in names}
    nem = [(part[0], "start-partition", {"shape": "halves"},
            {"shape": "halves", "grudge": grudge}),
           (part[1], "stop-partition", None, None),
           (kill[0], "kill", {"nodes": ["n3"], "targets": "one"}, {"nodes": ["n3"], "targets": "one"}),
           (kill[1], "restart", {"nodes": ["n3"]}, {"nodes": ["n3"]})]
    for t, f, v_inv, v_done in nem:
        events.append((t, {"process": "nemesis", "type": "invoke", "f": f, "value": v_inv}))
        events.append((t + 2 * MS, {"process": "nemesis", "type": "info", "f": f, "value": v_done}))
    # control traffic: c0 inits every node at the start
    for n in names:
        init = send("c0", n, {"type": "init", "node_id": n, "node_ids": names}, 0, MS,
                    control=True)
        send(n, "c0", {"type": "init_ok", "in_reply_to": init["body"]["msg_id"]}, MS, MS,
             control=True)

    # client operations: invoke, request, forwarding/replication, reply, completion
    pending_ops = []
    proc_busy_until = {}
    for k in range(ops):
        proc = k % clients
        t = max(int(k * span / ops) + rng.randint(0, MS), proc_busy_until.get(proc, 0) + 1)
        node = names[rng.randrange(nodes)]
        f = rng.choice(["read", "write", "cas"])
        key = rng.randint(0, 3)
        pending_ops.append((t, proc, f, key, node))
        proc_busy_until[proc] = t + 30 * MS
    op_index_by_k = {}
    # The history needs indexes in time order: collect events first, then index.
    op_events = []
    for k, (t, proc, f, key, node) in enumerate(pending_ops):
        op_events.append((t, k, "invoke"))
    for t, k, _ in op_events:
        events.append((t, {"process": pending_ops[k][1], "type": "invoke", "f": pending_ops[k][2],
                           "value": [pending_ops[k][3], None], "_k": k}))
    # completion times depend on messages; compute them now with provisional op ids
    completions = {}
    for k, (t, proc, f, key, node) in enumerate(pending_ops):
        completions[k] = t + rng.randint(3, 25) * MS
    for k, t_done in completions.items():
        t, proc, f, key, node = pending_ops[k]
        typ = "ok" if not (part[0] <= t < part[1]) else rng.choice(["ok", "info", "fail"])
        if k == ops - 1:
            continue   # the last op never completes
        events.append((t_done, {"process": proc, "type": typ, "f": f,
                                "value": [key, rng.randint(0, 9)], "_k": k}))
    events.sort(key=lambda e: e[0])
    for idx, (t, e) in enumerate(events):
        e = dict(e)
        kk = e.pop("_k", None)
        if kk is not None and e["type"] == "invoke":
            op_index_by_k[kk] = idx
        history.append({"index": idx, "time": t, **e})

    for k, (t, proc, f, key, node) in enumerate(pending_ops):
        op = op_index_by_k[k]
        client = f"c{proc + 1}"
        body = {"type": f, "key": key}
        if f == "write":
            body["value"] = rng.randint(0, 9)
        req = send(client, node, body, t + 10_000, MS // 2, op=op)
        leader = names[0]
        t2 = t + MS
        if node != leader:
            send(node, leader, dict(body), t2, MS)
            t2 += MS
        for peer in [n for n in names if n != leader][:fanout]:
            send(leader, peer, {"type": "append_entries", "term": 1, "entries": [[1, body]]},
                 t2, rng.randint(1, 3) * MS)
        send(leader, "lin-kv", {"type": "read", "key": key}, t2, MS // 2)
        if k < ops - 1:
            send(node, client, {"type": f + "_ok", "in_reply_to": req["body"]["msg_id"]},
                 completions[k] - MS // 2,
                 MS // 2 - 1000, op=op)
    if unknown_dest:
        send("n2", "n99", {"type": "gossip"}, span // 3, MS)
    # a message still in flight at the end
    send("n1", "n2", {"type": "heartbeat"}, span, 200 * MS)

    msgs.sort(key=lambda m: m["sent"])
    for i, m in enumerate(msgs):
        m["id"] = i
    test = {"workload": "lin-kv", "nodes": len(names), "node_ids": names, "concurrency": clients,
            "bin": "./node"}
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "history.jsonl"), "w") as fh:
        for op in history:
            fh.write(json.dumps(op) + "\n")
    with open(os.path.join(run_dir, "messages.jsonl"), "w") as fh:
        for m in msgs:
            fh.write(json.dumps(m) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    with open(os.path.join(run_dir, "test.json"), "w") as fh:
        json.dump(test, fh)
    return {"history": history, "messages": msgs, "test": test}


def write_big_run(run_dir: str, *, n_messages: int = 200_000, nodes: int = 25, clients: int = 10,
                  duration_s: float = 20.0) -> dict:
    """A big run written fast (lines formatted directly): Maelstrom broadcast-like traffic, each
    client op a request to a node, a gossip fan-out of that node to `fanout` peers and the reply.
    About n_messages messages; a partition over the middle third drops gossip across it.
    Returns {"ops": number of client ops, "messages": number of messages, "test": test}."""
    names = [f"n{k + 1}" for k in range(nodes)]
    fanout = 8
    per_op = fanout + 2
    n_ops = max(1, n_messages // per_op)
    span = int(duration_s * 1e9)
    dt = span // n_ops
    part = (span // 3, 2 * span // 3)
    hist: list[str] = []
    mid = 0
    hist.append(f'{{"index":0,"time":{part[0]},"process":"nemesis","type":"invoke","f":"start-partition","value":{{"shape":"one"}}}}')
    grudge = {names[0]: names[1:], **{n: [names[0]] for n in names[1:]}}
    hist.append(f'{{"index":1,"time":{part[0] + 1000},"process":"nemesis","type":"info","f":"start-partition","value":{json.dumps({"shape": "one", "grudge": grudge})}}}')
    events = []
    for k in range(n_ops):
        t = k * dt + 1000
        p = k % clients
        node = names[k % nodes]
        done = t + dt * clients - 1000
        events.append((t, f'"process":{p},"type":"invoke","f":"broadcast","value":{k}', k))
        events.append((done, f'"process":{p},"type":"ok","f":"broadcast","value":{k}', None))
    events.sort(key=lambda e: e[0])
    op_index = {}
    for t, body, k in events:
        idx = len(hist)
        if k is not None:
            op_index[k] = idx
        hist.append(f'{{"index":{idx},"time":{t},{body}}}')
    hist.append(f'{{"index":{len(hist)},"time":{part[1]},"process":"nemesis","type":"invoke","f":"stop-partition","value":null}}')
    hist.append(f'{{"index":{len(hist)},"time":{part[1] + 1000},"process":"nemesis","type":"info","f":"stop-partition","value":null}}')
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "messages.jsonl"), "w") as out:   # written as it goes
        for k in range(n_ops):
            t = k * dt + 2000
            c = f"c{k % clients + 1}"
            node = names[k % nodes]
            op = op_index[k]
            out.write(f'{{"id":{mid},"src":"{c}","dest":"{node}","body":{{"type":"broadcast","message":{k},"msg_id":{k}}},"sent":{t},"recv":{t + 50_000},"fate":"delivered","op":{op}}}\n')
            mid += 1
            for j in range(1, fanout + 1):
                peer = names[(k + j) % nodes]
                cut = part[0] <= t < part[1] and (node == names[0]) != (peer == names[0])
                s = t + 60_000 + j * 1000
                fate = '"recv":null,"fate":"dropped"' if cut else f'"recv":{s + 300_000},"fate":"delivered"'
                out.write(f'{{"id":{mid},"src":"{node}","dest":"{peer}","body":{{"type":"gossip","messages":[{k}],"msg_id":{mid}}},"sent":{s},{fate}}}\n')
                mid += 1
            r = t + 100_000
            out.write(f'{{"id":{mid},"src":"{node}","dest":"{c}","body":{{"type":"broadcast_ok","in_reply_to":{k},"msg_id":{mid}}},"sent":{r},"recv":{r + 40_000},"fate":"delivered","op":{op}}}\n')
            mid += 1
    test = {"workload": "broadcast", "nodes": len(names), "node_ids": names,
            "concurrency": clients, "bin": "./node"}
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "history.jsonl"), "w") as fh:
        fh.write("\n".join(hist) + "\n")
    with open(os.path.join(run_dir, "test.json"), "w") as fh:
        json.dump(test, fh)
    return {"ops": n_ops, "messages": mid, "test": test}
