"""`python -m splitbrain.systems.tcp_shim --listen H:P --peer n2=H:P ... -- ./node ARGS`:
run a stdio Maelstrom node binary (any language) on a real network.

The shim starts the binary as its child and bridges: every envelope the binary writes on stdout
goes out over TCP (to a peer node's address, or back to a client's connection), and every
envelope arriving over TCP is written to the binary's stdin. The binary itself is unchanged: to it
the network looks like Maelstrom's. Peer traffic is real TCP between the shims, so iptables rules
in the node's namespace or container cut it as they would cut the binary's own sockets.
Envelopes for a peer go to that peer; every other envelope (replies to clients, also for
requests another node forwarded with the client's `src` kept; requests to Maelstrom's services;
unknown destinations) goes to the harness's connection, which routes it (harness/backends/
routing.py). The binary's stderr is inherited (it goes to the node's log). The shim exits with
the child.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

from ..harness.backends.wire import LineReader, parse_envelope
from .tcp import TcpTransport, parse_addr, parse_peers

READ_CHUNK_BYTES = 1 << 16
CHILD_EXIT_WAIT_S = 5.0       # how long the shim waits for its node's exit code
DISCARD_LOG_MAX = 20          # over-long lines mentioned in the node's log (then only counted)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m splitbrain.systems.tcp_shim")
    ap.add_argument("--listen", required=True, help="HOST:PORT this node listens on")
    ap.add_argument("--peer", action="append", default=[], help="NODE=HOST:PORT (repeatable)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the node binary and its arguments")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        if not cmd:
            raise ValueError("no node binary given after --")
        transport = TcpTransport(parse_addr(args.listen), parse_peers(args.peer))
    except (ValueError, OSError) as e:
        print(f"splitbrain tcp_shim: {e}", file=sys.stderr)
        return 2
    # A write to a node that died must not kill the shim (SIGPIPE) before it can report the
    # node's own exit code: ignore it here (writes raise BrokenPipeError); the node itself gets
    # the default action back (Popen's restore_signals).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    transport.to_harness = True
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    out_fd = child.stdout.fileno()
    os.set_blocking(out_fd, False)
    state = {"eof": False, "discarded": 0}
    reader = LineReader()

    def from_child() -> None:
        # The node's output is untrusted input (harness/backends/wire.py): a bounded line
        # buffer, and a line that is not a usable envelope goes to the harness as it is, which
        # counts and logs it. Nothing the node writes can stop the shim.
        try:
            chunk = os.read(out_fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            state["eof"] = True
            transport.unwatch(out_fd)
            return
        lines = reader.feed(chunk)
        if reader.discarded > state["discarded"]:
            state["discarded"] = reader.discarded
            if reader.discarded <= DISCARD_LOG_MAX:
                print(f"tcp_shim: discarded a line over {reader.line_bytes_max} bytes from the "
                      f"node ({reader.discarded} so far)", file=sys.stderr, flush=True)
        for line in lines:
            env, _why = parse_envelope(line)
            if env is None:
                transport.send_raw(line + b"\n")
                continue
            try:
                transport.send([env])
            except (RecursionError, ValueError, TypeError):
                transport.send_raw(line + b"\n")     # cannot be written back: the harness logs it

    transport.watch(out_fd, from_child)
    try:
        while not state["eof"]:
            envs = transport.receive(0.05)
            if envs:
                data = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n"
                                for e in envs)
                try:
                    child.stdin.write(data)
                except BrokenPipeError:
                    break
            if child.poll() is not None and state["eof"]:
                break
    finally:
        transport.close()
        try:        # its stdout closed or its stdin broke: the node is ending; let it finish
            child.wait(timeout=CHILD_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    code = child.returncode or 0
    return code if code >= 0 else 128 - code     # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(main())
