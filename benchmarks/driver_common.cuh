// driver_common.cuh: what the standalone drivers (wgmma_trace.cu, wgmma_pipes.cu)
// share.  Each includes kernels/wgmma.cu first, then this: the package's
// ab_set_error lives in csrc/, which the drivers do not link, so here it only
// formats the message, and CK returns 1 from main on any CUDA error, with its
// string.
#pragma once
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>

extern "C" int ab_set_error(ab_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

#define CK(x)                                                                  \
    do {                                                                       \
        cudaError_t e_ = (x);                                                  \
        if (e_ != cudaSuccess) {                                               \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));           \
            return 1;                                                          \
        }                                                                      \
    } while (0)
