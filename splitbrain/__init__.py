"""splitbrain: a Jepsen-style correctness testing harness for replicated systems.

Subpackages, one per concern (see DESIGN.md):
  history/   the Op record, JSONL reading and writing, importers
  checkers/  the Checker protocol and every checker
  harness/   runner, generators, nemeses, backends, store, reports
  systems/   sans-I/O protocol cores, state machines, the node runtime
"""

__version__ = "0.1.0"
