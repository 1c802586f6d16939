"""The float64 oracle attention that every kernel is checked against.

The computation is C (csrc/reference.c, run by attnbench._core with the GIL
released); this module checks the scalar arguments and documents the
semantics.
"""
import numbers

import numpy as np

from . import _core

__all__ = ["reference_attention"]


def _as_flag(value, name):
    """`value` as a bool if it is bool-like (a bool, NumPy bool, or the integer 0 or 1)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{name} must be True or False (or 0 or 1), got {value!r}")
    raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def _check_scale(scale):
    """TypeError unless `scale` is None or a real number other than a bool.

    Its finiteness is checked by the C core, which also guards its own callers.
    """
    if scale is None:
        return None
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number or None, not {type(scale).__name__}")
    return float(scale)


def reference_attention(q, k, v, causal=False, scale=None, return_lse=False):
    """Attention forward in float64: the oracle for correctness checks.

    Computes ``softmax(scale * q @ k^T + mask) @ v`` for every batch and
    query head, accumulating in float64 with the numerically stable softmax
    (the row maximum is subtracted before ``exp``).  Meant for small shapes:
    the cost is ``B * Hq * Sq * Sk * (D + Dv)`` multiply-adds on the CPU,
    spread over a few threads (B=2, H=8, S=512, D=64 takes a fraction of a
    second).

    Parameters
    ----------
    q : array_like, shape (B, Hq, Sq, D)
        Queries, float16, float32 or float64, in any memory layout (views,
        transposes and negative strides are fine; the inputs are never
        modified).  Anything ``np.asarray`` turns into one of these dtypes is
        accepted too.
    k : array_like, shape (B, Hkv, Sk, D)
        Keys.  ``Hq`` must be a multiple of ``Hkv``: grouped-query attention
        as in SDPA's ``enable_gqa``, where query head ``h`` reads key/value
        head ``h // (Hq // Hkv)``.
    v : array_like, shape (B, Hkv, Sk, Dv)
        Values; ``Dv`` may differ from ``D``.
    causal : bool, default False
        Apply the causal mask, aligned TOP-LEFT as PyTorch SDPA's
        ``is_causal`` aligns it when ``Sq != Sk``: query ``i`` sees keys
        ``j <= i`` (the mask ``torch.ones(Sq, Sk).tril()``).  FlashAttention's
        own API aligns bottom-right instead
        (``torch.nn.attention.bias.causal_lower_right``); attnbench follows
        SDPA's ``is_causal``.  Every query row sees at least key 0, so no row
        is fully masked.
    scale : float, optional
        Softmax scale, a finite real number; None means ``1 / sqrt(D)``.
    return_lse : bool, default False
        Also return the log-sum-exp of each row.

    Returns
    -------
    out : numpy.ndarray, float64, shape (B, Hq, Sq, Dv)
        The attention output.
    lse : numpy.ndarray, float64, shape (B, Hq, Sq)
        Only with ``return_lse=True``: the natural-log logsumexp of the
        scaled, masked scores of each query row.

    Raises
    ------
    TypeError
        If q, k or v has a dtype other than float16, float32 or float64 (or
        is not array-like), if causal or return_lse is not bool-like, or if
        scale is not a real number or None.
    ValueError
        If q, k or v does not have 4 dimensions or has a zero dimension, if
        the shapes disagree (B; D between q and k; Hkv and Sk between k and
        v), if Hq is not a multiple of Hkv, if the output would be too large
        to address, or if scale is NaN or infinite.

    Notes
    -----
    NaN and infinite inputs are not errors: they propagate through the
    arithmetic as they would in any float64 implementation (a NaN score
    makes its whole row NaN).  The result does not depend on the number of
    threads: each row is computed by one thread in a fixed order.

    Examples
    --------
    >>> import numpy as np
    >>> from attnbench import reference_attention
    >>> rng = np.random.default_rng(0)
    >>> q = rng.standard_normal((1, 4, 5, 8)).astype(np.float32)
    >>> k = rng.standard_normal((1, 2, 7, 8)).astype(np.float32)  # 2 kv heads for 4 query heads
    >>> v = rng.standard_normal((1, 2, 7, 16)).astype(np.float32)
    >>> out, lse = reference_attention(q, k, v, causal=True, return_lse=True)
    >>> out.shape, out.dtype, lse.shape
    ((1, 4, 5, 16), dtype('float64'), (1, 4, 5))

    Top-left causal: query 0 sees only key 0, so its output is value row 0
    (of kv head 0, which query heads 0 and 1 share):

    >>> bool(np.allclose(out[0, 1, 0], v[0, 0, 0]))
    True
    """
    causal = _as_flag(causal, "causal")
    return_lse = _as_flag(return_lse, "return_lse")
    scale = _check_scale(scale)
    return _core.reference_attention(q, k, v, causal, scale, return_lse)
