"""Pass/fail gates: closeness to a reference, speedup, regression, verdicts.

The decisions are made in C (``csrc/gate.c``, through ``attnbench._core``)
with the GIL released; this module checks arguments so that every error names
the argument at fault, and documents the rules.  Thresholds and defaults live
in ``csrc/gate.h`` and are read from the core, never retyped here.
"""
import math
import types

import numpy as np

from . import _core
from .stats import _C as _STATS, _bootstrap_args, _real, _samples

_C = _core._gate_constants()

#: Minimum speedup of each verdict, best first (read-only; from csrc/gate.h).
#: A speedup below every value here is a "Regression".
VERDICT_THRESHOLDS = types.MappingProxyType(_C["verdict_thresholds"])

__all__ = ["check_close", "speedup_gate", "regression_gate", "verdict", "VERDICT_THRESHOLDS"]


def _float_array(x, name):
    """`x` as a float16/32/64 array of any layout (no copy if it is one)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a float16, float32 or float64 array") from exc
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"{name} must be a float16, float32 or float64 array, not dtype {arr.dtype}")
    return arr


def _nonnegative(value, name, below_one=False):
    v = _real(value, name)
    if not (math.isfinite(v) and v >= 0.0 and (not below_one or v < 1.0)):
        raise ValueError(f"{name} must be finite and {'in [0, 1)' if below_one else '>= 0'}, got {value!r}")
    return v


def check_close(out, ref, atol, rtol):
    """Compare an output with its reference, elementwise.

    Element ``i`` mismatches when ``|out[i] - ref[i]| > atol + rtol * |ref[i]|``
    (the tolerance scales with the reference only, so the test is not
    symmetric).  NaN or Inf in `out` where `ref` is finite mismatches; where
    both are NaN, or the same infinity, the element matches.

    Parameters
    ----------
    out, ref : numpy.ndarray
        float16, float32 or float64 arrays (the two may differ) of the same
        shape, with any strides (views, transposes, negative steps); compared
        in float64 without copying whole arrays.
    atol, rtol : float
        Absolute and relative tolerance, finite and >= 0.

    Returns
    -------
    dict
        ``passed`` (no mismatch); ``max_abs``, the largest ``|out - ref|``;
        ``max_rel``, the largest ``|out - ref| / |ref|`` over ``ref != 0``
        (both 0.0 for an empty array, and Inf once an element mismatches
        through NaN or Inf); ``mismatches``, their count; ``worst_index``, the
        multi-index (a tuple) of the element whose ``|out - ref|`` exceeds its
        tolerance ``atol + rtol * |ref|`` the most, first in C order on ties,
        or None for an empty array; ``nan_count`` and ``inf_count`` in `out`.

    Raises
    ------
    TypeError
        If `out` or `ref` is not a float16/32/64 array, or a tolerance is not
        a real number.
    ValueError
        If the shapes differ, or a tolerance is negative, NaN or infinite.

    Examples
    --------
    >>> import numpy as np, attnbench
    >>> ref = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    >>> out = ref.astype(np.float16)
    >>> attnbench.check_close(out, ref, atol=1e-3, rtol=1e-3)["passed"]
    True
    >>> out[2, 1] += 0.5
    >>> r = attnbench.check_close(out, ref, atol=1e-3, rtol=1e-3)
    >>> r["passed"], r["mismatches"], r["worst_index"]
    (False, 1, (2, 1))
    """
    o = _float_array(out, "out")
    r = _float_array(ref, "ref")
    if o.shape != r.shape:
        raise ValueError(f"out and ref must have the same shape, got {o.shape} and {r.shape}")
    return _core.check_close(o, r, _nonnegative(atol, "atol"), _nonnegative(rtol, "rtol"))


def speedup_gate(candidate, baseline, threshold=_C["speedup_threshold"], confidence=_STATS["confidence"],
                 resamples=_STATS["resamples"], seed=_STATS["seed"]):
    """Is the candidate faster than the baseline, by enough and for sure?

    Parameters
    ----------
    candidate, baseline : array_like
        Samples of times (1-D, non-empty, finite, positive) of the kernel
        under test and of the one it should beat; any unit, the same for both.
    threshold : float, default 0.95
        The candidate passes on speed when ``median(candidate) /
        median(baseline) < threshold`` (0.95: at least ~5% faster).
        Finite and > 0.
    confidence : float, default 0.95
        Coverage of the ratio's bootstrap interval (`attnbench.ratio_ci`).
    resamples : int, default 10000
        Bootstrap resamples.
    seed : int, default 0
        Seed in [0, 2**64) of the resampling generator.

    Returns
    -------
    dict
        ``ratio`` (median candidate / median baseline), ``low``, ``high`` (its
        interval), ``speedup`` (``1 / ratio``), ``passed_speed`` (``ratio <
        threshold``), ``passed_significance`` (``high < 1``: faster at the
        stated confidence), ``passed`` (both), and the ``threshold`` and
        ``confidence`` used.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If a sample is not 1-D, is empty, or holds NaN, Inf or a value <= 0;
        or `threshold`, `confidence`, `resamples` or `seed` is out of range.

    Examples
    --------
    >>> import numpy as np, attnbench
    >>> rng = np.random.default_rng(0)
    >>> ours = 0.80 + 0.01 * rng.standard_normal(50)
    >>> sdpa = 1.00 + 0.01 * rng.standard_normal(50)
    >>> g = attnbench.speedup_gate(ours, sdpa)
    >>> g["passed"], round(g["speedup"], 2)
    (True, 1.25)
    """
    c = _samples(candidate, "candidate", positive=True)
    b = _samples(baseline, "baseline", positive=True)
    t = _real(threshold, "threshold")
    if not (math.isfinite(t) and t > 0.0):
        raise ValueError(f"threshold must be finite and > 0, got {threshold!r}")
    return _core.speedup_gate(c, b, t, *_bootstrap_args(confidence, resamples, seed))


def regression_gate(current, baseline, tolerance=_C["regression_tolerance"], confidence=_STATS["confidence"],
                    resamples=_STATS["resamples"], seed=_STATS["seed"], full=False):
    """Did a benchmark get faster, slower, or stay the same?

    With ``ratio = median(current) / median(baseline)``, ``[low, high]`` its
    bootstrap interval (`attnbench.ratio_ci`) and the band ``[1 - tolerance,
    1 + tolerance]``, the rules, checked in this order, are:

    * ``"SAME"`` when the interval lies wholly inside the band;
    * ``"SLOW"`` when ``ratio > 1 + tolerance`` and ``low > 1``;
    * ``"FAST"`` when ``ratio < 1 - tolerance`` and ``high < 1``;
    * ``"UNCERTAIN"`` otherwise: the samples cannot tell (too few, too noisy).

    So a result is never SAME when its interval reaches outside the band.

    Parameters
    ----------
    current, baseline : array_like
        Samples of times (1-D, non-empty, finite, positive), same unit.
    tolerance : float, default 0.02
        Half-width of the band of ratios that count as the same speed;
        finite, in [0, 1).
    confidence : float, default 0.95
        Coverage of the ratio's bootstrap interval.
    resamples : int, default 10000
        Bootstrap resamples.
    seed : int, default 0
        Seed in [0, 2**64) of the resampling generator.
    full : bool, default False
        Return the dict ``{status, ratio, low, high, tolerance}`` instead of
        the status alone.

    Returns
    -------
    str or dict
        ``"FAST"``, ``"SAME"``, ``"SLOW"`` or ``"UNCERTAIN"``; with
        ``full=True`` a dict with that ``status`` and the numbers behind it.

    Raises
    ------
    TypeError
        If an argument has the wrong type (`full` must be a bool).
    ValueError
        If a sample is not 1-D, is empty, or holds NaN, Inf or a value <= 0;
        or `tolerance`, `confidence`, `resamples` or `seed` is out of range.

    Examples
    --------
    >>> import numpy as np, attnbench
    >>> rng = np.random.default_rng(0)
    >>> before = 1.00 + 0.005 * rng.standard_normal(200)
    >>> attnbench.regression_gate(before * 1.001, before)
    'SAME'
    >>> attnbench.regression_gate(before * 1.10, before)
    'SLOW'
    >>> r = attnbench.regression_gate([0.9, 1.3, 1.0], [1.0, 1.2, 0.8], full=True)
    >>> r["status"], r["low"] < 1 - r["tolerance"], r["high"] > 1 + r["tolerance"]
    ('UNCERTAIN', True, True)
    """
    c = _samples(current, "current", positive=True)
    b = _samples(baseline, "baseline", positive=True)
    tol = _nonnegative(tolerance, "tolerance", below_one=True)
    params = _bootstrap_args(confidence, resamples, seed)
    if not isinstance(full, (bool, np.bool_)):
        raise TypeError(f"full must be a bool, not {type(full).__name__}")
    result = _core.regression_gate(c, b, tol, *params)
    return result if full else result["status"]


def verdict(speedup):
    """The word a report prints for a speedup.

    Thresholds (`VERDICT_THRESHOLDS`, defined once in ``csrc/gate.h``):
    ``"Excellent"`` for speedup >= 1.5, ``"Good"`` >= 1.1, ``"Modest"`` >= 1.02,
    ``"Parity"`` >= 0.98, ``"Regression"`` below.

    Parameters
    ----------
    speedup : float
        Baseline time / candidate time; finite and > 0.

    Returns
    -------
    str
        The verdict.

    Raises
    ------
    TypeError
        If `speedup` is not a real number (bool is refused).
    ValueError
        If `speedup` is NaN, infinite, zero or negative.

    Examples
    --------
    >>> import attnbench
    >>> [attnbench.verdict(s) for s in (2.0, 1.1, 1.05, 1.0, 0.9)]
    ['Excellent', 'Good', 'Modest', 'Parity', 'Regression']
    >>> dict(attnbench.gate.VERDICT_THRESHOLDS)["Good"]
    1.1
    """
    s = _real(speedup, "speedup")
    if not (math.isfinite(s) and s > 0.0):
        raise ValueError(f"speedup must be finite and > 0, got {speedup!r}")
    return _core.verdict(s)
