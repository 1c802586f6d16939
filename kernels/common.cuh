// common.cuh: device helpers shared by the kernel families (kernels/*.cu).
// Per-family helpers stay in their own file until a second family needs them.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdarg.h>
#include <stdio.h>

#include "attn.h"

namespace ab {

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Storage type <-> float for the dtypes attnbench runs.
template <typename T> struct num;
template <> struct num<__half> {
    static constexpr ab_dtype dtype = AB_FLOAT16;
    __device__ static float to_float(__half x) { return __half2float(x); }
    __device__ static __half from_float(float x) { return __float2half_rn(x); }
};
template <> struct num<__nv_bfloat16> {
    static constexpr ab_dtype dtype = AB_BFLOAT16;
    __device__ static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
    __device__ static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct num<float> {
    static constexpr ab_dtype dtype = AB_FLOAT32;
    __device__ static float to_float(float x) { return x; }
    __device__ static float from_float(float x) { return x; }
};

// First key a query row may not see under top-left causal masking (SDPA's
// is_causal): query i sees keys 0..i.  Without causal masking: all Sk keys.
__host__ __device__ inline int causal_key_end(int q_row, int Sk, int causal) {
    return causal ? min(q_row + 1, Sk) : Sk;
}

// Key/value head read by query head h under grouped-query attention.
__host__ __device__ inline int kv_head(int h, int Hq, int Hkv) { return h / (Hq / Hkv); }

// Reductions over the 32 lanes of a warp; every lane gets the result.  All
// lanes must call them (full mask), so callers keep them out of divergent code.
__device__ inline float warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}
__device__ inline float warp_sum(float x) {
    for (int offset = 16; offset > 0; offset >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

// gridDim.x limit; kernels whose work can outgrow it loop over their tiles.
constexpr int64_t kMaxGridX = 2147483647;

__host__ inline unsigned grid_size(int64_t n_blocks) {
    return (unsigned)(n_blocks < kMaxGridX ? n_blocks : kMaxGridX);
}

// A block's share of the query rows: `rows` rows from q0 of head h of batch b.
struct QueryTile {
    int b, h, q0, rows;
};

__host__ __device__ inline int64_t n_query_tiles(const ab_attn_args &a, int tile_rows) {
    return (int64_t)a.B * a.Hq * ceil_div(a.Sq, tile_rows);
}

// Tile `tile` of the n_query_tiles(a, tile_rows) query tiles.  The last query
// tiles of every head come first: under causal masking they see the most
// keys, and starting the longest blocks first shortens the tail.
__device__ inline QueryTile query_tile(int64_t tile, const ab_attn_args &a, int tile_rows) {
    const int n_qtiles = ceil_div(a.Sq, tile_rows);
    const int64_t n_heads = (int64_t)a.B * a.Hq;
    const int64_t bh = tile % n_heads;
    QueryTile t;
    t.b = (int)(bh / a.Hq);
    t.h = (int)(bh % a.Hq);
    t.q0 = (n_qtiles - 1 - (int)(tile / n_heads)) * tile_rows;
    t.rows = min(tile_rows, a.Sq - t.q0);
    return t;
}

}  // namespace ab
