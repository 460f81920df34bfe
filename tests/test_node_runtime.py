"""The process runtime: framing, durability, a torn record cut, restart recovery, the clock control."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splitbrain.systems.runtime import (RECORDS_FILE, DurableLog, cut_to_last_sync, frame,
                                        parse_opts, scan)

NODES = Path(__file__).parent / "nodes"


def test_frames_round_trip_and_flags():
    raw = frame({"a": 1}, True) + frame({"b": [2]}, False)
    records, good, last_sync, why = scan(raw)
    assert records == [{"a": 1}, {"b": [2]}]
    assert why is None and good == len(raw)
    assert last_sync == len(frame({"a": 1}, True))


def test_torn_final_record_is_cut_on_open(tmp_path):
    path = tmp_path / RECORDS_FILE
    full = frame({"n": 1}, True) + frame({"n": 2}, True)
    path.write_bytes(full + frame({"n": 3}, True)[:-5])     # torn: no newline, short
    log = DurableLog(str(path))
    records, cut = log.open()
    try:
        assert records == [{"n": 1}, {"n": 2}]
        assert cut is not None and "torn" in cut
        assert path.read_bytes() == full
        log.append([{"n": 4}], sync=True)
    finally:
        log.close()
    assert scan(path.read_bytes())[0] == [{"n": 1}, {"n": 2}, {"n": 4}]


def test_corrupt_checksum_ends_the_log(tmp_path):
    path = tmp_path / RECORDS_FILE
    good = frame({"n": 1}, True)
    bad = bytearray(frame({"n": 2}, True))
    bad[-3] ^= 0x01                                         # flip a bit inside the JSON
    path.write_bytes(good + bytes(bad))
    log = DurableLog(str(path))
    records, cut = log.open()
    log.close()
    assert records == [{"n": 1}] and "checksum" in cut
    assert path.read_bytes() == good


def test_cut_to_last_sync_drops_only_unsynced_tail(tmp_path):
    path = tmp_path / RECORDS_FILE
    log = DurableLog(str(path))
    log.open()
    log.append([{"n": 1}], sync=False)
    log.append([{"n": 2}], sync=True)      # the fsync covers n=1 too
    log.append([{"n": 3}, {"n": 4}], sync=False)
    log.close()
    removed = cut_to_last_sync(str(path))
    assert removed == len(frame({"n": 3}, False) + frame({"n": 4}, False))
    assert scan(path.read_bytes())[0] == [{"n": 1}, {"n": 2}]


def test_parse_opts():
    assert parse_opts(["a=1", "b=x", "c=[1,2]"]) == {"a": 1, "b": "x", "c": [1, 2]}
    with pytest.raises(ValueError):
        parse_opts(["novalue"])


class Node:
    """A node process driven by hand over its stdin/stdout."""

    def __init__(self, data: Path, *extra: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NODES), os.environ.get("PYTHONPATH", "")])}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "splitbrain.systems.node", "--system", "tinycore:TinyCore",
             "--data", str(data), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(data.parent / f"{data.name}.log", "ab"),
            env=env, start_new_session=True)
        self.msg_id = 0

    def call(self, body: dict, src: str = "c1", timeout_s: float = 10.0) -> dict:
        self.msg_id += 1
        msg = {"src": src, "dest": "n1", "body": {**body, "msg_id": self.msg_id}}
        self.p.stdin.write((json.dumps(msg) + "\n").encode())
        self.p.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            assert line, "node closed its stdout"
            env = json.loads(line)
            if env["body"].get("in_reply_to") == self.msg_id:
                return env["body"]
        raise AssertionError("no reply")

    def init(self) -> dict:
        return self.call({"type": "init", "node_id": "n1", "node_ids": ["n1", "n2"]}, src="c0")

    def kill(self) -> None:
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(5)

    def close(self) -> None:
        if self.p.poll() is None:
            self.kill()


def test_node_process_recovers_after_sigkill(tmp_path):
    data = tmp_path / "n1"
    a = Node(data)
    try:
        assert a.init()["type"] == "init_ok"
        for v in range(5):
            assert a.call({"type": "write", "key": 1, "value": v})["type"] == "write_ok"
        assert a.call({"type": "status"})["applied_index"] == 5
        a.kill()
    finally:
        a.close()
    # Simulate a torn write of a crash in the middle of an append.
    with open(data / RECORDS_FILE, "ab") as fh:
        fh.write(b"0000beefS {\"op\":")
    b = Node(data)
    try:
        b.init()
        assert b.call({"type": "read", "key": 1}) == {"type": "read_ok", "value": 4, "in_reply_to": 2}
        st = b.call({"type": "status"})
        assert st["applied_index"] == 5 and st["is_leader"] is True
        ok = b.call({"type": "splitbrain_clock", "offset_ms": -5000})
        assert ok["type"] == "splitbrain_clock_ok"
        assert b.call({"type": "status"})["clock_offset_ms"] == -5000
    finally:
        b.close()
    assert (data / "clock_offset_ms").read_text() == "-5000"
    assert "torn record" in (tmp_path / "n1.log").read_text()


def test_unsynced_records_lost_only_by_the_cut(tmp_path):
    data = tmp_path / "n1"
    a = Node(data, "--bug", "unsynced")
    try:
        a.init()
        for v in range(3):
            a.call({"type": "write", "key": 1, "value": v})
        a.kill()
    finally:
        a.close()
    assert len(scan((data / RECORDS_FILE).read_bytes())[0]) == 3   # a process kill keeps them
    assert cut_to_last_sync(str(data / RECORDS_FILE)) > 0           # a machine crash does not
    b = Node(data)
    try:
        b.init()
        assert b.call({"type": "read", "key": 1})["value"] is None
    finally:
        b.close()


def test_node_exits_when_stdin_closes(tmp_path):
    a = Node(tmp_path / "n1")
    try:
        a.init()
        a.p.stdin.close()
        assert a.p.wait(10) == 0
    finally:
        a.close()
