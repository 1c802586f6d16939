// mma.cu: FlashAttention-2-class attention forward on tensor cores through
// mma.sync.aligned.m16n8k16 (fp16/bf16 operands, fp32 accumulation); sm_80 and
// newer (Ampere, Ada, Hopper).
//
// One thread block computes BLOCK_M query rows of one (batch, head); each warp
// owns MT = BLOCK_M / (16 * WARPS) m16 tiles of those rows.  Per K/V block of
// BLOCK_N keys: S = Q K^T (Q fragments in registers, K fragments by ldmatrix),
// online softmax in fp32 registers (ex2 with scale*log2(e) folded in), P packed
// to fp16/bf16 in registers and used directly as the A operand of O += P V (V
// fragments by ldmatrix.trans).  K/V stream through a STAGES-deep cp.async ring;
// shared memory rows are XOR-swizzled by 16-byte chunk so every ldmatrix and
// cp.async is free of bank conflicts.  O is normalized at the end, staged
// through shared memory and written with 16-byte stores.
//
// Causal (top-left, as SDPA's is_causal): key blocks past the block's last
// query row are never loaded, the mask is applied only on blocks that cross
// the diagonal or the Sk tail, and the heaviest (last) query blocks are
// scheduled first.  Any Sq, Sk >= 1; rows of q/k/v/o must be 16-byte aligned
// (base pointers and B/H/S strides multiples of 8 elements), which `supports`
// checks.
//
// Configs (ab_kernel_mma.configs; names "BMxBN_wW_sS" = BLOCK_M x BLOCK_N,
// warps, cp.async stages; the reason for each sits in AB_MMA_CONFIGS below):
//   0 auto          128x64_w4_s2, or 64x64_w4_s2 when 128-row blocks would
//                   leave SMs idle (see mma_auto_config)
//   1 128x64_w4_s2  the fastest at every long shape measured, D=64 and 128
//   2 128x32_w4_s2  3 64x64_w4_s2  4 128x64_w8_s2  5 128x128_w8_s2
//   6 128x64_w8_s3
// Measured on an H200 (2026-11-21, fp16/bf16, cold L2, median of 20): auto
// reaches 0.92-1.01x FlashAttention-2 non-causal and 1.07-1.16x causal on
// the long shapes of shared/ANCHORS.md (e.g. 344 TFLOP/s at 2x16x8192x128).
//
// Build check (no GPU needed):
//   nvcc -c kernels/mma.cu -o /tmp/mma.o -std=c++17 -O3 --use_fast_math -Ikernels \
//     -gencode=arch=compute_90a,code=sm_90a \
//     -gencode=arch=compute_80,code=[sm_80,compute_80] -Xptxas -v
// must report 0 bytes spill stores/loads and 0 bytes stack frame for every
// instantiation (6 configs x 2 head dims x 2 dtypes x 2 targets).
// Correctness check: run the kernel through attnbench (`supports`/`launch`)
// on random fp16/bf16 inputs against a float64 reference, output poisoned
// with NaN first: tails (Sq, Sk in 1..513, Sq != Sk), causal, GQA, strided
// layouts, custom scale, lse; and under compute-sanitizer memcheck/racecheck.
#include <cuda_runtime.h>
#include <stdint.h>

#include "common.cuh"

namespace ab {
namespace mma_impl {

// ---------------------------------------------------------------------------
// PTX wrappers
// ---------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy that bypasses L1 (K/V are read once per block);
// src_bytes = 0 zero-fills the destination without reading the source.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes));
}

// 2^x on the SFU whatever the build's math flags; ex2.approx(-inf) = +0.
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

template <typename T> struct mma_op;

template <> struct mma_op<__half> {
    __device__ static __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    __device__ static __forceinline__ uint32_t pack(float lo, float hi)
    {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};

template <> struct mma_op<__nv_bfloat16> {
    __device__ static __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    __device__ static __forceinline__ uint32_t pack(float lo, float hi)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};

// ---------------------------------------------------------------------------
// Tile geometry
// ---------------------------------------------------------------------------

// Shared-memory tiles are [rows][D] with 16-byte chunk c of row r stored at
// chunk c ^ (r & 7): the 8 rows one ldmatrix phase reads (same logical chunk,
// consecutive rows) then fall into 8 distinct 16-byte bank groups.
template <int D> __device__ __forceinline__ int swz(int row, int chunk)
{
    return row * D + ((chunk ^ (row & 7)) << 3);
}

// Byte offset of chunk pair kp (chunks 2kp, 2kp+1) given a lane offset that
// holds its swizzled chunk for pair 0 in bits 4-6 (see the kernel): within a
// 128-byte group XOR the pair in, whole groups just add.
__device__ __forceinline__ uint32_t chunk_off(uint32_t lane_off, int kp)
{
    return (lane_off ^ (uint32_t)(((2 * kp) & 7) << 4)) + (uint32_t)(((2 * kp) & ~7) << 4);
}

template <int D_, int BM_, int BN_, int WARPS_, int STAGES_, int MINB_> struct tile_cfg {
    static constexpr int D = D_, BM = BM_, BN = BN_, WARPS = WARPS_, STAGES = STAGES_;
    static constexpr int MIN_BLOCKS = MINB_;
    static constexpr int THREADS = 32 * WARPS;
    static constexpr int MT = BM / (16 * WARPS);  // m16 tiles per warp
    static constexpr int NT = BN / 8;             // n8 tiles of S per m16 tile
    static constexpr int DT = D / 8;              // n8 tiles of O per m16 tile
    static constexpr int KQ = D / 16;             // k16 steps of Q K^T
    static constexpr int KP = BN / 16;            // k16 steps of P V
    static constexpr int CH = D / 8;              // 16-byte chunks per row
    // Q stays in registers when Q, O and S accumulators together leave room
    // for addresses and softmax state under the 255-register cap (or under
    // 65536 / (THREADS * MIN_BLOCKS)); otherwise Q fragments are re-read by
    // ldmatrix each k-step (as FlashAttention-2 does), which costs shared
    // bandwidth but no spills.
    static constexpr int REG_CAP = (65536 / (THREADS * MIN_BLOCKS)) > 255 ? 255
                                       : (65536 / (THREADS * MIN_BLOCKS));
    static constexpr int ACC_REGS = MT * (KQ * 4 + DT * 4 + NT * 4);
    static constexpr bool Q_IN_REGS = ACC_REGS + 64 <= REG_CAP;
    static constexpr int SMEM_ELEMS = BM * D + 2 * STAGES * BN * D;
    static_assert(BM % (16 * WARPS) == 0, "BLOCK_M must be a multiple of 16 * WARPS");
    static_assert(BN % 16 == 0 && D % 16 == 0, "BLOCK_N and D must be multiples of 16");
    static_assert(THREADS % CH == 0 && (THREADS / CH) % 8 == 0,
                  "a thread's chunk column and swizzle phase must stay fixed across its rows");
    static_assert((BN * CH) % THREADS == 0 && (BM * CH) % THREADS == 0, "tiles split evenly");
    static_assert((16 * MT * CH) % 32 == 0, "a warp's output rows split evenly over its lanes");
    static_assert(STAGES >= 2, "at least one K/V block in flight");
};

// Copy `ROWS` rows of D elements from global (row stride `stride`, in
// elements) into a swizzled shared tile; rows >= rows_valid are zero-filled.
template <typename T, int ROWS, typename C>
__device__ __forceinline__ void load_rows(uint32_t s_tile, const T *g, int64_t stride,
                                          int rows_valid, int tid)
{
    constexpr int STEP = C::THREADS / C::CH;  // rows between one thread's copies
    const int r0 = tid / C::CH, c = tid % C::CH;
    const uint32_t s0 = s_tile + swz<C::D>(r0, c) * (uint32_t)sizeof(T);
    const T *g0 = g + (int64_t)r0 * stride + c * 8;
#pragma unroll
    for (int i = 0; i < ROWS / STEP; ++i) {
        const int r = r0 + i * STEP;
        const bool ok = r < rows_valid;
        cp_async_16(s0 + i * STEP * C::D * (uint32_t)sizeof(T),
                    ok ? (const void *)(g0 + (int64_t)i * STEP * stride) : (const void *)g,
                    ok ? 16 : 0);
    }
}

// ---------------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------------

struct kparams {
    const void *q, *k, *v;
    void *o;
    float *lse;
    int64_t lse_sb, lse_sh;
    int64_t qs[3], ks[3], vs[3], os[3];
    int B, Hq, Hkv, Sq, Sk;
    int n_mblocks;
    float scale_log2;  // softmax scale * log2(e): scores go straight into ex2
    int causal;
};

template <typename T, typename C>
__global__ void __launch_bounds__(C::THREADS, C::MIN_BLOCKS) attn_fwd_mma(const kparams p)
{
    constexpr int D = C::D, BM = C::BM, BN = C::BN, MT = C::MT, NT = C::NT, DT = C::DT;
    constexpr int KQ = C::KQ, KP = C::KP, STAGES = C::STAGES;
    constexpr uint32_t ESZ = sizeof(T);

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    const uint32_t sQ_u = smem_u32(sQ);
    const uint32_t sK_u = sQ_u + BM * D * ESZ;
    const uint32_t sV_u = sK_u + STAGES * BN * D * ESZ;
    constexpr uint32_t KV_STAGE_BYTES = BN * D * ESZ;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    // Blocks are numbered heaviest first: the last query blocks (most keys
    // under causal masking) go out in the first wave, the light ones fill in.
    const int bh_count = p.B * p.Hq;
    const int mb = p.n_mblocks - 1 - (int)(blockIdx.x / bh_count);
    const int bh = (int)(blockIdx.x % bh_count);
    const int b = bh / p.Hq, h = bh % p.Hq;
    const int kvh = kv_head(h, p.Hq, p.Hkv);
    const int m0 = mb * BM;

    const T *qg = static_cast<const T *>(p.q) + b * p.qs[0] + h * p.qs[1] + m0 * p.qs[2];
    const T *kg = static_cast<const T *>(p.k) + b * p.ks[0] + kvh * p.ks[1];
    const T *vg = static_cast<const T *>(p.v) + b * p.vs[0] + kvh * p.vs[1];

    // Causal: keys up to the block's last real row (rows >= Sq are never written).
    const int n_end = p.causal ? min(p.Sk, min(m0 + BM, p.Sq)) : p.Sk;
    const int n_tiles = ceil_div(n_end, BN);
    // Blocks from here on cross the Sk tail or (causal) the diagonal.
    const int first_masked = p.causal ? min(p.Sk / BN, (m0 + 1) / BN) : p.Sk / BN;

    // Prologue: Q, then K/V blocks 0..STAGES-2, one commit group per K and per V
    // so that Q K^T can start while V is still arriving.
    load_rows<T, BM, C>(sQ_u, qg, p.qs[2], p.Sq - m0, tid);
    cp_async_commit();
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < n_tiles) {
            load_rows<T, BN, C>(sK_u + s * KV_STAGE_BYTES, kg + (int64_t)s * BN * p.ks[2], p.ks[2],
                                p.Sk - s * BN, tid);
            cp_async_commit();
            load_rows<T, BN, C>(sV_u + s * KV_STAGE_BYTES, vg + (int64_t)s * BN * p.vs[2], p.vs[2],
                                p.Sk - s * BN, tid);
            cp_async_commit();
        } else {
            cp_async_commit();
            cp_async_commit();
        }
    }

    // Lane-dependent ldmatrix byte offsets.  Every row offset below is a
    // multiple of 8 rows, so the swizzle phase is lane & 7; each offset keeps
    // its lane's swizzled chunk (for chunk pair 0) in bits 4-6, and chunk pair
    // kp is reached by XOR-ing (2*kp & 7) into those bits and adding the rest
    // (see chunk_off): one XOR per ldmatrix, no per-k-step address registers.
    const int l7 = lane & 7, l8 = (lane >> 3) & 1, l16 = lane >> 4;
    const int wrow = warp * MT * 16;  // this warp's first row in the block
    // Q (A operand, non-trans): matrices (rows 0-7|8-15) x (k 0-7|8-15).
    const uint32_t q_off = (wrow + l7 + l8 * 8) * D * ESZ + ((l16 ^ l7) << 4);
    // K (B operand of Q K^T, non-trans): matrices (keys 0-7, k lo), (keys 0-7,
    // k hi), (keys 8-15, k lo), (keys 8-15, k hi).
    const uint32_t k_off = (l7 + l16 * 8) * D * ESZ + ((l8 ^ l7) << 4);
    // V (B operand of P V, trans): (keys 0-7, d lo), (keys 8-15, d lo), (keys
    // 0-7, d hi), (keys 8-15, d hi).
    const uint32_t v_off = (l7 + l8 * 8) * D * ESZ + ((l16 ^ l7) << 4);

    uint32_t qf[C::Q_IN_REGS ? MT : 1][C::Q_IN_REGS ? KQ : 1][4];
    if constexpr (C::Q_IN_REGS) {
        cp_async_wait<2 * (STAGES - 1)>();
        __syncthreads();
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int kk = 0; kk < KQ; ++kk)
                ldmatrix_x4(qf[mt][kk], sQ_u + chunk_off(q_off, kk) + mt * 16 * D * ESZ);
    }

    float o[MT][DT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.f;
    // Per thread: rows g and g + 8 of each m16 tile (index 2*mt + half).
    float m_run[2 * MT], l_run[2 * MT];
#pragma unroll
    for (int i = 0; i < 2 * MT; ++i) {
        m_run[i] = -INFINITY;
        l_run[i] = 0.f;
    }
    const float sl2 = p.scale_log2;
    const int g = lane >> 2, t = lane & 3;

    for (int j = 0; j < n_tiles; ++j) {
        const int slot = j % STAGES;
        const uint32_t sK_s = sK_u + slot * KV_STAGE_BYTES, sV_s = sV_u + slot * KV_STAGE_BYTES;
        // K_j landed (V_j and the STAGES-2 blocks after it may still be in flight).
        cp_async_wait<2 * (STAGES - 2) + 1>();
        // One barrier: K_j is visible to all warps, and all warps are done with
        // block j - 1, whose slot the next copy reuses.
        __syncthreads();
        {
            const int jn = j + STAGES - 1;
            const int nslot = jn % STAGES;
            if (jn < n_tiles) {
                load_rows<T, BN, C>(sK_u + nslot * KV_STAGE_BYTES, kg + (int64_t)jn * BN * p.ks[2],
                                    p.ks[2], p.Sk - jn * BN, tid);
                cp_async_commit();
                load_rows<T, BN, C>(sV_u + nslot * KV_STAGE_BYTES, vg + (int64_t)jn * BN * p.vs[2],
                                    p.vs[2], p.Sk - jn * BN, tid);
                cp_async_commit();
            } else {
                cp_async_commit();  // empty groups keep the wait counts uniform
                cp_async_commit();
            }
        }

        // ---- S = Q K^T ----
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
        // With Q in shared memory the registers are tight: a partial unroll
        // stops the scheduler from hoisting every K fragment of the block.
#pragma unroll(C::Q_IN_REGS ? KQ : 1)
        for (int kk = 0; kk < KQ; ++kk) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if constexpr (C::Q_IN_REGS) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) qa[mt][e] = qf[mt][kk][e];
                } else {
                    ldmatrix_x4(qa[mt], sQ_u + chunk_off(q_off, kk) + mt * 16 * D * ESZ);
                }
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t kb[4];
                ldmatrix_x4(kb, sK_s + chunk_off(k_off, kk) + np * 16 * D * ESZ);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_op<T>::run(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                    mma_op<T>::run(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                }
            }
        }

        // ---- mask (only blocks crossing the Sk tail or the diagonal) ----
        if (j >= first_masked) {
            // Element (mt, nt, e) holds key key0 + nt*8 + (e&1) for row
            // row0 + mt*16 + (e>>1)*8: compare compile-time offsets against two
            // per-thread limits (keeps the register peak down).
            const int key0 = j * BN + 2 * t;
            const int sk_lim = p.Sk - key0;  // key offsets >= this are past Sk
            const int diag_lim = p.causal ? (m0 + wrow + g) - key0 : 0x3fffffff;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int koff = nt * 8 + (e & 1);
                        if (koff >= sk_lim || koff - mt * 16 - (e >> 1) * 8 > diag_lim)
                            s[mt][nt][e] = -INFINITY;
                    }
        }

        // ---- online softmax ----
        uint32_t pf[MT][NT][2];  // P packed to T pairs: the A operand of P V
        float alpha[2 * MT];     // rescale of each row's O and l
        bool rescale = false;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int r = 2 * mt + hf;
                float mx = m_run[r];
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
                    mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hf], s[mt][nt][2 * hf + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                // A row masked so far has max -inf: subtract 0 instead so that
                // exp2 gives 0 rather than NaN.
                const float ms = (mx == -INFINITY) ? 0.f : mx * sl2;
                alpha[r] = fast_exp2(m_run[r] * sl2 - ms);  // exactly 1 when the max holds
                rescale |= alpha[r] != 1.f;
                m_run[r] = mx;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    const float p0 = fast_exp2(fmaf(s[mt][nt][2 * hf], sl2, -ms));
                    const float p1 = fast_exp2(fmaf(s[mt][nt][2 * hf + 1], sl2, -ms));
                    sum += p0 + p1;
                    pf[mt][nt][hf] = mma_op<T>::pack(p0, p1);
                }
                l_run[r] = l_run[r] * alpha[r] + sum;  // quad-partial; reduced at the end
            }
        // Once the running maxima settle, most blocks leave every row's max
        // unchanged: skip the MT*D/2 multiplies of rescaling O then (a
        // warp-uniform branch, so no divergence).
        if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int dt = 0; dt < DT; ++dt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) o[mt][dt][e] *= alpha[2 * mt + (e >> 1)];
        }

        cp_async_wait<2 * (STAGES - 1)>();  // V_j landed
        __syncthreads();

        // ---- O += P V ----
#pragma unroll
        for (int kk = 0; kk < KP; ++kk) {
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                uint32_t vb[4];
                ldmatrix_x4_trans(vb, sV_s + chunk_off(v_off, dp) + kk * 16 * D * ESZ);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    const uint32_t a[4] = {pf[mt][2 * kk][0], pf[mt][2 * kk][1],
                                           pf[mt][2 * kk + 1][0], pf[mt][2 * kk + 1][1]};
                    mma_op<T>::run(o[mt][2 * dp], a, vb[0], vb[1]);
                    mma_op<T>::run(o[mt][2 * dp + 1], a, vb[2], vb[3]);
                }
            }
        }
    }
    cp_async_wait<0>();  // only empty groups can remain; leave none behind

    // ---- epilogue: normalize, stage this warp's rows in sQ, 16-byte stores ----
    // Each warp overwrites only the Q rows it alone read; syncwarp orders its
    // last ldmatrix of them before the stores.
    __syncwarp();
    T *sO = sQ;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const int r = 2 * mt + hf;
            float l = l_run[r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = 1.f / l;  // l >= 1: every row sees its max key
            const int row = wrow + mt * 16 + g + hf * 8;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt) {
                const uint32_t packed =
                    mma_op<T>::pack(o[mt][dt][2 * hf] * inv, o[mt][dt][2 * hf + 1] * inv);
                *reinterpret_cast<uint32_t *>(sO + swz<D>(row, dt) + 2 * t) = packed;
            }
            if (p.lse != nullptr && t == 0 && m0 + row < p.Sq) {
                // natural-log logsumexp: ln(l) + scale * max
                const float lse = (m_run[r] * sl2 + __log2f(l)) * 0.69314718055994531f;
                p.lse[b * p.lse_sb + h * p.lse_sh + m0 + row] = lse;
            }
        }
    __syncwarp();
    T *og = static_cast<T *>(p.o) + b * p.os[0] + h * p.os[1];
    constexpr int WARP_CHUNKS = 16 * MT * C::CH;
#pragma unroll
    for (int i = 0; i < WARP_CHUNKS / 32; ++i) {
        const int idx = lane + i * 32;
        const int row = wrow + idx / C::CH, c = idx % C::CH;
        if (m0 + row < p.Sq) {
            const uint4 val = *reinterpret_cast<const uint4 *>(sO + swz<D>(row, c));
            *reinterpret_cast<uint4 *>(og + (int64_t)(m0 + row) * p.os[2] + c * 8) = val;
        }
    }
}

// ---------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------

// X(BLOCK_M, BLOCK_N, WARPS, STAGES, MIN_BLOCKS_PER_SM), with the reason:
#define AB_MMA_CONFIGS(X)                                                                         \
    /* FlashAttention-2's shape: 2 m16 tiles per warp use each K/V fragment twice (half the */   \
    /* ldmatrix traffic per mma of 1 tile); Q in registers at D=64, re-read at D=128 */          \
    X(128, 64, 4, 2, 2)                                                                           \
    /* half the S registers of 128x64_w4, so Q stays in registers at D=64 with room to spare */  \
    X(128, 32, 4, 2, 2)                                                                           \
    /* small square blocks: more blocks for short or causal sequences */                          \
    X(64, 64, 4, 2, 2)                                                                            \
    /* 8 warps x 1 m16 tile under 128 registers: 2 blocks = 16 warps per SM to hide latency */   \
    X(128, 64, 8, 2, 2)                                                                           \
    /* wide key blocks: half the barriers and softmax reductions per key; 1 block/SM (smem) */  \
    X(128, 128, 8, 2, 1)                                                                          \
    /* 3-deep K/V ring for more loads in flight; 1 block/SM (smem) */                             \
    X(128, 64, 8, 3, 1)

#define AB_MMA_NAME(BM, BN, W, S, MB) #BM "x" #BN "_w" #W "_s" #S,
static const char *const mma_config_names[] = {"auto", AB_MMA_CONFIGS(AB_MMA_NAME)};
#undef AB_MMA_NAME
static constexpr int n_mma_configs = sizeof(mma_config_names) / sizeof(mma_config_names[0]);

// Indices into mma_config_names used by "auto".
enum { MMA_CFG_128x64_W4 = 1, MMA_CFG_64x64_W4 = 3 };
// 128x64_w4 runs 2 blocks per SM: below this many blocks per SM of it the
// grid leaves SMs idle, and 64-row blocks (twice as many) fill them better.
static const int MMA_SMALL_GRID_BLOCKS_PER_SM = 2;

// "auto": 128x64_w4_s2 was fastest on an H200 for D=64 and D=128, causal or
// not, at every long shape measured (S >= 1024); grids too small to fill the
// GPU with it take 64x64_w4_s2 instead.
static int mma_auto_config(const ab_attn_args *a, int *config, ab_error *err)
{
    int dev = 0, sms = 0;
    AB_CUDA_CHECK(err, cudaGetDevice(&dev));
    AB_CUDA_CHECK(err, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const long long blocks = (long long)ceil_div(a->Sq, 128) * a->B * a->Hq;
    *config = blocks < (long long)MMA_SMALL_GRID_BLOCKS_PER_SM * sms ? MMA_CFG_64x64_W4 : MMA_CFG_128x64_W4;
    return 0;
}

template <typename T, typename C>
static int launch_one(const ab_attn_args *a, cudaStream_t stream, ab_error *err)
{
    kparams p;
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.o = a->o;
    p.lse = a->lse;
    p.lse_sb = a->lse_stride_b;
    p.lse_sh = a->lse_stride_h;
    for (int i = 0; i < 3; ++i) {
        p.qs[i] = a->q_stride[i];
        p.ks[i] = a->k_stride[i];
        p.vs[i] = a->v_stride[i];
        p.os[i] = a->o_stride[i];
    }
    p.B = a->B;
    p.Hq = a->Hq;
    p.Hkv = a->Hkv;
    p.Sq = a->Sq;
    p.Sk = a->Sk;
    p.n_mblocks = ceil_div(a->Sq, C::BM);
    p.scale_log2 = a->scale * 1.4426950408889634f;
    p.causal = a->causal;

    const long long blocks = (long long)p.n_mblocks * a->B * a->Hq;
    if (blocks > 0x7fffffffLL)
        return ab_set_error(err, "mma: %lld thread blocks exceed the grid limit (2^31 - 1)", blocks);
    const size_t smem = (size_t)C::SMEM_ELEMS * sizeof(T);
    // Raising the dynamic shared-memory limit is a cheap attribute write; doing
    // it on every launch keeps it right on whichever device is current.
    AB_CUDA_CHECK(err, cudaFuncSetAttribute(attn_fwd_mma<T, C>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attn_fwd_mma<T, C><<<(unsigned)blocks, C::THREADS, smem, stream>>>(p);
    AB_LAUNCH_CHECK(err);
    return 0;
}

template <typename C> static int launch_dtype(const ab_attn_args *a, cudaStream_t s, ab_error *err)
{
    if (a->dtype == AB_FLOAT16) return launch_one<__half, C>(a, s, err);
    if (a->dtype == AB_BFLOAT16) return launch_one<__nv_bfloat16, C>(a, s, err);
    return ab_set_error(err, "mma: dtype %d not supported (float16, bfloat16)", (int)a->dtype);
}

template <int BM, int BN, int W, int S, int MB>
static int launch_cfg(const ab_attn_args *a, cudaStream_t s, ab_error *err)
{
    if (a->D == 64) return launch_dtype<tile_cfg<64, BM, BN, W, S, MB>>(a, s, err);
    if (a->D == 128) return launch_dtype<tile_cfg<128, BM, BN, W, S, MB>>(a, s, err);
    return ab_set_error(err, "mma: head dim %d not supported (64, 128)", a->D);
}

typedef int (*launch_fn)(const ab_attn_args *, cudaStream_t, ab_error *);
#define AB_MMA_FN(BM, BN, W, S, MB) launch_cfg<BM, BN, W, S, MB>,
static const launch_fn mma_launchers[] = {AB_MMA_CONFIGS(AB_MMA_FN)};
#undef AB_MMA_FN

static const int mma_head_dims[] = {64, 128};

static int is_aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

static int mma_supports(const ab_attn_args *a, int sm, ab_error *err)
{
    if (sm < 80) return ab_set_error(err, "mma: needs sm_80 or newer (mma.sync bf16, cp.async), got sm_%d", sm);
    if (a->dtype != AB_FLOAT16 && a->dtype != AB_BFLOAT16)
        return ab_set_error(err, "mma: dtype must be float16 or bfloat16");
    if (a->D != 64 && a->D != 128)
        return ab_set_error(err, "mma: head dim %d not supported; supported head dims: 64, 128", a->D);
    // The online softmax takes its running max over raw scores and folds the
    // scale in afterwards, which is only right for a positive scale.
    if (!(a->scale > 0))
        return ab_set_error(err, "mma: needs a positive scale (got %g); naive, cublas and the hybrids take any", (double)a->scale);
    const void *ptrs[4] = {a->q, a->k, a->v, a->o};
    const int64_t *strides[4] = {a->q_stride, a->k_stride, a->v_stride, a->o_stride};
    static const char *const names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; ++i) {
        if (!is_aligned16(ptrs[i]))
            return ab_set_error(err, "mma: %s must be 16-byte aligned (rows are copied in 16-byte chunks)", names[i]);
        for (int d = 0; d < 3; ++d)
            if (strides[i][d] % 8 != 0)
                return ab_set_error(err,
                                    "mma: %s strides (B, H, S) must be multiples of 8 elements "
                                    "(16-byte aligned rows); got %lld, %lld, %lld",
                                    names[i], (long long)strides[i][0], (long long)strides[i][1],
                                    (long long)strides[i][2]);
    }
    return 0;
}

static int mma_launch(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err)
{
    if (config < 0 || config >= n_mma_configs)
        return ab_set_error(err, "mma: config %d out of range [0, %d)", config, n_mma_configs);
    if (mma_supports(a, 80, err) != 0) return -1;
    int idx = config;
    if (config == 0 && mma_auto_config(a, &idx, err) != 0) return -1;
    return mma_launchers[idx - 1](a, stream, err);
}

}  // namespace mma_impl
}  // namespace ab

extern "C" const ab_kernel ab_kernel_mma = {
    "mma",
    "FlashAttention-2-style forward: mma.sync m16n8k16, ldmatrix, cp.async K/V ring, online softmax",
    AB_DTYPE_BIT(AB_FLOAT16) | AB_DTYPE_BIT(AB_BFLOAT16),
    ab::mma_impl::mma_head_dims,
    2,
    128,
    1, 1, 1,
    80, 1000,
    "sm_80+",
    ab::mma_impl::mma_config_names,
    ab::mma_impl::n_mma_configs,
    ab::mma_impl::mma_supports,
    ab::mma_impl::mma_launch,
};
