// cublas_common.h: what the cuBLAS-based families (cublas.cu, hybrid.cu)
// share: the per-device cuBLAS handle and workspace cache, the two attention
// GEMMs (S = scale * Q K^T into fp32, O = P V into o), the workspace limit,
// and a warp's softmax statistics over one row of fp32 scores.
//
// The host functions are defined in cublas.cu.  Handles, events and
// workspaces are created on first use per device and live until the process
// exits: destroying them from a static destructor could run after the CUDA
// runtime has shut down.
#pragma once

#include <cublas_v2.h>

#include <mutex>

#include "common.cuh"

// Check a cuBLAS call; on failure record the status, file, line and call in
// `err` and return -1.  The status comes first so that a long call text
// truncated by ab_error's buffer cannot hide it.
#define AB_CUBLAS_CHECK(err, call)                                            \
    do {                                                                      \
        cublasStatus_t ab_st_ = (call);                                       \
        if (ab_st_ != CUBLAS_STATUS_SUCCESS)                                  \
            return ab_set_error((err), "cuBLAS error %s (%s) at %s:%d in %s", \
                                cublasGetStatusName(ab_st_),                  \
                                cublasGetStatusString(ab_st_), __FILE__,      \
                                __LINE__, #call);                             \
    } while (0)

namespace ab {
namespace blas {

// Most device memory a cuBLAS-based impl may hold.  These impls materialize
// B*Hq*Sq*Sk scores; 32 GiB covers the largest shape of the H200 anchor grid
// (B=1, H=16, S=16384: 24 GiB for cublas) on any 80 GB+ GPU, and refuses
// shapes that would take most of a GPU's memory.
constexpr size_t kWorkspaceLimitBytes = size_t(32) << 30;
// cuBLAS's own workspace, handed over with cublasSetWorkspace so that it is
// ordered across streams like the rest of ours: NVIDIA recommends 32 MiB on
// Hopper (4 MiB before it), and one size is simpler than a per-arch choice.
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
// Alignment of every workspace region: cuBLAS asks 256 bytes of its
// workspace, and it also suits every vector load in the kernels.
constexpr size_t kAlign = 256;

// What the descriptors of the cuBLAS-based impls declare.
inline constexpr int kHeadDims[] = {64, 128};
inline constexpr const char *kConfigs[] = {"default"};
constexpr unsigned kDtypes = AB_DTYPE_BIT(AB_FLOAT16) | AB_DTYPE_BIT(AB_BFLOAT16);

// One launch's hold on its device's cache: the handle set to the launch's
// stream, and `scratch`, kAlign-aligned, with the bytes begin() was asked for.
// The lock keeps other host threads off the handle and the workspace until
// the lease is destroyed.
struct Lease {
    cublasHandle_t handle = nullptr;
    char *scratch = nullptr;
    cudaEvent_t last_use = nullptr;
    std::unique_lock<std::mutex> lock;
};

// 0 if `a` has a dtype and head dim these impls were built for; else -1.
int check_problem(const ab_attn_args *a, const char *impl, ab_error *err);

// 0 if `a`'s B*Hq*Sq*Sk scores at `bytes_per_score` bytes each (plus cuBLAS's
// workspace) fit kWorkspaceLimitBytes; else -1 with the sizes in `err`.
int check_workspace_limit(const ab_attn_args *a, const char *impl, int bytes_per_score, ab_error *err);

// Take the current device's cache for a launch on `stream`: check the limit,
// create the handle on first use, grow the workspace if needed (synchronously:
// the harness warms up before it times), order `stream` after the previous
// user of the workspace, and bind handle and workspace to `stream`.
int begin(const ab_attn_args *a, const char *impl, int bytes_per_score, cudaStream_t stream, Lease *lease,
          ab_error *err);

// Mark the end of the launch's use of the workspace on `stream` (also after a
// failure, since part of the work may be enqueued).  Returns `rc` if it is
// nonzero (keeping its message), else 0 or -1.
int end(Lease *lease, cudaStream_t stream, int rc, ab_error *err);

// begin(), enqueue(lease), end(): the frame of every cuBLAS-based launch.
template <typename Enqueue>
int with_workspace(const ab_attn_args *a, const char *impl, int bytes_per_score, cudaStream_t stream, ab_error *err,
                   Enqueue enqueue) {
    Lease lease;
    if (begin(a, impl, bytes_per_score, stream, &lease, err) != 0)
        return -1;
    return end(&lease, stream, enqueue(lease), err);
}

// Number of scores, B*Hq*Sq*Sk (valid once check_workspace_limit passed).
inline size_t n_scores(const ab_attn_args *a) { return (size_t)a->B * a->Hq * a->Sq * a->Sk; }

inline char *align_up(char *p) {
    return (char *)(((uintptr_t)p + kAlign - 1) / kAlign * kAlign);
}

// S[b, h] = scale * Q[b, h] K[b, kvh]^T for every head, as fp32 [B*Hq, Sq, Sk].
int scores_gemm(const ab_attn_args *a, cublasHandle_t handle, float *S, ab_error *err);

// O[b, h] = P[b, h] V[b, kvh] for every head, P being [B*Hq, Sq, Sk] in a's
// dtype, written into a->o with its strides.
int output_gemm(const ab_attn_args *a, cublasHandle_t handle, const void *P, ab_error *err);

// Max and sum of exp(x - max) over a row of scores.
struct RowStats {
    float max, sum;
};

__device__ inline void online_add(float x, float &m, float &l) {
    if (x > m) {
        l = l * expf(m - x) + 1.f;  // m = -inf on the first element: l = 0 * 0 + 1
        m = x;
    } else {
        l += expf(x - m);
    }
}

// RowStats of row[0, n), n >= 1, computed by one warp (every lane gets them).
// Each lane keeps its own running max and sum, then the warp merges them.
__device__ inline RowStats warp_row_stats(const float *row, int n) {
    const int lane = threadIdx.x % 32;
    float m = -INFINITY, l = 0.f;
    int done = 0;
    if (((uintptr_t)row & 15) == 0) {  // 16-byte loads where the row allows them
        const int n4 = n / 4;
        for (int j = lane; j < n4; j += 32) {
            const float4 x = reinterpret_cast<const float4 *>(row)[j];
            online_add(x.x, m, l);
            online_add(x.y, m, l);
            online_add(x.z, m, l);
            online_add(x.w, m, l);
        }
        done = n4 * 4;
    }
    for (int j = done + lane; j < n; j += 32)
        online_add(row[j], m, l);
    const float max = warp_max(m);
    const float sum = warp_sum(l > 0.f ? l * expf(m - max) : 0.f);  // lanes with no element add 0
    return {max, sum};
}

}  // namespace blas
}  // namespace ab
