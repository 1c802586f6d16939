"""The C checks on device tensors (csrc/tensor.c, csrc/problem.c), run without a GPU.

A fake producer hands out DLPack capsules that claim CUDA memory at made-up
addresses: nothing dereferences them.  A problem that passes every check goes
on to look for a device and raises RuntimeError("no CUDA device ...") here
(or gets an answer on a GPU machine); one that fails a check raises
ValueError/TypeError naming the argument.
"""
import ctypes

import pytest

import attnbench
from attnbench import _core

CUDA, FLOAT, BFLOAT, INT = 2, 2, 4, 0


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32), ("dtype", _DType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _Versioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", _Tensor)]


_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.restype = ctypes.py_object
_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class FakeCuda:
    """A 'CUDA' tensor at a made-up address (never dereferenced), exported through DLPack."""

    def __init__(self, addr, shape, strides=None, code=FLOAT, bits=16, readonly=False, device=(CUDA, 0)):
        n = len(shape)
        self._shape = (ctypes.c_int64 * n)(*shape)
        self._strides = (ctypes.c_int64 * n)(*strides) if strides else None
        st = ctypes.cast(self._strides, ctypes.POINTER(ctypes.c_int64)) if strides else None
        self._m = _Versioned(1, 0, None, None, 1 if readonly else 0,
                             _Tensor(addr, _Device(*device), n, _DType(code, bits, 1), self._shape, st, 0))

    def __dlpack__(self, stream=None):
        return _capsule(ctypes.addressof(self._m), b"dltensor_versioned", None)


B, H, S, D = 1, 2, 16, 64
MB = 1 << 20


def problem(**over):
    p = dict(q=FakeCuda(1 * MB, (B, H, S, D)), k=FakeCuda(2 * MB, (B, H, S, D)), v=FakeCuda(3 * MB, (B, H, S, D)),
             out=FakeCuda(4 * MB, (B, H, S, D)), lse=None, scale=None)
    p.update(over)
    return p


def check(**over):
    p = problem(**over)
    return _core.supports("naive", p["q"], p["k"], p["v"], p["out"], p["lse"], False, p["scale"])


def test_a_valid_problem_passes_the_checks():
    if attnbench.device_count() == 0:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            check()


@pytest.mark.parametrize("over,exc,match", [
    (dict(out=FakeCuda(4 * MB, (B, H, S, D), readonly=True)), ValueError, "out is read-only"),
    (dict(lse=FakeCuda(5 * MB, (B, H, S), bits=32, readonly=True)), ValueError, "lse is read-only"),
    (dict(out=FakeCuda(4 * MB, (B, H, S, D), strides=(H * D, D, 0, 1))), ValueError, "out has overlapping"),
    (dict(out=FakeCuda(4 * MB, (B, H, S, D), strides=(H * S * D, S * D, 32, 1))), ValueError, "out has overlapping"),
    (dict(lse=FakeCuda(5 * MB, (B, H, S), strides=(S, 0, 1), bits=32)), ValueError, "lse has overlapping"),
    (dict(out=FakeCuda(1 * MB + 64, (B, H, S, D))), ValueError, "out overlaps q"),
    (dict(scale=1e39), ValueError, "scale"),
    (dict(scale=1e-50), ValueError, "scale"),
    (dict(scale=float("nan")), ValueError, "scale"),
    (dict(scale="x"), TypeError, "scale"),
    (dict(k=FakeCuda(2 * MB, (B, H, S, 32))), ValueError, "k has head dim 32"),
    (dict(k=FakeCuda(2 * MB, (B, 3, S, D)), v=FakeCuda(3 * MB, (B, 3, S, D))), ValueError, "not a multiple"),
    (dict(v=FakeCuda(3 * MB, (B, H, S + 1, D))), ValueError, "v has shape"),
    (dict(q=FakeCuda(1 * MB, (B, H, S, D), strides=(H * S * D, S * D, 1, S))), ValueError, "q must have unit stride"),
    (dict(q=FakeCuda(1 * MB, (B, H, S))), ValueError, "q must have 4 dimensions"),
    (dict(q=FakeCuda(1 * MB, (B, H, 0, D))), ValueError, "q has an empty dimension"),
    (dict(k=FakeCuda(2 * MB, (B, H, S, D), bits=32)), ValueError, "k has dtype float32 but q has float16"),
    (dict(v=FakeCuda(3 * MB, (B, H, S, D), code=INT, bits=8)), ValueError, "v has dtype int8"),
    (dict(out=FakeCuda(4 * MB, (B, H, S, D), code=BFLOAT)), ValueError, "out has dtype bfloat16"),
    (dict(q=FakeCuda(1 * MB, (B, H, S, D), device=(1, 0))), ValueError, "q must be a CUDA device tensor"),
    (dict(lse=FakeCuda(5 * MB, (B, H, S), bits=16)), ValueError, "lse must be float32"),
    (dict(out=[1, 2, 3]), TypeError, "out must be a device tensor"),
])
def test_bad_problems_name_the_argument(over, exc, match):
    with pytest.raises(exc, match=match):
        check(**over)


def test_a_bshd_view_is_accepted():
    # [B, S, H, D] storage seen as [B, H, S, D]: strided but not overlapping
    bshd = dict(strides=(S * H * D, D, H * D, 1))
    p = dict(q=FakeCuda(1 * MB, (B, H, S, D), **bshd), out=FakeCuda(4 * MB, (B, H, S, D), **bshd))
    if attnbench.device_count() == 0:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            check(**p)
