"""The linearizability checker (Jepsen semantics, per key) and its models.

Public API:
  check_linearizable(history, model, *, time_limit=None, out_dir=None, workers=None,
                     memo_max=None, method="auto") -> Result
  make_checker(options)            the registry's factory ("linearizable")
  Model, Call, UNKNOWN, FrozenDict the model protocol, to write your own (see models.py)
  MODELS, get_model                the built-in models by name

Layout: models.py (sequential specifications), prepare.py (history -> per-key calls and events;
the reduction of unobserved crashed writes), search.py (the just-in-time search, its memo table
bounded), unique.py (the polynomial method for registers with unique written values, used per
key when its precondition holds), checker.py (keys, method, cores, time limit, Result),
counterexample.py (the counterexample in words and as HTML; imports jinja2 only when used).
"""

from .checker import LinearizableChecker, check_linearizable, make_checker
from .models import MODELS, UNKNOWN, Call, FrozenDict, Model, freeze, get_model

__all__ = ["check_linearizable", "make_checker", "LinearizableChecker", "Model", "Call",
           "UNKNOWN", "FrozenDict", "MODELS", "get_model", "freeze"]
