"""`python -m splitbrain.systems.node --system raft --data DIR`: an in-house system as a Maelstrom node.

Options: --system NAME, --machine kv|arith|append-log|set (the replicated state machine; default
kv), --bug NAME (repeatable), --opt KEY=VALUE (repeatable, JSON values), --seed N, --data DIR.
Speaks the node protocol on stdin/stdout and logs on stderr; see splitbrain.systems.runtime.
Exit codes: 0 when stdin closes, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .registry import get_system
from .runtime import NodeRuntime, StdioTransport, parse_opts


def load_system(name: str):
    """A system by registry name, or any Core class given as `module:Class` (tests, plugins)."""
    if ":" in name:
        import importlib
        module, _, cls = name.partition(":")
        return getattr(importlib.import_module(module), cls)
    return get_system(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m splitbrain.systems.node",
                                 description="Run an in-house system as a Maelstrom node.")
    ap.add_argument("--system", required=True)
    ap.add_argument("--machine", default="kv")
    ap.add_argument("--bug", action="append", default=[])
    ap.add_argument("--opt", action="append", default=[])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", required=True, help="the node's data directory")
    ap.add_argument("--listen", help="HOST:PORT: speak over TCP (splitbrain.systems.tcp) "
                    "instead of stdin/stdout")
    ap.add_argument("--peer", action="append", default=[],
                    help="NODE=HOST:PORT of a peer, with --listen (repeatable)")
    ap.add_argument("--id", help="with --listen: initialise as this node id at start, without "
                    "waiting for the harness's init (a cluster started by hand, e.g. compose)")
    args = ap.parse_args(argv)
    try:
        system = load_system(args.system)
        options = parse_opts(args.opt)
        unknown = set(args.bug) - set(system.BUGS)
        if unknown:
            raise ValueError(f"unknown bug switch(es) {', '.join(sorted(unknown))} for "
                             f"{args.system} (known: {', '.join(system.BUGS) or 'none'})")
    except (ValueError, ImportError) as e:
        print(f"splitbrain node: {e}", file=sys.stderr)
        return 2
    # The harness stops nodes with signals; a SIGINT at the terminal goes to the harness only
    # (nodes run in their own session), so the default handlers are right. SIGPIPE: exit quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.makedirs(args.data, exist_ok=True)
    transport = StdioTransport()
    if args.listen:
        from .tcp import TcpTransport, parse_addr, parse_peers
        # Over TCP a write to a peer that just died (killed, reset) must be an error the
        # transport handles (EPIPE: the connection is dropped and made again), not SIGPIPE
        # killing this node: that is a crash the harness would report against the system
        # (found by the ssh backend's runs: exit code 141 right after a peer was killed).
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            transport = TcpTransport(parse_addr(args.listen), parse_peers(args.peer))
            if args.id:
                ids = sorted(set(transport.peers) | {args.id})
                transport.inject({"src": "c0", "dest": args.id, "body": {
                    "type": "init", "msg_id": 0, "node_id": args.id, "node_ids": ids}})
        except (ValueError, OSError) as e:
            print(f"splitbrain node: {e}", file=sys.stderr)
            return 2
    rt = NodeRuntime(system, args.data, transport, machine=args.machine,
                     bugs=frozenset(args.bug), options=options, seed=args.seed)
    return rt.run()


if __name__ == "__main__":
    sys.exit(main())
