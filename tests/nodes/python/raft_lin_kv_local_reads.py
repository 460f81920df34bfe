#!/usr/bin/env python3
"""The Raft lin-kv node of raft_lin_kv.py with a WRONG "optimization": reads are answered from
the local replica without going through the log (stale reads: not linearizable)."""

from raft_lin_kv import main

main(local_reads=True)
