"""Summaries and percentile-bootstrap confidence intervals of timing samples.

The numbers are computed in C (``csrc/stats.c``, through ``attnbench._core``)
with the GIL released; this module checks arguments so that every error names
the argument at fault, and documents the results.

Definitions, shared by every function here:

* Quantiles are ``numpy.quantile``'s default ('linear', Hyndman & Fan type 7);
  the median is the 0.5-quantile.
* Intervals are percentile-bootstrap intervals, as
  ``scipy.stats.bootstrap(..., method="percentile")`` computes them: the
  ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
  statistic over ``resamples`` resamples drawn with replacement.
* Resampling uses attnbench's own generator (xoshiro256** seeded through
  splitmix64), so a given ``seed`` gives the same interval on every platform.
"""
import numbers

import numpy as np

from . import _core

# Defaults and limits live in csrc/stats.h; read them rather than retype them.
_C = _core._stats_constants()

__all__ = ["summarize", "bootstrap_ci", "ratio_ci"]


# ---- argument checks shared with attnbench.gate ------------------------------

def _samples(x, name, positive=False):
    """`x` as a 1-D float64 array of finite (and, if asked, positive) values."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D sequence of real numbers") from exc
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (integers or floats), not dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got {arr.ndim} dimensions")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    with np.errstate(over="ignore"):  # float128 beyond float64's range becomes inf, reported below
        arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{name}[{i}] is {arr[i]}; samples must be finite")
    if positive and not (arr > 0).all():
        i = int(np.argmin(arr > 0))
        raise ValueError(f"{name}[{i}] is {arr[i]}; {name} must hold positive values (times)")
    return arr


def _real(value, name):
    """`value` as a float; bool is refused (a flag where a number belongs is a bug)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large for a float") from None


def _integer(value, name, low, high):
    """`value` as an int in [low, high]; bool and float are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _bootstrap_args(confidence, resamples, seed):
    """The (confidence, resamples, seed) every bootstrap takes, checked and normalised."""
    c = _real(confidence, "confidence")
    if not 0.0 < c < 1.0:  # also refuses NaN
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return c, _integer(resamples, "resamples", 1, _C["max_resamples"]), _integer(seed, "seed", 0, 2**64 - 1)


def _quantiles(q):
    """`q` (one number or a sequence) as a 1-D float64 array of values in [0, 1]."""
    if isinstance(q, (bool, np.bool_)):
        raise TypeError("quantiles must be real numbers in [0, 1], not bool")
    try:
        arr = np.asarray(q)
    except (TypeError, ValueError) as exc:
        raise TypeError("quantiles must be a sequence of real numbers in [0, 1]") from exc
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"quantiles must hold real numbers in [0, 1], not dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"quantiles must be a number or a 1-D sequence, got {arr.ndim} dimensions")
    arr = np.atleast_1d(arr).astype(np.float64)
    outside = ~((arr >= 0.0) & (arr <= 1.0))
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"quantiles[{i}] is {arr[i]}; quantiles must lie in [0, 1]")
    return arr


# ---- public functions ---------------------------------------------------------

def summarize(samples, quantiles=_C["quantiles"]):
    """Summary statistics of a sample, as a dict.

    Parameters
    ----------
    samples : array_like
        One-dimensional, non-empty, finite real numbers (e.g. times in ms).
    quantiles : float or sequence of float, default (0.5, 0.9, 0.95, 0.99)
        Quantiles to report, each in [0, 1].

    Returns
    -------
    dict
        ``n``; ``min``, ``max``; ``mean``; ``std`` (sample standard deviation,
        ddof=1: **NaN when n == 1**, one value has no spread to estimate);
        ``median``; ``q1``, ``q3`` (0.25- and 0.75-quantiles) and ``iqr``
        (``q3 - q1``); ``mad`` (median absolute deviation from the median,
        unscaled: multiply by 1.4826 for a normal sigma); ``rel_std``
        (``std / mean``: signed like the mean, infinite when the mean is 0);
        ``quantiles``, a dict ``{q: value}``; and each quantile again under
        ``"p" + format(100 * q, "g")``: ``p50``, ``p90``, ``p99``, ``p99.9``.
        Quantiles are ``numpy.quantile``'s default ('linear') method.

    Raises
    ------
    TypeError
        If `samples` or `quantiles` does not hold real numbers.
    ValueError
        If `samples` is not 1-D, is empty, or holds NaN or Inf; or a quantile
        lies outside [0, 1].

    Examples
    --------
    >>> import attnbench
    >>> s = attnbench.summarize([1.0, 2.0, 3.0, 4.0], quantiles=(0.5, 0.9))
    >>> s["n"], s["median"], s["p90"], s["quantiles"][0.9], s["iqr"]
    (4, 2.5, 3.7, 3.7, 1.5)
    """
    x = _samples(samples, "samples")
    return _core.summarize(x, _quantiles(quantiles))


def bootstrap_ci(samples, statistic=_C["statistic"], confidence=_C["confidence"],
                 resamples=_C["resamples"], seed=_C["seed"]):
    """Percentile-bootstrap confidence interval of a sample's median or mean.

    Parameters
    ----------
    samples : array_like
        One-dimensional, non-empty, finite real numbers.
    statistic : {"median", "mean"}, default "median"
        The statistic whose interval is wanted.  The median suits GPU timings,
        whose long right tail moves the mean.
    confidence : float, default 0.95
        Coverage of the two-sided interval, strictly between 0 and 1.
    resamples : int, default 10000
        Number of bootstrap resamples, at least 1 (at most 10**8).
    seed : int, default 0
        Seed in [0, 2**64) of the resampling generator; the interval is the
        same for the same seed on every platform.

    Returns
    -------
    (point, low, high) : tuple of float
        The statistic of `samples` itself and the interval's endpoints.

    Raises
    ------
    TypeError
        If an argument has the wrong type (bool is refused for numbers).
    ValueError
        If `samples` is not 1-D, is empty or holds NaN or Inf; `statistic` is
        unknown; `confidence`, `resamples` or `seed` is out of range.

    Examples
    --------
    >>> import numpy as np, attnbench
    >>> times = 1.0 + 0.05 * np.random.default_rng(0).standard_normal(200)
    >>> point, low, high = attnbench.bootstrap_ci(times, seed=1)
    >>> bool(low < point < high), round(high - low, 2)
    (True, 0.02)
    """
    x = _samples(samples, "samples")
    if not isinstance(statistic, str):
        raise TypeError(f"statistic must be a str, not {type(statistic).__name__}")
    if statistic not in _C["statistics"]:
        raise ValueError(f"statistic must be one of {_C['statistics']}, got {statistic!r}")
    return _core.bootstrap_ci(x, statistic, *_bootstrap_args(confidence, resamples, seed))


def ratio_ci(a, b, confidence=_C["confidence"], resamples=_C["resamples"], seed=_C["seed"]):
    """Percentile-bootstrap confidence interval of ``median(a) / median(b)``.

    `a` and `b` are resampled independently (unpaired samples, e.g. the times
    of two kernels); speedup significance (`attnbench.speedup_gate`) is built
    on this.

    Parameters
    ----------
    a : array_like
        Numerator sample: 1-D, non-empty, finite.
    b : array_like
        Denominator sample: 1-D, non-empty, finite and **positive**.  Not only
        ``median(b)`` must be > 0: a resample may consist of b's smallest value
        alone, so every value must be, for every resampled ratio to exist.
    confidence : float, default 0.95
        Coverage of the two-sided interval, strictly between 0 and 1.
    resamples : int, default 10000
        Number of bootstrap resamples, at least 1.
    seed : int, default 0
        Seed in [0, 2**64) of the resampling generator.

    Returns
    -------
    (ratio, low, high) : tuple of float
        ``median(a) / median(b)`` and the interval's endpoints.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If `a` or `b` is not 1-D, is empty or holds NaN or Inf; `b` holds a
        value <= 0; `confidence`, `resamples` or `seed` is out of range.

    Examples
    --------
    >>> import numpy as np, attnbench
    >>> rng = np.random.default_rng(0)
    >>> new = 0.8 + 0.02 * rng.standard_normal(100)
    >>> old = 1.0 + 0.02 * rng.standard_normal(100)
    >>> ratio, low, high = attnbench.ratio_ci(new, old)
    >>> bool(low < ratio < high < 1.0), round(ratio, 1)
    (True, 0.8)
    """
    x = _samples(a, "a")
    y = _samples(b, "b", positive=True)
    return _core.ratio_ci(x, y, *_bootstrap_args(confidence, resamples, seed))
