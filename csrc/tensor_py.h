/* tensor_py.h: reading ab_tensor from a Python object (tensor.c). */
#ifndef ATTNBENCH_TENSOR_PY_H
#define ATTNBENCH_TENSOR_PY_H

#include "pyutil.h"
#include "tensor.h"

/* Through __dlpack__ (preferred) or __cuda_array_interface__.  0, or -1 with
 * a TypeError/ValueError naming `argname`.  `dlpack_stream` is the stream the
 * data is wanted on, in DLPack's convention (AB_DLPACK_NO_SYNC: none). */
#define AB_DLPACK_NO_SYNC (-1LL)
int ab_tensor_from_object(PyObject *obj, const char *argname, long long dlpack_stream, ab_tensor *t);

/* DLPack's name for a cudaStream_t: 1 means the legacy default stream (0). */
static inline long long ab_dlpack_stream(cudaStream_t s) { return s == NULL ? 1LL : (long long)(intptr_t)s; }

#endif
