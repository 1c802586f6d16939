"""Placeholder until the stats unit lands."""
def summarize(*a, **k): raise NotImplementedError
def bootstrap_ci(*a, **k): raise NotImplementedError
def ratio_ci(*a, **k): raise NotImplementedError
