/* bind_gate.c: Python bindings of the gate unit (gate.h).
 *
 * check_close walks its two arrays with a buffered NpyIter in C order, so
 * any strides, byte orders and the three float dtypes are read as doubles
 * without copying whole arrays; the running flat index is then a C-order
 * index, which worst_index unravels.  The GIL is released around every
 * computation.  The documented entry points are attnbench.gate's wrappers. */
#include "pyutil.h"
#include "gate.h"

#include <math.h>

static int check_same_shape(PyArrayObject *out, PyArrayObject *ref)
{
    if (PyArray_NDIM(out) == PyArray_NDIM(ref) &&
        PyArray_CompareLists(PyArray_DIMS(out), PyArray_DIMS(ref), PyArray_NDIM(out)))
        return 0;
    PyObject *so = PyArray_IntTupleFromIntp(PyArray_NDIM(out), PyArray_DIMS(out));
    PyObject *sr = PyArray_IntTupleFromIntp(PyArray_NDIM(ref), PyArray_DIMS(ref));
    if (so != NULL && sr != NULL)
        PyErr_Format(PyExc_ValueError, "out and ref must have the same shape, got %R and %R", so, sr);
    Py_XDECREF(so);
    Py_XDECREF(sr);
    return -1;
}

/* A real number that is finite and >= 0 (atol, rtol, tolerance < 1 when below_one). */
static int tolerance_arg(PyObject *obj, const char *argname, int below_one, double *out)
{
    if (ab_real_arg(obj, argname, out) < 0)
        return -1;
    if (!(isfinite(*out) && *out >= 0.0 && (!below_one || *out < 1.0))) {
        PyErr_Format(PyExc_ValueError, "%s must be finite and %s, got %R", argname,
                     below_one ? "in [0, 1)" : ">= 0", obj);
        return -1;
    }
    return 0;
}

/* A real number that is finite and > 0 (speedup_gate's threshold). */
static int threshold_arg(PyObject *obj, double *out)
{
    if (ab_real_arg(obj, "threshold", out) < 0)
        return -1;
    if (!(isfinite(*out) && *out > 0.0)) {
        PyErr_Format(PyExc_ValueError, "threshold must be finite and > 0, got %R", obj);
        return -1;
    }
    return 0;
}

/* Compare all elements of out and ref (same shape) into *res, C order. */
static int compare_arrays(PyArrayObject *out, PyArrayObject *ref, double atol, double rtol, ab_close_result *res)
{
    ab_close_begin(res);
    if (PyArray_SIZE(out) == 0)
        return 0;
    PyArrayObject *ops[2] = {out, ref};
    npy_uint32 op_flags[2] = {NPY_ITER_READONLY | NPY_ITER_NBO | NPY_ITER_ALIGNED,
                              NPY_ITER_READONLY | NPY_ITER_NBO | NPY_ITER_ALIGNED};
    PyArray_Descr *f64 = PyArray_DescrFromType(NPY_DOUBLE);
    PyArray_Descr *op_dtypes[2] = {f64, f64};
    NpyIter *iter = NpyIter_MultiNew(2, ops, NPY_ITER_EXTERNAL_LOOP | NPY_ITER_BUFFERED | NPY_ITER_GROWINNER,
                                     NPY_CORDER, NPY_SAFE_CASTING, op_flags, op_dtypes);
    Py_DECREF(f64);
    if (iter == NULL)
        return -1;
    NpyIter_IterNextFunc *next = NpyIter_GetIterNext(iter, NULL);
    if (next == NULL) {
        NpyIter_Deallocate(iter);
        return -1;
    }
    char **data = NpyIter_GetDataPtrArray(iter);
    npy_intp *stride = NpyIter_GetInnerStrideArray(iter);
    npy_intp *count = NpyIter_GetInnerLoopSizePtr(iter);
    PyThreadState *saved = NpyIter_IterationNeedsAPI(iter) ? NULL : PyEval_SaveThread();
    do {
        ab_close_accumulate(res, data[0], stride[0], data[1], stride[1], (size_t)*count, atol, rtol);
    } while (next(iter));
    if (saved != NULL)
        PyEval_RestoreThread(saved);
    int rc = PyErr_Occurred() ? -1 : 0;
    if (NpyIter_Deallocate(iter) != NPY_SUCCEED)
        rc = -1;
    return rc;
}

/* The multi-index (a tuple) of C-order flat index `flat` in an array of
 * shape dims[0..ndim-1]; None for an empty array. */
static PyObject *worst_index_tuple(const ab_close_result *res, int ndim, const npy_intp *dims)
{
    if (res->size == 0)
        Py_RETURN_NONE;
    npy_intp index[NPY_MAXDIMS];
    size_t flat = res->worst;
    for (int d = ndim - 1; d >= 0; d--) {
        index[d] = (npy_intp)(flat % (size_t)dims[d]);
        flat /= (size_t)dims[d];
    }
    return PyArray_IntTupleFromIntp(ndim, index);
}

PyDoc_STRVAR(check_close_doc,
"check_close(out, ref, atol, rtol)\n--\n\n"
"Compare out with ref elementwise.  Documented at attnbench.check_close.");

static PyObject *py_check_close(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"out", "ref", "atol", "rtol", NULL};
    PyObject *out_obj, *ref_obj, *atol_obj, *rtol_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO:check_close", kwlist, &out_obj, &ref_obj, &atol_obj,
                                     &rtol_obj))
        return NULL;
    PyArrayObject *out = NULL, *ref = NULL;
    PyObject *result = NULL, *worst = NULL;
    double atol, rtol;
    ab_close_result res;
    if ((out = ab_float_array_from_object(out_obj, "out")) == NULL ||
        (ref = ab_float_array_from_object(ref_obj, "ref")) == NULL || check_same_shape(out, ref) < 0 ||
        tolerance_arg(atol_obj, "atol", 0, &atol) < 0 || tolerance_arg(rtol_obj, "rtol", 0, &rtol) < 0 ||
        compare_arrays(out, ref, atol, rtol, &res) < 0 ||
        (worst = worst_index_tuple(&res, PyArray_NDIM(out), PyArray_DIMS(out))) == NULL)
        goto done;
    result = Py_BuildValue("{s:O,s:d,s:d,s:n,s:O,s:n,s:n}", "passed", ab_close_passed(&res) ? Py_True : Py_False,
                           "max_abs", res.max_abs, "max_rel", res.max_rel, "mismatches", (Py_ssize_t)res.mismatches,
                           "worst_index", worst, "nan_count", (Py_ssize_t)res.nan_count, "inf_count",
                           (Py_ssize_t)res.inf_count);
done:
    Py_XDECREF(out);
    Py_XDECREF(ref);
    Py_XDECREF(worst);
    return result;
}

/* Samples of times: 1-D, finite, positive. */
static PyArrayObject *times_from_object(PyObject *obj, const char *argname)
{
    PyArrayObject *x = ab_samples_from_object(obj, argname, 1);
    if (x != NULL && ab_check_positive(x, argname) < 0)
        Py_CLEAR(x);
    return x;
}

PyDoc_STRVAR(speedup_gate_doc,
"speedup_gate(candidate, baseline[, threshold, confidence, resamples, seed]) -> dict\n\n"
"Is candidate faster than baseline, significantly?  Omitted arguments take\n"
"the defaults of gate.h and stats.h.  Documented at attnbench.speedup_gate.");

static PyObject *py_speedup_gate(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"candidate", "baseline", "threshold", "confidence", "resamples", "seed", NULL};
    PyObject *cand_obj, *base_obj, *thr_obj = NULL, *conf_obj = NULL, *res_obj = NULL, *seed_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOOO:speedup_gate", kwlist, &cand_obj, &base_obj, &thr_obj,
                                     &conf_obj, &res_obj, &seed_obj))
        return NULL;
    PyArrayObject *cand = NULL, *base = NULL;
    PyObject *result = NULL;
    double threshold = AB_DEFAULT_SPEEDUP_THRESHOLD;
    ab_bootstrap_params p;
    if ((cand = times_from_object(cand_obj, "candidate")) == NULL ||
        (base = times_from_object(base_obj, "baseline")) == NULL ||
        (thr_obj != NULL && threshold_arg(thr_obj, &threshold) < 0) ||
        ab_bootstrap_params_from(conf_obj, res_obj, seed_obj, &p) < 0)
        goto done;
    const double *cd = PyArray_DATA(cand), *bd = PyArray_DATA(base);
    size_t nc = (size_t)PyArray_DIM(cand, 0), nb = (size_t)PyArray_DIM(base, 0);
    ab_speedup_result r;
    ab_stats_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ab_speedup_gate(cd, nc, bd, nb, threshold, p.confidence, p.resamples, p.seed, &r);
    Py_END_ALLOW_THREADS
    if (st != AB_STATS_OK) {
        ab_raise_stats_status(st, "speedup_gate");
        goto done;
    }
    result = Py_BuildValue("{s:d,s:d,s:d,s:d,s:O,s:O,s:O,s:d,s:d}", "ratio", r.ratio, "low", r.low, "high", r.high,
                           "speedup", r.speedup, "passed_speed", r.passed_speed ? Py_True : Py_False,
                           "passed_significance", r.passed_significance ? Py_True : Py_False, "passed",
                           r.passed ? Py_True : Py_False, "threshold", threshold, "confidence", p.confidence);
done:
    Py_XDECREF(cand);
    Py_XDECREF(base);
    return result;
}

PyDoc_STRVAR(regression_gate_doc,
"regression_gate(current, baseline[, tolerance, confidence, resamples, seed]) -> dict\n\n"
"{status, ratio, low, high, tolerance} with status FAST, SAME, SLOW or\n"
"UNCERTAIN.  Omitted arguments take the defaults of gate.h and stats.h.\n"
"Documented at attnbench.regression_gate.");

static PyObject *py_regression_gate(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"current", "baseline", "tolerance", "confidence", "resamples", "seed", NULL};
    PyObject *cur_obj, *base_obj, *tol_obj = NULL, *conf_obj = NULL, *res_obj = NULL, *seed_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOOO:regression_gate", kwlist, &cur_obj, &base_obj, &tol_obj,
                                     &conf_obj, &res_obj, &seed_obj))
        return NULL;
    PyArrayObject *cur = NULL, *base = NULL;
    PyObject *result = NULL;
    double tolerance = AB_DEFAULT_REGRESSION_TOLERANCE;
    ab_bootstrap_params p;
    if ((cur = times_from_object(cur_obj, "current")) == NULL ||
        (base = times_from_object(base_obj, "baseline")) == NULL ||
        (tol_obj != NULL && tolerance_arg(tol_obj, "tolerance", 1, &tolerance) < 0) ||
        ab_bootstrap_params_from(conf_obj, res_obj, seed_obj, &p) < 0)
        goto done;
    const double *cd = PyArray_DATA(cur), *bd = PyArray_DATA(base);
    size_t nc = (size_t)PyArray_DIM(cur, 0), nb = (size_t)PyArray_DIM(base, 0);
    ab_regression_result r;
    ab_stats_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ab_regression_gate(cd, nc, bd, nb, tolerance, p.confidence, p.resamples, p.seed, &r);
    Py_END_ALLOW_THREADS
    if (st != AB_STATS_OK) {
        ab_raise_stats_status(st, "regression_gate");
        goto done;
    }
    result = Py_BuildValue("{s:s,s:d,s:d,s:d,s:d}", "status", ab_regression_name(r.status), "ratio", r.ratio, "low",
                           r.low, "high", r.high, "tolerance", tolerance);
done:
    Py_XDECREF(cur);
    Py_XDECREF(base);
    return result;
}

PyDoc_STRVAR(verdict_doc,
"verdict(speedup)\n--\n\n"
"The verdict word for a speedup.  Documented at attnbench.verdict.");

static PyObject *py_verdict(PyObject *self, PyObject *speedup_obj)
{
    double speedup;
    if (ab_real_arg(speedup_obj, "speedup", &speedup) < 0)
        return NULL;
    const char *name = ab_verdict(speedup);
    if (name == NULL) {
        PyErr_Format(PyExc_ValueError, "speedup must be finite and > 0, got %R", speedup_obj);
        return NULL;
    }
    return PyUnicode_FromString(name);
}

PyDoc_STRVAR(gate_constants_doc,
"_gate_constants()\n--\n\n"
"The defaults and verdict thresholds of gate.h, so the Python layer does not retype them.");

static PyObject *py_gate_constants(PyObject *self, PyObject *unused)
{
    PyObject *thresholds = PyDict_New();
    if (thresholds == NULL)
        return NULL;
    for (size_t i = 0; i < ab_n_verdict_levels; i++) {
        PyObject *v = PyFloat_FromDouble(ab_verdict_levels[i].min_speedup);
        int rc = v == NULL ? -1 : PyDict_SetItemString(thresholds, ab_verdict_levels[i].name, v);
        Py_XDECREF(v);
        if (rc < 0) {
            Py_DECREF(thresholds);
            return NULL;
        }
    }
    PyObject *result = Py_BuildValue("{s:O,s:s,s:d,s:d}", "verdict_thresholds", thresholds, "verdict_below_all",
                                     AB_VERDICT_BELOW_ALL, "speedup_threshold", AB_DEFAULT_SPEEDUP_THRESHOLD,
                                     "regression_tolerance", AB_DEFAULT_REGRESSION_TOLERANCE);
    Py_DECREF(thresholds);
    return result;
}

PyMethodDef ab_gate_methods[] = {
    {"check_close", (PyCFunction)(void (*)(void))py_check_close, METH_VARARGS | METH_KEYWORDS, check_close_doc},
    {"speedup_gate", (PyCFunction)(void (*)(void))py_speedup_gate, METH_VARARGS | METH_KEYWORDS, speedup_gate_doc},
    {"regression_gate", (PyCFunction)(void (*)(void))py_regression_gate, METH_VARARGS | METH_KEYWORDS,
     regression_gate_doc},
    {"verdict", py_verdict, METH_O, verdict_doc},
    {"_gate_constants", py_gate_constants, METH_NOARGS, gate_constants_doc},
    {NULL, NULL, 0, NULL},
};
