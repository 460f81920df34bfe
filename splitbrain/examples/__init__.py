"""Example histories shipped with splitbrain; `generate.py` rebuilds them (see its docstring)."""
