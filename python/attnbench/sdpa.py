"""PyTorch, for the SDPA references: the one module of attnbench that imports torch.

Everything attnbench needs from torch lives here: the SDPA backends
(`default`, `flash`, `efficient`, `cudnn`, `math`) as zero-argument callables
the C timer can call, torch's current stream, random inputs, and CUDA graph
capture of torch callables.  torch is imported on first use, so attnbench
imports without it.
"""
from __future__ import annotations

import contextlib
import warnings

BACKENDS = ("default", "flash", "efficient", "cudnn", "math")
DTYPES = {"fp16": "float16", "float16": "float16", "half": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp32": "float32", "float32": "float32"}


def torch():
    """The torch module, or an ImportError that names the extra to install."""
    try:
        import torch as _torch
    except ImportError as e:
        raise ImportError(
            "attnbench needs PyTorch for the SDPA references and run(): "
            "pip install 'attnbench[torch]' (or install torch for your CUDA)"
        ) from e
    return _torch


def is_torch_tensor(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "data_ptr")


def torch_dtype(name: str):
    return getattr(torch(), DTYPES[name])


def versions() -> dict:
    t = torch()
    return {
        "torch": t.__version__,
        "torch_cuda": t.version.cuda,
        "cudnn": t.backends.cudnn.version() if t.backends.cudnn.is_available() else None,
    }


def current_stream(device) -> int:
    """torch's current stream on `device`, as a cudaStream_t integer."""
    return torch().cuda.current_stream(device).cuda_stream


@contextlib.contextmanager
def on_stream(stream):
    """Make torch's current stream `stream` (a torch.cuda.Stream) inside the block."""
    with torch().cuda.stream(stream):
        yield


def new_stream(device):
    """A fresh non-default stream: the timed work never shares the legacy stream."""
    return torch().cuda.Stream(device=device)


def empty_out(q, shape):
    return torch().empty(shape, dtype=q.dtype, device=q.device)


def random_inputs(B, Hq, Hkv, Sq, Sk, D, dtype, seed, device="cuda"):
    """q, k, v drawn from N(0, 1) (never zeros) with torch's generator seeded by `seed`."""
    t = torch()
    g = t.Generator(device=device)
    g.manual_seed(seed)
    dt = torch_dtype(dtype)
    q = t.randn((B, Hq, Sq, D), generator=g, device=device, dtype=t.float32).to(dt)
    k = t.randn((B, Hkv, Sk, D), generator=g, device=device, dtype=t.float32).to(dt)
    v = t.randn((B, Hkv, Sk, D), generator=g, device=device, dtype=t.float32).to(dt)
    return q, k, v


def _backend_context(backend):
    if backend == "default":
        return contextlib.nullcontext()
    torch()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    which = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[backend]
    return sdpa_kernel([which])


def sdpa_call(backend, q, k, v, causal, scale):
    """A zero-argument callable running SDPA `backend` on q, k, v; returns the output."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    F = torch().nn.functional
    gqa = q.shape[1] != k.shape[1]
    kwargs = {"is_causal": bool(causal), "scale": scale}
    if gqa:
        kwargs["enable_gqa"] = True

    def call():
        with _backend_context(backend):  # sdpa_kernel contexts are made afresh per use
            return F.scaled_dot_product_attention(q, k, v, **kwargs)
    return call


def probe(call):
    """Run `call` once: (output, None) or (None, torch's reason it cannot run)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = call()
            torch().cuda.synchronize()
            return out, None
        except RuntimeError as e:
            reasons = [str(w.message) for w in caught]
            reason = str(e).strip().splitlines()[0] if str(e).strip() else "RuntimeError"
            if reasons:
                reason += " | " + " | ".join(r.strip().replace("\n", " ") for r in reasons)
            return None, reason


def capture_graph(call, calls, stream):
    """Capture `calls` calls of `call` into a torch CUDA graph; returns its replay function.

    torch callables must be captured through torch.cuda.CUDAGraph so that the
    caching allocator knows about the capture (outputs come from the graph's pool).
    """
    t = torch()
    g = t.cuda.CUDAGraph()
    with t.cuda.stream(stream):
        for _ in range(2):  # warm-up on the side stream, as torch asks before capture
            call()
        stream.synchronize()
        with t.cuda.graph(g, stream=stream):
            for _ in range(calls):
                call()
    return g.replay


def clone(x):
    return x.clone()


def same(a, b) -> bool:
    """Bitwise equality of two tensors (NaN payloads included)."""
    t = torch()
    if a.dtype in (t.float16, t.bfloat16):
        return bool(t.equal(a.view(t.int16), b.view(t.int16)))
    if a.dtype == t.float32:
        return bool(t.equal(a.view(t.int32), b.view(t.int32)))
    return bool(t.equal(a, b))


def fill_nan(x):
    x.fill_(float("nan"))


def to_numpy(x, dtype="float64"):
    """Copy a device tensor to a host NumPy array of `dtype` (float64, float32 or float16)."""
    t = torch()
    return x.detach().to(getattr(t, dtype)).cpu().numpy()


def from_numpy(a, device="cuda"):
    """Copy a host NumPy array to a device tensor (the caller's array is left as it is)."""
    return torch().from_numpy(a.copy()).to(device)


def to_float32(x):
    return x.float()


def synchronize(device=None):
    torch().cuda.synchronize(device)
