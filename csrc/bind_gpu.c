/* bind_gpu.c: Python bindings of the gpu unit (placeholder until the unit lands). */
#include "pyutil.h"

PyMethodDef ab_gpu_methods[] = {
    {NULL, NULL, 0, NULL},
};
