// hybrid.cu: `hybrid_qk` and `hybrid_pv`, half cuBLAS and half custom: each
// keeps one of the two attention GEMMs in cuBLAS and fuses everything else
// into one kernel, so that the pair shows what each half of the cublas
// baseline costs.
//
// Registers two kernels, each with one config, "default": fp16 and bf16, head
// dims 64 and 128, top-left causal masking, GQA, Sq != Sk, arbitrary B/H/S
// strides, optional logsumexp.
//
//   ab_kernel_hybrid_qk  cuBLAS S = scale * Q K^T into an fp32 workspace
//                        [B*Hq, Sq, Sk] (4 bytes per score), then softmax_pv:
//                        per block of 64 query rows, each warp's 16 rows get
//                        their max and sum from S, then P (normalized, in the
//                        input dtype) times V tiles on tensor cores (WMMA,
//                        fp32 accumulation) straight into o, and the lse.
//   ab_kernel_hybrid_pv  scores_softmax: per block of 64 query rows, Q K^T on
//                        tensor cores (WMMA) in two passes over the keys, the
//                        first for each row's max and sum (and lse), the
//                        second writing normalized P in the input dtype into
//                        a workspace [B*Hq, Sq, Sk] (2 bytes per score); then
//                        cuBLAS O = P V into o.
//
// The cuBLAS handle/workspace cache, the GEMMs and the workspace limit are
// cublas.cu's (cublas_common.h).
//
// Build, and read registers/shared memory per kernel:
//   ATTNBENCH_NVCC_FLAGS="-Xptxas -v" python3 setup.py build_ext --inplace
//   PYTHONPATH=python python3 -c "import attnbench._core"
// Check: the kernel tests run impl="hybrid_qk" and impl="hybrid_pv" against
// the float64 CPU reference.
#include <mma.h>

#include "cublas_common.h"

namespace ab {
namespace {

using namespace nvcuda;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
// WMMA's tile edge (m16n16k16, the shape every sm_80+ fp16/bf16 WMMA has).
constexpr int kFrag = 16;
// Query rows per block: one 16-row WMMA strip per warp.
constexpr int kRows = kFrag * kWarps;
// Keys per tile: four WMMA tiles wide, two keys per lane in the row loops.
constexpr int kKeys = 64;
// Shared-memory row padding: 8 fp16/bf16 elements (16 bytes) or 4 floats
// shift consecutive rows by 4 banks, so WMMA's row reads do not collide;
// every fragment still starts 32-byte aligned, as WMMA requires.
constexpr int kPadHalf = 8;
constexpr int kPadFloat = 4;

constexpr int kQkBytesPerScore = 4;  // hybrid_qk: fp32 S
constexpr int kPvBytesPerScore = 2;  // hybrid_pv: P in the input dtype

static_assert(kKeys % 32 == 0 && kKeys % kFrag == 0, "key tiles must split into lanes and WMMA tiles");

// True when every row of the tensor starts 16-byte aligned (8 elements of
// fp16/bf16), so that tiles can be loaded 16 bytes at a time.
bool rows_16b_aligned(const void *base, const int64_t stride[3]) {
    return (uintptr_t)base % 16 == 0 && stride[0] % 8 == 0 && stride[1] % 8 == 0 && stride[2] % 8 == 0;
}

// Copy rows [row0, row0 + kTileRows) x [0, D) of one head's [S, D] slice (row
// stride `stride` elements) into shared memory with leading dimension `ld`;
// rows at or past S become zeros.  vec16: see rows_16b_aligned.
template <typename T, int D, int kTileRows>
__device__ void load_tile(T *dst, int ld, const T *src, int64_t stride, int row0, int S, bool vec16) {
    if (vec16) {
        constexpr int kVec = 16 / sizeof(T);
        constexpr int kVecsPerRow = D / kVec;
        for (int idx = threadIdx.x; idx < kTileRows * kVecsPerRow; idx += kThreads) {
            const int r = idx / kVecsPerRow, c = (idx % kVecsPerRow) * kVec;
            const int row = row0 + r;
            uint4 x = make_uint4(0, 0, 0, 0);  // all-zero bits: +0 in fp16 and bf16
            if (row < S)
                x = *reinterpret_cast<const uint4 *>(src + row * stride + c);
            *reinterpret_cast<uint4 *>(dst + r * ld + c) = x;
        }
    } else {
        for (int idx = threadIdx.x; idx < kTileRows * D; idx += kThreads) {
            const int r = idx / D, c = idx % D;
            const int row = row0 + r;
            dst[r * ld + c] = row < S ? src[row * stride + c] : num<T>::from_float(0.f);
        }
    }
}

// ---------------------------------------------------------------------------
// hybrid_qk: softmax_pv reads the fp32 scores cuBLAS wrote.

template <typename T, int D>
struct SoftmaxPvSmem {
    static constexpr int kLdV = D + kPadHalf;       // V tile [kKeys][D]
    static constexpr int kLdP = kKeys + kPadHalf;   // P strips [kRows][kKeys]
    static constexpr int kLdO = D + kPadFloat;      // fp32 output tile [kRows][D]
    static constexpr size_t kVBytes = (size_t)kKeys * kLdV * sizeof(T);
    static constexpr size_t kPBytes = (size_t)kRows * kLdP * sizeof(T);
    static constexpr size_t kOBytes = (size_t)kRows * kLdO * sizeof(float);
    // The output tile overlays V and P once the key loop is over.
    static constexpr size_t kBytes = kVBytes + kPBytes > kOBytes ? kVBytes + kPBytes : kOBytes;
    static_assert(kVBytes % 32 == 0, "P strips must start 32-byte aligned for WMMA");
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) softmax_pv(const float *S, const ab_attn_args a, bool v_vec16) {
    using L = SoftmaxPvSmem<T, D>;
    __shared__ __align__(128) unsigned char smem[L::kBytes];
    __shared__ float row_max[kRows], row_inv_sum[kRows];
    T *v_s = reinterpret_cast<T *>(smem);
    T *p_s = reinterpret_cast<T *>(smem + L::kVBytes);
    float *o_s = reinterpret_cast<float *>(smem);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    T *p_w = p_s + warp * kFrag * L::kLdP;  // this warp's P strip

    const int64_t n_tiles = n_query_tiles(a, kRows);
    for (int64_t tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        const QueryTile qt = query_tile(tile, a, kRows);
        const int kvh = kv_head(qt.h, a.Hq, a.Hkv);
        const int key_end = causal_key_end(qt.q0 + qt.rows - 1, a.Sk, a.causal);
        const int64_t bh = (int64_t)qt.b * a.Hq + qt.h;
        const float *S_bh = S + bh * a.Sq * a.Sk;
        const T *v = (const T *)a.v + qt.b * a.v_stride[0] + kvh * a.v_stride[1];
        T *o = (T *)a.o + qt.b * a.o_stride[0] + qt.h * a.o_stride[1];

        // Pass 1: max and sum of each of the warp's rows.  Rows past Sq get
        // 1/sum = 0, so that their P is 0.
        for (int r = 0; r < kFrag; ++r) {
            const int rr = warp * kFrag + r;
            if (rr < qt.rows) {
                const int i = qt.q0 + rr;
                const blas::RowStats st = blas::warp_row_stats(S_bh + (int64_t)i * a.Sk, causal_key_end(i, a.Sk, a.causal));
                if (lane == 0) {
                    row_max[rr] = st.max;
                    row_inv_sum[rr] = 1.f / st.sum;
                    if (a.lse != NULL)
                        a.lse[qt.b * a.lse_stride_b + qt.h * a.lse_stride_h + i] = st.max + logf(st.sum);
                }
            } else if (lane == 0) {
                row_max[rr] = 0.f;
                row_inv_sum[rr] = 0.f;
            }
        }
        __syncthreads();  // row stats ready

        // Pass 2: O strip += P strip (16 x kKeys) @ V tile (kKeys x D).
        wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[D / kFrag];
#pragma unroll
        for (int n = 0; n < D / kFrag; ++n)
            wmma::fill_fragment(acc[n], 0.f);
        for (int k0 = 0; k0 < key_end; k0 += kKeys) {
            load_tile<T, D, kKeys>(v_s, L::kLdV, v, a.v_stride[2], k0, a.Sk, v_vec16);
#pragma unroll 2  // two rows' score loads in flight at once
            for (int r = 0; r < kFrag; ++r) {
                const int rr = warp * kFrag + r;
                const int i = qt.q0 + min(rr, qt.rows - 1);  // a row past Sq reads nothing: n_visible = 0
                const int n_visible = rr < qt.rows ? causal_key_end(i, a.Sk, a.causal) : 0;
                const float *s = S_bh + (int64_t)i * a.Sk;
                const float mx = row_max[rr], inv_sum = row_inv_sum[rr];
#pragma unroll
                for (int c = lane; c < kKeys; c += 32) {
                    const int j = k0 + c;
                    p_w[r * L::kLdP + c] = num<T>::from_float(j < n_visible ? expf(s[j] - mx) * inv_sum : 0.f);
                }
            }
            __syncthreads();  // V tile and every P strip ready
#pragma unroll
            for (int kk = 0; kk < kKeys / kFrag; ++kk) {
                wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major> pf;
                wmma::load_matrix_sync(pf, p_w + kk * kFrag, L::kLdP);
#pragma unroll
                for (int n = 0; n < D / kFrag; ++n) {
                    wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::row_major> vf;
                    wmma::load_matrix_sync(vf, v_s + kk * kFrag * L::kLdV + n * kFrag, L::kLdV);
                    wmma::mma_sync(acc[n], pf, vf, acc[n]);
                }
            }
            __syncthreads();  // before the next tile (or o_s) replaces v_s and p_s
        }

#pragma unroll
        for (int n = 0; n < D / kFrag; ++n)
            wmma::store_matrix_sync(o_s + warp * kFrag * L::kLdO + n * kFrag, acc[n], L::kLdO, wmma::mem_row_major);
        __syncthreads();  // output tile ready
        for (int idx = threadIdx.x; idx < qt.rows * D; idx += kThreads) {
            const int r = idx / D, d = idx % D;
            o[(qt.q0 + r) * a.o_stride[2] + d] = num<T>::from_float(o_s[r * L::kLdO + d]);
        }
        __syncthreads();  // before the next tile replaces o_s, row_max and row_inv_sum
    }
}

template <typename T, int D>
struct HybridQk {
    static int enqueue(const ab_attn_args *a, const blas::Lease &lease, cudaStream_t stream, ab_error *err) {
        float *S = (float *)lease.scratch;
        if (blas::scores_gemm(a, lease.handle, S, err) != 0)
            return -1;
        softmax_pv<T, D><<<grid_size(n_query_tiles(*a, kRows)), kThreads, 0, stream>>>(
            S, *a, rows_16b_aligned(a->v, a->v_stride));
        AB_LAUNCH_CHECK(err);
        return 0;
    }
};

// ---------------------------------------------------------------------------
// hybrid_pv: scores_softmax computes the scores itself and writes P.

template <typename T, int D>
struct ScoresSmem {
    static constexpr int kLdQK = D + kPadHalf;       // Q tile [kRows][D], K tile [kKeys][D]
    static constexpr int kLdS = kKeys + kPadFloat;   // fp32 score strips [kRows][kKeys]
    static constexpr size_t kQBytes = (size_t)kRows * kLdQK * sizeof(T);
    static constexpr size_t kKBytes = (size_t)kKeys * kLdQK * sizeof(T);
    static constexpr size_t kSBytes = (size_t)kRows * kLdS * sizeof(float);
    static constexpr size_t kStatsBytes = 2 * kRows * sizeof(float);  // each row's max and 1/sum
    static constexpr size_t kBytes = kQBytes + kKBytes + kSBytes + kStatsBytes;
    static_assert(kQBytes % 32 == 0 && kKBytes % 32 == 0, "tiles must start 32-byte aligned for WMMA");
};

// The warp's unscaled scores, sc[16][kKeys] = Q strip (16 x D) @ K tile^T.
template <typename T, int D>
__device__ void warp_scores(float *sc, const T *q_w, const T *k_s) {
    using L = ScoresSmem<T, D>;
    wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[kKeys / kFrag];
#pragma unroll
    for (int n = 0; n < kKeys / kFrag; ++n)
        wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
    for (int kk = 0; kk < D / kFrag; ++kk) {
        wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major> qf;
        wmma::load_matrix_sync(qf, q_w + kk * kFrag, L::kLdQK);
#pragma unroll
        for (int n = 0; n < kKeys / kFrag; ++n) {
            // K^T's element (d, key) lies at k_s[key * ld + d]: column-major.
            wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::col_major> kf;
            wmma::load_matrix_sync(kf, k_s + n * kFrag * L::kLdQK + kk * kFrag, L::kLdQK);
            wmma::mma_sync(acc[n], qf, kf, acc[n]);
        }
    }
#pragma unroll
    for (int n = 0; n < kKeys / kFrag; ++n)
        wmma::store_matrix_sync(sc + n * kFrag, acc[n], L::kLdS, wmma::mem_row_major);
    __syncwarp();  // the warp's lanes read each other's scores next
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) scores_softmax(T *P, const ab_attn_args a, bool q_vec16, bool k_vec16) {
    using L = ScoresSmem<T, D>;
    extern __shared__ __align__(128) unsigned char smem_pv[];
    T *q_s = reinterpret_cast<T *>(smem_pv);
    T *k_s = reinterpret_cast<T *>(smem_pv + L::kQBytes);
    float *sc_s = reinterpret_cast<float *>(smem_pv + L::kQBytes + L::kKBytes);
    float *row_max = reinterpret_cast<float *>(smem_pv + L::kQBytes + L::kKBytes + L::kSBytes);
    float *row_inv_sum = row_max + kRows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const T *q_w = q_s + warp * kFrag * L::kLdQK;  // this warp's Q strip
    float *sc_w = sc_s + warp * kFrag * L::kLdS;   // and its scores

    const int64_t n_tiles = n_query_tiles(a, kRows);
    for (int64_t tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        const QueryTile qt = query_tile(tile, a, kRows);
        const int kvh = kv_head(qt.h, a.Hq, a.Hkv);
        const int key_end = causal_key_end(qt.q0 + qt.rows - 1, a.Sk, a.causal);
        const int n_ktiles = ceil_div(key_end, kKeys);
        const int64_t bh = (int64_t)qt.b * a.Hq + qt.h;
        T *P_bh = P + bh * a.Sq * a.Sk;
        const T *q = (const T *)a.q + qt.b * a.q_stride[0] + qt.h * a.q_stride[1];
        const T *k = (const T *)a.k + qt.b * a.k_stride[0] + kvh * a.k_stride[1];

        // Rows past Sq are zeros: their scores are 0, every one of them sees
        // key 0 (no division by zero), and nothing of theirs is written.
        load_tile<T, D, kRows>(q_s, L::kLdQK, q, a.q_stride[2], qt.q0, a.Sq, q_vec16);

        // Pass 1: running max and sum of each row.  Lanes 2r and 2r+1 own row
        // r of the warp's strip and take alternate keys, so a row's state is
        // two scalars per lane and merging a tile takes one shuffle.
        const int my_r = lane / 2, half = lane % 2;
        const int my_visible = causal_key_end(qt.q0 + warp * kFrag + my_r, a.Sk, a.causal);
        const float *my_sc = sc_w + my_r * L::kLdS;
        float m = -INFINITY, l = 0.f;
        for (int kt = 0; kt < n_ktiles; ++kt) {
            const int k0 = kt * kKeys;
            load_tile<T, D, kKeys>(k_s, L::kLdQK, k, a.k_stride[2], k0, a.Sk, k_vec16);
            __syncthreads();  // K tile (and, on the first tile, Q) ready
            warp_scores<T, D>(sc_w, q_w, k_s);
            float tile_max = -INFINITY;
            for (int c = half; c < kKeys; c += 2)
                if (k0 + c < my_visible)
                    tile_max = fmaxf(tile_max, a.scale * my_sc[c]);
            const float m_new = fmaxf(m, fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1)));
            float sum = 0.f;
            for (int c = half; c < kKeys; c += 2)
                if (k0 + c < my_visible)
                    sum += expf(a.scale * my_sc[c] - m_new);
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            const float alpha = m == -INFINITY ? 0.f : expf(m - m_new);  // nothing seen yet: nothing to rescale
            l = l * alpha + sum;
            m = m_new;
            __syncthreads();  // before the next K tile replaces k_s
        }
        // Every row sees key 0, in the first tile, so l >= 1.
        if (half == 0) {
            const int rr = warp * kFrag + my_r;
            row_max[rr] = m;
            row_inv_sum[rr] = 1.f / l;
            if (a.lse != NULL && rr < qt.rows)
                a.lse[qt.b * a.lse_stride_b + qt.h * a.lse_stride_h + qt.q0 + rr] = m + logf(l);
        }

        // Pass 2: the same scores again, written as normalized P, a row at a
        // time with the lanes along the keys so that the writes coalesce.
        for (int kt = 0; kt < n_ktiles; ++kt) {
            const int k0 = kt * kKeys;
            load_tile<T, D, kKeys>(k_s, L::kLdQK, k, a.k_stride[2], k0, a.Sk, k_vec16);
            __syncthreads();  // K tile ready (and, on the first tile, the row stats)
            warp_scores<T, D>(sc_w, q_w, k_s);
            for (int r = 0; r < kFrag; ++r) {
                const int rr = warp * kFrag + r;
                if (rr < qt.rows) {
                    const int i = qt.q0 + rr;
                    const int n_visible = causal_key_end(i, a.Sk, a.causal);
                    const float mx = row_max[rr], inv_sum = row_inv_sum[rr];
                    T *p = P_bh + (int64_t)i * a.Sk;
#pragma unroll
                    for (int c = lane; c < kKeys; c += 32) {
                        const int j = k0 + c;
                        if (j < a.Sk)
                            p[j] = num<T>::from_float(j < n_visible ? expf(a.scale * sc_w[r * L::kLdS + c] - mx) * inv_sum
                                                                    : 0.f);
                    }
                }
            }
            __syncthreads();  // before the next K tile replaces k_s (or the next Q tile q_s)
        }

        // Keys past the last tile are masked for every row of the block; the
        // P V GEMM reads whole rows, so they must hold zeros.
        const int tiles_end = n_ktiles * kKeys;
        if (tiles_end < a.Sk) {
            const int width = a.Sk - tiles_end;
            for (int64_t idx = threadIdx.x; idx < (int64_t)qt.rows * width; idx += kThreads) {
                const int r = (int)(idx / width), j = tiles_end + (int)(idx % width);
                P_bh[(int64_t)(qt.q0 + r) * a.Sk + j] = num<T>::from_float(0.f);
            }
        }
    }
}

template <typename T, int D>
struct HybridPv {
    static int enqueue(const ab_attn_args *a, const blas::Lease &lease, cudaStream_t stream, ab_error *err) {
        T *P = (T *)lease.scratch;
        const size_t smem = ScoresSmem<T, D>::kBytes;
        // D = 128 needs 51 KB, past the 48 KB a kernel gets without opting in.
        AB_CUDA_CHECK(err, cudaFuncSetAttribute(scores_softmax<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)smem));
        scores_softmax<T, D><<<grid_size(n_query_tiles(*a, kRows)), kThreads, smem, stream>>>(
            P, *a, rows_16b_aligned(a->q, a->q_stride), rows_16b_aligned(a->k, a->k_stride));
        AB_LAUNCH_CHECK(err);
        return blas::output_gemm(a, lease.handle, P, err);
    }
};

// Op<T, D>::enqueue for a's dtype and head dim (checked by blas::check_problem).
template <template <typename, int> class Op>
int enqueue_for(const ab_attn_args *a, const blas::Lease &lease, cudaStream_t stream, ab_error *err) {
    const bool bf16 = a->dtype == AB_BFLOAT16;
    if (a->D == 64)
        return bf16 ? Op<__nv_bfloat16, 64>::enqueue(a, lease, stream, err) : Op<__half, 64>::enqueue(a, lease, stream, err);
    return bf16 ? Op<__nv_bfloat16, 128>::enqueue(a, lease, stream, err) : Op<__half, 128>::enqueue(a, lease, stream, err);
}

template <template <typename, int> class Op>
int launch(const char *impl, int bytes_per_score, const ab_attn_args *a, int config, cudaStream_t stream,
           ab_error *err) {
    if (config != 0)
        return ab_set_error(err, "%s: no config %d (it has one, 0 = 'default')", impl, config);
    if (blas::check_problem(a, impl, err) != 0)
        return -1;
    return blas::with_workspace(a, impl, bytes_per_score, stream, err, [&](const blas::Lease &lease) {
        return enqueue_for<Op>(a, lease, stream, err);
    });
}

int hybrid_qk_supports(const ab_attn_args *a, int sm, ab_error *err) {
    return blas::check_workspace_limit(a, "hybrid_qk", kQkBytesPerScore, err);
}

int hybrid_qk_launch(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err) {
    return launch<HybridQk>("hybrid_qk", kQkBytesPerScore, a, config, stream, err);
}

int hybrid_pv_supports(const ab_attn_args *a, int sm, ab_error *err) {
    return blas::check_workspace_limit(a, "hybrid_pv", kPvBytesPerScore, err);
}

int hybrid_pv_launch(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err) {
    return launch<HybridPv>("hybrid_pv", kPvBytesPerScore, a, config, stream, err);
}

}  // namespace
}  // namespace ab

extern "C" const ab_kernel ab_kernel_hybrid_qk = {
    "hybrid_qk",                                           // name
    "cuBLAS Q.K^T into fp32 S, then one fused kernel: mask, softmax, P.V on tensor cores (WMMA)",
    ab::blas::kDtypes,
    ab::blas::kHeadDims, 2, 128,                           // head dims 64, 128
    1, 1, 1,                                               // causal, gqa, lse
    80, 1000,                                              // min_sm (bf16 WMMA and cuBLAS need sm_80), max_sm
    "sm_80+",                                              // archs
    ab::blas::kConfigs, 1,                                 // configs
    ab::hybrid_qk_supports,                                // refuses shapes past the workspace limit
    ab::hybrid_qk_launch,
};

extern "C" const ab_kernel ab_kernel_hybrid_pv = {
    "hybrid_pv",                                           // name
    "one fused kernel: Q.K^T on tensor cores (WMMA), mask, softmax, P written out; then cuBLAS P.V",
    ab::blas::kDtypes,
    ab::blas::kHeadDims, 2, 128,                           // head dims 64, 128
    1, 1, 1,                                               // causal, gqa, lse
    80, 1000,                                              // min_sm (bf16 WMMA and cuBLAS need sm_80), max_sm
    "sm_80+",                                              // archs
    ab::blas::kConfigs, 1,                                 // configs
    ab::hybrid_pv_supports,                                // refuses shapes past the workspace limit
    ab::hybrid_pv_launch,
};
