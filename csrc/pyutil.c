/* pyutil.c: argument conversions shared by the binding files. */
#include "pyutil.h"
#include <math.h>

PyArrayObject *ab_samples_from_object(PyObject *obj, const char *argname, npy_intp min_n)
{
    PyArrayObject *probe = (PyArrayObject *)PyArray_FROM_O(obj);
    if (probe == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be a sequence of real numbers", argname);
        }
        return NULL;
    }
    int type = PyArray_TYPE(probe);
    if (!(PyTypeNum_ISINTEGER(type) || PyTypeNum_ISFLOAT(type) || PyTypeNum_ISBOOL(type))) {
        PyErr_Format(PyExc_TypeError, "%s must hold real numbers, not dtype %R", argname,
                     (PyObject *)PyArray_DESCR(probe));
        Py_DECREF(probe);
        return NULL;
    }
    if (PyArray_NDIM(probe) != 1) {
        PyErr_Format(PyExc_ValueError, "%s must be one-dimensional, got %d dimensions", argname,
                     PyArray_NDIM(probe));
        Py_DECREF(probe);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)probe, NPY_DOUBLE,
                                                           NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(probe);
    if (arr == NULL)
        return NULL;
    npy_intp n = PyArray_DIM(arr, 0);
    if (n < min_n) {
        PyErr_Format(PyExc_ValueError, "%s needs at least %zd sample%s, got %zd", argname, (Py_ssize_t)min_n,
                     min_n == 1 ? "" : "s", (Py_ssize_t)n);
        Py_DECREF(arr);
        return NULL;
    }
    const double *x = (const double *)PyArray_DATA(arr);
    for (npy_intp i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] is %s; samples must be finite", argname, (Py_ssize_t)i,
                         isnan(x[i]) ? "NaN" : "infinite");
            Py_DECREF(arr);
            return NULL;
        }
    }
    return arr;
}

int ab_check_confidence(double confidence, const char *argname)
{
    if (!(confidence > 0.0 && confidence < 1.0)) {
        char buf[64];
        PyOS_snprintf(buf, sizeof buf, "%.17g", confidence);
        PyErr_Format(PyExc_ValueError, "%s must lie strictly between 0 and 1, got %s", argname, buf);
        return -1;
    }
    return 0;
}

int ab_check_min_long(long long value, long long min, const char *argname)
{
    if (value < min) {
        PyErr_Format(PyExc_ValueError, "%s must be at least %lld, got %lld", argname, min, value);
        return -1;
    }
    return 0;
}

/* ---- Added by the stats/gate unit ---------------------------------------- */
#include "stats.h"

static int is_real_0d_array(PyObject *obj, int integer_only)
{
    if (!PyArray_Check(obj) || PyArray_NDIM((PyArrayObject *)obj) != 0)
        return 0;
    int type = PyArray_TYPE((PyArrayObject *)obj);
    return PyTypeNum_ISINTEGER(type) || (!integer_only && PyTypeNum_ISFLOAT(type));
}

static int is_bool_or_complex(PyObject *obj)
{
    return PyBool_Check(obj) || PyArray_IsScalar(obj, Bool) || PyComplex_Check(obj) ||
           PyArray_IsScalar(obj, ComplexFloating);
}

int ab_real_arg(PyObject *obj, const char *argname, double *out)
{
    int real;
    if (PyArray_Check(obj)) {
        real = is_real_0d_array(obj, 0);
    } else {
        PyNumberMethods *nb = Py_TYPE(obj)->tp_as_number;
        real = !is_bool_or_complex(obj) && nb != NULL && (nb->nb_float != NULL || nb->nb_index != NULL);
    }
    if (!real) {
        PyErr_Format(PyExc_TypeError, "%s must be a real number, not %.200s", argname, Py_TYPE(obj)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s is too large for a float", argname);
        }
        return -1;
    }
    *out = v;
    return 0;
}

/* A new reference to int(obj) if obj is an integer (not bool or float). */
static PyObject *integer_of(PyObject *obj, const char *argname)
{
    int integer = PyArray_Check(obj) ? is_real_0d_array(obj, 1)
                                     : !is_bool_or_complex(obj) && !PyFloat_Check(obj) && PyIndex_Check(obj);
    if (!integer) {
        PyErr_Format(PyExc_TypeError, "%s must be an integer, not %.200s", argname, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PyNumber_Index(obj);
}

int ab_integer_arg(PyObject *obj, const char *argname, long long min, long long max, long long *out)
{
    PyObject *v = integer_of(obj, argname);
    if (v == NULL)
        return -1;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (overflow == 0 && x < min)) {
        PyErr_Format(PyExc_ValueError, "%s must be at least %lld", argname, min);
        return -1;
    }
    if (overflow > 0 || x > max) {
        PyErr_Format(PyExc_ValueError, "%s must be at most %lld", argname, max);
        return -1;
    }
    *out = x;
    return 0;
}

int ab_seed_arg(PyObject *obj, const char *argname, uint64_t *out)
{
    PyObject *v = integer_of(obj, argname);
    if (v == NULL)
        return -1;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be an integer in [0, 2**64), got %S", argname, v);
        }
        Py_DECREF(v);
        return -1;
    }
    Py_DECREF(v);
    *out = (uint64_t)x;
    return 0;
}

int ab_bootstrap_params_from(PyObject *confidence, PyObject *resamples, PyObject *seed,
                             ab_bootstrap_params *out)
{
    ab_bootstrap_params p = {AB_DEFAULT_CONFIDENCE, AB_DEFAULT_RESAMPLES, AB_DEFAULT_SEED};
    long long count;
    if (confidence != NULL &&
        (ab_real_arg(confidence, "confidence", &p.confidence) < 0 || ab_check_confidence(p.confidence, "confidence") < 0))
        return -1;
    if (resamples != NULL) {
        if (ab_integer_arg(resamples, "resamples", 1, AB_MAX_RESAMPLES, &count) < 0)
            return -1;
        p.resamples = (size_t)count;
    }
    if (seed != NULL && ab_seed_arg(seed, "seed", &p.seed) < 0)
        return -1;
    *out = p;
    return 0;
}

int ab_check_positive(PyArrayObject *arr, const char *argname)
{
    const double *x = (const double *)PyArray_DATA(arr);
    npy_intp n = PyArray_SIZE(arr);
    for (npy_intp i = 0; i < n; i++) {
        if (!(x[i] > 0.0)) {
            char *text = PyOS_double_to_string(x[i], 'r', 0, 0, NULL);
            if (text == NULL)
                return -1;
            PyErr_Format(PyExc_ValueError, "%s[%zd] is %s; %s must hold positive values (times)", argname,
                         (Py_ssize_t)i, text, argname);
            PyMem_Free(text);
            return -1;
        }
    }
    return 0;
}

int ab_raise_stats_status(int status, const char *context)
{
    if (status == AB_STATS_NOMEM)
        PyErr_NoMemory();
    else
        PyErr_Format(PyExc_ValueError, "%s: %s", context, ab_stats_strerror((ab_stats_status)status));
    return -1;
}

PyArrayObject *ab_float_array_from_object(PyObject *obj, const char *argname)
{
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROM_O(obj);
    if (arr == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be an array of float16, float32 or float64 numbers", argname);
        }
        return NULL;
    }
    int type = PyArray_TYPE(arr);
    if (type != NPY_HALF && type != NPY_FLOAT && type != NPY_DOUBLE) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype float16, float32 or float64, got %R", argname,
                     (PyObject *)PyArray_DESCR(arr));
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}
