"""Tests of attnbench.stats (summarize, bootstrap_ci, ratio_ci) and their C core.

References: NumPy for summaries and quantiles, scipy.stats.bootstrap
(method="percentile", the same resample count) for intervals, and the exact
bootstrap distribution of a median where a comparison with another random
stream cannot be sharp.
"""
import doctest
import math
import sys
import threading
import time

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

import attnbench
import attnbench.stats
from attnbench import _core, bootstrap_ci, ratio_ci, summarize
from support import FUZZ, HAS_STATM, assert_no_growth, ignore_errors, junk, result_or_error

REL = 1e-12  # summaries are computed in double; NumPy sums pairwise, we sum compensated


def _close(got, want, scale):
    """Equal to REL relative, or REL of the data's magnitude (means near 0)."""
    if math.isnan(want):
        return math.isnan(got)
    return abs(got - want) <= REL * max(abs(want), scale)


def _datasets():
    rng = np.random.default_rng(20240601)
    for n in (1, 2, 3, 10, 101, 1000):
        yield f"normal-{n}", rng.normal(-0.5, 3.0, size=n)             # negative values
        yield f"ties-{n}", rng.integers(-3, 4, size=n).astype(float)     # many ties
        yield f"lognormal-{n}", rng.lognormal(0.0, 1.0, size=n) * 1e-3  # timing-like, ms
    yield "constant", np.full(7, 2.5)
    yield "huge-range", np.array([1e-300, -1e300, 3.0, 1e300])


DATASETS = dict(_datasets())


# ---- summarize ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(DATASETS))
def test_summarize_matches_numpy(name):
    x = DATASETS[name]
    n, scale = x.size, float(np.max(np.abs(x)))
    qs = (0.0, 0.001, 0.25, 1 / 3, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
    s = summarize(x, quantiles=qs)
    assert s["n"] == n
    assert s["min"] == x.min() and s["max"] == x.max()
    assert _close(s["mean"], math.fsum(x) / n, scale)
    if n == 1:
        assert math.isnan(s["std"]) and math.isnan(s["rel_std"])
    else:
        std = float(np.std(x / scale, ddof=1)) * scale  # scaled: NumPy's squares overflow near 1e300
        assert _close(s["std"], std, 0.0)
        assert s["rel_std"] == s["std"] / s["mean"]  # both checked above; this is their ratio
    # Same interpolation formula as NumPy on the same sorted values: exact.
    want_q = np.quantile(x, qs)
    for q, w in zip(qs, want_q):
        assert s["quantiles"][q] == w
    assert s["median"] == np.quantile(x, 0.5)
    assert _close(s["median"], float(np.median(x)), scale)
    assert s["q1"] == np.quantile(x, 0.25) and s["q3"] == np.quantile(x, 0.75)
    assert _close(s["iqr"], float(np.quantile(x, 0.75) - np.quantile(x, 0.25)), scale)
    assert _close(s["mad"], float(np.median(np.abs(x - np.median(x)))), scale)


def test_summarize_keys_and_percentile_names():
    s = summarize([3.0, 1.0, 2.0], quantiles=(0.5, 0.9, 0.999, 0.9999, 0.0, 1.0, 0.25))
    for key in ("n", "min", "max", "mean", "std", "median", "q1", "q3", "iqr", "mad", "rel_std", "quantiles"):
        assert key in s
    assert {"p50", "p90", "p99.9", "p99.99", "p0", "p100", "p25"} <= set(s)
    assert s["p99.9"] == s["quantiles"][0.999]
    default = summarize([1.0, 2.0])
    assert set(default["quantiles"]) == {0.5, 0.9, 0.95, 0.99}
    assert {"p50", "p90", "p95", "p99"} <= set(default)
    assert summarize([1.0, 2.0], quantiles=0.9)["p90"] == pytest.approx(1.9)
    assert "p50" not in summarize([1.0, 2.0], quantiles=())


def test_summarize_small_exact():
    s = summarize([5, 9, 2, 4, 7, 4, 5, 4])  # integers are accepted
    assert (s["mean"], s["median"], s["q1"], s["q3"], s["iqr"], s["mad"]) == (5.0, 4.5, 4.0, 5.5, 1.5, 0.5)
    assert s["std"] == pytest.approx(math.sqrt(32 / 7), rel=1e-15)
    one = summarize([0.25])
    assert one["n"] == 1 and one["median"] == 0.25 and one["mad"] == 0.0 and math.isnan(one["std"])
    two = summarize(np.array([1.0, 3.0], dtype=np.float32))
    assert two["std"] == pytest.approx(math.sqrt(2.0)) and two["median"] == 2.0


def test_summarize_huge_values_stay_finite():
    s = summarize([1.7e308, 1.6e308, -1.0e308])
    for key in ("mean", "std", "median", "mad", "p99"):
        assert math.isfinite(s[key]), key
    assert s["mean"] == pytest.approx(7.666666666666667e307, rel=1e-15)
    assert summarize([-1.5e308, 1.5e308])["median"] == 0.0


# ---- bootstrap against SciPy and the exact bootstrap distribution -------------

def _scipy_interval(data, statistic, seed, resamples=10_000):
    res = scipy.stats.bootstrap(data, statistic, n_resamples=resamples, confidence_level=0.95,
                                method="percentile", rng=np.random.default_rng(seed), vectorized=True)
    return res.confidence_interval.low, res.confidence_interval.high


# With 10^4 resamples each endpoint's Monte Carlo error is about 0.7% of the
# interval's width whatever n is, so two independent streams differ by ~1%
# and 3% is about three standard deviations.
WIDTH_TOL = 0.03


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bootstrap_mean_matches_scipy(seed):
    x = np.random.default_rng(seed).normal(10.0, 2.0, size=300)
    point, low, high = bootstrap_ci(x, "mean", resamples=10_000, seed=seed)
    assert point == pytest.approx(np.mean(x), rel=1e-14)
    ref_low, ref_high = _scipy_interval((x,), np.mean, seed + 1000)
    width = high - low
    assert abs(low - ref_low) <= WIDTH_TOL * width
    assert abs(high - ref_high) <= WIDTH_TOL * width


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bootstrap_median_matches_scipy(seed):
    # A resampled median is always one of the sample's values (n odd), so
    # its bootstrap distribution is a ladder of atoms and a percentile can
    # land one rung apart in two streams: near the median a rung is ~2% of
    # the width at n=501 but gaps vary (scipy against itself, two seeds,
    # differs by up to 10% of the width).  Accept 3% of the width or one rung.
    x = np.random.default_rng(seed).normal(0.0, 1.0, size=501)
    xs = np.sort(x)
    point, low, high = bootstrap_ci(x, "median", resamples=10_000, seed=seed)
    assert point == np.median(x)
    ref_low, ref_high = _scipy_interval((x,), np.median, seed + 1000)
    width = high - low
    for ours, ref in ((low, ref_low), (high, ref_high)):
        rungs = abs(int(np.searchsorted(xs, ours)) - int(np.searchsorted(xs, ref)))
        assert abs(ours - ref) <= WIDTH_TOL * width or rungs <= 1


@pytest.mark.parametrize("n", [101, 501])
def test_bootstrap_median_matches_exact_distribution(n):
    # For odd n = 2m + 1 without ties, P(resampled median <= x_(k)) is
    # P(Binomial(n, k/n) >= m + 1): the percentile interval with infinitely
    # many resamples.  10^4 resamples must land within one order statistic.
    x = np.random.default_rng(n).standard_normal(n)
    xs = np.sort(x)
    m = (n - 1) // 2
    cdf = scipy.stats.binom.sf(m, n, np.arange(1, n + 1) / n)
    exact_low, exact_high = np.searchsorted(cdf, 0.025), np.searchsorted(cdf, 0.975)
    _, low, high = bootstrap_ci(x, "median", resamples=10_000, seed=7)
    assert abs(int(np.searchsorted(xs, low)) - exact_low) <= 1
    assert abs(int(np.searchsorted(xs, high)) - exact_high) <= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ratio_ci_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = 1.0 + 0.1 * rng.standard_normal(400)
    b = 1.2 + 0.1 * rng.standard_normal(500)
    ratio, low, high = ratio_ci(a, b, resamples=10_000, seed=seed)
    assert ratio == np.median(a) / np.median(b)

    def median_ratio(x, y, axis=-1):
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    ref_low, ref_high = _scipy_interval((a, b), median_ratio, seed + 1000)
    width = high - low
    assert abs(low - ref_low) <= WIDTH_TOL * width
    assert abs(high - ref_high) <= WIDTH_TOL * width


def test_confidence_widens_interval():
    x = np.random.default_rng(5).normal(size=300)
    _, lo90, hi90 = bootstrap_ci(x, "mean", confidence=0.90)
    _, lo99, hi99 = bootstrap_ci(x, "mean", confidence=0.99)
    assert lo99 < lo90 < hi90 < hi99


def test_degenerate_samples():
    assert bootstrap_ci([4.0]) == (4.0, 4.0, 4.0)
    assert bootstrap_ci([2.0, 2.0, 2.0], "mean") == (2.0, 2.0, 2.0)
    assert ratio_ci([3.0], [1.5]) == (2.0, 2.0, 2.0)
    assert bootstrap_ci([1.0, 2.0], resamples=1)[0] == 1.5


# ---- reproducibility ----------------------------------------------------------

def test_seed_reproducibility_and_sensitivity():
    x = np.random.default_rng(11).lognormal(size=400)
    y = np.random.default_rng(12).lognormal(size=300) + 0.1
    for fn in (lambda s: bootstrap_ci(x, "mean", seed=s), lambda s: bootstrap_ci(x, "median", seed=s),
               lambda s: ratio_ci(x, y, seed=s)):
        assert fn(123) == fn(123)
        assert fn(2**64 - 1) == fn(np.uint64(2**64 - 1))
    assert bootstrap_ci(x, "mean", seed=1) != bootstrap_ci(x, "mean", seed=2)
    assert ratio_ci(x, y, seed=1) != ratio_ci(x, y, seed=2)
    # The point estimate does not depend on the seed.
    assert bootstrap_ci(x, seed=1)[0] == bootstrap_ci(x, seed=2)[0] == np.median(x)


def test_order_and_dtype_of_samples_do_not_matter():
    x = np.random.default_rng(3).normal(size=200)
    ref = bootstrap_ci(x, seed=4)
    assert bootstrap_ci(x[::-1].copy(), seed=4) == ref  # resampling is over the sorted sample
    assert bootstrap_ci(list(x), seed=4) == ref
    assert bootstrap_ci(x.astype(">f8"), seed=4) == ref


# ---- speed and the GIL --------------------------------------------------------

@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_10k_resamples_of_1000_under_a_second(statistic):
    x = np.random.default_rng(0).lognormal(size=1000)
    start = time.perf_counter()
    bootstrap_ci(x, statistic, resamples=10_000)
    assert time.perf_counter() - start < 1.0


def test_ratio_ci_10k_resamples_under_a_second():
    x = np.random.default_rng(0).lognormal(size=1000)
    start = time.perf_counter()
    ratio_ci(x, x + 1.0, resamples=10_000)
    assert time.perf_counter() - start < 1.0


def test_gil_released_during_bootstrap():
    # If the C loop held the GIL, this thread could not tick while it runs.
    x = np.random.default_rng(0).normal(size=1000)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (bootstrap_ci(x, resamples=60_000), done.set()))
    ticks = 0
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    assert ticks >= 10


# ---- bad input ----------------------------------------------------------------

GOOD = [1.0, 2.0, 3.0]

BAD_CALLS = [
    # (call, exception, the argument the message must name)
    (lambda f: f.summarize([]), ValueError, "samples"),
    (lambda f: f.summarize([[1.0, 2.0]]), ValueError, "samples"),
    (lambda f: f.summarize(1.0), ValueError, "samples"),
    (lambda f: f.summarize([1.0, float("nan")]), ValueError, "samples"),
    (lambda f: f.summarize([1.0, float("inf")]), ValueError, "samples"),
    (lambda f: f.summarize(["a", "b"]), TypeError, "samples"),
    (lambda f: f.summarize([1 + 2j]), TypeError, "samples"),
    (lambda f: f.summarize(np.array([1, None], dtype=object)), TypeError, "samples"),
    (lambda f: f.summarize(GOOD, quantiles=(0.5, 1.5)), ValueError, "quantiles"),
    (lambda f: f.summarize(GOOD, quantiles=(-0.1,)), ValueError, "quantiles"),
    (lambda f: f.summarize(GOOD, quantiles=(float("nan"),)), ValueError, "quantiles"),
    (lambda f: f.summarize(GOOD, quantiles=("p50",)), TypeError, "quantiles"),
    (lambda f: f.bootstrap_ci([]), ValueError, "samples"),
    (lambda f: f.bootstrap_ci(GOOD, statistic="mode"), ValueError, "statistic"),
    (lambda f: f.bootstrap_ci(GOOD, statistic=0), TypeError, "statistic"),
    (lambda f: f.bootstrap_ci(GOOD, confidence=0.0), ValueError, "confidence"),
    (lambda f: f.bootstrap_ci(GOOD, confidence=1.0), ValueError, "confidence"),
    (lambda f: f.bootstrap_ci(GOOD, confidence=float("nan")), ValueError, "confidence"),
    (lambda f: f.bootstrap_ci(GOOD, confidence="0.9"), TypeError, "confidence"),
    (lambda f: f.bootstrap_ci(GOOD, confidence=True), TypeError, "confidence"),
    (lambda f: f.bootstrap_ci(GOOD, resamples=0), ValueError, "resamples"),
    (lambda f: f.bootstrap_ci(GOOD, resamples=10**9), ValueError, "resamples"),
    (lambda f: f.bootstrap_ci(GOOD, resamples=100.0), TypeError, "resamples"),
    (lambda f: f.bootstrap_ci(GOOD, resamples=True), TypeError, "resamples"),
    (lambda f: f.bootstrap_ci(GOOD, seed=-1), ValueError, "seed"),
    (lambda f: f.bootstrap_ci(GOOD, seed=2**64), ValueError, "seed"),
    (lambda f: f.bootstrap_ci(GOOD, seed=1.5), TypeError, "seed"),
    (lambda f: f.bootstrap_ci(GOOD, seed=None), TypeError, "seed"),
    (lambda f: f.ratio_ci([], GOOD), ValueError, "a"),
    (lambda f: f.ratio_ci(GOOD, [1.0, float("nan")]), ValueError, "b"),
    (lambda f: f.ratio_ci(GOOD, [0.0, 0.0, 0.0]), ValueError, "b"),
    (lambda f: f.ratio_ci(GOOD, [-1.0, -2.0, -3.0]), ValueError, "b"),
    (lambda f: f.ratio_ci(GOOD, [1.0, -2.0, 3.0]), ValueError, "b"),
    (lambda f: f.ratio_ci(GOOD, GOOD, confidence=2), ValueError, "confidence"),
]


@pytest.mark.parametrize("target", ["attnbench", "_core"])
@pytest.mark.parametrize("call,exc,argname", BAD_CALLS)
def test_bad_input_names_the_argument(target, call, exc, argname):
    # The C bindings check too: _core called directly must refuse the same input.
    with pytest.raises(exc) as info:
        call(attnbench if target == "attnbench" else _core)
    assert argname in str(info.value)


def test_bool_samples_refused_by_public_api():
    with pytest.raises(TypeError, match="samples"):
        summarize([True, False])


# ---- fuzzing: any input gives a result or TypeError/ValueError -----------------

@FUZZ
@given(samples=junk(), quantiles=junk())
def test_fuzz_summarize(samples, quantiles):
    for mod in (attnbench, _core):
        r = result_or_error(mod.summarize, samples)
        if r is not None:
            assert r["min"] <= r["median"] <= r["max"]
        result_or_error(mod.summarize, samples, quantiles)
        result_or_error(mod.summarize, [1.0, 2.0], quantiles)


@FUZZ
@given(samples=junk(), other=junk(), statistic=st.one_of(st.sampled_from(["median", "mean", "", "median\0"]), junk()),
       confidence=junk(), resamples=junk(), seed=junk())
def test_fuzz_bootstrap(samples, other, statistic, confidence, resamples, seed):
    for mod in (attnbench, _core):
        r = result_or_error(mod.bootstrap_ci, samples, resamples=20)
        if r is not None:
            assert r[1] <= r[2]
        result_or_error(mod.bootstrap_ci, GOOD, statistic, confidence, 20, seed)
        result_or_error(mod.bootstrap_ci, GOOD, "mean", 0.9, resamples, 0)
        result_or_error(mod.ratio_ci, samples, other, resamples=20)
        result_or_error(mod.ratio_ci, GOOD, samples, confidence, 20, seed)


# ---- memory: repeated calls, successes and errors, do not grow RSS --------------

@pytest.mark.skipif(not HAS_STATM, reason="needs Linux /proc/self/statm")
def test_memory_stable_over_repeated_calls():
    # 1000-sample float32 inputs make the core convert (copy) them: a leaked
    # copy per call would be 80 MB over the run.  float64 inputs are used
    # without a copy, so a leaked reference to them shows in their refcount.
    x = np.random.default_rng(0).lognormal(size=1000)
    x32 = x.astype(np.float32)
    bad = x32.copy()
    bad[500] = np.nan
    refs = sys.getrefcount(x), sys.getrefcount(x32)
    calls = [
        lambda: summarize(x),
        lambda: _core.summarize(x32, (0.5, 0.99)),
        lambda: bootstrap_ci(x32, resamples=5),
        lambda: _core.bootstrap_ci(x32, "mean", 0.9, 5, 3),
        lambda: _core.ratio_ci(x32, x, resamples=5),
        ignore_errors(lambda: _core.summarize(bad)),
        ignore_errors(lambda: _core.summarize(x32, (0.5, 2.0))),
        ignore_errors(lambda: _core.bootstrap_ci(x32, "mode")),
        ignore_errors(lambda: _core.bootstrap_ci(x, "median", 0.9, 0)),
        ignore_errors(lambda: _core.ratio_ci(x32, -x32)),
        ignore_errors(lambda: _core.ratio_ci(x32, x32, seed=-1)),
        ignore_errors(lambda: bootstrap_ci(bad)),
    ]
    assert_no_growth(calls)
    assert (sys.getrefcount(x), sys.getrefcount(x32)) == refs


# ---- documentation ---------------------------------------------------------------

def test_docstring_examples_run():
    failed, attempted = doctest.testmod(attnbench.stats, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0
