// naive.cu: `naive`, attnbench's GPU oracle and slowest baseline: attention
// forward on CUDA cores with fp32 math throughout, written to be obviously
// correct rather than fast.
//
// Registers one kernel, ab_kernel_naive, with one config, "default":
// fp16, bf16 and fp32 inputs (fp32 computes the fp32 "truth" for shapes too
// large for the float64 CPU reference), any head dim 1..256, top-left causal
// masking, GQA, Sq != Sk, arbitrary B/H/S strides, optional logsumexp.
//
// Design: one block per (batch, query head, tile of kQueryRows query rows).
// The block keeps its query rows and their running outputs in shared memory
// as fp32 and walks the visible keys in tiles of kKeys (one key per lane):
// each warp scores its rows against the tile, updates each row's running max
// and sum with the online-softmax rescaling, and the block then adds P @ V to
// the rescaled outputs.  exp and log are evaluated in double (see exact_exp).
//
// Build, and read registers/shared memory per kernel:
//   ATTNBENCH_NVCC_FLAGS="-Xptxas -v" python3 setup.py build_ext --inplace
//   PYTHONPATH=python python3 -c "import attnbench._core"
// Check: the kernel tests run impl="naive" against the float64 CPU reference.
#include "common.cuh"

namespace ab {
namespace {

// Query rows per block: each K/V element staged in shared memory serves this
// many rows.  16 keeps D=256's shared memory (67 KB) under the 99 KB that
// every sm_80+ GPU grants a block (sm_86/89 have the least).
constexpr int kQueryRows = 16;
// Keys per tile: one per lane, so a row's max and sum over a tile are warp
// reductions.
constexpr int kKeys = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
// In the score phase warp w owns rows w, w + kWarps, ...: kRowsPerWarp rows
// share each K element it reads from shared memory.
constexpr int kRowsPerWarp = kQueryRows / kWarps;
// In the P @ V phase a thread updates kRowGroup rows of one output dim, so
// each V element it reads from shared memory feeds kRowGroup FMAs.
constexpr int kRowGroup = 4;
constexpr int kMaxHeadDim = 256;

static_assert(kKeys == 32, "the score phase maps one key to one lane");
static_assert(kQueryRows % kWarps == 0 && kQueryRows % kRowGroup == 0, "row tiling must be exact");

// Shared memory, in floats (fp32 whatever the input dtype): query rows, their
// running outputs, one K or V tile, the tile's P, and per-row rescale factor
// and final sum.
struct SmemLayout {
    int kv_ld;  // odd: lanes reading one dim of 32 different keys hit 32 different banks
    int q, o, kv, p, alpha, l, total;
};

__host__ __device__ inline SmemLayout smem_layout(int D) {
    SmemLayout s;
    s.kv_ld = D | 1;
    s.q = 0;
    s.o = s.q + kQueryRows * D;
    s.kv = s.o + kQueryRows * D;
    s.p = s.kv + kKeys * s.kv_ld;
    s.alpha = s.p + kQueryRows * kKeys;
    s.l = s.alpha + kQueryRows;
    s.total = s.l + kQueryRows;
    return s;
}

// The build passes --use_fast_math, which turns expf/logf into approximations
// whose error grows with |x|.  The oracle evaluates them in double instead:
// one exp per score costs little next to the 2*D FMAs per score, and the
// fp32 truth then carries only fp32 rounding.
__device__ inline float exact_exp(float x) { return (float)exp((double)x); }
__device__ inline float exact_log(float x) { return (float)log((double)x); }

// Copy rows [row0, row0 + n_rows) x [0, D) of one head's [S, D] slice (row
// stride `stride` elements) into shared memory as fp32 with leading
// dimension `ld`; rows at or past `S` become zeros.
// Thread t copies elements t, t + kThreads, ... of the row-major tile; its
// (row, dim) position advances by a fixed step, since a division by the
// runtime D per element would cost more than the copy.
template <typename T>
__device__ void stage_rows(float *dst, int ld, const T *src, int64_t stride, int row0, int n_rows, int S, int D) {
    const int step_r = kThreads / D, step_d = kThreads % D;
    int r = threadIdx.x / D, d = threadIdx.x % D;
    for (int idx = threadIdx.x; idx < n_rows * D; idx += kThreads) {
        const int row = row0 + r;
        dst[r * ld + d] = row < S ? num<T>::to_float(src[row * stride + d]) : 0.f;
        r += step_r;
        d += step_d;
        if (d >= D) {  // step_d < D: one carry at most
            d -= D;
            ++r;
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) naive_attention(const ab_attn_args a) {
    extern __shared__ float smem[];
    const int D = a.D;
    const SmemLayout lay = smem_layout(D);
    float *q_s = smem + lay.q, *o_s = smem + lay.o, *kv_s = smem + lay.kv;
    float *p_s = smem + lay.p, *alpha_s = smem + lay.alpha, *l_s = smem + lay.l;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    const int64_t n_tiles = n_query_tiles(a, kQueryRows);
    for (int64_t tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        const QueryTile qt = query_tile(tile, a, kQueryRows);
        const int b = qt.b, h = qt.h, q0 = qt.q0, rows = qt.rows;
        const int kvh = kv_head(h, a.Hq, a.Hkv);
        const int key_end = causal_key_end(q0 + rows - 1, a.Sk, a.causal);

        const T *q = (const T *)a.q + b * a.q_stride[0] + h * a.q_stride[1];
        const T *k = (const T *)a.k + b * a.k_stride[0] + kvh * a.k_stride[1];
        const T *v = (const T *)a.v + b * a.v_stride[0] + kvh * a.v_stride[1];
        T *o = (T *)a.o + b * a.o_stride[0] + h * a.o_stride[1];

        // Rows past Sq are zeros; they are computed like the others (every
        // row sees key 0, so nothing divides by zero) and never written.
        stage_rows(q_s, D, q, a.q_stride[2], q0, kQueryRows, a.Sq, D);
        for (int idx = threadIdx.x; idx < kQueryRows * D; idx += kThreads)
            o_s[idx] = 0.f;
        // Running max and sum of row warp + rr * kWarps, the same in every lane.
        float m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            m[rr] = -INFINITY;
            l[rr] = 0.f;
        }

        for (int k0 = 0; k0 < key_end; k0 += kKeys) {
            stage_rows(kv_s, lay.kv_ld, k, a.k_stride[2], k0, kKeys, a.Sk, D);
            __syncthreads();  // K tile (and, on the first tile, q_s and o_s) ready

            // Scores: lane `lane` takes key k0 + lane against the warp's rows.
            float dot[kRowsPerWarp];
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr)
                dot[rr] = 0.f;
            for (int d = 0; d < D; ++d) {
                const float kd = kv_s[lane * lay.kv_ld + d];
#pragma unroll
                for (int rr = 0; rr < kRowsPerWarp; ++rr)
                    dot[rr] += q_s[(warp + rr * kWarps) * D + d] * kd;
            }
            // Online softmax: rescale the row's sum by exp(old max - new max);
            // alpha carries the same factor to the row's output below.
            const int key = k0 + lane;
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) {
                const int r = warp + rr * kWarps;
                const bool visible = key < causal_key_end(q0 + r, a.Sk, a.causal);
                const float s = visible ? a.scale * dot[rr] : -INFINITY;
                const float m_new = fmaxf(m[rr], warp_max(s));
                const float p = visible ? exact_exp(s - m_new) : 0.f;
                const float alpha = m[rr] == -INFINITY ? 0.f : exact_exp(m[rr] - m_new);
                l[rr] = l[rr] * alpha + warp_sum(p);
                m[rr] = m_new;
                p_s[r * kKeys + lane] = p;
                if (lane == 0)
                    alpha_s[r] = alpha;
            }
            __syncthreads();  // every warp is done with K: V may replace it

            stage_rows(kv_s, lay.kv_ld, v, a.v_stride[2], k0, kKeys, a.Sk, D);
            __syncthreads();  // V tile, P and alpha ready

            // o = o * alpha + P @ V.  Keys past Sk have p = 0 and v = 0.
            for (int item = threadIdx.x; item < (kQueryRows / kRowGroup) * D; item += kThreads) {
                const int d = item % D, r0 = (item / D) * kRowGroup;
                float acc[kRowGroup];
#pragma unroll
                for (int g = 0; g < kRowGroup; ++g)
                    acc[g] = o_s[(r0 + g) * D + d] * alpha_s[r0 + g];
                for (int c = 0; c < kKeys; ++c) {
                    const float vd = kv_s[c * lay.kv_ld + d];
#pragma unroll
                    for (int g = 0; g < kRowGroup; ++g)
                        acc[g] += p_s[(r0 + g) * kKeys + c] * vd;
                }
#pragma unroll
                for (int g = 0; g < kRowGroup; ++g)
                    o_s[(r0 + g) * D + d] = acc[g];
            }
            __syncthreads();  // before the next tile replaces kv_s, p_s and alpha_s
        }

#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const int r = warp + rr * kWarps;
            if (lane == 0) {
                l_s[r] = l[rr];
                if (a.lse != NULL && r < rows)
                    a.lse[b * a.lse_stride_b + h * a.lse_stride_h + q0 + r] = m[rr] + exact_log(l[rr]);
            }
        }
        __syncthreads();  // row sums ready
        for (int idx = threadIdx.x; idx < rows * D; idx += kThreads) {
            const int r = idx / D, d = idx % D;
            // __fdiv_rn: IEEE division even under --use_fast_math.
            o[(q0 + r) * a.o_stride[2] + d] = num<T>::from_float(__fdiv_rn(o_s[idx], l_s[r]));
        }
        __syncthreads();  // before the next tile replaces q_s, o_s and l_s
    }
}

template <typename T>
int launch_typed(const ab_attn_args *a, cudaStream_t stream, ab_error *err) {
    const size_t smem = (size_t)smem_layout(a->D).total * sizeof(float);
    // Beyond 48 KB (D > 172 or so) a kernel must opt in to its shared memory.
    AB_CUDA_CHECK(err, cudaFuncSetAttribute(naive_attention<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    naive_attention<T><<<grid_size(n_query_tiles(*a, kQueryRows)), kThreads, smem, stream>>>(*a);
    AB_LAUNCH_CHECK(err);
    return 0;
}

int naive_launch(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err) {
    if (config != 0)
        return ab_set_error(err, "naive: no config %d (it has one, 0 = 'default')", config);
    if (a->D < 1 || a->D > kMaxHeadDim)
        return ab_set_error(err, "naive: head dim %d is outside 1..%d", a->D, kMaxHeadDim);
    switch (a->dtype) {
    case AB_FLOAT16: return launch_typed<__half>(a, stream, err);
    case AB_BFLOAT16: return launch_typed<__nv_bfloat16>(a, stream, err);
    case AB_FLOAT32: return launch_typed<float>(a, stream, err);
    }
    return ab_set_error(err, "naive: unknown dtype code %d", (int)a->dtype);
}

const char *const kConfigs[] = {"default"};

}  // namespace
}  // namespace ab

extern "C" const ab_kernel ab_kernel_naive = {
    "naive",                                               // name
    "GPU oracle: fp32 CUDA-core attention, one block per 16 query rows, exp/log in double",
    AB_DTYPE_BIT(AB_FLOAT16) | AB_DTYPE_BIT(AB_BFLOAT16) | AB_DTYPE_BIT(AB_FLOAT32),
    NULL, 0, ab::kMaxHeadDim,                              // head dims: any 1..256
    1, 1, 1,                                               // causal, gqa, lse
    80, 1000,                                              // min_sm, max_sm (sm_80 PTX runs on anything newer)
    "sm_80+",                                              // archs
    ab::kConfigs, 1,                                       // configs
    NULL,                                                  // supports: the flags suffice
    ab::naive_launch,
};
