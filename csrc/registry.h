/* registry.h: the list of attention kernels attnbench can run, and the one
 * place that decides whether a kernel supports a problem. */
#ifndef ATTNBENCH_REGISTRY_H
#define ATTNBENCH_REGISTRY_H

#include "attn.h"

/* The registered kernels, in the order `attnbench.kernels()` lists them. */
int ab_registry_count(void);
const ab_kernel *ab_registry_get(int i);
const ab_kernel *ab_registry_find(const char *name);

/* 0 if `k` can run `a` on a device of compute capability `sm` (e.g. 90);
 * else -1 with the reason and what the kernel does support in `err`. */
int ab_kernel_supports(const ab_kernel *k, const ab_attn_args *a, int sm, ab_error *err);

/* The index of config `name` in k->configs, or -1 with the list in `err`. */
int ab_kernel_config(const ab_kernel *k, const char *name, ab_error *err);

const char *ab_dtype_name(ab_dtype d);

#endif
