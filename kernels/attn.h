/* attn.h: the C interface between attnbench's C core (csrc/) and its CUDA
 * kernels (kernels/).  Plain C so that both gcc (C11) and nvcc include it.
 *
 * A kernel family is one .cu file that defines one `ab_kernel` descriptor
 * (see the bottom of this file); csrc/registry.c lists the descriptors.
 * The core checks shapes, dtypes and strides before it calls a kernel, so a
 * kernel's `supports` only answers what it itself cannot do (head dim, arch).
 */
#ifndef ATTNBENCH_ATTN_H
#define ATTNBENCH_ATTN_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ab_dtype {
    AB_FLOAT16 = 0,
    AB_BFLOAT16 = 1,
    AB_FLOAT32 = 2,
} ab_dtype;

#define AB_DTYPE_BIT(d) (1u << (d))

/* One attention-forward problem.  Tensors are [B, H, S, D] with unit stride
 * in D; the other strides are in elements and may be anything (the core
 * rejects negative ones).  Causal masking is top-left aligned, as PyTorch's
 * SDPA `is_causal` is: query i sees key j iff j <= i, also when Sq != Sk.
 * Grouped-query attention: query head h reads key/value head h / (Hq / Hkv). */
typedef struct ab_attn_args {
    const void *q, *k, *v;
    void *o;
    float *lse;               /* optional [B, Hq, Sq] fp32, natural log; NULL = not wanted */
    int64_t lse_stride_b, lse_stride_h;   /* element strides of lse (S stride is 1) */
    int B, Hq, Hkv, Sq, Sk, D;
    int64_t q_stride[3], k_stride[3], v_stride[3], o_stride[3]; /* B, H, S */
    float scale;              /* softmax scale, usually 1/sqrt(D) */
    int causal;
    ab_dtype dtype;           /* dtype of q, k, v and o */
} ab_attn_args;

/* Errors travel back as text: a kernel returns 0 on success, or -1 after
 * writing what failed (with the CUDA or cuBLAS error string) into `err`. */
typedef struct ab_error {
    char msg[512];
} ab_error;

int ab_set_error(ab_error *err, const char *fmt, ...);

/* Check a CUDA runtime call; on failure record call, file, line and the
 * CUDA error string in `err` and return -1 from the enclosing function. */
#define AB_CUDA_CHECK(err, call)                                              \
    do {                                                                      \
        cudaError_t ab_rc_ = (call);                                          \
        if (ab_rc_ != cudaSuccess)                                            \
            return ab_set_error((err), "%s failed at %s:%d: %s (%s)", #call,  \
                                __FILE__, __LINE__,                           \
                                cudaGetErrorString(ab_rc_),                   \
                                cudaGetErrorName(ab_rc_));                    \
    } while (0)

/* Check the last launch (configuration errors appear here). */
#define AB_LAUNCH_CHECK(err) AB_CUDA_CHECK(err, cudaGetLastError())

typedef struct ab_kernel {
    const char *name;         /* impl name: "naive", "cublas", "mma", ... */
    const char *description;  /* one line */
    unsigned dtypes;          /* AB_DTYPE_BIT mask */
    const int *head_dims;     /* supported head dims; NULL = any 1..max_head_dim */
    int n_head_dims;
    int max_head_dim;
    int causal, gqa, lse;     /* feature flags (1 = supported) */
    int min_sm, max_sm;       /* compute capability * 10, inclusive (90 = sm_90) */
    const char *archs;        /* the architectures built, for display ("sm_80+", "sm_90a") */
    const char *const *configs; /* tunable configs by name; configs[0] is the default */
    int n_configs;
    /* Optional: 0 if the kernel can run `a` on a device of compute capability
     * `sm`; else -1 with the reason in `err`.  NULL = the flags above suffice. */
    int (*supports)(const ab_attn_args *a, int sm, ab_error *err);
    /* Enqueue the kernel(s) on `stream`.  Must not synchronize. */
    int (*launch)(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err);
} ab_kernel;

#ifdef __cplusplus
}
#endif
#endif /* ATTNBENCH_ATTN_H */
