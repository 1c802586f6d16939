"""attnbench.attention, attnbench.kernels and the device queries: thin checks over _core."""
from __future__ import annotations

import os

import numpy as np

from . import _core

IMPL_ENV = "ATTNBENCH_IMPL"

# impl="auto": the kernels tried in this order, the first that supports the
# case wins.  The order is measured speed on the H200 (benchmarks/NOTES.md,
# kernels_grid.py: mma beats cublas and the hybrids on all 36 grid cases, by
# 1.4x to 9x); `naive` is last because it is the oracle, not a fast path.
AUTO_ORDER = ("wgmma", "mma", "cublas", "hybrid_pv", "hybrid_qk", "naive")


def kernels():
    """The registered kernels and what each supports.

    Returns
    -------
    list of dict
        One dict per kernel: name, description, dtypes, head_dims (empty
        means any up to max_head_dim), causal, gqa, lse, min_sm, archs, configs.

    Examples
    --------
    >>> import attnbench
    >>> "naive" in [k["name"] for k in attnbench.kernels()]
    True
    """
    return _core.kernels()


def device_count():
    """Number of CUDA devices (0 without a GPU or driver).

    Examples
    --------
    >>> import attnbench
    >>> attnbench.device_count() >= 0
    True
    """
    return _core.device_count()


def require_gpu(device=0):
    """Raise RuntimeError("no CUDA device ...") unless `device` exists."""
    if not isinstance(device, int) or isinstance(device, bool):
        raise TypeError(f"device must be an int, got {type(device).__name__}")
    n = _core.device_count()
    if n == 0:
        raise RuntimeError("no CUDA device is available: attnbench's GPU functions need an NVIDIA GPU and driver")
    if not 0 <= device < n:
        raise ValueError(f"device {device} does not exist; this machine has {n} CUDA device(s)")


def _registered():
    return [k["name"] for k in _core.kernels()]


def resolve_impl(impl):
    """impl as given, or from $ATTNBENCH_IMPL when impl is None or 'auto' and the variable is set."""
    if impl is None or impl == "auto":
        impl = os.environ.get(IMPL_ENV) or "auto"
    if not isinstance(impl, str):
        raise TypeError(f"impl must be a kernel name or 'auto', got {type(impl).__name__}")
    if impl != "auto" and impl not in _registered():
        raise ValueError(f"impl {impl!r} is not a registered kernel; registered: {_registered()} or 'auto'")
    return impl


def _framework_of(x):
    return type(x).__module__.split(".")[0]


def _stream_of(x):
    """The stream the caller's framework is using for tensor x (cudaStream_t as int)."""
    fw = _framework_of(x)
    if fw == "torch":
        from . import sdpa
        return sdpa.current_stream(x.device)
    if fw == "cupy":
        import cupy
        return cupy.cuda.get_current_stream().ptr
    return 0  # the legacy default stream


def _empty_like_out(q, shape):
    fw = _framework_of(q)
    if fw == "torch":
        from . import sdpa
        return sdpa.empty_out(q, shape)
    if fw == "cupy":
        import cupy
        with cupy.cuda.Device(q.device.id):
            return cupy.empty(shape, dtype=q.dtype)
    raise TypeError(f"pass out= for tensors of type {type(q).__name__}: attnbench can allocate torch and CuPy outputs")


def pick_impl(q, k, v, out, lse=None, causal=False, scale=None):
    """The first kernel of AUTO_ORDER that supports this case on this GPU."""
    names = _registered()
    reasons = []
    for name in AUTO_ORDER:
        if name in names:
            why = _core.supports(name, q, k, v, out, lse, causal, scale)
            if why is None:
                return name
            reasons.append(why)
    raise ValueError("no registered kernel supports this case: " + "; ".join(reasons))


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _check_scale(scale):
    if scale is None:
        return None
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale must be a real number or None, got {type(scale).__name__}")
    if not np.isfinite(scale) or scale == 0:
        raise ValueError(f"scale must be finite and non-zero, got {scale}")
    return float(scale)


def attention(q, k, v, causal=False, scale=None, impl="auto", out=None, config=None, return_lse=False):
    """Attention forward with one of attnbench's kernels, on the caller's current stream.

    Parameters
    ----------
    q, k, v : device tensors
        [B, Hq, Sq, D], [B, Hkv, Sk, D], [B, Hkv, Sk, D] float16 or bfloat16
        (float32 for impl='naive'), unit stride in D, any other non-negative
        strides; anything with ``__dlpack__`` or ``__cuda_array_interface__``
        (torch, CuPy, JAX).  Hq must be a multiple of Hkv (grouped-query attention).
    causal : bool
        Top-left aligned causal mask, as SDPA's ``is_causal``: query i sees keys j <= i.
    scale : float, optional
        Softmax scale; default 1/sqrt(D).
    impl : str
        A kernel name from :func:`kernels`, or 'auto' (the fastest that supports the
        case; $ATTNBENCH_IMPL overrides 'auto').
    out : device tensor, optional
        Written in place; allocated in q's framework (torch, CuPy) when omitted.
    config : str, optional
        One of the kernel's tunable configs; default its first.
    return_lse : bool
        Also return the float32 logsumexp [B, Hq, Sq] (natural log).

    Returns
    -------
    out, or (out, lse)

    Examples
    --------
    >>> import attnbench, torch                                   # doctest: +SKIP
    >>> q = torch.randn(1, 8, 128, 64, device="cuda", dtype=torch.float16)  # doctest: +SKIP
    >>> o = attnbench.attention(q, q, q, causal=True, impl="naive")  # doctest: +SKIP
    """
    causal = _check_flag(causal, "causal")
    return_lse = _check_flag(return_lse, "return_lse")
    scale = _check_scale(scale)
    if config is not None and not isinstance(config, str):
        raise TypeError(f"config must be a str or None, got {type(config).__name__}")
    if any(isinstance(x, np.ndarray) for x in (q, k, v)):
        return _attention_numpy(q, k, v, causal, scale, impl, out, config, return_lse)
    for name, x in (("q", q), ("k", k), ("v", v), ("out", out)):
        if x is not None and not (hasattr(x, "__dlpack__") or hasattr(x, "__cuda_array_interface__")):
            raise TypeError(f"{name} must be a device tensor with __dlpack__ or __cuda_array_interface__ "
                            f"(torch, CuPy, JAX) or a NumPy array, got {type(x).__name__}")
    require_gpu(_device_of(q))
    shape = tuple(q.shape)
    if len(shape) != 4:
        raise ValueError(f"q must have 4 dimensions [B, H, S, D], got shape {shape}")
    if out is None:
        out = _empty_like_out(q, shape)
    lse = None
    if return_lse:
        lse = _empty_lse(q, shape[:3])
    impl = resolve_impl(impl)
    if impl == "auto":
        impl = pick_impl(q, k, v, out, lse, causal, scale)
    _core.attention(q, k, v, out, lse, causal, scale, impl, config, _stream_of(q))
    return (out, lse) if return_lse else out


def _attention_numpy(q, k, v, causal, scale, impl, out, config, return_lse):
    """NumPy in, NumPy out: the arrays are copied to device 0 (through torch) and back."""
    from . import sdpa
    require_gpu(0)
    arrays = []
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array like q, got {type(x).__name__}")
        if x.dtype not in (np.float16, np.float32):
            raise TypeError(f"{name} has dtype {x.dtype}; NumPy inputs must be float16 (or float32 for impl='naive')")
        arrays.append(sdpa.from_numpy(x))
    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError("out must be a NumPy array when q, k, v are")
    res = attention(*arrays, causal=causal, scale=scale, impl=impl, config=config, return_lse=return_lse)
    o, lse = res if return_lse else (res, None)
    o_host = sdpa.to_numpy(o, dtype=str(q.dtype))
    if out is not None:
        if out.shape != o_host.shape:
            raise ValueError(f"out must have shape {o_host.shape}, got {out.shape}")
        out[...] = o_host
        o_host = out
    return (o_host, sdpa.to_numpy(lse, dtype="float32")) if return_lse else o_host


def _device_of(x):
    dev = getattr(x, "device", None)
    idx = getattr(dev, "index", None)
    if idx is not None:
        return idx
    if hasattr(x, "__dlpack_device__"):
        return int(x.__dlpack_device__()[1])
    return 0


def _empty_lse(q, shape):
    fw = _framework_of(q)
    if fw == "torch":
        from . import sdpa
        t = sdpa.torch()
        return t.empty(shape, dtype=t.float32, device=q.device)
    if fw == "cupy":
        import cupy
        with cupy.cuda.Device(q.device.id):
            return cupy.empty(shape, dtype=cupy.float32)
    raise TypeError("return_lse=True needs torch or CuPy tensors")


def device_info(device=0):
    """The GPU's name, SM count, clocks, memory and driver/runtime versions.

    Examples
    --------
    >>> import attnbench
    >>> attnbench.device_info()["sm_count"] > 0   # doctest: +SKIP
    True
    """
    require_gpu(device)
    return _core.device_info(device)
