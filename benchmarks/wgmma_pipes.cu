// wgmma_pipes.cu: how the tensor pipe and the SFU share an SM in the D = 64
// inner loop, without memory: every warpgroup runs the loop of kernels/wgmma.cu
// on one Q, K and V block already in shared memory, so that only the pipes and
// the warps' dependencies are timed.
//
// Build (no GPU needed):
//   nvcc -std=c++17 -O3 --use_fast_math -Ikernels -gencode=arch=compute_90a,code=sm_90a \
//     benchmarks/wgmma_pipes.cu -o wgmma_pipes
// Run on an H200: ./wgmma_pipes [ITERS]
//
// A "block" is one 64-key step of one warpgroup: S = Q K^T (four m64n64k16 SS
// wgmmas), the softmax of its 64 x 64 scores (softmax_stale: 32 exp2 per
// thread) and the P pack, O += P V (four m64n64k16 RS wgmmas).  At the nominal
// rates (989 TFLOP/s dense, 16 exp2 per SM and cycle) a block costs the SM 256
// tensor cycles and 256 SFU cycles.  Modes:
//   S      the S GEMM alone (issue, wait)
//   PV     the P V GEMM alone
//   SMAX   the softmax and pack alone
//   GEMMS  S, wait, P V, wait
//   PLAIN  S, wait, softmax, pack, P V, wait (m64_kv2_x2's loop)
//   QUEUE  P V of block j and S of block j + 1 committed back to back, one wait
//   OVER   S_j and P_{j-1} V_{j-1} issued together, the softmax of S_j under
//          P V (the kernel's OVERLAP loop: S, O and P live at once)
//   OVER2  S_{j+1} and P_{j-1} V_{j-1} in flight during the softmax of S_j
//          (a second S accumulator)
//   PLAINss, QUEUEss, OVERss  as PLAIN, QUEUE, OVER with P stored to shared
//          memory (stmatrix) and P V from there (SS): 32 fewer live registers
// Each is run with W warpgroups per CTA and C CTAs per SM (132 C CTAs); the
// table gives the median cycles per block of one warpgroup, and SM cycles per
// block: that divided by the warpgroups per SM.
#define AB_WGMMA_EXPERIMENTS
#include "../kernels/wgmma.cu"
#include "driver_common.cuh"

#include <stdio.h>

#include <algorithm>
#include <vector>

namespace wi = ab::wgmma_impl;
using T = __nv_bfloat16;
using C1 = wi::tile_cfg<64, 1, 64, 2, false, false, false>;  // D = 64, BM = 64, BN = 64

enum { M_S, M_PV, M_SMAX, M_GEMMS, M_PLAIN, M_QUEUE, M_OVER, M_OVER2, M_PLAIN_SS, M_QUEUE_SS, M_OVER_SS, N_MODES };
static const char *mode_names[N_MODES] = {"S",     "PV",       "SMAX",     "GEMMS",  "PLAIN", "QUEUE",
                                          "OVER",  "OVER2",    "PLAINss",  "QUEUEss", "OVERss"};

#if AB_WGMMA_DEVICE
// O += P V with P from shared memory (K-major, 128B swizzle, as Q) and V N-major.
__device__ __forceinline__ void pv_ss(float (&d)[32], uint64_t a, uint64_t b)
{
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " AB_REGS32 ", %32, %33, 1, 1, 1, 0, 1;\n"
                 : AB_ACC32(d)
                 : "l"(a), "l"(b));
}
// This warp's 16 rows of P (the S accumulator layout) into the warpgroup's
// [64][64] swizzled tile by four stmatrix.x4: matrix i of fragment kk is rows
// (i & 1) * 8.., keys 16 kk + (i >> 1) * 8.., as pack_p lays them out.
__device__ __forceinline__ void store_p(const uint32_t (&pf)[4][4], uint32_t sP)
{
    const int lane = threadIdx.x & 31, wq = (threadIdx.x >> 5) & 3;
    const int i = lane >> 3, r = wq * 16 + (i & 1) * 8 + (lane & 7);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        const int chunk = 2 * kk + (i >> 1);
        const uint32_t addr = sP + r * wi::ROW_BYTES + ((chunk ^ (r & 7)) << 4);
        asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(pf[kk][0]),
                     "r"(pf[kk][1]), "r"(pf[kk][2]), "r"(pf[kk][3])
                     : "memory");
    }
}
#endif

template <int MODE, int W, int CPS>
__global__ void __launch_bounds__(128 * W, CPS) pipes(long long *out, int iters, float *sink, int keep)
{
#if AB_WGMMA_DEVICE
    extern __shared__ unsigned char smem_raw[];
    const uint32_t base = (wi::smem_u32(smem_raw) + wi::ATOM_BYTES - 1) & ~(wi::ATOM_BYTES - 1);
    unsigned char *gbase = smem_raw + (base - wi::smem_u32(smem_raw));
    // Q, K, V: 8 KB each, small pseudo-random bf16 values (scores stay O(1)).
    for (int i = threadIdx.x; i < 3 * 4096; i += blockDim.x) {
        const uint32_t h = (uint32_t)i * 2654435761u + 12345u * blockIdx.x;
        const float v = ((float)((h >> 8) & 0xffff) / 65536.f - 0.5f) * 0.5f;
        reinterpret_cast<T *>(gbase)[i] = __float2bfloat16(v);
    }
    wi::fence_proxy_async();
    __syncthreads();
    const uint32_t sQ = base, sK = base + 8192, sV = base + 16384;
    const uint32_t sP = base + 24576 + (threadIdx.x >> 7) * 8192;  // this warpgroup's P tile
    const uint64_t dp = wi::smem_desc(sP, 16);
    const uint64_t dq = wi::smem_desc(sQ, 16), dk = wi::smem_desc(sK, 16), dv = wi::smem_desc(sV, 64 * wi::ROW_BYTES);
    const float sl2 = 0.125f * 1.4426950408889634f;
    float o[32], sc[32], sc2[32];
    uint32_t pf[4][4];
    for (int k = 0; k < 32; ++k) {
        o[k] = 0.f;
        sc[k] = sc2[k] = 0.01f * (float)((threadIdx.x + k) & 15);  // SMAX alone: no GEMM writes sc
    }
    for (int k = 0; k < 4; ++k)
        for (int e = 0; e < 4; ++e) pf[k][e] = 0x3f803f80u;  // bf16 1.0 pairs
    float m_run[2] = {0.f, 0.f}, l_run[2] = {0.f, 0.f}, alpha[2];
    auto S = [&](float (&acc)[32]) { wi::issue_s<T, C1>(acc, dq, dk); };
    auto PV = [&]() { wi::issue_pv<T, C1>(o, pf, dv); };
    auto pv_from_smem = [&]() {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) pv_ss(o, dp + ((kk * 32) >> 4), dv + ((kk * 2 * wi::ATOM_BYTES) >> 4));
    };
    auto p_to_smem = [&]() {  // P of sc, packed, into sP; visible to the async proxy and the warpgroup
        wi::pack_p<T, 64>(sc, pf);
        store_p(pf, sP);
        wi::fence_proxy_async();
        wi::named_bar_sync(1 + (threadIdx.x >> 7), 128);
    };
    auto smax = [&](float (&acc)[32]) {
        const int r = wi::softmax_stale<64>(acc, m_run, l_run, alpha, sl2, 256.f);
        if (r) wi::rescale_o<64>(o, alpha);
        wi::pack_p<T, 64>(acc, pf);
    };
    __syncthreads();
    const long long t0 = clock64();
    if (MODE >= M_QUEUE && MODE != M_PLAIN_SS) {
        wi::wgmma_fence();
        S(sc);
        wi::wgmma_commit();
        wi::wgmma_wait<0>();
        wi::fence_regs(sc);
        if (MODE == M_OVER) smax(sc);
        if (MODE == M_OVER_SS) {
            wi::softmax_stale<64>(sc, m_run, l_run, alpha, sl2, 256.f);
            p_to_smem();
        }
    }
    for (int j = 0; j < iters; ++j) {
        if (MODE == M_S || MODE == M_GEMMS || MODE == M_PLAIN) {
            wi::wgmma_fence();
            S(sc);
            wi::wgmma_commit();
            wi::wgmma_wait<0>();
            wi::fence_regs(sc);
        }
        if (MODE == M_SMAX || MODE == M_PLAIN) smax(sc);
        if (MODE == M_PV || MODE == M_GEMMS || MODE == M_PLAIN) {
            wi::fence_regs(o);
            wi::fence_regs(pf);
            wi::wgmma_fence();
            PV();
            wi::wgmma_commit();
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
        }
        if (MODE == M_QUEUE) {
            smax(sc);
            wi::fence_regs(o);
            wi::fence_regs(pf);
            wi::wgmma_fence();
            PV();
            S(sc);
            wi::wgmma_commit();
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
            wi::fence_regs(sc);
        }
        if (MODE == M_OVER) {
            // The OVERLAP loop: S_j and P_{j-1} V_{j-1} issued together, the softmax of
            // S_j under P V, then P_j packed.
            wi::fence_regs(o);
            wi::fence_regs(pf);
            wi::wgmma_fence();
            S(sc);
            wi::wgmma_commit();
            PV();
            wi::wgmma_commit();
            wi::wgmma_wait<1>();
            wi::fence_regs(sc);
            const int r = wi::softmax_stale<64>(sc, m_run, l_run, alpha, sl2, 256.f);
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
            wi::fence_regs(pf);
            if (r) wi::rescale_o<64>(o, alpha);
            wi::pack_p<T, 64>(sc, pf);
        }
        if (MODE == M_OVER2) {
            // Deeper: S_{j+1} (into sc2) and P_{j-1} V in flight during the softmax of S_j.
            wi::fence_regs(o);
            wi::fence_regs(pf);
            wi::wgmma_fence();
            S(sc2);
            wi::wgmma_commit();
            PV();
            wi::wgmma_commit();
            const int r = wi::softmax_stale<64>(sc, m_run, l_run, alpha, sl2, 256.f);
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
            wi::fence_regs(sc2);
            if (r) wi::rescale_o<64>(o, alpha);
            wi::pack_p<T, 64>(sc, pf);
#pragma unroll
            for (int k = 0; k < 32; ++k) sc[k] = sc2[k];
        }
        if (MODE == M_PLAIN_SS) {
            wi::wgmma_fence();
            S(sc);
            wi::wgmma_commit();
            wi::wgmma_wait<0>();
            wi::fence_regs(sc);
            const int r = wi::softmax_stale<64>(sc, m_run, l_run, alpha, sl2, 256.f);
            if (r) wi::rescale_o<64>(o, alpha);
            p_to_smem();
            wi::fence_regs(o);
            wi::wgmma_fence();
            pv_from_smem();
            wi::wgmma_commit();
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
        }
        if (MODE == M_QUEUE_SS) {
            const int r = wi::softmax_stale<64>(sc, m_run, l_run, alpha, sl2, 256.f);
            if (r) wi::rescale_o<64>(o, alpha);
            p_to_smem();
            wi::fence_regs(o);
            wi::wgmma_fence();
            pv_from_smem();
            S(sc);
            wi::wgmma_commit();
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
            wi::fence_regs(sc);
        }
        if (MODE == M_OVER_SS) {
            // As OVER with P through shared memory: P_{j-1} V_{j-1} reads the tile while
            // the softmax of S_j runs; P_j is stored once that GEMM is complete.
            wi::fence_regs(o);
            wi::wgmma_fence();
            S(sc);
            wi::wgmma_commit();
            pv_from_smem();
            wi::wgmma_commit();
            wi::wgmma_wait<1>();
            wi::fence_regs(sc);
            const int r = wi::softmax_stale<64>(sc, m_run, l_run, alpha, sl2, 256.f);
            wi::wgmma_wait<0>();
            wi::fence_regs(o);
            if (r) wi::rescale_o<64>(o, alpha);
            p_to_smem();
        }
    }
    const long long t1 = clock64();
    if ((threadIdx.x & 127) == 0) out[blockIdx.x * W + (threadIdx.x >> 7)] = t1 - t0;
    float acc = l_run[0] + l_run[1];
    for (int k = 0; k < 32; ++k) acc += o[k] + sc[k];
    if (keep) sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;  // keep = 1 at run time: the work stays live
#endif
}

template <int MODE, int W, int CPS> static int run(int iters, long long *d_out, float *d_sink, int sms)
{
    // Shared memory sized so that at most CPS CTAs fit an SM.
    const int smem = CPS == 1 ? 140 * 1024 : 100 * 1024;  // Q, K, V, and W P tiles: 24 + 8 W KB
    CK(cudaFuncSetAttribute(pipes<MODE, W, CPS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pipes<MODE, W, CPS>, 128 * W, smem));
    const int grid = sms * CPS;
    std::vector<long long> best;
    for (int rep = 0; rep < 3; ++rep) {
        pipes<MODE, W, CPS><<<grid, 128 * W, smem>>>(d_out, iters, d_sink, 1);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
    }
    std::vector<long long> h(grid * W);
    CK(cudaMemcpy(h.data(), d_out, h.size() * sizeof(long long), cudaMemcpyDeviceToHost));
    std::sort(h.begin(), h.end());
    const double med = (double)h[h.size() / 2] / iters, hi = (double)h[h.size() * 9 / 10] / iters;
    printf("%-6s W=%d C=%d (fit %d) | per block: p50 %7.1f p90 %7.1f cycles | SM cycles per block %6.1f\n",
           mode_names[MODE], W, CPS, per_sm, med, hi, med / (W * CPS));
    return 0;
}

template <int W, int CPS> static int run_all(int iters, long long *o, float *s, int sms)
{
    return run<M_S, W, CPS>(iters, o, s, sms) | run<M_PV, W, CPS>(iters, o, s, sms) |
           run<M_SMAX, W, CPS>(iters, o, s, sms) | run<M_GEMMS, W, CPS>(iters, o, s, sms) |
           run<M_PLAIN, W, CPS>(iters, o, s, sms) | run<M_QUEUE, W, CPS>(iters, o, s, sms) |
           run<M_OVER, W, CPS>(iters, o, s, sms) | run<M_OVER2, W, CPS>(iters, o, s, sms) |
           run<M_PLAIN_SS, W, CPS>(iters, o, s, sms) | run<M_QUEUE_SS, W, CPS>(iters, o, s, sms) |
           run<M_OVER_SS, W, CPS>(iters, o, s, sms);
}

int main(int argc, char **argv)
{
    const int iters = argc > 1 ? atoi(argv[1]) : 256;
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    long long *d_out;
    float *d_sink;
    CK(cudaMalloc(&d_out, sizeof(long long) * sms * 8));
    CK(cudaMalloc(&d_sink, sizeof(float) * 512 * 2 * sms));
    int rc = 0;
    rc |= run_all<1, 1>(iters, d_out, d_sink, sms);
    rc |= run_all<1, 2>(iters, d_out, d_sink, sms);
    rc |= run_all<2, 1>(iters, d_out, d_sink, sms);
    rc |= run_all<2, 2>(iters, d_out, d_sink, sms);
    rc |= run_all<4, 1>(iters, d_out, d_sink, sms);
    rc |= run_all<3, 1>(iters, d_out, d_sink, sms);
    return rc;
}
