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

/* A new reference to `obj` as a NumPy array of float16, float32 or float64,
 * in whatever layout and shape it has (nothing is copied).  TypeError naming
 * `argname` for anything else. */
PyArrayObject *ab_float_array_from_object(PyObject *obj, const char *argname);

/* 0 if 0 < confidence < 1, else -1 with ValueError naming `argname`. */
int ab_check_confidence(double confidence, const char *argname);

/* 0 if value >= min, else -1 with ValueError naming `argname`. */
int ab_check_min_long(long long value, long long min, const char *argname);

/* ---- Added by the stats/gate unit ---------------------------------------- */
#include <stdint.h>

/* 0 and *out set if `obj` is a real number: int, float, a NumPy integer or
 * floating scalar, a 0-d integer/float array, or any object with __float__
 * or __index__.  TypeError naming `argname` for bool (a flag passed where a
 * number belongs is a bug), complex, str and the rest; ValueError if it is
 * too large for a double. */
int ab_real_arg(PyObject *obj, const char *argname, double *out);

/* 0 and *out set if `obj` is an integer (int, NumPy integer; not bool, not
 * float) in [min, max]; TypeError or ValueError naming `argname`. */
int ab_integer_arg(PyObject *obj, const char *argname, long long min, long long max, long long *out);

/* 0 and *out set if `obj` is an integer in [0, 2^64): a bootstrap seed. */
int ab_seed_arg(PyObject *obj, const char *argname, uint64_t *out);

/* The confidence, resamples and seed of a bootstrap entry point; a NULL
 * object (argument omitted) takes the default of stats.h. */
typedef struct ab_bootstrap_params {
    double confidence;
    size_t resamples;
    uint64_t seed;
} ab_bootstrap_params;
int ab_bootstrap_params_from(PyObject *confidence, PyObject *resamples, PyObject *seed,
                             ab_bootstrap_params *out);

/* 0 if every element of `arr` (1-D, C-contiguous float64, as made by
 * ab_samples_from_object) is > 0, else ValueError naming `argname` and the
 * first offending element. */
int ab_check_positive(PyArrayObject *arr, const char *argname);

/* Raise the exception for a failed stats.h / gate.h call (an
 * ab_stats_status): MemoryError for AB_STATS_NOMEM, ValueError saying
 * `context` and the status otherwise.  Returns -1. */
int ab_raise_stats_status(int status, const char *context);

#endif
