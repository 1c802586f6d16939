"""Tests of attnbench.gate (check_close, speedup_gate, regression_gate, verdict) and their C core."""
import doctest
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import attnbench
import attnbench.gate
from attnbench import _core, check_close, regression_gate, speedup_gate, verdict
from attnbench.gate import VERDICT_THRESHOLDS
from support import FUZZ, HAS_STATM, assert_no_growth, ignore_errors, junk, result_or_error

NAN, INF = float("nan"), float("inf")


# ---- check_close: a NumPy model of the rules --------------------------------------

def model_close(out, ref, atol, rtol):
    """What check_close must return, computed with NumPy in float64."""
    o, r = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    with np.errstate(all="ignore"):
        finite = np.isfinite(o) & np.isfinite(r)
        same_special = ~finite & ((np.isnan(o) & np.isnan(r)) | (o == r))
        bad_special = ~finite & ~same_special
        diff, tol = np.abs(o - r), atol + rtol * np.abs(r)
        mismatch = (finite & (diff > tol)) | bad_special
        excess = np.where(finite, diff - tol, np.where(same_special, -np.inf, np.inf))
        excess = np.where(np.isnan(excess), -np.inf, excess)
        rel = np.where(finite & (r != 0), diff / np.abs(r), 0.0)
    any_bad_special = bool(bad_special.any())
    return {
        "passed": not mismatch.any(),
        "max_abs": INF if any_bad_special else float(np.max(np.where(finite, diff, 0.0), initial=0.0)),
        "max_rel": INF if any_bad_special else float(np.max(rel, initial=0.0)),
        "mismatches": int(mismatch.sum()),
        "worst_index": None if o.size == 0 else tuple(int(i) for i in np.unravel_index(np.argmax(excess), o.shape)),
        "nan_count": int(np.isnan(o).sum()),
        "inf_count": int(np.isinf(o).sum()),
    }


def test_check_close_passes():
    ref = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    r = check_close(ref.copy(), ref, 0.0, 0.0)
    assert r == {"passed": True, "max_abs": 0.0, "max_rel": 0.0, "mismatches": 0, "worst_index": (0, 0, 0),
                 "nan_count": 0, "inf_count": 0}
    r = check_close(ref.astype(np.float16), ref, 1e-3, 1e-3)  # float16 out, float64 ref
    assert r["passed"] and 0 < r["max_abs"] < 1e-3
    assert check_close(ref * (1 + 1e-7), ref, 0.0, 1e-6)["passed"]


def test_check_close_special_values():
    ref = np.array([1.0, NAN, INF, -INF, 0.0])
    assert check_close(ref.copy(), ref, 0.0, 0.0)["passed"]  # NaN with NaN, same infinities match
    r = check_close(ref.copy(), ref, 0.0, 0.0)
    assert (r["nan_count"], r["inf_count"]) == (1, 2)

    out = ref.copy()
    out[0] = NAN  # NaN where ref is finite
    r = check_close(out, ref, 1.0, 1.0)
    assert not r["passed"] and r["mismatches"] == 1 and r["worst_index"] == (0,)
    assert r["nan_count"] == 2 and r["max_abs"] == INF and r["max_rel"] == INF

    out = ref.copy()
    out[4] = INF  # Inf where ref is finite
    r = check_close(out, ref, 1.0, 1.0)
    assert not r["passed"] and r["worst_index"] == (4,) and r["inf_count"] == 3

    out = ref.copy()
    out[2] = -INF  # the other infinity
    assert check_close(out, ref, 1.0, 1.0)["worst_index"] == (2,)

    out = ref.copy()
    out[1] = 5.0  # a number where ref is NaN
    r = check_close(out, ref, 1.0, 1.0)
    assert not r["passed"] and r["mismatches"] == 1 and r["nan_count"] == 0


def test_check_close_one_bad_element_and_worst_index():
    ref = np.ones((4, 5, 6), dtype=np.float32)
    out = ref.copy()
    out[2, 3, 1] += 0.25
    out[1, 0, 5] += 0.1  # also bad, but by less
    r = check_close(out, ref, 1e-3, 0.0)
    assert not r["passed"] and r["mismatches"] == 2
    assert r["worst_index"] == (2, 3, 1)
    assert r["max_abs"] == pytest.approx(0.25) and r["max_rel"] == pytest.approx(0.25)


def test_check_close_worst_index_uses_excess_not_difference():
    # |diff| is larger at 0, but element 1's tolerance is far tighter.
    ref = np.array([1000.0, 1.0])
    out = np.array([1000.5, 1.2])
    r = check_close(out, ref, 0.0, 1e-3)
    assert r["mismatches"] == 1 and r["worst_index"] == (1,) and r["max_abs"] == 0.5
    assert r["max_rel"] == pytest.approx(0.2)


def test_check_close_max_rel_skips_zero_reference():
    r = check_close(np.array([0.5, 1.1]), np.array([0.0, 1.0]), 1.0, 0.0)
    assert r["passed"] and r["max_abs"] == 0.5 and r["max_rel"] == pytest.approx(0.1)


@pytest.mark.parametrize("layout", ["transposed", "strided", "reversed", "fortran", "broadcast", "big-endian",
                                    "sliced-3d"])
def test_check_close_any_layout(layout):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    if layout == "transposed":
        out = base.T
    elif layout == "strided":
        out = base[::2, 1::3]
    elif layout == "reversed":
        out = base[::-1, ::-2]
    elif layout == "fortran":
        out = np.asfortranarray(base)
    elif layout == "broadcast":
        out = np.broadcast_to(base[0], (5, 8))  # stride 0
    elif layout == "big-endian":
        out = base.astype(">f4")
    else:
        out = rng.standard_normal((4, 6, 10)).astype(np.float16)[1:, ::2, ::-3]
    ref = np.ascontiguousarray(out, dtype=np.float64)
    assert not out.flags.c_contiguous or layout in ("big-endian",)
    assert check_close(out, ref, 0.0, 0.0)["passed"]
    bad = ref.copy()
    index = tuple(s - 1 for s in out.shape)
    bad[index] += 1.0
    r = check_close(out, bad, 1e-6, 0.0)
    assert not r["passed"] and r["worst_index"] == index and r["mismatches"] == 1
    assert r == model_close(out, bad, 1e-6, 0.0)
    # Both operands as views, too.
    assert check_close(out, out, 0.0, 0.0)["passed"]


def test_check_close_empty_and_zero_dim():
    r = check_close(np.zeros((0, 3), np.float32), np.zeros((0, 3)), 0.0, 0.0)
    assert r["passed"] and r["worst_index"] is None and r["mismatches"] == 0
    r = check_close(np.float64(2.0), np.array(1.0), 0.5, 0.0)
    assert not r["passed"] and r["worst_index"] == ()


def test_check_close_large_array_uses_buffering():
    # Larger than NumPy's iterator buffer, float16 cast on the fly, in C order.
    ref = np.random.default_rng(2).standard_normal((64, 700)).astype(np.float16)
    out = ref.T.copy().T  # same values, Fortran layout
    out[63, 699] = -out[63, 699] + 1
    r = check_close(out, ref, 0.0, 0.0)
    assert r["worst_index"] == (63, 699) and r["mismatches"] == 1


_special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1.0009765625, 65504.0, 1e-8, NAN, INF, -INF])
_values = st.one_of(_special, st.floats(width=16, allow_nan=True, allow_infinity=True))


@st.composite
def close_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    dto, dtr = draw(st.sampled_from([np.float16, np.float32, np.float64])), draw(
        st.sampled_from([np.float16, np.float32, np.float64]))
    out = draw(hnp.arrays(dto, shape, elements=_values))
    ref = np.where(draw(hnp.arrays(np.bool_, shape)), out.astype(dtr),
                   draw(hnp.arrays(dtr, shape, elements=_values)))
    view = draw(st.sampled_from(["none", "T", "reverse", "fortran"]))
    if view == "T":
        out, ref = out.T, ref.T.copy()  # not ascontiguousarray: it makes 0-d arrays 1-d
    elif view == "reverse" and out.ndim:
        out, ref = out[::-1], ref[::-1]
    elif view == "fortran" and out.ndim >= 2:  # asfortranarray makes 0-d arrays 1-d
        out = np.asfortranarray(out)
    tols = st.sampled_from([0.0, 1e-3, 0.5, 1e300])
    return out, ref, draw(tols), draw(tols)


@settings(max_examples=300, deadline=None)
@given(close_cases())
def test_check_close_matches_model(case):
    out, ref, atol, rtol = case
    assert check_close(out, ref, atol, rtol) == model_close(out, ref, atol, rtol)


def test_check_close_c_and_python_agree():
    ref = np.random.default_rng(3).standard_normal((3, 7))
    out = ref + 1e-3
    assert _core.check_close(out, ref, 1e-4, 0.0) == check_close(out, ref, 1e-4, 0.0)


# ---- speedup_gate -----------------------------------------------------------------

def _times(center, spread, n, seed):
    return center + spread * np.random.default_rng(seed).standard_normal(n)


def test_speedup_clearly_faster_passes():
    g = speedup_gate(_times(0.80, 0.01, 100, 1), _times(1.00, 0.01, 100, 2))
    assert g["passed"] and g["passed_speed"] and g["passed_significance"]
    assert g["low"] <= g["ratio"] <= g["high"] < 1.0
    assert g["speedup"] == pytest.approx(1 / g["ratio"]) and g["speedup"] == pytest.approx(1.25, rel=0.02)
    assert (g["threshold"], g["confidence"]) == (0.95, 0.95)
    assert set(g) == {"ratio", "low", "high", "speedup", "passed_speed", "passed_significance", "passed",
                      "threshold", "confidence"}


def test_speedup_faster_but_not_significant():
    # Median ratio 0.9 clears the threshold, but three noisy samples each
    # leave an interval that reaches well above 1.
    g = speedup_gate([0.5, 0.9, 1.3], [0.6, 1.0, 1.4])
    assert g["ratio"] == pytest.approx(0.9)
    assert g["passed_speed"] and not g["passed_significance"] and not g["passed"]
    assert g["high"] > 1.0


def test_speedup_significant_but_below_threshold():
    base = _times(1.0, 0.01, 100, 3)
    g = speedup_gate(0.98 * base, base)
    assert g["passed_significance"] and not g["passed_speed"] and not g["passed"]
    assert speedup_gate(0.98 * base, base, threshold=0.99)["passed"]


def test_speedup_slower_fails():
    g = speedup_gate(_times(1.2, 0.01, 100, 4), _times(1.0, 0.01, 100, 5))
    assert not g["passed"] and not g["passed_speed"] and not g["passed_significance"]
    assert g["low"] > 1.0 and g["speedup"] < 1.0


def test_speedup_gate_passes_options_through():
    c, b = _times(0.9, 0.05, 30, 6), _times(1.0, 0.05, 30, 7)
    g = speedup_gate(c, b, threshold=0.97, confidence=0.8, resamples=500, seed=9)
    assert (g["threshold"], g["confidence"]) == (0.97, 0.8)
    ratio, low, high = attnbench.ratio_ci(c, b, confidence=0.8, resamples=500, seed=9)
    assert (g["ratio"], g["low"], g["high"]) == (ratio, low, high)


# ---- regression_gate ----------------------------------------------------------------

BASE = _times(1.0, 0.005, 200, 10)
NOISY_A, NOISY_B = _times(1.0, 0.05, 10, 11), _times(1.0, 0.05, 10, 12)


@pytest.mark.parametrize("current,baseline,status", [
    (0.8 * BASE, BASE, "FAST"),
    (1.001 * BASE, BASE, "SAME"),
    (1.2 * BASE, BASE, "SLOW"),
    ([0.9, 1.3, 1.0], [1.0, 1.2, 0.8], "UNCERTAIN"),  # the interval spans the whole band
    (1.05 * NOISY_A, NOISY_B, "UNCERTAIN"),         # ratio above the band, but low < 1
    (0.97 * NOISY_A, NOISY_B, "UNCERTAIN"),         # ratio below the band, but high > 1
])
def test_regression_statuses(current, baseline, status):
    assert regression_gate(current, baseline) == status
    full = regression_gate(current, baseline, full=True)
    assert full["status"] == status and set(full) == {"status", "ratio", "low", "high", "tolerance"}
    assert full["tolerance"] == 0.02 and full["low"] <= full["ratio"] <= full["high"]
    if status == "UNCERTAIN":
        assert full["low"] < 1.0 < full["high"]


def test_regression_tolerance_moves_the_band():
    # 1.5% slower: inside the default 2% band, SLOW with a 1% band.
    current = 1.015 * BASE
    assert regression_gate(current, BASE) == "SAME"
    assert regression_gate(current, BASE, tolerance=0.01) == "SLOW"
    assert regression_gate(BASE, BASE, tolerance=0.0) in ("UNCERTAIN", "SAME")


def _expected_status(r):
    tol = r["tolerance"]
    if r["low"] >= 1 - tol and r["high"] <= 1 + tol:
        return "SAME"
    if r["ratio"] > 1 + tol and r["low"] > 1:
        return "SLOW"
    if r["ratio"] < 1 - tol and r["high"] < 1:
        return "FAST"
    return "UNCERTAIN"


_pos_times = st.lists(st.floats(0.05, 20.0), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(current=_pos_times, baseline=_pos_times, scale=st.sampled_from([0.5, 0.9, 0.99, 1.0, 1.01, 1.1, 2.0]),
       tolerance=st.sampled_from([0.0, 0.01, 0.02, 0.1, 0.5]), seed=st.integers(0, 2**64 - 1))
def test_regression_never_same_when_interval_leaves_band(current, baseline, scale, tolerance, seed):
    r = regression_gate(np.array(current) * scale, baseline, tolerance=tolerance, resamples=200, seed=seed,
                        full=True)
    outside = r["high"] < 1 - tolerance or r["low"] > 1 + tolerance
    reaches_out = r["low"] < 1 - tolerance or r["high"] > 1 + tolerance
    if outside or reaches_out:
        assert r["status"] != "SAME"
    if r["status"] == "SAME":
        assert 1 - tolerance <= r["low"] <= r["high"] <= 1 + tolerance
    assert r["status"] == _expected_status(r)


# ---- verdict --------------------------------------------------------------------------

def test_verdict_thresholds_are_the_documented_ones_and_read_only():
    assert dict(VERDICT_THRESHOLDS) == {"Excellent": 1.5, "Good": 1.1, "Modest": 1.02, "Parity": 0.98}
    assert dict(VERDICT_THRESHOLDS) == _core._gate_constants()["verdict_thresholds"]
    assert list(VERDICT_THRESHOLDS) == ["Excellent", "Good", "Modest", "Parity"]  # best first
    with pytest.raises(TypeError):
        VERDICT_THRESHOLDS["Good"] = 1.0
    with pytest.raises(TypeError):
        del VERDICT_THRESHOLDS["Good"]


def test_verdict_at_and_around_each_threshold():
    names = list(VERDICT_THRESHOLDS) + ["Regression"]
    for i, (name, threshold) in enumerate(VERDICT_THRESHOLDS.items()):
        assert verdict(threshold) == name
        assert verdict(np.nextafter(threshold, INF)) == name
        assert verdict(float(np.nextafter(threshold, 0.0))) == names[i + 1]
    assert verdict(100.0) == "Excellent"
    assert verdict(5e-324) == "Regression"
    assert verdict(1) == "Parity" and verdict(np.float32(1.2)) == "Good"


@pytest.mark.parametrize("bad,exc", [(NAN, ValueError), (0.0, ValueError), (-1.0, ValueError), (INF, ValueError),
                                     ("1.2", TypeError), (True, TypeError), (None, TypeError), (1j, TypeError),
                                     (np.bool_(True), TypeError), (np.array([1.2]), TypeError)])
@pytest.mark.parametrize("target", ["attnbench", "_core"])
def test_verdict_bad_input(bad, exc, target):
    with pytest.raises(exc, match="speedup"):
        (attnbench if target == "attnbench" else _core).verdict(bad)


# ---- bad input ----------------------------------------------------------------------------

A = np.ones((2, 3))
T = [1.0, 1.1, 0.9]

BAD_CALLS = [
    (lambda f: f.check_close(A.astype(np.int32), A, 0.0, 0.0), TypeError, "out"),
    (lambda f: f.check_close(A, A.astype(np.complex128), 0.0, 0.0), TypeError, "ref"),
    (lambda f: f.check_close(A, A.astype(bool), 0.0, 0.0), TypeError, "ref"),
    (lambda f: f.check_close(A.astype(object), A, 0.0, 0.0), TypeError, "out"),
    (lambda f: f.check_close(A, A.astype(np.longdouble), 0.0, 0.0), TypeError, "ref"),
    (lambda f: f.check_close("abc", A, 0.0, 0.0), TypeError, "out"),
    (lambda f: f.check_close(A, A.T, 0.0, 0.0), ValueError, "shape"),
    (lambda f: f.check_close(A, A[0], 0.0, 0.0), ValueError, "shape"),
    (lambda f: f.check_close(A, A, -1e-3, 0.0), ValueError, "atol"),
    (lambda f: f.check_close(A, A, NAN, 0.0), ValueError, "atol"),
    (lambda f: f.check_close(A, A, 0.0, INF), ValueError, "rtol"),
    (lambda f: f.check_close(A, A, "0", 0.0), TypeError, "atol"),
    (lambda f: f.check_close(A, A, 0.0, True), TypeError, "rtol"),
    (lambda f: f.speedup_gate([], T), ValueError, "candidate"),
    (lambda f: f.speedup_gate(T, [1.0, 0.0]), ValueError, "baseline"),
    (lambda f: f.speedup_gate([1.0, -1.0], T), ValueError, "candidate"),
    (lambda f: f.speedup_gate([[1.0]], T), ValueError, "candidate"),
    (lambda f: f.speedup_gate(T, [NAN]), ValueError, "baseline"),
    (lambda f: f.speedup_gate(T, ["x"]), TypeError, "baseline"),
    (lambda f: f.speedup_gate(T, T, threshold=0.0), ValueError, "threshold"),
    (lambda f: f.speedup_gate(T, T, threshold=INF), ValueError, "threshold"),
    (lambda f: f.speedup_gate(T, T, threshold=True), TypeError, "threshold"),
    (lambda f: f.speedup_gate(T, T, confidence=1.5), ValueError, "confidence"),
    (lambda f: f.speedup_gate(T, T, resamples=0), ValueError, "resamples"),
    (lambda f: f.speedup_gate(T, T, seed=-3), ValueError, "seed"),
    (lambda f: f.regression_gate(T, []), ValueError, "baseline"),
    (lambda f: f.regression_gate([0.0], T), ValueError, "current"),
    (lambda f: f.regression_gate(T, T, tolerance=1.0), ValueError, "tolerance"),
    (lambda f: f.regression_gate(T, T, tolerance=-0.1), ValueError, "tolerance"),
    (lambda f: f.regression_gate(T, T, tolerance=None), TypeError, "tolerance"),
    (lambda f: f.regression_gate(T, T, confidence=0), ValueError, "confidence"),
    (lambda f: f.regression_gate(T, T, resamples=1.5), TypeError, "resamples"),
]


@pytest.mark.parametrize("target", ["attnbench", "_core"])
@pytest.mark.parametrize("call,exc,argname", BAD_CALLS)
def test_bad_input_names_the_argument(target, call, exc, argname):
    with pytest.raises(exc) as info:
        call(attnbench if target == "attnbench" else _core)
    assert argname in str(info.value)


def test_full_must_be_bool():
    with pytest.raises(TypeError, match="full"):
        regression_gate(T, T, full="yes")


# ---- fuzzing -------------------------------------------------------------------------------

@FUZZ
@given(out=junk(), ref=junk(), atol=junk(), rtol=junk())
def test_fuzz_check_close(out, ref, atol, rtol):
    for mod in (attnbench, _core):
        result_or_error(mod.check_close, out, ref, atol, rtol)
        result_or_error(mod.check_close, out, out, 0.0, 0.0)
        r = result_or_error(mod.check_close, out, ref, 1e-3, 1e-3)
        if r is not None:
            assert r["passed"] == (r["mismatches"] == 0)


@FUZZ
@given(a=junk(), b=junk(), threshold=junk(), confidence=junk(), seed=junk(), speedup=junk())
def test_fuzz_speed_gates_and_verdict(a, b, threshold, confidence, seed, speedup):
    for mod in (attnbench, _core):
        result_or_error(mod.speedup_gate, a, b, resamples=20)
        result_or_error(mod.speedup_gate, T, T, threshold, confidence, 20, seed)
        result_or_error(mod.regression_gate, a, b, resamples=20)
        result_or_error(mod.regression_gate, T, T, threshold, confidence, 20, seed)
        result_or_error(mod.verdict, speedup)


# ---- memory ---------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_STATM, reason="needs Linux /proc/self/statm")
def test_memory_stable_over_repeated_calls():
    # float16 arrays make check_close's iterator allocate cast buffers and
    # float32 times make the core copy them: a leak per call would be tens of
    # MB over the run.  float64 inputs are used in place: a leaked reference
    # shows in their refcount.
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((40, 50))
    out16 = ref.astype(np.float16)
    t32 = (1.0 + 0.1 * rng.random(1000)).astype(np.float32)
    t64 = t32.astype(np.float64)
    refs = sys.getrefcount(ref), sys.getrefcount(t64)
    calls = [
        lambda: check_close(out16, ref, 1e-3, 1e-3),
        lambda: _core.check_close(out16.T, ref.T, 0.0, 0.0),
        lambda: speedup_gate(t32, t64, resamples=5),
        lambda: _core.regression_gate(t32, t64, 0.02, 0.95, 5, 1),
        lambda: verdict(1.3),
        ignore_errors(lambda: _core.check_close(out16, ref[:-1], 0.0, 0.0)),
        ignore_errors(lambda: _core.check_close(out16, ref, -1.0, 0.0)),
        ignore_errors(lambda: _core.check_close(out16.astype(np.int16), ref, 0.0, 0.0)),
        ignore_errors(lambda: _core.speedup_gate(t32, -t32)),
        ignore_errors(lambda: _core.speedup_gate(t32, t64, threshold=-1.0)),
        ignore_errors(lambda: _core.regression_gate(t32, t64, tolerance=2.0)),
        ignore_errors(lambda: _core.regression_gate(t32, t64, seed=2**64)),
        ignore_errors(lambda: _core.verdict(NAN)),
    ]
    assert_no_growth(calls)
    assert (sys.getrefcount(ref), sys.getrefcount(t64)) == refs


# ---- documentation ---------------------------------------------------------------------------

def test_docstring_examples_run():
    failed, attempted = doctest.testmod(attnbench.gate)
    assert attempted > 0 and failed == 0
