"""The process exit codes of every splitbrain command, documented in the README.

They are distinct so that a CI job can tell a broken system from a broken invocation:

  0 VALID          every checked history is valid
  1 INVALID        at least one history is invalid (an anomaly was found)
  2 USAGE          the command line or an input file is wrong (click uses 2 for usage errors too)
  3 UNKNOWN        no history is invalid but at least one could not be decided (time limit, ...)
  4 HARNESS_ERROR  splitbrain itself failed (a bug, a crashed backend, a teardown failure)
"""

VALID = 0
INVALID = 1
USAGE = 2
UNKNOWN = 3
HARNESS_ERROR = 4


def for_validity(valid) -> int:
    """Map a composed validity (True, False or "unknown") to an exit code."""
    if valid is True:
        return VALID
    if valid is False:
        return INVALID
    return UNKNOWN
