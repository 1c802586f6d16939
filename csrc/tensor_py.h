/* tensor_py.h: reading ab_tensor from a Python object (tensor.c). */
#ifndef ATTNBENCH_TENSOR_PY_H
#define ATTNBENCH_TENSOR_PY_H

#include "pyutil.h"
#include "tensor.h"

/* Through __dlpack__ (preferred) or __cuda_array_interface__.  0, or -1 with
 * a TypeError/ValueError naming `argname`. */
int ab_tensor_from_object(PyObject *obj, const char *argname, ab_tensor *t);

#endif
