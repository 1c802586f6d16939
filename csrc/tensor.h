/* tensor.h: a device tensor as attnbench sees it, whatever framework made it. */
#ifndef ATTNBENCH_TENSOR_H
#define ATTNBENCH_TENSOR_H

#include <stdint.h>

#include "attn.h"

#define AB_MAX_DIMS 8

enum { AB_DEVICE_CPU = 1, AB_DEVICE_CUDA = 2 }; /* DLPack's device type codes */

typedef struct ab_tensor {
    void *data;                /* first element (byte offset applied) */
    int device_type, device_id;
    int dtype;                 /* an ab_dtype, or -1 when attnbench runs no kernel on it */
    char dtype_name[32];       /* for messages */
    int ndim;
    int64_t shape[AB_MAX_DIMS];
    int64_t strides[AB_MAX_DIMS]; /* in elements */
    int readonly;
} ab_tensor;

/* Build the problem description from q, k, v, out (and optional lse, NULL if
 * not wanted): checks ranks, dtypes, devices, shapes, strides and overlap,
 * naming the offending argument in `err`.  0 or -1. */
int ab_args_from_tensors(const ab_tensor *q, const ab_tensor *k, const ab_tensor *v, const ab_tensor *o,
                         const ab_tensor *lse, int causal, double scale, ab_attn_args *a, ab_error *err);

#endif
