"""Checkers: each takes a history and returns a three-valued Result (see result.py)."""

from .result import (UNKNOWN, Anomaly, Checker, FunctionChecker, Result, Validity,
                     merge_validity, safe_check)

__all__ = ["UNKNOWN", "Anomaly", "Checker", "FunctionChecker", "Result", "Validity",
           "merge_validity", "safe_check"]
