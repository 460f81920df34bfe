"""The history: the one data model that every part of splitbrain shares.

Public API:
  Op, INVOKE/OK/FAIL/INFO, NEMESIS      the record (op.py)
  HistoryError                          bad input, with file/line/field (errors.py)
  iter_jsonl, read_jsonl, write_jsonl,
  HistoryWriter, dumps_op, op_from_dict JSONL streaming I/O (jsonl.py)
"""

from .errors import HistoryError
from .jsonl import HistoryWriter, dumps_op, iter_jsonl, op_from_dict, read_jsonl, write_jsonl
from .op import COMPLETIONS, FAIL, INFO, INVOKE, NEMESIS, OK, TYPES, Op

__all__ = [
    "Op", "INVOKE", "OK", "FAIL", "INFO", "NEMESIS", "TYPES", "COMPLETIONS", "HistoryError",
    "iter_jsonl", "read_jsonl", "write_jsonl", "HistoryWriter", "dumps_op", "op_from_dict",
]
