"""Placeholder until the gate unit lands."""
def check_close(*a, **k): raise NotImplementedError
def speedup_gate(*a, **k): raise NotImplementedError
def regression_gate(*a, **k): raise NotImplementedError
def verdict(*a, **k): raise NotImplementedError
