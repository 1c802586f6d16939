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

}  // namespace ab
