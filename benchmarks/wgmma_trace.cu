// wgmma_trace.cu: a timeline of one wgmma launch, CTA by CTA and warp by warp.
//
// Build (no GPU needed; the experiment configs are in):
//   nvcc -std=c++17 -O3 --use_fast_math -Ikernels -gencode=arch=compute_90a,code=sm_90a \
//     benchmarks/wgmma_trace.cu -o wgmma_trace
// Run on an H200, then summarize:
//   ./wgmma_trace OUTDIR B H S D CAUSAL CONFIG...
//   python benchmarks/wgmma_trace.py OUTDIR/trace_*.bin
//
// Each config runs 30 cold launches (a 256 MiB memset before each, as the
// package's cold mode) on random bf16 inputs, Sq = Sk = S, Hq = Hkv = H; the
// median event time is printed, and the probes of the last launch are written
// to OUTDIR/trace_CONFIG.bin: 512 CTAs x 20 warps x 32 int64 events, as
// kernels/wgmma.cu's AB_TRACE points record them (lane 0 of each warp:
// clock64, and at 27, 29, 30 the %globaltimer end, %smid, %globaltimer entry).
// The probes cost a global store each; they are compiled only here.
#define AB_WGMMA_EXPERIMENTS
#define AB_WGMMA_TRACE
#include "../kernels/wgmma.cu"
#include "driver_common.cuh"

#include <cuda_bf16.h>
#include <stdio.h>

#include <string>
#include <vector>

namespace tr = ab::wgmma_impl;
static long long host_trace[tr::TRACE_CTAS][tr::TRACE_WARPS][tr::TRACE_EVENTS];

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: %s OUTDIR B H S D CAUSAL CONFIG...\n", argv[0]);
        return 2;
    }
    const char *outdir = argv[1];
    const int B = atoi(argv[2]), H = atoi(argv[3]), S = atoi(argv[4]), D = atoi(argv[5]), causal = atoi(argv[6]);
    if (B < 1 || H < 1 || S < 1 || (D != 64 && D != 128)) {
        fprintf(stderr, "bad shape\n");
        return 2;
    }
    const size_t n = (size_t)B * H * S * D;
    std::vector<__nv_bfloat16> host(3 * n);
    unsigned st = 12345;
    for (size_t i = 0; i < 3 * n; ++i) {
        st = st * 1664525u + 1013904223u;
        host[i] = __float2bfloat16(((st >> 8) & 0xffff) / 32768.0f - 1.0f);
    }
    void *qkv, *o, *flush;
    const size_t flush_bytes = 256u << 20;
    CK(cudaMalloc(&qkv, 3 * n * 2));
    CK(cudaMalloc(&o, n * 2));
    CK(cudaMalloc(&flush, flush_bytes));
    CK(cudaMemcpy(qkv, host.data(), 3 * n * 2, cudaMemcpyHostToDevice));
    ab_attn_args a = {};
    a.q = qkv;
    a.k = static_cast<char *>(qkv) + n * 2;
    a.v = static_cast<char *>(qkv) + 2 * n * 2;
    a.o = o;
    a.B = B;
    a.Hq = a.Hkv = H;
    a.Sq = a.Sk = S;
    a.D = D;
    const int64_t strides[3] = {(int64_t)H * S * D, (int64_t)S * D, D};
    for (int i = 0; i < 3; ++i) a.q_stride[i] = a.k_stride[i] = a.v_stride[i] = a.o_stride[i] = strides[i];
    a.scale = 1.0f / sqrtf((float)D);
    a.causal = causal;
    a.dtype = AB_BFLOAT16;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    void *trace_dev;
    CK(cudaGetSymbolAddress(&trace_dev, tr::trace_buf));
    // AB_TRACE_MODE: cold (the default: the flush before each launch), warm (no
    // flush), or code (the flush, then one launch of the same kernel on a small
    // problem of its own, so that its code is in L2 and its data is not).
    const char *mode_env = getenv("AB_TRACE_MODE");
    const std::string mode = mode_env ? mode_env : "cold";
    if (mode != "cold" && mode != "warm" && mode != "code") {
        fprintf(stderr, "AB_TRACE_MODE must be cold, warm or code\n");
        return 2;
    }
    ab_attn_args small = a;
    small.B = small.Hq = small.Hkv = 1;
    small.Sq = small.Sk = 64;
    const size_t n_small = (size_t)64 * D;
    void *small_buf;
    CK(cudaMalloc(&small_buf, 4 * n_small * 2));
    CK(cudaMemset(small_buf, 0, 4 * n_small * 2));
    small.q = small_buf;
    small.k = static_cast<char *>(small_buf) + n_small * 2;
    small.v = static_cast<char *>(small_buf) + 2 * n_small * 2;
    small.o = static_cast<char *>(small_buf) + 3 * n_small * 2;
    for (int i = 0; i < 3; ++i)
        small.q_stride[i] = small.k_stride[i] = small.v_stride[i] = small.o_stride[i] =
            (i == 2) ? D : (int64_t)64 * D;
    for (int c = 7; c < argc; ++c) {
        int idx = -1;
        for (int i = 0; i < ab_kernel_wgmma.n_configs; ++i)
            if (strcmp(ab_kernel_wgmma.configs[i], argv[c]) == 0) idx = i;
        if (idx < 0) {
            fprintf(stderr, "no config %s\n", argv[c]);
            return 2;
        }
        std::vector<float> us;
        for (int rep = 0; rep < 30; ++rep) {
            if (mode != "warm") CK(cudaMemset(flush, rep, flush_bytes));
            CK(cudaMemset(trace_dev, 0, sizeof(host_trace)));
            if (mode == "code") {
                ab_error err;
                if (ab_kernel_wgmma.launch(&small, idx, 0, &err) != 0) {
                    fprintf(stderr, "%s (small): %s\n", argv[c], err.msg);
                    return 1;
                }
                CK(cudaMemset(trace_dev, 0, sizeof(host_trace)));
            }
            CK(cudaEventRecord(e0));
            ab_error err;
            if (ab_kernel_wgmma.launch(&a, idx, 0, &err) != 0) {
                fprintf(stderr, "%s: %s\n", argv[c], err.msg);
                return 1;
            }
            CK(cudaEventRecord(e1));
            CK(cudaDeviceSynchronize());
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            us.push_back(ms * 1000.f);
        }
        std::sort(us.begin(), us.end());
        CK(cudaMemcpyFromSymbol(host_trace, tr::trace_buf, sizeof(host_trace)));
        const std::string path = std::string(outdir) + "/trace_" + argv[c] + (mode == "cold" ? "" : "_" + mode) + ".bin";
        FILE *f = fopen(path.c_str(), "wb");
        if (f == nullptr || fwrite(host_trace, sizeof(host_trace[0]), 512, f) != 512) {
            fprintf(stderr, "cannot write %s\n", path.c_str());
            return 1;
        }
        fclose(f);
        printf("%-24s median %.2f us (min %.2f) -> %s\n", argv[c], us[us.size() / 2], us[0], path.c_str());
    }
    return 0;
}
