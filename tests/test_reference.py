"""Tests of attnbench.reference_attention (csrc/reference.c) against NumPy."""
import doctest
import gc
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnbench
import attnbench.reference
from attnbench import _core, reference_attention
from support import HAS_STATM, assert_no_growth

# Two float64 computations of the same row that differ only in summation
# order agree to a few ulps of the largest term; 1e-12 leaves three orders of
# magnitude for the D-long dot products and Sk-long sums of these tests.
RTOL = 1e-12

# Outputs are convex combinations of value rows, so an entry near zero is a
# cancellation whose error is relative to max|v|, not to the entry itself.
def _atol(values):
    return RTOL * max(float(np.max(np.abs(values), initial=0.0)), 1.0)


def numpy_attention(q, k, v, causal=False, scale=None):
    """The oracle's oracle: einsum, the top-left tril mask, the stable softmax."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if causal:
        visible = np.tril(np.ones((q.shape[2], k.shape[2]), dtype=bool))  # torch.ones(Sq, Sk).tril()
        scores = np.where(visible, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    p = np.exp(scores - row_max)
    row_sum = p.sum(axis=-1, keepdims=True)
    out = np.einsum("bhij,bhjd->bhid", p, v) / row_sum
    return out, (row_max + np.log(row_sum))[..., 0]


def with_layout(x, layout):
    """The same values as `x` in another memory layout (a view where possible)."""
    if layout == "contiguous":
        return np.ascontiguousarray(x)
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "transposed":  # stored as [B, S, H, D], as most kernels keep it
        return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    if layout == "strided":  # every other element of a larger buffer
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if layout == "reversed":  # negative strides on S and D
        return np.ascontiguousarray(x[:, :, ::-1, ::-1])[:, :, ::-1, ::-1]
    raise AssertionError(layout)


LAYOUTS = ["contiguous", "fortran", "transposed", "strided", "reversed"]
DTYPES = [np.float16, np.float32, np.float64]


def random_problem(rng, B, Hkv, group, Sq, Sk, D, Dv, dtype=np.float64):
    q = rng.standard_normal((B, Hkv * group, Sq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Sk, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, Sk, Dv)).astype(dtype)
    return q, k, v


def assert_matches_numpy(q, k, v, causal, scale):
    out, lse = reference_attention(q, k, v, causal=causal, scale=scale, return_lse=True)
    want_out, want_lse = numpy_attention(q, k, v, causal, scale)
    assert out.dtype == np.float64 and lse.dtype == np.float64
    assert out.shape == want_out.shape and lse.shape == want_lse.shape
    np.testing.assert_allclose(out, want_out, rtol=RTOL, atol=_atol(v))
    np.testing.assert_allclose(lse, want_lse, rtol=RTOL, atol=_atol(want_lse))


# --- agreement with NumPy -------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    B=st.integers(1, 3), Hkv=st.integers(1, 3), group=st.integers(1, 4),
    Sq=st.integers(1, 70), Sk=st.integers(1, 70), D=st.integers(1, 80), Dv=st.integers(1, 80),
    causal=st.booleans(),
    scale=st.none() | st.floats(-2.0, 2.0, allow_nan=False),
    dtype=st.sampled_from(DTYPES),
    layouts=st.tuples(*[st.sampled_from(LAYOUTS)] * 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_numpy_on_random_problems(B, Hkv, group, Sq, Sk, D, Dv, causal, scale, dtype, layouts, seed):
    q, k, v = random_problem(np.random.default_rng(seed), B, Hkv, group, Sq, Sk, D, Dv, dtype)
    q, k, v = (with_layout(x, layout) for x, layout in zip((q, k, v), layouts))
    assert_matches_numpy(q, k, v, causal, scale)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "Sq, Sk",
    [(1, 1), (1, 70), (70, 1), (5, 17), (17, 5), (64, 64), (70, 69), (69, 70)],
)
def test_matches_numpy_when_sq_and_sk_differ(Sq, Sk, causal):
    q, k, v = random_problem(np.random.default_rng(Sq * 100 + Sk), 2, 2, 3, Sq, Sk, 24, 40)
    assert_matches_numpy(q, k, v, causal, None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dtype_and_layout_gives_the_float64_answer(dtype, layout):
    q, k, v = random_problem(np.random.default_rng(7), 2, 2, 2, 9, 11, 16, 8, dtype)
    want = reference_attention(*(x.astype(np.float64) for x in (q, k, v)), causal=True)
    got = reference_attention(*(with_layout(x, layout) for x in (q, k, v)), causal=True)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("order", [">", "<"])
@pytest.mark.parametrize("dtype", ["f2", "f4", "f8"])
def test_byte_order_does_not_matter(order, dtype):
    q, k, v = random_problem(np.random.default_rng(3), 1, 1, 2, 4, 6, 8, 8, np.dtype(dtype))
    want = reference_attention(q, k, v)
    got = reference_attention(*(x.astype(order + dtype) for x in (q, k, v)))
    np.testing.assert_array_equal(got, want)


def test_accepts_nested_lists_and_read_only_arrays():
    q, k, v = random_problem(np.random.default_rng(4), 1, 1, 1, 3, 4, 2, 2)
    want = reference_attention(q, k, v)
    np.testing.assert_array_equal(reference_attention(q.tolist(), k.tolist(), v.tolist()), want)
    for x in (q, k, v):
        x.flags.writeable = False
    np.testing.assert_array_equal(reference_attention(q, k, v), want)


def test_large_enough_to_use_threads_still_matches_numpy():
    # 4 heads x 256 rows x 256 keys x 128: far above the one-thread threshold.
    q, k, v = random_problem(np.random.default_rng(5), 1, 2, 2, 256, 256, 64, 64)
    assert_matches_numpy(q, k, v, True, None)
    assert_matches_numpy(q, k, v, False, 0.3)


def test_concurrent_calls_from_python_threads_agree():
    q, k, v = random_problem(np.random.default_rng(6), 2, 2, 2, 96, 96, 32, 32)
    want = reference_attention(q, k, v, causal=True)
    results = [None] * 4

    def work(i):
        results[i] = reference_attention(q, k, v, causal=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        np.testing.assert_array_equal(got, want)


# --- semantics ------------------------------------------------------------


@pytest.mark.parametrize("Sq, Sk", [(9, 9), (4, 11), (11, 4)])
def test_causal_rows_match_a_direct_recomputation(Sq, Sk):
    # Top-left alignment: query row i attends exactly to keys 0..min(i, Sk - 1).
    q, k, v = random_problem(np.random.default_rng(8), 2, 2, 2, Sq, Sk, 12, 10)
    out, lse = reference_attention(q, k, v, causal=True, return_lse=True)
    for i in range(Sq):
        seen = min(i + 1, Sk)
        row, row_lse = reference_attention(q[:, :, i:i + 1], k[:, :, :seen], v[:, :, :seen], return_lse=True)
        np.testing.assert_allclose(out[:, :, i], row[:, :, 0], rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(lse[:, :, i], row_lse[:, :, 0], rtol=1e-15, atol=1e-15)


def test_causal_first_row_is_the_first_value_row():
    q, k, v = random_problem(np.random.default_rng(9), 1, 2, 2, 6, 9, 8, 5)
    out, lse = reference_attention(q, k, v, causal=True, scale=0.7, return_lse=True)
    for h in range(4):
        np.testing.assert_array_equal(out[0, h, 0], v[0, h // 2, 0])
        np.testing.assert_allclose(lse[0, h, 0], 0.7 * q[0, h, 0] @ k[0, h // 2, 0], rtol=1e-15)


def test_gqa_equals_repeated_kv_heads():
    q, k, v = random_problem(np.random.default_rng(10), 2, 3, 4, 7, 9, 6, 5)
    gqa = reference_attention(q, k, v, causal=True)
    repeated = reference_attention(q, np.repeat(k, 4, axis=1), np.repeat(v, 4, axis=1), causal=True)
    np.testing.assert_array_equal(gqa, repeated)


def test_zero_scale_averages_the_values():
    q, k, v = random_problem(np.random.default_rng(11), 1, 1, 1, 3, 5, 4, 4)
    out, lse = reference_attention(q, k, v, scale=0.0, return_lse=True)
    np.testing.assert_allclose(out[0, 0], np.broadcast_to(v[0, 0].mean(axis=0), (3, 4)), rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(lse, np.log(5.0), rtol=RTOL)


def test_default_scale_is_one_over_sqrt_d():
    q, k, v = random_problem(np.random.default_rng(12), 1, 1, 1, 3, 5, 9, 4)
    np.testing.assert_array_equal(reference_attention(q, k, v), reference_attention(q, k, v, scale=1 / 3))


def test_scale_and_flags_accept_numpy_scalars_and_ints():
    q, k, v = random_problem(np.random.default_rng(13), 1, 1, 1, 3, 5, 4, 4)
    want_out, want_lse = reference_attention(q, k, v, causal=True, scale=2.0, return_lse=True)
    got_out, got_lse = reference_attention(q, k, v, causal=np.bool_(True), scale=np.float32(2.0), return_lse=1)
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_lse, want_lse)
    np.testing.assert_array_equal(reference_attention(q, k, v, causal=1, scale=2), want_out)


def test_inputs_are_not_modified():
    q, k, v = random_problem(np.random.default_rng(14), 2, 2, 2, 5, 7, 4, 3, np.float32)
    views = [with_layout(x, layout) for x, layout in zip((q, k, v), ("contiguous", "reversed", "strided"))]
    before = [(x.copy(), x.strides, x.dtype) for x in views]
    reference_attention(*views, causal=True, scale=0.5, return_lse=True)
    for x, (values, strides, dtype) in zip(views, before):
        np.testing.assert_array_equal(x, values)
        assert x.strides == strides and x.dtype == dtype
    q64 = np.ascontiguousarray(q, dtype=np.float64)  # passed through without a copy
    saved = q64.copy()
    reference_attention(q64, k, v)
    np.testing.assert_array_equal(q64, saved)


def test_returns_fresh_arrays():
    q, k, v = random_problem(np.random.default_rng(15), 1, 1, 1, 4, 4, 4, 4)
    out = reference_attention(q, k, v)
    assert not np.shares_memory(out, q) and out.flags.c_contiguous and out.flags.writeable


def test_nan_inputs_propagate():
    q, k, v = random_problem(np.random.default_rng(16), 1, 2, 1, 4, 4, 4, 4)
    q[0, 1, 2, 0] = np.nan
    out, lse = reference_attention(q, k, v, return_lse=True)
    assert np.isnan(out[0, 1, 2]).all() and np.isnan(lse[0, 1, 2])
    assert np.isfinite(np.delete(out[0, 1], 2, axis=0)).all() and np.isfinite(out[0, 0]).all()
    k[0, 0, 3, 1] = np.nan
    assert np.isnan(reference_attention(q, k, v)[0, 0]).all()


def test_module_example_runs():
    result = doctest.testmod(attnbench.reference, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_sdpa_sized_problem_is_fast():
    # B=2, H=8, S=512, D=64 takes ~0.15 s on two cores; the bound only
    # catches a pathological slowdown (no threads, quadratic scratch).
    q, k, v = random_problem(np.random.default_rng(17), 2, 8, 1, 512, 512, 64, 64)
    start = time.perf_counter()
    reference_attention(q, k, v)
    assert time.perf_counter() - start < 3.0


# --- bad input ------------------------------------------------------------


def _good():
    return random_problem(np.random.default_rng(18), 2, 2, 2, 5, 6, 4, 3)


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 2, 4, 5, 4), ()])
def test_wrong_ndim(which, shape):
    args = list(_good())
    args[which] = np.zeros(shape)
    name = "qkv"[which]
    with pytest.raises(ValueError, match=f"^{name} must have 4 dimensions"):
        reference_attention(*args)


@pytest.mark.parametrize("which, dim", [(a, d) for a in range(3) for d in range(4)])
def test_zero_dimension(which, dim):
    args = list(_good())
    shape = list(args[which].shape)
    shape[dim] = 0
    args[which] = np.zeros(shape)
    name = "qkv"[which]
    with pytest.raises(ValueError, match=rf"^{name} has shape \(.*0.*\); every dimension must be at least 1"):
        reference_attention(*args)


def test_zero_dimension_everywhere():
    q, k, v = (np.zeros((0, 1, 1, 1)),) * 3
    with pytest.raises(ValueError, match="^q has shape"):
        reference_attention(q, k, v)


@pytest.mark.parametrize(
    "shapes, pattern",
    [
        (((2, 4, 5, 8), (3, 2, 6, 8), (3, 2, 6, 8)), "^k has batch size 3 but q has 2"),
        (((2, 4, 5, 8), (2, 2, 6, 8), (1, 2, 6, 8)), "^v has batch size 1 but q has 2"),
        (((2, 4, 5, 8), (2, 2, 6, 7), (2, 2, 6, 8)), "^k has head dim 7 but q has 8"),
        (((2, 4, 5, 8), (2, 2, 6, 8), (2, 1, 6, 8)), "^v has 1 heads but k has 2"),
        (((2, 4, 5, 8), (2, 2, 6, 8), (2, 2, 7, 8)), "^v has sequence length 7 but k has 6"),
        (((2, 3, 5, 8), (2, 2, 6, 8), (2, 2, 6, 8)), "^q has 3 heads, not a multiple of the 2 heads of k and v"),
        (((2, 2, 5, 8), (2, 4, 6, 8), (2, 4, 6, 8)), "^q has 2 heads, not a multiple of the 4 heads of k and v"),
    ],
)
def test_shape_mismatch(shapes, pattern):
    with pytest.raises(ValueError, match=pattern):
        reference_attention(*(np.zeros(s) for s in shapes))


def test_output_size_overflow_is_caught_before_any_copy():
    # Zero strides make huge inputs cheap; B*Hq*Sq*Dv = 2**80 cannot be addressed.
    zero = np.zeros((), dtype=np.float64)
    q = np.broadcast_to(zero, (1, 1, 2**40, 1))
    k = np.broadcast_to(zero, (1, 1, 1, 1))
    v = np.broadcast_to(zero, (1, 1, 1, 2**40))
    with pytest.raises(ValueError, match=r"^the output shape \(1, 1, 1099511627776, 1099511627776\) has more than"):
        reference_attention(q, k, v)


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint16, bool, np.complex128, object, str, "timedelta64[s]"]
                         + ([np.longdouble] if np.dtype(np.longdouble) != np.float64 else []))
def test_wrong_dtype(which, dtype):
    args = list(_good())
    args[which] = args[which].astype(dtype)
    name = "qkv"[which]
    with pytest.raises(TypeError, match=f"^{name} must have dtype float16, float32 or float64, got"):
        reference_attention(*args)


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("bad", [None, "abc", [[1.0], [2.0, 3.0]], {"a": 1}])
def test_not_an_array(which, bad):
    args = list(_good())
    args[which] = bad
    name = "qkv"[which]
    with pytest.raises(TypeError, match=f"^{name} must"):
        reference_attention(*args)


@pytest.mark.parametrize("name", ["causal", "return_lse"])
@pytest.mark.parametrize("value, error", [("yes", TypeError), (None, TypeError), (1.0, TypeError),
                                          (np.array([True]), TypeError), (2, ValueError), (-1, ValueError)])
def test_flags_must_be_bool_like(name, value, error):
    with pytest.raises(error, match=f"^{name} must be"):
        reference_attention(*_good(), **{name: value})


@pytest.mark.parametrize("value", [True, np.bool_(False), "1", 1j, [1.0], np.array([1.0])])
def test_scale_must_be_a_real_number(value):
    with pytest.raises(TypeError, match="^scale must be a real number or None"):
        reference_attention(*_good(), scale=value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
def test_scale_must_be_finite(value):
    with pytest.raises(ValueError, match="^scale must be finite"):
        reference_attention(*_good(), scale=value)


def test_core_binding_checks_on_its_own():
    # attnbench._core is reachable directly; it must not trust its caller.
    q, k, v = _good()
    with pytest.raises(TypeError, match="^scale must be a real number or None"):
        _core.reference_attention(q, k, v, False, "x")
    with pytest.raises(ValueError, match="^scale must be finite"):
        _core.reference_attention(q, k, v, False, float("nan"))
    with pytest.raises(ValueError, match="^k has head dim"):
        _core.reference_attention(q, k[..., :2], v)
    out, lse = _core.reference_attention(q, k, v, True, 0.5, True)
    np.testing.assert_array_equal(out, reference_attention(q, k, v, causal=True, scale=0.5))


# --- fuzz -----------------------------------------------------------------

FUZZ_DTYPES = [np.float16, np.float32, np.float64, np.int32, np.bool_, np.complex64, np.uint8]
SPECIAL_VALUES = np.array([0.0, 1.0, -1.0, 1e-30, 1e4, -1e4, 65504.0, 1e300, np.nan, np.inf, -np.inf])


@st.composite
def fuzz_values(draw, shape):
    """Normal noise with a drawn fraction of special values (NaN, inf, huge, tiny)."""
    dtype = draw(st.sampled_from(FUZZ_DTYPES[:3] * 6 + FUZZ_DTYPES[3:]))
    special_fraction = draw(st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal(shape)
    special = rng.random(shape) < special_fraction
    values[special] = rng.choice(SPECIAL_VALUES, size=int(special.sum()))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


@st.composite
def fuzz_problem(draw):
    """Mostly consistent shapes (so the computation runs), sometimes anything."""
    if draw(st.integers(0, 3)) == 0:
        def any_shape():
            return draw(st.lists(st.integers(0, 5), min_size=3, max_size=5).map(tuple))
        return tuple(draw(fuzz_values(any_shape())) for _ in range(3))
    B, Hkv, group, Sq, Sk, D, Dv = (draw(st.integers(1, 4)) for _ in range(7))
    shapes = [(B, Hkv * group, Sq, D), (B, Hkv, Sk, D), (B, Hkv, Sk, Dv)]
    return tuple(draw(fuzz_values(shape)) for shape in shapes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    problem=fuzz_problem(),
    causal=st.sampled_from([False, True, 0, 1, 2, "x", None]),
    scale=st.sampled_from([None, 1.0, 0.0, -3.5, 1e300, True, "s", np.nan, np.inf]),
    return_lse=st.booleans(),
)
def test_fuzz_returns_a_result_or_a_clean_error(problem, causal, scale, return_lse):
    q, k, v = problem
    try:
        with np.errstate(all="ignore"):
            result = reference_attention(q, k, v, causal=causal, scale=scale, return_lse=return_lse)
    except (TypeError, ValueError):
        return
    out, lse = result if return_lse else (result, None)
    assert out.dtype == np.float64 and out.shape == q.shape[:3] + v.shape[3:]
    if lse is not None:
        assert lse.dtype == np.float64 and lse.shape == q.shape[:3]
    if not causal and any(np.isnan(x).any() for x in (q, k, v)):
        assert np.isnan(out).any()  # a NaN in a visible position reaches the output


# --- resources ------------------------------------------------------------


def _one_call_of_each_path(i, q, k, v, q16):
    paths = (
        lambda: reference_attention(q, k, v, causal=True, return_lse=True),
        lambda: reference_attention(q16[:, :, ::-1], k, v, scale=0.5),  # conversion + copy
        lambda: reference_attention(q.astype(np.int32), k, v),  # dtype error
        lambda: reference_attention(q, k[:, :1], v),  # shape error after q converted
        lambda: reference_attention(q16, k, v, scale=float("nan")),  # error from the C core after conversion
        lambda: reference_attention(q, k, v, causal="yes"),  # error in the Python layer
        lambda: _core.reference_attention(q, k, v, False, "bad"),  # scale error in the binding
    )
    try:
        paths[i % len(paths)]()
    except (TypeError, ValueError):
        pass


@pytest.mark.skipif(not HAS_STATM, reason="needs Linux /proc/self/statm")
def test_repeated_calls_do_not_grow_memory():
    # Each call touches ~16 KiB arrays, so a leak on any one path would grow
    # the ~1,400 calls of that path by 20 MiB or more; 8 MiB is the slack
    # for the allocator's own bookkeeping.
    rng = np.random.default_rng(19)
    q, k, v = random_problem(rng, 1, 2, 1, 32, 32, 32, 32)
    q16 = q.astype(np.float16)
    gc.collect()
    calls = [lambda i=i: _one_call_of_each_path(i, q, k, v, q16) for i in range(7)]
    assert_no_growth(calls, warmup=1000)


def test_no_references_leak_to_the_inputs():
    q, k, v = random_problem(np.random.default_rng(20), 1, 2, 1, 4, 4, 4, 4)
    q16 = q.astype(np.float16)
    counts = [sys.getrefcount(x) for x in (q, k, v, q16)]
    for i in range(70):
        _one_call_of_each_path(i, q, k, v, q16)
    gc.collect()
    assert [sys.getrefcount(x) for x in (q, k, v, q16)] == counts


def test_package_exports_it():
    assert attnbench.reference_attention is reference_attention
    assert "reference_attention" in attnbench.__all__
