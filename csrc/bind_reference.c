/* bind_reference.c: Python binding of the reference unit (csrc/reference.h):
 * turns q, k, v into C-contiguous float64 arrays, checks their shapes with
 * the unit's own check, and runs the unit with the GIL released.  The checks
 * of causal, return_lse and the type of scale live in
 * python/attnbench/reference.py. */
#include "pyutil.h"

#include <math.h>

#include "attn.h"
#include "reference.h"

enum { N_INPUTS = 3, RANK = 4 };

static const char *const input_names[N_INPUTS] = {"q", "k", "v"};

/* A new reference to `obj` as a 4-d NumPy array of float16, float32 or
 * float64, in whatever layout it has (nothing is copied yet, so shapes can
 * be checked before any conversion).  TypeError / ValueError naming `argname`. */
static PyArrayObject *input_array_from_object(PyObject *obj, const char *argname)
{
    PyArrayObject *arr = ab_float_array_from_object(obj, argname);
    if (arr == NULL)
        return NULL;
    if (PyArray_NDIM(arr) != RANK) {
        PyErr_Format(PyExc_ValueError, "%s must have 4 dimensions [B, H, S, D], got %d", argname,
                     PyArray_NDIM(arr));
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* Replace *arr by its native-endian, aligned, C-contiguous float64 version
 * (the same array when it already is one: it is only read).  -1 on error. */
static int convert_to_contiguous_double(PyArrayObject **arr)
{
    PyArrayObject *converted = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)*arr, NPY_DOUBLE, NPY_ARRAY_IN_ARRAY);
    if (converted == NULL)
        return -1;
    Py_SETREF(*arr, converted);
    return 0;
}

/* The softmax scale: 1 / sqrt(D) for None, else `obj` as a double (its
 * finiteness is the unit's check).  -1 with TypeError naming scale. */
static int scale_from_object(PyObject *obj, int64_t head_dim, double *scale)
{
    if (obj == Py_None) {
        *scale = 1.0 / sqrt((double)head_dim);
        return 0;
    }
    double value = PyFloat_AsDouble(obj);
    if (value == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "scale must be a real number or None, not %s", Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    *scale = value;
    return 0;
}

static PyObject *status_to_exception(ab_ref_status status, const ab_error *err)
{
    PyErr_SetString(status == AB_REF_NO_MEMORY ? PyExc_MemoryError : PyExc_ValueError, err->msg);
    return NULL;
}

PyDoc_STRVAR(reference_attention_doc,
"reference_attention(q, k, v, causal=False, scale=None, return_lse=False)\n"
"--\n\n"
"The float64 oracle attention; use attnbench.reference_attention, which\n"
"checks causal, scale and return_lse and documents the semantics.");

static PyObject *py_reference_attention(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"q", "k", "v", "causal", "scale", "return_lse", NULL};
    PyObject *objs[N_INPUTS], *scale_obj = Py_None;
    int causal = 0, return_lse = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|pOp:reference_attention", kwlist, &objs[0], &objs[1],
                                     &objs[2], &causal, &scale_obj, &return_lse))
        return NULL;

    PyArrayObject *inputs[N_INPUTS] = {NULL, NULL, NULL};
    PyArrayObject *out = NULL, *lse = NULL;
    PyObject *result = NULL;
    int64_t dims[N_INPUTS][RANK];
    ab_error err = {{0}};
    ab_ref_shape shape;
    ab_ref_status status;
    double scale;
    for (int a = 0; a < N_INPUTS; a++) {
        inputs[a] = input_array_from_object(objs[a], input_names[a]);
        if (inputs[a] == NULL)
            goto done;
        for (int d = 0; d < RANK; d++)
            dims[a][d] = (int64_t)PyArray_DIM(inputs[a], d);
    }
    status = ab_ref_shape_from_dims(dims[0], dims[1], dims[2], &shape, &err);
    if (status != AB_REF_OK) {
        status_to_exception(status, &err);
        goto done;
    }
    if (scale_from_object(scale_obj, shape.D, &scale) < 0)
        goto done;
    for (int a = 0; a < N_INPUTS; a++)
        if (convert_to_contiguous_double(&inputs[a]) < 0)
            goto done;

    /* ab_ref_shape_from_dims has checked that these element counts fit npy_intp. */
    npy_intp out_dims[RANK] = {(npy_intp)shape.B, (npy_intp)shape.Hq, (npy_intp)shape.Sq, (npy_intp)shape.Dv};
    out = (PyArrayObject *)PyArray_SimpleNew(RANK, out_dims, NPY_DOUBLE);
    if (out == NULL)
        goto done;
    if (return_lse) {
        lse = (PyArrayObject *)PyArray_SimpleNew(RANK - 1, out_dims, NPY_DOUBLE);
        if (lse == NULL)
            goto done;
    }

    const double *q = PyArray_DATA(inputs[0]), *k = PyArray_DATA(inputs[1]), *v = PyArray_DATA(inputs[2]);
    double *out_data = PyArray_DATA(out), *lse_data = lse != NULL ? PyArray_DATA(lse) : NULL;
    Py_BEGIN_ALLOW_THREADS
    status = ab_reference_attention(&shape, q, k, v, scale, causal, out_data, lse_data, &err);
    Py_END_ALLOW_THREADS
    if (status != AB_REF_OK) {
        status_to_exception(status, &err);
        goto done;
    }
    result = return_lse ? PyTuple_Pack(2, (PyObject *)out, (PyObject *)lse) : Py_NewRef((PyObject *)out);

done:
    for (int a = 0; a < N_INPUTS; a++)
        Py_XDECREF(inputs[a]);
    Py_XDECREF(out);
    Py_XDECREF(lse);
    return result;
}

PyMethodDef ab_reference_methods[] = {
    {"reference_attention", (PyCFunction)(void (*)(void))py_reference_attention, METH_VARARGS | METH_KEYWORDS,
     reference_attention_doc},
    {NULL, NULL, 0, NULL},
};
