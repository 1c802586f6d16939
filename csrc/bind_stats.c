/* bind_stats.c: Python bindings of the stats unit (stats.h).
 *
 * Each function converts and checks its arguments (errors name the
 * argument), releases the GIL while stats.c computes on C buffers, and
 * builds the result.  The documented entry points are attnbench.stats's
 * wrappers; these check everything again so that no input to _core can
 * crash the process. */
#include "pyutil.h"
#include "stats.h"

/* Where ab_summarize's numbers go in the result, in order. */
static PyObject *summary_dict(const ab_summary *s)
{
    return Py_BuildValue("{s:n,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d}", "n", (Py_ssize_t)s->n, "min", s->min,
                         "max", s->max, "mean", s->mean, "std", s->std, "median", s->median, "q1", s->q1, "q3",
                         s->q3, "iqr", s->iqr, "mad", s->mad, "rel_std", s->rel_std);
}

/* Add {q: value} under "quantiles" and each value under "p<100 q>". */
static int add_quantiles(PyObject *result, const double *q, const double *values, npy_intp nq)
{
    PyObject *by_q = PyDict_New();
    if (by_q == NULL)
        return -1;
    int rc = PyDict_SetItemString(result, "quantiles", by_q);
    for (npy_intp j = 0; j < nq && rc == 0; j++) {
        PyObject *key = PyFloat_FromDouble(q[j]), *value = PyFloat_FromDouble(values[j]);
        char name[40];
        PyOS_snprintf(name, sizeof name, "p%g", q[j] * 100.0);
        rc = (key == NULL || value == NULL || PyDict_SetItem(by_q, key, value) < 0 ||
              PyDict_SetItemString(result, name, value) < 0) ? -1 : 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    Py_DECREF(by_q);
    return rc;
}

/* The quantiles argument as a float64 array of values in [0, 1]. */
static PyArrayObject *quantiles_from_object(PyObject *obj)
{
    if (obj == NULL) {
        npy_intp n = (npy_intp)ab_n_default_quantiles;
        PyArrayObject *q = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_DOUBLE);
        if (q != NULL)
            memcpy(PyArray_DATA(q), ab_default_quantiles, sizeof(double) * ab_n_default_quantiles);
        return q;
    }
    PyArrayObject *q = ab_samples_from_object(obj, "quantiles", 0);
    if (q == NULL)
        return NULL;
    const double *v = (const double *)PyArray_DATA(q);
    for (npy_intp j = 0; j < PyArray_DIM(q, 0); j++) {
        if (!(v[j] >= 0.0 && v[j] <= 1.0)) {
            PyErr_Format(PyExc_ValueError, "quantiles[%zd] lies outside [0, 1]", (Py_ssize_t)j);
            Py_DECREF(q);
            return NULL;
        }
    }
    return q;
}

PyDoc_STRVAR(summarize_doc,
"summarize(samples[, quantiles]) -> dict\n\n"
"Summary statistics of 1-D finite samples; omitted arguments take the\n"
"defaults of stats.h.  Documented at attnbench.summarize.");

static PyObject *py_summarize(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"samples", "quantiles", NULL};
    PyObject *samples_obj, *quantiles_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:summarize", kwlist, &samples_obj, &quantiles_obj))
        return NULL;
    PyArrayObject *x = NULL, *q = NULL, *values = NULL;
    PyObject *result = NULL;
    if ((x = ab_samples_from_object(samples_obj, "samples", 1)) == NULL ||
        (q = quantiles_from_object(quantiles_obj)) == NULL)
        goto done;
    npy_intp nq = PyArray_DIM(q, 0);
    if ((values = (PyArrayObject *)PyArray_SimpleNew(1, &nq, NPY_DOUBLE)) == NULL)
        goto done;

    const double *xd = PyArray_DATA(x), *qd = PyArray_DATA(q);
    double *vd = PyArray_DATA(values);
    size_t n = (size_t)PyArray_DIM(x, 0);
    ab_summary s;
    ab_stats_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ab_summarize(xd, n, qd, (size_t)nq, vd, &s);
    Py_END_ALLOW_THREADS
    if (st != AB_STATS_OK) {
        ab_raise_stats_status(st, "summarize");
        goto done;
    }
    if ((result = summary_dict(&s)) != NULL && add_quantiles(result, qd, vd, nq) < 0)
        Py_CLEAR(result);
done:
    Py_XDECREF(x);
    Py_XDECREF(q);
    Py_XDECREF(values);
    return result;
}

/* The statistic argument: a str naming an ab_statistic. */
static int statistic_from_object(PyObject *obj, ab_statistic *out)
{
    if (obj == NULL) {
        *out = AB_DEFAULT_STATISTIC;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "statistic must be a str, not %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    const char *name = PyUnicode_AsUTF8AndSize(obj, &len);
    if (name == NULL)
        return -1;
    if ((size_t)len != strlen(name) || ab_statistic_from_name(name, out) < 0) {
        char known[128] = "";
        for (int i = 0; i < AB_N_STATISTICS; i++) {
            size_t used = strlen(known);
            PyOS_snprintf(known + used, sizeof known - used, "%s'%s'", i ? ", " : "", ab_statistic_name((ab_statistic)i));
        }
        PyErr_Format(PyExc_ValueError, "statistic must be one of %s, got %R", known, obj);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(bootstrap_ci_doc,
"bootstrap_ci(samples[, statistic, confidence, resamples, seed]) -> (point, low, high)\n\n"
"Percentile-bootstrap interval; omitted arguments take the defaults of\n"
"stats.h.  Documented at attnbench.bootstrap_ci.");

static PyObject *py_bootstrap_ci(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"samples", "statistic", "confidence", "resamples", "seed", NULL};
    PyObject *samples_obj, *stat_obj = NULL, *conf_obj = NULL, *res_obj = NULL, *seed_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OOOO:bootstrap_ci", kwlist, &samples_obj, &stat_obj,
                                     &conf_obj, &res_obj, &seed_obj))
        return NULL;
    ab_statistic stat;
    ab_bootstrap_params p;
    PyArrayObject *x = ab_samples_from_object(samples_obj, "samples", 1);
    if (x == NULL)
        return NULL;
    if (statistic_from_object(stat_obj, &stat) < 0 || ab_bootstrap_params_from(conf_obj, res_obj, seed_obj, &p) < 0) {
        Py_DECREF(x);
        return NULL;
    }
    const double *xd = PyArray_DATA(x);
    size_t n = (size_t)PyArray_DIM(x, 0);
    ab_interval iv;
    ab_stats_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ab_bootstrap_ci(xd, n, stat, p.confidence, p.resamples, p.seed, &iv);
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    if (st != AB_STATS_OK) {
        ab_raise_stats_status(st, "bootstrap_ci");
        return NULL;
    }
    return Py_BuildValue("(ddd)", iv.point, iv.low, iv.high);
}

PyDoc_STRVAR(ratio_ci_doc,
"ratio_ci(a, b[, confidence, resamples, seed]) -> (ratio, low, high)\n\n"
"Interval of median(a) / median(b); omitted arguments take the defaults\n"
"of stats.h.  Documented at attnbench.ratio_ci.");

static PyObject *py_ratio_ci(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"a", "b", "confidence", "resamples", "seed", NULL};
    PyObject *a_obj, *b_obj, *conf_obj = NULL, *res_obj = NULL, *seed_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOO:ratio_ci", kwlist, &a_obj, &b_obj, &conf_obj, &res_obj,
                                     &seed_obj))
        return NULL;
    ab_bootstrap_params p;
    PyArrayObject *a = NULL, *b = NULL;
    PyObject *result = NULL;
    if ((a = ab_samples_from_object(a_obj, "a", 1)) == NULL || (b = ab_samples_from_object(b_obj, "b", 1)) == NULL ||
        ab_check_positive(b, "b") < 0 || ab_bootstrap_params_from(conf_obj, res_obj, seed_obj, &p) < 0)
        goto done;
    const double *ad = PyArray_DATA(a), *bd = PyArray_DATA(b);
    size_t na = (size_t)PyArray_DIM(a, 0), nb = (size_t)PyArray_DIM(b, 0);
    ab_interval iv;
    ab_stats_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ab_ratio_ci(ad, na, bd, nb, p.confidence, p.resamples, p.seed, &iv);
    Py_END_ALLOW_THREADS
    if (st != AB_STATS_OK)
        ab_raise_stats_status(st, "ratio_ci");
    else
        result = Py_BuildValue("(ddd)", iv.point, iv.low, iv.high);
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return result;
}

PyDoc_STRVAR(stats_constants_doc,
"_stats_constants()\n--\n\n"
"The defaults and limits of stats.h, so the Python layer does not retype them.");

static PyObject *py_stats_constants(PyObject *self, PyObject *unused)
{
    PyObject *quantiles = PyTuple_New((Py_ssize_t)ab_n_default_quantiles);
    PyObject *statistics = PyTuple_New(AB_N_STATISTICS);
    PyObject *result = NULL;
    if (quantiles == NULL || statistics == NULL)
        goto done;
    for (size_t j = 0; j < ab_n_default_quantiles; j++) {
        PyObject *v = PyFloat_FromDouble(ab_default_quantiles[j]);
        if (v == NULL)
            goto done;
        PyTuple_SET_ITEM(quantiles, (Py_ssize_t)j, v);
    }
    for (int i = 0; i < AB_N_STATISTICS; i++) {
        PyObject *v = PyUnicode_FromString(ab_statistic_name((ab_statistic)i));
        if (v == NULL)
            goto done;
        PyTuple_SET_ITEM(statistics, i, v);
    }
    result = Py_BuildValue("{s:d,s:i,s:i,s:i,s:O,s:s,s:O}", "confidence", AB_DEFAULT_CONFIDENCE, "resamples",
                           AB_DEFAULT_RESAMPLES, "seed", AB_DEFAULT_SEED, "max_resamples", AB_MAX_RESAMPLES,
                           "quantiles", quantiles, "statistic", ab_statistic_name(AB_DEFAULT_STATISTIC),
                           "statistics", statistics);
done:
    Py_XDECREF(quantiles);
    Py_XDECREF(statistics);
    return result;
}

PyMethodDef ab_stats_methods[] = {
    {"summarize", (PyCFunction)(void (*)(void))py_summarize, METH_VARARGS | METH_KEYWORDS, summarize_doc},
    {"bootstrap_ci", (PyCFunction)(void (*)(void))py_bootstrap_ci, METH_VARARGS | METH_KEYWORDS, bootstrap_ci_doc},
    {"ratio_ci", (PyCFunction)(void (*)(void))py_ratio_ci, METH_VARARGS | METH_KEYWORDS, ratio_ci_doc},
    {"_stats_constants", py_stats_constants, METH_NOARGS, stats_constants_doc},
    {NULL, NULL, 0, NULL},
};
