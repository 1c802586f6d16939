// cublas.cu: `cublas`, the materializing baseline: attention as two cuBLAS
// GEMMs around a softmax kernel, the way an unfused framework computes it.
//
// Registers one kernel, ab_kernel_cublas, with one config, "default":
// fp16 and bf16, head dims 64 and 128, top-left causal masking, GQA,
// Sq != Sk, arbitrary B/H/S strides, optional logsumexp.
//
//   1. S = scale * Q K^T   cublasGemmStridedBatchedEx, fp16/bf16 in, fp32
//                          out, CUBLAS_COMPUTE_32F (tensor cores), into an
//                          fp32 workspace [B*Hq, Sq, Sk]
//   2. masked_softmax      one warp per row: causal mask, fp32 softmax, P in
//                          the input dtype into a second workspace region,
//                          logsumexp
//   3. O = P V             cuBLAS again, straight into o with o's strides
//
// It needs B*Hq*Sq*Sk * 6 bytes of workspace (plus cuBLAS's 32 MiB) and
// refuses, with the sizes in the message, shapes beyond
// blas::kWorkspaceLimitBytes (32 GiB) or the device's free memory.
//
// This file also defines the cuBLAS handle/workspace cache and the GEMM
// helpers declared in cublas_common.h, which hybrid.cu reuses.
//
// Build, and read registers/shared memory per kernel:
//   ATTNBENCH_NVCC_FLAGS="-Xptxas -v" python3 setup.py build_ext --inplace
//   PYTHONPATH=python python3 -c "import attnbench._core"
// Check: the kernel tests run impl="cublas" against the float64 CPU reference.
#include <limits.h>

#include <system_error>

#include "cublas_common.h"

namespace ab {
namespace blas {
namespace {

// Devices the cache can hold; more than any single host has.
constexpr int kMaxDevices = 64;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// One device's cuBLAS state.  `last_use` is recorded after every launch that
// touched `buffer`, so that the next launch (maybe on another stream) waits
// for it and a grow frees the old buffer only once nothing reads it.
struct DeviceCache {
    std::mutex mutex;
    cublasHandle_t handle = nullptr;
    cudaEvent_t last_use = nullptr;
    void *buffer = nullptr;  // cuBLAS workspace first, then the impl's scratch
    size_t capacity = 0;
};

// Zero-initialized at load time (constant initialization), so there is no
// static-initialization order to worry about.
DeviceCache g_cache[kMaxDevices];

// Bytes begin() holds for `a`: cuBLAS's workspace, the scores and one pad
// per region so that each region can start kAlign-aligned.  In double so
// that an absurd shape cannot overflow before it is refused; below the limit
// the value is an exact integer.
double workspace_bytes(const ab_attn_args *a, int bytes_per_score) {
    const double scores = (double)a->B * a->Hq * a->Sq * a->Sk;
    return (double)kCublasWorkspaceBytes + scores * bytes_per_score + 2.0 * kAlign;
}

// Replace c's buffer by one of `need` bytes.  Called with c.mutex held.
int grow(DeviceCache &c, size_t need, const ab_attn_args *a, const char *impl, ab_error *err) {
    size_t free_bytes = 0, total_bytes = 0;
    AB_CUDA_CHECK(err, cudaMemGetInfo(&free_bytes, &total_bytes));
    if (need > free_bytes + c.capacity)
        return ab_set_error(err,
                            "%s needs %.2f GiB of workspace for B*H*Sq*Sk = %.0f scores, but the device has "
                            "%.1f GiB free (of %.1f GiB): use a smaller shape or impl='mma'",
                            impl, need / kGiB, (double)n_scores(a), (free_bytes + c.capacity) / kGiB,
                            total_bytes / kGiB);
    if (c.buffer != nullptr) {
        // Launches enqueued earlier, on any stream, may still use it.
        AB_CUDA_CHECK(err, cudaEventSynchronize(c.last_use));
        AB_CUDA_CHECK(err, cudaFree(c.buffer));
        c.buffer = nullptr;
        c.capacity = 0;
    }
    void *buffer = nullptr;
    const cudaError_t rc = cudaMalloc(&buffer, need);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();  // not sticky: keep it from surfacing in a later launch check
        return ab_set_error(err, "%s: cudaMalloc of %.1f GiB of workspace failed at %s:%d: %s (%s)", impl,
                            need / kGiB, __FILE__, __LINE__, cudaGetErrorString(rc), cudaGetErrorName(rc));
    }
    c.buffer = buffer;
    c.capacity = need;
    return 0;
}

// cuBLAS's leading dimension for a tensor whose rows are `stride` elements
// apart: cuBLAS wants an int of at least D.  With one row the stride is never
// used, so D stands in for whatever the caller passed.
int leading_dim(const char *tensor, int64_t stride, int n_rows, int D, int *ld, ab_error *err) {
    if (n_rows == 1)
        stride = D;
    if (stride < D || stride > INT_MAX)
        return ab_set_error(err,
                            "the cuBLAS path cannot address %s: its S stride %lld is %s (cuBLAS needs rows that do not "
                            "overlap, D = %d <= stride <= INT_MAX); pass a contiguous %s",
                            tensor, (long long)stride, stride < D ? "below D" : "beyond INT_MAX", D, tensor);
    *ld = (int)stride;
    return 0;
}

cudaDataType_t cuda_type(ab_dtype dtype) { return dtype == AB_BFLOAT16 ? CUDA_R_16BF : CUDA_R_16F; }

size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

// One GEMM operand: matrix (outer, inner) of a batch starts at
// ptr + outer * outer_stride + inner * inner_stride elements.
struct Operand {
    const void *ptr;
    int ld;
    int64_t outer_stride, inner_stride;
    cudaDataType_t type;
};

// C = alpha * op(A) op(B) for every matrix of an n_outer x n_inner batch, in
// one strided-batched call where the strides allow it (the outer stride is
// n_inner inner strides, or one of the counts is 1), else one call per outer
// index.
int gemm_batched_2d(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    float alpha, const Operand &A, const Operand &B, const Operand &C, int n_outer, int n_inner,
                    ab_error *err) {
    const float beta = 0.f;
    const Operand *ops[3] = {&A, &B, &C};
    bool merged = n_outer == 1 || n_inner == 1;
    if (!merged) {
        merged = (int64_t)n_outer * n_inner <= INT_MAX;
        for (const Operand *op : ops)
            merged = merged && op->outer_stride == op->inner_stride * n_inner;
    }
    if (merged) {
        const bool by_outer = n_inner == 1;
        auto stride = [by_outer](const Operand &op) { return (long long)(by_outer ? op.outer_stride : op.inner_stride); };
        AB_CUBLAS_CHECK(err, cublasGemmStridedBatchedEx(
                                 handle, ta, tb, m, n, k, &alpha, A.ptr, A.type, A.ld, stride(A), B.ptr, B.type, B.ld,
                                 stride(B), &beta, (void *)C.ptr, C.type, C.ld, stride(C), n_outer * n_inner,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return 0;
    }
    for (int o = 0; o < n_outer; ++o) {
        auto at = [o](const Operand &op) { return (const char *)op.ptr + o * op.outer_stride * (int64_t)type_size(op.type); };
        AB_CUBLAS_CHECK(err, cublasGemmStridedBatchedEx(
                                 handle, ta, tb, m, n, k, &alpha, at(A), A.type, A.ld, A.inner_stride, at(B), B.type,
                                 B.ld, B.inner_stride, &beta, (void *)at(C), C.type, C.ld, C.inner_stride, n_inner,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return 0;
}

}  // namespace

int check_problem(const ab_attn_args *a, const char *impl, ab_error *err) {
    if (a->dtype != AB_FLOAT16 && a->dtype != AB_BFLOAT16)
        return ab_set_error(err, "%s runs float16 and bfloat16 only (dtype code %d)", impl, (int)a->dtype);
    if (a->D != 64 && a->D != 128)
        return ab_set_error(err, "%s runs head dims 64 and 128 only (D = %d)", impl, a->D);
    return 0;
}

int check_workspace_limit(const ab_attn_args *a, const char *impl, int bytes_per_score, ab_error *err) {
    const double need = workspace_bytes(a, bytes_per_score);
    if (need > (double)kWorkspaceLimitBytes)
        return ab_set_error(err,
                            "%s needs %.2f GiB of workspace for B*H*Sq*Sk = %.0f scores; its limit is %.0f GiB: "
                            "use a smaller shape or impl='mma'",
                            impl, need / kGiB, (double)a->B * a->Hq * a->Sq * a->Sk, kWorkspaceLimitBytes / kGiB);
    return 0;
}

int begin(const ab_attn_args *a, const char *impl, int bytes_per_score, cudaStream_t stream, Lease *lease,
          ab_error *err) {
    if (check_workspace_limit(a, impl, bytes_per_score, err) != 0)
        return -1;
    const size_t need = (size_t)workspace_bytes(a, bytes_per_score);
    int device = 0;
    AB_CUDA_CHECK(err, cudaGetDevice(&device));
    if (device < 0 || device >= kMaxDevices)
        return ab_set_error(err, "%s: device %d is beyond the %d devices its cuBLAS cache holds", impl, device,
                            kMaxDevices);
    DeviceCache &c = g_cache[device];
    try {
        lease->lock = std::unique_lock<std::mutex>(c.mutex);
    } catch (const std::system_error &e) {
        return ab_set_error(err, "%s: could not lock the cuBLAS cache of device %d: %s", impl, device, e.what());
    }
    if (c.handle == nullptr) {
        cublasHandle_t handle = nullptr;
        AB_CUBLAS_CHECK(err, cublasCreate(&handle));
        c.handle = handle;
    }
    if (c.last_use == nullptr) {
        cudaEvent_t event = nullptr;
        AB_CUDA_CHECK(err, cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        c.last_use = event;
    }
    if (c.capacity < need && grow(c, need, a, impl, err) != 0)
        return -1;
    // The previous launch may have used the buffer from another stream.  (On
    // the same stream this orders nothing new; an unrecorded event is a no-op.)
    AB_CUDA_CHECK(err, cudaStreamWaitEvent(stream, c.last_use, 0));
    AB_CUBLAS_CHECK(err, cublasSetStream(c.handle, stream));
    // After cublasSetStream, which resets the handle to cuBLAS's default workspace.
    AB_CUBLAS_CHECK(err, cublasSetWorkspace(c.handle, c.buffer, kCublasWorkspaceBytes));
    lease->handle = c.handle;
    lease->scratch = align_up((char *)c.buffer + kCublasWorkspaceBytes);
    lease->last_use = c.last_use;
    return 0;
}

int end(Lease *lease, cudaStream_t stream, int rc, ab_error *err) {
    const cudaError_t recorded = cudaEventRecord(lease->last_use, stream);
    if (rc != 0)
        return rc;
    if (recorded != cudaSuccess)
        return ab_set_error(err, "cudaEventRecord(last_use, stream) failed at %s:%d: %s (%s)", __FILE__, __LINE__,
                            cudaGetErrorString(recorded), cudaGetErrorName(recorded));
    return 0;
}

// cuBLAS is column-major; a row-major [rows, D] matrix with row stride ld is
// a column-major D x rows matrix with leading dimension ld.  So S^T (Sk x Sq,
// column-major, ld Sk: S row-major) = K Q^T, with K read transposed.  GQA:
// for each group member g the batch runs over (b, kvh), query head kvh*G + g.
int scores_gemm(const ab_attn_args *a, cublasHandle_t handle, float *S, ab_error *err) {
    int ldq = 0, ldk = 0;
    if (leading_dim("q", a->q_stride[2], a->Sq, a->D, &ldq, err) != 0 ||
        leading_dim("k", a->k_stride[2], a->Sk, a->D, &ldk, err) != 0)
        return -1;
    const cudaDataType_t t = cuda_type(a->dtype);
    const int G = a->Hq / a->Hkv;
    const int64_t head = (int64_t)a->Sq * a->Sk;  // one head's scores
    for (int g = 0; g < G; ++g) {
        const Operand K = {a->k, ldk, a->k_stride[0], a->k_stride[1], t};
        const Operand Q = {(const char *)a->q + g * a->q_stride[1] * (int64_t)type_size(t), ldq, a->q_stride[0],
                           G * a->q_stride[1], t};
        const Operand Sg = {S + g * head, a->Sk, a->Hq * head, G * head, CUDA_R_32F};
        if (gemm_batched_2d(handle, CUBLAS_OP_T, CUBLAS_OP_N, a->Sk, a->Sq, a->D, a->scale, K, Q, Sg, a->B, a->Hkv,
                            err) != 0)
            return -1;
    }
    return 0;
}

// O^T (D x Sq, column-major, ld o_stride[2]: O row-major) = V^T P^T, where
// V^T is V's memory as it is and P^T is P's (row-major [Sq, Sk]).
int output_gemm(const ab_attn_args *a, cublasHandle_t handle, const void *P, ab_error *err) {
    int ldv = 0, ldo = 0;
    if (leading_dim("v", a->v_stride[2], a->Sk, a->D, &ldv, err) != 0 ||
        leading_dim("o", a->o_stride[2], a->Sq, a->D, &ldo, err) != 0)
        return -1;
    const cudaDataType_t t = cuda_type(a->dtype);
    const int64_t es = (int64_t)type_size(t);
    const int G = a->Hq / a->Hkv;
    const int64_t head = (int64_t)a->Sq * a->Sk;
    for (int g = 0; g < G; ++g) {
        const Operand V = {a->v, ldv, a->v_stride[0], a->v_stride[1], t};
        const Operand Pg = {(const char *)P + g * head * es, a->Sk, a->Hq * head, G * head, t};
        const Operand O = {(const char *)a->o + g * a->o_stride[1] * es, ldo, a->o_stride[0], G * a->o_stride[1], t};
        if (gemm_batched_2d(handle, CUBLAS_OP_N, CUBLAS_OP_N, a->D, a->Sq, a->Sk, 1.f, V, Pg, O, a->B, a->Hkv, err) != 0)
            return -1;
    }
    return 0;
}

}  // namespace blas

namespace {

// Bytes of workspace per score: fp32 S plus P in the 2-byte input dtype.
constexpr int kBytesPerScore = 4 + 2;
// Rows per softmax block, one warp each.
constexpr int kSoftmaxWarps = 8;

// P = softmax(S) over each row's visible keys, 0 on the masked ones (the
// P V GEMM reads whole rows), and the row's logsumexp.  S is already scaled.
template <typename T>
__global__ void __launch_bounds__(kSoftmaxWarps * 32) masked_softmax(const float *S, T *P, const ab_attn_args a) {
    const int lane = threadIdx.x % 32;
    const int64_t n_rows = (int64_t)a.B * a.Hq * a.Sq;
    for (int64_t row = (int64_t)blockIdx.x * kSoftmaxWarps + threadIdx.x / 32; row < n_rows;
         row += (int64_t)gridDim.x * kSoftmaxWarps) {
        const int i = (int)(row % a.Sq);
        const float *s = S + row * a.Sk;
        T *p = P + row * a.Sk;
        const int n = causal_key_end(i, a.Sk, a.causal);
        const blas::RowStats st = blas::warp_row_stats(s, n);
        const float inv_sum = 1.f / st.sum;
        for (int j = lane; j < a.Sk; j += 32)
            p[j] = num<T>::from_float(j < n ? expf(s[j] - st.max) * inv_sum : 0.f);
        if (a.lse != NULL && lane == 0) {
            const int64_t bh = row / a.Sq;
            const int b = (int)(bh / a.Hq), h = (int)(bh % a.Hq);
            a.lse[b * a.lse_stride_b + h * a.lse_stride_h + i] = st.max + logf(st.sum);
        }
    }
}

template <typename T>
int enqueue(const ab_attn_args *a, const blas::Lease &lease, cudaStream_t stream, ab_error *err) {
    float *S = (float *)lease.scratch;
    T *P = (T *)blas::align_up(lease.scratch + blas::n_scores(a) * sizeof(float));
    if (blas::scores_gemm(a, lease.handle, S, err) != 0)
        return -1;
    const int64_t n_rows = (int64_t)a->B * a->Hq * a->Sq;
    masked_softmax<T><<<grid_size((n_rows + kSoftmaxWarps - 1) / kSoftmaxWarps), kSoftmaxWarps * 32, 0, stream>>>(
        S, P, *a);
    AB_LAUNCH_CHECK(err);
    return blas::output_gemm(a, lease.handle, P, err);
}

int cublas_supports(const ab_attn_args *a, int sm, ab_error *err) {
    return blas::check_workspace_limit(a, "cublas", kBytesPerScore, err);
}

int cublas_launch(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err) {
    if (config != 0)
        return ab_set_error(err, "cublas: no config %d (it has one, 0 = 'default')", config);
    if (blas::check_problem(a, "cublas", err) != 0)
        return -1;
    return blas::with_workspace(a, "cublas", kBytesPerScore, stream, err, [&](const blas::Lease &lease) {
        return a->dtype == AB_BFLOAT16 ? enqueue<__nv_bfloat16>(a, lease, stream, err)
                                       : enqueue<__half>(a, lease, stream, err);
    });
}

}  // namespace
}  // namespace ab

extern "C" const ab_kernel ab_kernel_cublas = {
    "cublas",                                              // name
    "cuBLAS Q.K^T into fp32 S, masked softmax kernel, cuBLAS P.V (materializes S and P)",
    ab::blas::kDtypes,
    ab::blas::kHeadDims, 2, 128,                           // head dims 64, 128
    1, 1, 1,                                               // causal, gqa, lse
    80, 1000,                                              // min_sm (cuBLAS bf16 tensor ops), max_sm
    "sm_80+",                                              // archs
    ab::blas::kConfigs, 1,                                 // configs
    ab::cublas_supports,                                   // refuses shapes past the workspace limit
    ab::cublas_launch,
};
