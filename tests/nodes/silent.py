#!/usr/bin/env python3
"""Answers init, then never answers anything: the final phase must still end on time."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strictnode import Node  # noqa: E402

node = Node()
for t in ("read", "write", "cas"):
    node.on(t, lambda n, msg: None)
node.run()
