"""Parity of the kernels against SDPA's `math` backend in fp32 (the truth), on the GPU."""
import itertools

import numpy as np
import pytest

import attnbench

pytestmark = pytest.mark.gpu

# Output rounding bounds the error of a correct kernel: half a unit in the last
# place of the output dtype (relative), plus fp32-accumulation noise (absolute).
RTOL = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 1e-5}
ATOL = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 1e-5}

SEQ = (1, 17, 128, 513, 2048)
GRID = list(itertools.product(("float16", "bfloat16"), (64, 128), (False, True), SEQ))
# Sq != Sk both ways and grouped-query attention, with tails.
EXTRA = [  # (dtype, D, causal, Sq, Sk, Hq, Hkv)
    ("float16", 64, True, 100, 300, 4, 4), ("bfloat16", 64, True, 300, 100, 4, 4),
    ("bfloat16", 128, False, 77, 513, 4, 4), ("float16", 128, True, 513, 77, 4, 4),
    ("float16", 64, False, 129, 129, 8, 2), ("bfloat16", 128, True, 257, 257, 8, 1),
    ("bfloat16", 64, True, 64, 1000, 6, 3), ("float16", 128, False, 1, 4097, 4, 2),
]
# The suite every fast kernel must pass: 2 dtypes x 2 head dims x causal or not x 9 shapes = 72.
CASES = [(1, 1, 4, 4), (17, 17, 4, 4), (128, 128, 4, 4), (513, 513, 4, 4), (2048, 2048, 4, 4),
         (100, 300, 4, 4), (300, 100, 4, 4), (129, 129, 8, 2), (257, 1000, 6, 3)]
SUITE = [(dt, D, c) + case for dt, D, c, case in itertools.product(("float16", "bfloat16"), (64, 128),
                                                                     (False, True), CASES)]
FAST_KERNELS = [k["name"] for k in attnbench.kernels() if k["name"] != "naive"]
# A fast kernel's max error may be at most this times the best SDPA backend's on the same inputs.
BACKEND_ERROR_FACTOR = 2.0


def _inputs(dtype, B, Hq, Hkv, Sq, Sk, D, seed):
    torch = pytest.importorskip("torch")
    g = torch.Generator(device="cuda").manual_seed(seed)
    dt = getattr(torch, dtype)
    mk = lambda h, s: torch.randn(B, h, s, D, generator=g, device="cuda").to(dt)  # noqa: E731
    return mk(Hq, Sq), mk(Hkv, Sk), mk(Hkv, Sk)


def _truth(q, k, v, causal, scale=None):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.nn.functional.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), is_causal=causal, scale=scale, enable_gqa=q.shape[1] != k.shape[1])


def _backend_error(q, k, v, causal, truth):
    """The smallest max-abs error of the flash / efficient / cuDNN backends that run this case."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    best = None
    for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        try:
            with sdpa_kernel([b]):
                o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                                     enable_gqa=q.shape[1] != k.shape[1])
        except RuntimeError:
            continue
        e = (o.float() - truth).abs().max().item()
        best = e if best is None else min(best, e)
    return best


def _skip_unless_wgmma(q, k, v, causal, scale):
    """Skips the test with wgmma's reason where it cannot run these inputs (not an sm_90 GPU)."""
    import torch
    why = attnbench._core.supports("wgmma", q, k, v, torch.empty_like(q), None, causal, scale)
    if why is not None:
        pytest.skip(why)


def _check(impl, dtype, D, causal, Sq, Sk, Hq, Hkv, B=2, scale=None, seed=0, vs_backends=False, config=None):
    _check_on(impl, *_inputs(dtype, B, Hq, Hkv, Sq, Sk, D, seed), causal, scale, vs_backends, config)


def _check_on(impl, q, k, v, causal, scale=None, vs_backends=False, config=None):
    """Out against fp32 truth (and optionally the SDPA backends' error), lse against fp64."""
    import torch
    B, Hq, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    dtype = str(q.dtype).replace("torch.", "")
    out = torch.full((B, Hq, Sq, D), float("nan"), device="cuda", dtype=q.dtype)
    o, lse = attnbench.attention(q, k, v, causal=causal, scale=scale, impl=impl, out=out, return_lse=True,
                                 config=config)
    truth = _truth(q, k, v, causal, scale)
    r = attnbench.check_close(o.float().cpu().numpy(), truth.cpu().numpy(), atol=ATOL[dtype], rtol=RTOL[dtype])
    assert r["passed"], (impl, config, dtype, D, causal, Sq, Sk, Hq, Hkv, r)
    if vs_backends:
        best = _backend_error(q, k, v, causal, truth)
        if best is not None:
            mine = (o.float() - truth).abs().max().item()
            assert mine <= BACKEND_ERROR_FACTOR * best + 1e-6, (impl, mine, best)
    # logsumexp against fp64 scores
    s = (q.double() @ k.double().repeat_interleave(Hq // Hkv, 1).transpose(-1, -2))
    s = s * (scale if scale is not None else D ** -0.5)
    if causal:
        mask = torch.ones(Sq, Sk, device="cuda", dtype=torch.bool).tril()
        s = s.masked_fill(~mask, float("-inf"))
    ref_lse = torch.logsumexp(s, -1)
    assert torch.allclose(lse.double(), ref_lse, atol=1e-3, rtol=1e-4), (lse - ref_lse).abs().max()


@pytest.mark.parametrize("dtype,D,causal,S", GRID)
def test_naive_matches_math_fp32(dtype, D, causal, S):
    _check("naive", dtype, D, causal, S, S, 4, 4)


@pytest.mark.parametrize("dtype,D,causal,Sq,Sk,Hq,Hkv", EXTRA)
def test_naive_seq_and_gqa(dtype, D, causal, Sq, Sk, Hq, Hkv):
    _check("naive", dtype, D, causal, Sq, Sk, Hq, Hkv)


@pytest.mark.parametrize("impl", FAST_KERNELS)
@pytest.mark.parametrize("dtype,D,causal,Sq,Sk,Hq,Hkv", SUITE)
def test_fast_kernel_parity(impl, dtype, D, causal, Sq, Sk, Hq, Hkv):
    _check(impl, dtype, D, causal, Sq, Sk, Hq, Hkv, vs_backends=True)


# Every tunable config of every fast kernel, on fewer shapes: a config is a
# different instantiation, and `auto` may pick any of them.
CONFIGS = [(k["name"], c) for k in attnbench.kernels() if k["name"] != "naive" for c in k["configs"]]
# (700, 200, 96, 8): more tiles than an H200's 132 SMs with a partial last query block, so the
# persistent configs' non-causal order is rotated (wgmma.cu, pick_rotation picks 1 for m128 and m192).
CONFIG_CASES = [(1, 1, 4, 4), (513, 513, 4, 4), (300, 1100, 4, 2), (1100, 300, 4, 4), (700, 200, 96, 8)]


@pytest.mark.parametrize("impl,config", CONFIGS)
@pytest.mark.parametrize("dtype,D,causal", list(itertools.product(("float16", "bfloat16"), (64, 128), (False, True))))
def test_every_config(impl, config, dtype, D, causal):
    import torch
    for i, (Sq, Sk, Hq, Hkv) in enumerate(CONFIG_CASES):
        q, k, v = _inputs(dtype, 2, Hq, Hkv, Sq, Sk, D, i)
        out = torch.full((2, Hq, Sq, D), float("nan"), device="cuda", dtype=q.dtype)
        o = attnbench.attention(q, k, v, causal=causal, impl=impl, config=config, out=out)
        r = attnbench.check_close(o.float().cpu().numpy(), _truth(q, k, v, causal).cpu().numpy(),
                                  atol=ATOL[dtype], rtol=RTOL[dtype])
        assert r["passed"], (impl, config, dtype, D, causal, Sq, Sk, r)


@pytest.mark.parametrize("impl", FAST_KERNELS)
def test_fast_kernel_rejects_other_head_dims(impl):
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 2, 16, 96, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="D=96.*64, 128"):
        attnbench.attention(q, q, q, impl=impl)


@pytest.mark.parametrize("impl", FAST_KERNELS)
def test_fast_kernel_custom_scale_and_strides(impl):
    import torch
    base = torch.randn(2, 130, 4, 64, device="cuda", dtype=torch.bfloat16)
    q = base.transpose(1, 2)  # [B, H, S, D] view of [B, S, H, D] storage
    o = attnbench.attention(q, q, q, causal=True, scale=0.3, impl=impl)
    truth = _truth(q, q, q, True, 0.3)
    r = attnbench.check_close(o.float().cpu().numpy(), truth.cpu().numpy(), atol=ATOL["bfloat16"], rtol=RTOL["bfloat16"])
    assert r["passed"], r


@pytest.mark.parametrize("impl", FAST_KERNELS)
def test_fast_kernel_negative_scale(impl):
    import torch
    q, k, v = _inputs("float16", 1, 2, 2, 65, 65, 64, 3)
    out = torch.empty_like(q)
    why = attnbench._core.supports(impl, q, k, v, out, None, True, -0.2)
    if why is not None:
        assert "positive scale" in why
        return
    _check(impl, "float16", 64, True, 65, 65, 2, 2, B=1, scale=-0.2)


# wgmma's TMA_O configs store O by bulk tensor stores through a tensor map of `out`: into a strided view
# they must follow its strides and write nothing past Sq or outside its heads.  72 x 2 heads of 300 rows
# are 432 tiles of 128 rows (288 of 192), more than an H200's 132 SMs, so the Q buffers (O's staging) are
# reused from tile to tile.
@pytest.mark.parametrize("config", ["m128_pp_persist_tmao", "m192_pp_persist_tmao", "m192_pp_persist_own_tmao"])
@pytest.mark.parametrize("dtype,D,causal,scale", [("float16", 64, False, None), ("bfloat16", 128, True, -0.1)])
def test_wgmma_tma_store_into_a_strided_view(config, dtype, D, causal, scale):
    import torch
    B, H, Sq, Sk = 2, 72, 300, 250
    q, k, v = _inputs(dtype, B, H, H, Sq, Sk, D, 5)
    _skip_unless_wgmma(q, k, v, causal, scale)
    sentinel = 7.0
    buf = torch.full((B, Sq, H + 2, D), sentinel, device="cuda", dtype=q.dtype)
    out = buf[:, :, 1:H + 1].transpose(1, 2)  # [B, H, Sq, D] view: heads 1..H of [B, Sq, H + 2, D]
    o, lse = attnbench.attention(q, k, v, causal=causal, scale=scale, impl="wgmma", config=config, out=out,
                                 return_lse=True)
    assert o.data_ptr() == out.data_ptr()
    r = attnbench.check_close(out.float().cpu().numpy(), _truth(q, k, v, causal, scale).cpu().numpy(),
                              atol=ATOL[dtype], rtol=RTOL[dtype])
    assert r["passed"], (config, r)
    assert bool((buf[:, :, 0] == sentinel).all()) and bool((buf[:, :, H + 1] == sentinel).all())
    assert not torch.isnan(lse).any()


# Causal persistent tiles are handed out by an atomic counter that each launch leaves at zero for a later
# one; launches take counters round robin from a ring of 256 (kernels/wgmma.cu, tickets).  Over two turns
# of the ring on one case, every output must equal the first, bit for bit (a tile's arithmetic does not
# depend on the CTA that runs it): a counter left dirty would skip tiles, leaving the NaN poison in place.
# Both shapes have more tiles than an H200's 132 SMs, so CTAs draw real ranks: 160 heads x 2 query
# blocks (every block in the head-major heavy share), and 40 heads x 1024 rows (8 or 6 query blocks, of
# which 6 or 5 are heavy: the light rest comes after, across heads).
@pytest.mark.parametrize("config", ["m128_pp_persist", "m192_pp_persist_own_tmao"])
@pytest.mark.parametrize("H,S", [(160, 256), (40, 1024)])
def test_wgmma_dynamic_schedule_over_many_launches(config, H, S):
    import torch
    q, k, v = _inputs("bfloat16", 1, H, H, S, S, 64, 11)
    _skip_unless_wgmma(q, k, v, True, None)
    first = attnbench.attention(q, k, v, causal=True, impl="wgmma", config=config)
    r = attnbench.check_close(first.float().cpu().numpy(), _truth(q, k, v, True).cpu().numpy(),
                              atol=ATOL["bfloat16"], rtol=RTOL["bfloat16"])
    assert r["passed"], (config, r)
    out = torch.empty_like(q)
    differing = torch.zeros((), device="cuda", dtype=torch.int64)
    for _ in range(600):
        out.fill_(float("nan"))
        attnbench.attention(q, k, v, causal=True, impl="wgmma", config=config, out=out)
        differing += (out != first).sum()
    assert int(differing) == 0


# wgmma's split-KV configs merge their key splits' partial O, maxima and sums in shared memory.  A split
# may own no block at all (causal first tiles; Sk within one block), and a negative scale negates Q once
# for all of a row group's splits.  Out and lse, for both configs at both head dims (D=128 runs one
# geometry for both), against fp32 / fp64 truth.
@pytest.mark.parametrize("config", ["m64_kv2", "m64_kv2_x2"])
@pytest.mark.parametrize("dtype,D", [("bfloat16", 64), ("float16", 64), ("bfloat16", 128)])
@pytest.mark.parametrize("Sq,Sk,causal,scale", [(65, 65, True, -0.2), (200, 1, False, None), (130, 900, True, 0.3),
                                                (96, 300, False, -0.1), (300, 64, True, None)])
def test_wgmma_split_kv_merge(config, dtype, D, Sq, Sk, causal, scale):
    q, k, v = _inputs(dtype, 1, 2, 2, Sq, Sk, D, 0)
    _skip_unless_wgmma(q, k, v, causal, scale)
    _check("wgmma", dtype, D, causal, Sq, Sk, 6, 2, B=2, scale=scale, seed=Sq + Sk, config=config)


# The split configs read their tile off a 3-d grid (query block, head and batch on grid axes); y and z stop
# at 65535, so a batch past that trades axes with the extent on x (kernels/wgmma.cu, launch_one).
@pytest.mark.parametrize("config", ["m64_kv2", "m64_kv2_x2"])
@pytest.mark.parametrize("causal", [False, True])
def test_wgmma_split_grid_past_65535_batches(config, causal):
    q, k, v = _inputs("bfloat16", 1, 1, 1, 3, 5, 64, 0)
    _skip_unless_wgmma(q, k, v, causal, None)
    _check("wgmma", "bfloat16", 64, causal, 3, 5, 1, 1, B=65540, seed=1, config=config)


# wgmma keeps a row's running max until a block's max passes it by more than a slack (kernels/wgmma.cu,
# softmax_block), and takes a row's later blocks against that max before knowing the block's own
# (softmax_stale): P may exceed 1, and O is rescaled only when P's row sums pass 2^slack.  Two key
# patterns, every config family (plain, overlapped, ping-pong persistent, per-consumer extent, TMA store,
# split):
# - "ramp": keys whose scale grows along the sequence (1x to 9x: block maxima climb from about 2.5 to 22,
#   some 30 log2 units) pass the slack several times per row, with rises inside it in between, so the
#   stale path shifts m by a power of two;
# - "steps": keys 30x larger from key 300 and 90x from key 700 make a block's exp2 pass 2^100 (and
#   overflow), so its S is recomputed from global memory and taken max first (with a negative scale in
#   the causal cases: Q is negated in shared memory, not in global).
# Four more move the first 128 keys (each key split's first block at D=64) far from scores of about 0, the
# later keys as drawn, so a row's first max is far below, far above, or past the exp2 range of its later
# blocks (on the H200 at D=64, every row's first-block max lands in its range: NOTES.md, fourteenth session).
# A warpgroup's unmasked first block, when later blocks follow (Sk = 1100 here), is taken against a running
# max of 0 before its own max is known (seed_first), so these are its paths too: P's row max moved up to 1
# (low), down by a power of two (mid), or S recomputed and taken max first (high, deep):
# - "low_start": scores there about 11 log2 units below 0;
# - "mid_start": keys 10x larger there, maxima of some 20-50 log2 units;
# - "high_start": keys 40x larger there, maxima past 64 log2 units (exp2 past 2^64);
# - "deep_start": scores there about 160 log2 units below 0 (every exp2 against 0 underflows).
@pytest.mark.parametrize("config", ["128x128_s2", "m64_ov", "m128_pp_persist_tmao", "m192_pp_persist_tmao",
                                    "m192_pp_persist_own_tmao", "m64_kv2", "m64_kv2_x2"])
@pytest.mark.parametrize("dtype,D,causal", [("float16", 64, False), ("bfloat16", 64, True),
                                            ("bfloat16", 128, False), ("float16", 128, True)])
@pytest.mark.parametrize("pattern", ["ramp", "steps", "low_start", "mid_start", "high_start", "deep_start"])
def test_wgmma_running_max_past_the_slack(config, dtype, D, causal, pattern):
    import torch
    Sq, Sk = 300, 1100
    q, k, v = _inputs(dtype, 2, 4, 2, Sq, Sk, D, 21)
    _skip_unless_wgmma(q, k, v, causal, -1.0)
    gain = torch.ones(Sk, device="cuda")
    if pattern == "ramp":
        gain = 1.0 + 8.0 * torch.arange(Sk, device="cuda", dtype=torch.float32) / Sk
    elif pattern == "steps":
        gain[300:] = 30.0
        gain[700:] = 90.0
    elif pattern in ("low_start", "deep_start"):
        # first 128 scores shifted by about -6 * 10 / sqrt(64) = -7.5 (-10.8 log2), or by -6 * 150 / 8 (-162 log2)
        q[..., 0] += 6.0
        k[:, :, :128, 0] -= (10.0 if pattern == "low_start" else 150.0) * (D / 64) ** 0.5
    else:
        gain[:128] = 10.0 if pattern == "mid_start" else 40.0
    k = (k.float() * gain[:, None]).to(k.dtype)
    scale = -D ** -0.5 if pattern == "steps" and causal else None
    _check_on("wgmma", q, k, v, causal, scale=scale, config=config)


def test_naive_custom_scale_and_fp32():
    _check("naive", "float32", 96, True, 200, 300, 4, 2, scale=0.3)
    _check("naive", "float16", 64, False, 65, 65, 2, 2, scale=-0.5)


def test_naive_strided_inputs():
    torch = pytest.importorskip("torch")
    # [B, S, H, D] storage viewed as [B, H, S, D]: non-contiguous heads and sequence
    base = torch.randn(2, 130, 4, 64, device="cuda", dtype=torch.float16)
    q = base.transpose(1, 2)
    o = attnbench.attention(q, q, q, causal=True, impl="naive")
    truth = _truth(q, q, q, True)
    r = attnbench.check_close(o.float().cpu().numpy(), truth.cpu().numpy(), atol=ATOL["float16"], rtol=RTOL["float16"])
    assert r["passed"], r


def test_unsupported_case_lists_support():
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 1, 8, 300, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="head dim D=300.*1..256"):
        attnbench.attention(q, q, q, impl="naive")


def test_bad_tensors_name_the_argument():
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 2, 8, 64, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="k has head dim"):
        attnbench.attention(q, q[..., :32], q, impl="naive")
    with pytest.raises(ValueError, match="q has 2 heads, not a multiple"):
        attnbench.attention(q, torch.randn(1, 3, 8, 64, device="cuda", dtype=torch.float16),
                            torch.randn(1, 3, 8, 64, device="cuda", dtype=torch.float16), impl="naive")
    with pytest.raises(ValueError, match="unit stride"):
        attnbench.attention(q.transpose(2, 3)[..., :8, :8].contiguous().transpose(2, 3), q, q, impl="naive")
    with pytest.raises(ValueError, match="share one dtype"):
        attnbench.attention(q, q.bfloat16(), q, impl="naive")
    with pytest.raises(ValueError, match="out overlaps q"):
        attnbench.attention(q, q, q, out=q, impl="naive")
    with pytest.raises(TypeError, match="__dlpack__"):
        attnbench.attention(q, [1, 2], q, impl="naive")
    with pytest.raises(ValueError, match="not a registered kernel"):
        attnbench.attention(q, q, q, impl="nope")
    before = q.clone()
    attnbench.attention(q, q, q, impl="naive")
    assert torch.equal(before, q)


def test_numpy_inputs_are_copied():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 33, 64)).astype(np.float16)
    q0 = q.copy()
    o = attnbench.attention(q, q, q, causal=True, impl="naive")
    assert isinstance(o, np.ndarray) and o.dtype == np.float16
    ref = attnbench.reference_attention(q, q, q, causal=True)
    assert np.abs(o - ref).max() < 4e-3
    assert np.array_equal(q, q0)


def test_cupy_tensors_in_and_out():
    cupy = pytest.importorskip("cupy")
    import torch
    q = cupy.random.standard_normal((1, 2, 40, 64), dtype=cupy.float32).astype(cupy.float16)
    o = attnbench.attention(q, q, q, causal=True, impl="naive")
    assert isinstance(o, cupy.ndarray) and o.shape == q.shape
    tq = torch.from_dlpack(q)
    truth = _truth(tq, tq, tq, True)
    err = (torch.from_dlpack(o).float() - truth).abs().max().item()
    assert err < 4e-3


def test_jax_inputs_with_a_torch_output():
    import os
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave the GPU's memory to torch
    jnp = pytest.importorskip("jax.numpy")
    jax = pytest.importorskip("jax")
    import torch
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees no GPU")
    q = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 40, 64)), dtype=jnp.bfloat16),
                       jax.devices("gpu")[0])
    jax.block_until_ready(q)
    out = torch.empty(1, 2, 40, 64, device="cuda", dtype=torch.bfloat16)
    attnbench.attention(q, q, q, impl="naive", out=out)
    torch.cuda.synchronize()
    tq = torch.from_dlpack(q)
    truth = _truth(tq, tq, tq, False)
    assert (out.float() - truth).abs().max().item() < 2e-2
