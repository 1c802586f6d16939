/* problem.c: turn four (or five) tensors into one checked ab_attn_args. */
#include <math.h>
#include <string.h>

#include "registry.h"
#include "tensor.h"

static size_t elem_size(int dtype) { return dtype == AB_FLOAT32 ? 4 : 2; }

/* The half-open byte range a strided tensor can touch. */
static void byte_span(const ab_tensor *t, uintptr_t *lo, uintptr_t *hi)
{
    uint64_t last = 0;
    for (int i = 0; i < t->ndim; i++)
        last += (uint64_t)(t->shape[i] - 1) * (uint64_t)t->strides[i];
    *lo = (uintptr_t)t->data;
    *hi = *lo + (last + 1) * elem_size(t->dtype);
}

static int overlaps(const ab_tensor *a, const ab_tensor *b)
{
    uintptr_t alo, ahi, blo, bhi;
    byte_span(a, &alo, &ahi);
    byte_span(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

/* True if no two indices of `t` share an element: with its dimensions of size
 * above 1 sorted by stride, each stride reaches past everything the smaller
 * ones span.  (Sufficient, and exact for the layouts frameworks produce.) */
static int non_overlapping(const ab_tensor *t)
{
    int order[AB_MAX_DIMS], n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] > 1)
            order[n++] = i;
    for (int i = 1; i < n; i++)  /* insertion sort by stride */
        for (int j = i; j > 0 && t->strides[order[j]] < t->strides[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    int64_t span = 1;  /* elements covered by the smaller dimensions */
    for (int i = 0; i < n; i++) {
        if (t->strides[order[i]] < span)
            return 0;
        span = t->strides[order[i]] * t->shape[order[i]];
    }
    return 1;
}

static int check_tensor(const ab_tensor *t, const char *name, int ndim, ab_error *err)
{
    if (t->device_type != AB_DEVICE_CUDA)
        return ab_set_error(err, "%s must be a CUDA device tensor (DLPack device type %d given)", name,
                            t->device_type);
    if (t->ndim != ndim)
        return ab_set_error(err, "%s must have %d dimensions (%s), got %d", name, ndim,
                            ndim == 4 ? "[B, H, S, D]" : "[B, H, S]", t->ndim);
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 1)
            return ab_set_error(err, "%s has an empty dimension %d (size %lld)", name, i, (long long)t->shape[i]);
        if (t->shape[i] > INT32_MAX)
            return ab_set_error(err, "%s dimension %d is too large (%lld)", name, i, (long long)t->shape[i]);
        if (t->strides[i] < 0)
            return ab_set_error(err, "%s has a negative stride in dimension %d; pass a copy", name, i);
    }
    if (t->strides[ndim - 1] != 1 && t->shape[ndim - 1] != 1)
        return ab_set_error(err, "%s must have unit stride in its last dimension (got %lld); pass .contiguous()",
                            name, (long long)t->strides[ndim - 1]);
    if (t->dtype >= 0 && ((uintptr_t)t->data % elem_size(t->dtype)) != 0)
        return ab_set_error(err, "%s data pointer is not aligned to its element size", name);
    return 0;
}

int ab_args_from_tensors(const ab_tensor *q, const ab_tensor *k, const ab_tensor *v, const ab_tensor *o,
                         const ab_tensor *lse, int causal, double scale, ab_attn_args *a, ab_error *err)
{
    const ab_tensor *all[] = {q, k, v, o};
    const char *names[] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++)
        if (check_tensor(all[i], names[i], 4, err) < 0)
            return -1;
    for (int i = 0; i < 4; i++) {
        if (all[i]->dtype < 0)
            return ab_set_error(err, "%s has dtype %s; attnbench runs float16, bfloat16 (and float32 for 'naive')",
                                names[i], all[i]->dtype_name);
        if (all[i]->dtype != q->dtype)
            return ab_set_error(err, "%s has dtype %s but q has %s; q, k, v and out must share one dtype", names[i],
                                all[i]->dtype_name, q->dtype_name);
        if (all[i]->device_id != q->device_id)
            return ab_set_error(err, "%s is on cuda:%d but q is on cuda:%d", names[i], all[i]->device_id,
                                q->device_id);
    }
    int64_t B = q->shape[0], Hq = q->shape[1], Sq = q->shape[2], D = q->shape[3];
    int64_t Hkv = k->shape[1], Sk = k->shape[2];
    if (k->shape[0] != B || v->shape[0] != B)
        return ab_set_error(err, "batch sizes differ: q has B=%lld, k has %lld, v has %lld", (long long)B,
                            (long long)k->shape[0], (long long)v->shape[0]);
    if (k->shape[3] != D)
        return ab_set_error(err, "k has head dim %lld but q has %lld", (long long)k->shape[3], (long long)D);
    if (v->shape[1] != Hkv || v->shape[2] != Sk)
        return ab_set_error(err, "v has shape [%lld, %lld, %lld, %lld] but k has [%lld, %lld, %lld, %lld]: heads "
                            "and sequence length must match", (long long)v->shape[0], (long long)v->shape[1],
                            (long long)v->shape[2], (long long)v->shape[3], (long long)k->shape[0],
                            (long long)Hkv, (long long)Sk, (long long)D);
    if (v->shape[3] != D)
        return ab_set_error(err, "v has head dim %lld but q has %lld; attnbench's kernels need equal head dims",
                            (long long)v->shape[3], (long long)D);
    if (Hq % Hkv != 0)
        return ab_set_error(err, "q has %lld heads, not a multiple of k's %lld (grouped-query attention needs "
                            "Hq %% Hkv == 0)", (long long)Hq, (long long)Hkv);
    if (o->shape[0] != B || o->shape[1] != Hq || o->shape[2] != Sq || o->shape[3] != D)
        return ab_set_error(err, "out must have shape [%lld, %lld, %lld, %lld], got [%lld, %lld, %lld, %lld]",
                            (long long)B, (long long)Hq, (long long)Sq, (long long)D, (long long)o->shape[0],
                            (long long)o->shape[1], (long long)o->shape[2], (long long)o->shape[3]);
    if (o->readonly)
        return ab_set_error(err, "out is read-only");
    if (!non_overlapping(o))
        return ab_set_error(err, "out has overlapping elements (a zero or too-small stride): every row would be "
                            "written to the same memory");
    for (int i = 0; i < 3; i++)
        if (overlaps(o, all[i]))
            return ab_set_error(err, "out overlaps %s in memory; attnbench never writes its inputs", names[i]);
    /* Checked as the kernels see it: in float32. */
    if (!isfinite((float)scale) || (float)scale == 0.0f)
        return ab_set_error(err, "scale must be a finite non-zero number in float32 (got %g)", scale);

    memset(a, 0, sizeof *a);
    if (lse != NULL) {
        if (check_tensor(lse, "lse", 3, err) < 0)
            return -1;
        if (lse->dtype != AB_FLOAT32)
            return ab_set_error(err, "lse must be float32, got %s", lse->dtype_name);
        if (lse->readonly)
            return ab_set_error(err, "lse is read-only");
        if (!non_overlapping(lse))
            return ab_set_error(err, "lse has overlapping elements (a zero or too-small stride)");
        if (lse->shape[0] != B || lse->shape[1] != Hq || lse->shape[2] != Sq)
            return ab_set_error(err, "lse must have shape [%lld, %lld, %lld]", (long long)B, (long long)Hq,
                                (long long)Sq);
        if (lse->device_id != q->device_id)
            return ab_set_error(err, "lse is on cuda:%d but q is on cuda:%d", lse->device_id, q->device_id);
        for (int i = 0; i < 4; i++)
            if (overlaps(lse, all[i]))
                return ab_set_error(err, "lse overlaps %s in memory", names[i]);
        a->lse = (float *)lse->data;
        a->lse_stride_b = lse->strides[0];
        a->lse_stride_h = lse->strides[1];
    }
    a->q = q->data;
    a->k = k->data;
    a->v = v->data;
    a->o = o->data;
    a->B = (int)B;
    a->Hq = (int)Hq;
    a->Hkv = (int)Hkv;
    a->Sq = (int)Sq;
    a->Sk = (int)Sk;
    a->D = (int)D;
    for (int i = 0; i < 3; i++) {
        a->q_stride[i] = q->strides[i];
        a->k_stride[i] = k->strides[i];
        a->v_stride[i] = v->strides[i];
        a->o_stride[i] = o->strides[i];
    }
    a->scale = (float)scale;
    a->causal = causal;
    a->dtype = (ab_dtype)q->dtype;
    return 0;
}
