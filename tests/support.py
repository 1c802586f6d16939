"""Helpers the CPU test files share: junk inputs for fuzzing, and the resident-memory check."""
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import numpy as np

HAS_STATM = os.path.exists("/proc/self/statm")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 50),
    st.sampled_from([2**63, 2**64, -(2**63), 10**400, 1e308, -1e308, 5e-324, -0.0]),
    st.booleans(), st.complex_numbers(allow_nan=True), st.text(max_size=3), st.none(),
)
_dtypes = st.sampled_from([np.int8, np.int64, np.uint64, np.float16, np.float32, np.float64, np.longdouble,
                           np.complex128, np.bool_, "U3", object])
_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def junk(draw):
    """Arrays of random dtype and shape (NaN, Inf, extremes included), lists and scalars."""
    kind = draw(st.sampled_from(["array", "array", "list", "scalar"]))
    if kind == "scalar":
        return draw(_scalars)
    if kind == "list":
        return draw(st.lists(_scalars, max_size=6))
    dtype = draw(_dtypes)
    if dtype is object:
        return draw(hnp.arrays(object, draw(_shapes), elements=_scalars))
    return draw(hnp.arrays(dtype, draw(_shapes)))


def result_or_error(fn, *args, **kwargs):
    """fn's result, or None where it raised TypeError/ValueError; any other exception propagates."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError):
        return None


def ignore_errors(fn):
    """fn as a zero-argument call that swallows TypeError/ValueError (the error paths of a leak check)."""
    def call():
        result_or_error(fn)
    return call


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def assert_no_growth(calls, repeats=10_000, slack=8 << 20, warmup=500):
    """Cycling through `calls` `repeats` times grows resident memory by less than `slack` bytes."""
    for i in range(warmup):  # caches, interned objects, allocator pools
        calls[i % len(calls)]()
    before = rss_bytes()
    for i in range(repeats):
        calls[i % len(calls)]()
    grown = rss_bytes() - before
    assert grown < slack, f"resident memory grew by {grown / 2**20:.1f} MiB"
