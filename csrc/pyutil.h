/* pyutil.h: what every binding file (bind_*.c) shares: the NumPy C API
 * set-up and argument conversions whose errors name the argument.
 * Every helper returns NULL / -1 with a Python exception set. */
#ifndef ATTNBENCH_PYUTIL_H
#define ATTNBENCH_PYUTIL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL attnbench_ARRAY_API
#ifndef AB_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

/* Each binding file defines one NULL-terminated method table; module.c adds them all. */
extern PyMethodDef ab_stats_methods[];
extern PyMethodDef ab_gate_methods[];
extern PyMethodDef ab_reference_methods[];
extern PyMethodDef ab_gpu_methods[];
/* Adds the GPU types (Launch) to the module (bind_gpu.c). */
int ab_gpu_add_types(PyObject *module);

/* A new reference to a 1-D, C-contiguous float64 copy-or-view of `obj`,
 * with at least `min_n` elements, all finite.  TypeError for non-numeric
 * input, ValueError for wrong ndim / too few / NaN / Inf; both name `argname`. */
PyArrayObject *ab_samples_from_object(PyObject *obj, const char *argname, npy_intp min_n);

/* 0 if 0 < confidence < 1, else -1 with ValueError naming `argname`. */
int ab_check_confidence(double confidence, const char *argname);

/* 0 if value >= min, else -1 with ValueError naming `argname`. */
int ab_check_min_long(long long value, long long min, const char *argname);

#endif
