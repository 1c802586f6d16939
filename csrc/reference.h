/* reference.h: the float64 oracle attention that every kernel is checked
 * against.  Pure C (no Python, no CUDA), so the core's other units can call
 * it too; csrc/bind_reference.c is its Python binding.
 *
 *   out[b, h, i, :] = sum_j softmax_j(scale * q[b, h, i, :] . k[b, g(h), j, :]) * v[b, g(h), j, :]
 *
 * Everything is computed and accumulated in double, one query row at a time,
 * with the numerically stable softmax (the row maximum is subtracted before
 * exp), so the result is as exact as float64 allows and does not depend on
 * the number of threads.  Meant for the small shapes of correctness checks:
 * the cost is B * Hq * Sq * Sk * (D + Dv) multiply-adds on the CPU.
 *
 * Shapes: q is [B, Hq, Sq, D], k is [B, Hkv, Sk, D], v is [B, Hkv, Sk, Dv],
 * out is [B, Hq, Sq, Dv], the optional lse is [B, Hq, Sq]; all C-contiguous.
 *
 * Grouped-query attention, as SDPA's enable_gqa: Hq is a multiple of Hkv
 * and query head h reads key/value head g(h) = h / (Hq / Hkv).
 *
 * Causal masking is TOP-LEFT aligned, as PyTorch SDPA's is_causal is (the
 * mask is torch.ones(Sq, Sk).tril()): query i sees key j iff j <= i, also
 * when Sq != Sk.  FlashAttention's own API aligns bottom-right instead
 * (torch.nn.attention.bias.causal_lower_right: query i sees j <= i + Sk - Sq);
 * attnbench follows SDPA's is_causal, as kernels/attn.h does.  With top-left
 * alignment every query row sees at least key 0, so no row is fully masked.
 *
 * lse[b, h, i] is the natural-log logsumexp of the scaled, masked scores.
 *
 * NaN or infinite inputs are not errors: they propagate (a NaN score makes
 * its row NaN), as they would through any float64 implementation.
 */
#ifndef ATTNBENCH_REFERENCE_H
#define ATTNBENCH_REFERENCE_H

#include <stdint.h>

/* kernels/attn.h defines it; repeated here so that this header needs no CUDA. */
typedef struct ab_error ab_error;

/* At most this many threads per call: enough to make B=2, H=8, S=512, D=64
 * take a fraction of a second on a workstation, while a call from each of
 * several Python threads still does not oversubscribe a large machine. */
#define AB_REF_MAX_THREADS 8

typedef enum ab_ref_status {
    AB_REF_OK = 0,
    AB_REF_INVALID = -1,    /* a shape or the scale is not acceptable; the reason is in err */
    AB_REF_NO_MEMORY = -2,  /* the per-thread score rows could not be allocated */
} ab_ref_status;

/* The sizes of one problem, as checked by ab_ref_shape_from_dims. */
typedef struct ab_ref_shape {
    int64_t B, Hq, Hkv, Sq, Sk, D, Dv;
} ab_ref_shape;

/* Check the [B, H, S, D] dims of q, k and v against each other (every dim
 * at least 1, shared B, shared D for q and k, shared H and S for k and v,
 * Hq a multiple of Hkv, no element count of q, k, v, out or lse too large
 * to address in bytes) and fill `shape`.  AB_REF_OK, or AB_REF_INVALID with
 * a message naming q, k or v in `err` (err may be NULL). */
ab_ref_status ab_ref_shape_from_dims(const int64_t q_dims[4], const int64_t k_dims[4],
                                     const int64_t v_dims[4], ab_ref_shape *shape, ab_error *err);

/* Compute out (and lse, unless it is NULL) for the problem `shape` (which
 * is checked again), with a finite `scale` (usually 1 / sqrt(D)) and
 * `causal` nonzero for the top-left causal mask.  The inputs are only read.
 * The rows are spread over a few threads (at most AB_REF_MAX_THREADS, and no
 * more than the online CPUs); the call returns when all are done.
 * AB_REF_OK, or an error status with the reason in `err` (err may be NULL);
 * nothing is left allocated on any path. */
ab_ref_status ab_reference_attention(const ab_ref_shape *shape, const double *q, const double *k,
                                     const double *v, double scale, int causal, double *out,
                                     double *lse, ab_error *err);

#endif /* ATTNBENCH_REFERENCE_H */
