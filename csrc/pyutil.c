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
