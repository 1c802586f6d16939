/* registry.c: the kernel registry.  A kernel family registers by defining an
 * ab_kernel descriptor in its .cu file and adding it to `kernels` below. */
#include <stdio.h>
#include <string.h>

#include "registry.h"

extern const ab_kernel ab_kernel_naive, ab_kernel_cublas, ab_kernel_hybrid_qk, ab_kernel_hybrid_pv, ab_kernel_mma,
    ab_kernel_wgmma;

static const ab_kernel *const kernels[] = {
    &ab_kernel_naive,
    &ab_kernel_cublas,
    &ab_kernel_hybrid_qk,
    &ab_kernel_hybrid_pv,
    &ab_kernel_mma,
    &ab_kernel_wgmma,
};

int ab_registry_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const ab_kernel *ab_registry_get(int i)
{
    return (i >= 0 && i < ab_registry_count()) ? kernels[i] : NULL;
}

const ab_kernel *ab_registry_find(const char *name)
{
    for (int i = 0; i < ab_registry_count(); i++)
        if (strcmp(kernels[i]->name, name) == 0)
            return kernels[i];
    return NULL;
}

const char *ab_dtype_name(ab_dtype d)
{
    switch (d) {
    case AB_FLOAT16: return "float16";
    case AB_BFLOAT16: return "bfloat16";
    case AB_FLOAT32: return "float32";
    }
    return "unknown";
}

static void list_dtypes(const ab_kernel *k, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int d = AB_FLOAT16; d <= AB_FLOAT32; d++)
        if (k->dtypes & AB_DTYPE_BIT(d)) {
            size_t len = strlen(buf);
            snprintf(buf + len, n - len, "%s%s", len ? ", " : "", ab_dtype_name((ab_dtype)d));
        }
}

static void list_head_dims(const ab_kernel *k, char *buf, size_t n)
{
    if (k->head_dims == NULL) {
        snprintf(buf, n, "1..%d", k->max_head_dim);
        return;
    }
    buf[0] = '\0';
    for (int i = 0; i < k->n_head_dims; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%d", i ? ", " : "", k->head_dims[i]);
    }
}

int ab_kernel_supports(const ab_kernel *k, const ab_attn_args *a, int sm, ab_error *err)
{
    char what[128];
    if (!(k->dtypes & AB_DTYPE_BIT(a->dtype))) {
        list_dtypes(k, what, sizeof what);
        return ab_set_error(err, "kernel '%s' does not support dtype %s; it supports: %s", k->name,
                            ab_dtype_name(a->dtype), what);
    }
    int dim_ok = 0;
    if (k->head_dims == NULL)
        dim_ok = a->D >= 1 && a->D <= k->max_head_dim;
    else
        for (int i = 0; i < k->n_head_dims; i++)
            dim_ok |= a->D == k->head_dims[i];
    if (!dim_ok) {
        list_head_dims(k, what, sizeof what);
        return ab_set_error(err, "kernel '%s' does not support head dim D=%d; it supports D in: %s", k->name, a->D,
                            what);
    }
    if (a->causal && !k->causal)
        return ab_set_error(err, "kernel '%s' does not support causal masking", k->name);
    if (a->Hq != a->Hkv && !k->gqa)
        return ab_set_error(err, "kernel '%s' does not support grouped-query attention (Hq=%d, Hkv=%d)", k->name,
                            a->Hq, a->Hkv);
    if (a->lse != NULL && !k->lse)
        return ab_set_error(err, "kernel '%s' does not write the logsumexp", k->name);
    if (sm < k->min_sm || sm > k->max_sm)
        return ab_set_error(err, "kernel '%s' needs a GPU of architecture %s; this one is sm_%d", k->name, k->archs,
                            sm);
    if (k->supports != NULL)
        return k->supports(a, sm, err);
    return 0;
}

int ab_kernel_config(const ab_kernel *k, const char *name, ab_error *err)
{
    for (int i = 0; i < k->n_configs; i++)
        if (strcmp(k->configs[i], name) == 0)
            return i;
    char list[256] = "";
    for (int i = 0; i < k->n_configs; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", k->configs[i]);
    }
    return ab_set_error(err, "kernel '%s' has no config '%s'; its configs: %s", k->name, name, list);
}
