/* bind_gpu.c: Python bindings of the GPU side: devices, the kernel registry,
 * single kernel calls, the Launch type (a kernel bound to its tensors, ready
 * to be timed from C) and the timing loop. */
#include <math.h>
#include <string.h>

#include "pyutil.h"
#include <structmember.h>

#include "registry.h"
#include "tensor_py.h"
#include "timing.h"

/* ---- errors and devices ------------------------------------------------ */

static PyObject *raise_error(PyObject *type, const ab_error *e)
{
    PyErr_SetString(type, e->msg[0] ? e->msg : "unknown error");
    return NULL;
}

static int cuda_failed(cudaError_t rc, const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s failed: %s (%s)", what, cudaGetErrorString(rc), cudaGetErrorName(rc));
    return -1;
}

/* Make `device` current; a clear RuntimeError where there is no GPU or driver. */
static int use_device(int device)
{
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count == 0) {
        PyErr_Format(PyExc_RuntimeError, "no CUDA device is available (%s)",
                     rc == cudaSuccess ? "the driver reports 0 devices" : cudaGetErrorString(rc));
        return -1;
    }
    if (device < 0 || device >= count) {
        PyErr_Format(PyExc_ValueError, "device %d does not exist; this machine has %d CUDA device%s", device, count,
                     count == 1 ? "" : "s");
        return -1;
    }
    rc = cudaSetDevice(device);
    return rc == cudaSuccess ? 0 : cuda_failed(rc, "cudaSetDevice");
}

/* The GPU functions leave the calling thread's current device as they found
 * it (torch and other frameworks read it).  Only a call that changed it pays
 * for a cudaSetDevice back: on one GPU nothing changes. */
typedef struct {
    int prev, known;
} device_guard;

static device_guard guard_enter(void)
{
    device_guard g = {0, 0};
    if (cudaGetDevice(&g.prev) == cudaSuccess)
        g.known = 1;
    else
        cudaGetLastError();
    return g;
}

static void guard_leave(device_guard g)
{
    int now;
    if (g.known && cudaGetDevice(&now) == cudaSuccess && now != g.prev)
        cudaSetDevice(g.prev);
    cudaGetLastError();  /* errors were turned into exceptions already */
}

#define DEVICE_RESTORING(fn, first_t)                                                   \
    static PyObject *fn##_restoring(first_t first, PyObject *args, PyObject *kw)         \
    {                                                                                   \
        device_guard g = guard_enter();                                                 \
        PyObject *r = fn(first, args, kw);                                              \
        guard_leave(g);                                                                 \
        return r;                                                                       \
    }

#define DEVICE_RESTORING_POSITIONAL(fn)                                                 \
    static PyObject *fn##_restoring(PyObject *self, PyObject *args)                     \
    {                                                                                   \
        device_guard g = guard_enter();                                                 \
        PyObject *r = fn(self, args);                                                   \
        guard_leave(g);                                                                 \
        return r;                                                                       \
    }

static int device_sm(int device, int *sm)
{
    int major, minor;
    cudaError_t rc = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    if (rc == cudaSuccess)
        rc = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    if (rc != cudaSuccess)
        return cuda_failed(rc, "cudaDeviceGetAttribute");
    *sm = 10 * major + minor;
    return 0;
}

PyDoc_STRVAR(device_count_doc, "device_count() -> int\n\nNumber of CUDA devices; 0 where there is no GPU or driver.");
static PyObject *py_device_count(PyObject *self, PyObject *unused)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        count = 0;
    }
    return PyLong_FromLong(count);
}

PyDoc_STRVAR(device_info_doc, "device_info(device=0) -> dict\n\nName, SM count, clocks, memory, L2 and versions.");
static PyObject *py_device_info(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"device", NULL};
    int device = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|i", kwlist, &device) || use_device(device) < 0)
        return NULL;
    struct cudaDeviceProp p;
    cudaError_t rc = cudaGetDeviceProperties(&p, device);
    if (rc != cudaSuccess)
        return cuda_failed(rc, "cudaGetDeviceProperties"), NULL;
    int clock_khz = 0, mem_khz = 0, driver = 0, runtime = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device);
    cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device);
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cudaGetLastError();  /* an attribute this device lacks must not be blamed on a later launch */
    return Py_BuildValue("{s:i,s:s,s:i,s:i,s:i,s:i,s:K,s:i,s:i,s:i,s:i,s:i,s:i}", "device", device, "name", p.name,
                         "sm", 10 * p.major + p.minor, "sm_count", p.multiProcessorCount, "clock_khz", clock_khz,
                         "memory_clock_khz", mem_khz, "total_memory", (unsigned long long)p.totalGlobalMem,
                         "l2_bytes", p.l2CacheSize, "shared_memory_per_block_optin", (int)p.sharedMemPerBlockOptin,
                         "memory_bus_width", p.memoryBusWidth, "driver_version", driver, "runtime_version", runtime,
                         "ecc", p.ECCEnabled);
}

/* ---- the registry ------------------------------------------------------ */

static PyObject *kernel_dict(const ab_kernel *k)
{
    PyObject *dtypes = PyList_New(0), *dims = PyList_New(0), *configs = PyList_New(0);
    if (!dtypes || !dims || !configs)
        goto fail;
    for (int d = AB_FLOAT16; d <= AB_FLOAT32; d++)
        if (k->dtypes & AB_DTYPE_BIT(d)) {
            PyObject *s = PyUnicode_FromString(ab_dtype_name((ab_dtype)d));
            if (!s || PyList_Append(dtypes, s) < 0) { Py_XDECREF(s); goto fail; }
            Py_DECREF(s);
        }
    if (k->head_dims != NULL)
        for (int i = 0; i < k->n_head_dims; i++) {
            PyObject *v = PyLong_FromLong(k->head_dims[i]);
            if (!v || PyList_Append(dims, v) < 0) { Py_XDECREF(v); goto fail; }
            Py_DECREF(v);
        }
    for (int i = 0; i < k->n_configs; i++) {
        PyObject *s = PyUnicode_FromString(k->configs[i]);
        if (!s || PyList_Append(configs, s) < 0) { Py_XDECREF(s); goto fail; }
        Py_DECREF(s);
    }
    return Py_BuildValue("{s:s,s:s,s:N,s:N,s:i,s:O,s:O,s:O,s:i,s:i,s:s,s:N}", "name", k->name, "description",
                         k->description, "dtypes", dtypes, "head_dims", dims, "max_head_dim", k->max_head_dim,
                         "causal", k->causal ? Py_True : Py_False, "gqa", k->gqa ? Py_True : Py_False, "lse",
                         k->lse ? Py_True : Py_False, "min_sm", k->min_sm, "max_sm", k->max_sm, "archs", k->archs,
                         "configs", configs);
fail:
    Py_XDECREF(dtypes);
    Py_XDECREF(dims);
    Py_XDECREF(configs);
    return NULL;
}

PyDoc_STRVAR(kernels_doc, "kernels() -> list of dict\n\nThe registered kernels and what each supports.");
static PyObject *py_kernels(PyObject *self, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    for (int i = 0; list && i < ab_registry_count(); i++) {
        PyObject *d = kernel_dict(ab_registry_get(i));
        if (d == NULL || PyList_Append(list, d) < 0) {
            Py_XDECREF(d);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(d);
    }
    return list;
}

static const ab_kernel *find_kernel(const char *impl)
{
    const ab_kernel *k = ab_registry_find(impl);
    if (k == NULL) {
        char names[512] = "";
        for (int i = 0; i < ab_registry_count(); i++) {
            size_t len = strlen(names);
            snprintf(names + len, sizeof names - len, "%s'%s'", i ? ", " : "", ab_registry_get(i)->name);
        }
        PyErr_Format(PyExc_ValueError, "impl '%s' is not a registered kernel; registered: %s", impl, names);
    }
    return k;
}

/* ---- one problem: tensors -> checked ab_attn_args ---------------------- */

typedef struct problem {
    ab_attn_args args;
    int device, sm;
} problem;

/* `dlpack_stream`: the stream the tensors are wanted on (see tensor_py.h). */
static int parse_problem(PyObject *q, PyObject *k, PyObject *v, PyObject *o, PyObject *lse, int causal,
                         PyObject *scale, long long dlpack_stream, problem *p)
{
    ab_tensor tq, tk, tv, to, tl;
    if (ab_tensor_from_object(q, "q", dlpack_stream, &tq) < 0 || ab_tensor_from_object(k, "k", dlpack_stream, &tk) < 0 ||
        ab_tensor_from_object(v, "v", dlpack_stream, &tv) < 0 || ab_tensor_from_object(o, "out", dlpack_stream, &to) < 0)
        return -1;
    int want_lse = lse != NULL && lse != Py_None;
    if (want_lse && ab_tensor_from_object(lse, "lse", dlpack_stream, &tl) < 0)
        return -1;
    double s;
    if (scale == NULL || scale == Py_None) {
        s = tq.ndim == 4 && tq.shape[3] > 0 ? 1.0 / sqrt((double)tq.shape[3]) : 1.0;
    } else {
        if (PyBool_Check(scale) || !PyNumber_Check(scale)) {
            PyErr_SetString(PyExc_TypeError, "scale must be a real number or None");
            return -1;
        }
        s = PyFloat_AsDouble(scale);
        if (s == -1.0 && PyErr_Occurred())
            return -1;
    }
    ab_error err = {{0}};
    if (ab_args_from_tensors(&tq, &tk, &tv, &to, want_lse ? &tl : NULL, causal, s, &p->args, &err) < 0)
        return raise_error(PyExc_ValueError, &err), -1;
    p->device = tq.device_id;
    if (use_device(p->device) < 0 || device_sm(p->device, &p->sm) < 0)
        return -1;
    return 0;
}

static int kernel_and_config(const char *impl, const char *config, const problem *p, const ab_kernel **kernel,
                             int *index)
{
    const ab_kernel *k = find_kernel(impl);
    if (k == NULL)
        return -1;
    ab_error err = {{0}};
    if (ab_kernel_supports(k, &p->args, p->sm, &err) < 0)
        return raise_error(PyExc_ValueError, &err), -1;
    *index = 0;
    if (config != NULL && (*index = ab_kernel_config(k, config, &err)) < 0)
        return raise_error(PyExc_ValueError, &err), -1;
    *kernel = k;
    return 0;
}

PyDoc_STRVAR(supports_doc,
"supports(impl, q, k, v, out, lse=None, causal=False, scale=None) -> str or None\n\n"
"None if kernel `impl` can run this problem on this GPU, else the reason.");
static PyObject *py_supports(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"impl", "q", "k", "v", "out", "lse", "causal", "scale", NULL};
    const char *impl;
    PyObject *q, *k, *v, *o, *lse = Py_None, *scale = Py_None;
    int causal = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sOOOO|OpO", kwlist, &impl, &q, &k, &v, &o, &lse, &causal, &scale))
        return NULL;
    const ab_kernel *kern = find_kernel(impl);
    problem p;
    if (kern == NULL || parse_problem(q, k, v, o, lse, causal, scale, AB_DLPACK_NO_SYNC, &p) < 0)
        return NULL;
    ab_error err = {{0}};
    if (ab_kernel_supports(kern, &p.args, p.sm, &err) < 0)
        return PyUnicode_FromString(err.msg);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(attention_doc,
"attention(q, k, v, out, lse=None, causal=False, scale=None, impl='naive', config=None, stream=0)\n\n"
"Enqueue kernel `impl` on `stream` (a cudaStream_t as int), writing `out` (and `lse`).");
static PyObject *py_attention(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"q", "k", "v", "out", "lse", "causal", "scale", "impl", "config", "stream", NULL};
    PyObject *q, *k, *v, *o, *lse = Py_None, *scale = Py_None, *stream_obj = NULL;
    int causal = 0;
    const char *impl = "naive", *config = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|OpOszO", kwlist, &q, &k, &v, &o, &lse, &causal, &scale, &impl,
                                     &config, &stream_obj))
        return NULL;
    cudaStream_t stream = NULL;
    if (stream_obj != NULL && stream_obj != Py_None) {
        stream = (cudaStream_t)PyLong_AsVoidPtr(stream_obj);
        if (stream == NULL && PyErr_Occurred())
            return NULL;
    }
    problem p;
    const ab_kernel *kern;
    int index;
    if (parse_problem(q, k, v, o, lse, causal, scale, ab_dlpack_stream(stream), &p) < 0 ||
        kernel_and_config(impl, config, &p, &kern, &index) < 0)
        return NULL;
    ab_error err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = kern->launch(&p.args, index, stream, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_error(PyExc_RuntimeError, &err);
    Py_RETURN_NONE;
}

/* ---- Launch: a kernel bound to one or more input sets ------------------ */

typedef struct {
    PyObject_HEAD
    const ab_kernel *kernel;
    int config;
    ab_attn_args *sets;       /* input rotation: call i uses sets[i % n_sets] */
    int n_sets, next;
    int calls_per_sample;
    int device;
    PyObject *keep;           /* the tensors, alive while their pointers are used */
    cudaStream_t capture_stream;
    cudaGraph_t graph;
    cudaGraphExec_t graph_exec;
} LaunchObject;

static void launch_dealloc(LaunchObject *self)
{
    if (self->graph_exec)
        cudaGraphExecDestroy(self->graph_exec);
    if (self->graph)
        cudaGraphDestroy(self->graph);
    if (self->capture_stream)
        cudaStreamDestroy(self->capture_stream);
    PyMem_Free(self->sets);
    Py_XDECREF(self->keep);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int launch_calls(LaunchObject *self, cudaStream_t stream, int calls, ab_error *err)
{
    for (int i = 0; i < calls; i++) {
        if (self->kernel->launch(&self->sets[self->next], self->config, stream, err) < 0)
            return -1;
        self->next = (self->next + 1) % self->n_sets;
    }
    return 0;
}

/* The enqueue function the timing loop calls (GIL released). */
static int launch_enqueue(void *ctx, cudaStream_t stream, ab_error *err)
{
    LaunchObject *self = ctx;
    if (self->graph_exec) {
        AB_CUDA_CHECK(err, cudaGraphLaunch(self->graph_exec, stream));
        return 0;
    }
    return launch_calls(self, stream, self->calls_per_sample, err);
}

/* Graph mode: capture calls_per_sample launches (rotating over the sets) on
 * a private stream, since the legacy default stream cannot be captured. */
static int launch_capture(LaunchObject *self, ab_error *err)
{
    AB_CUDA_CHECK(err, cudaStreamCreateWithFlags(&self->capture_stream, cudaStreamNonBlocking));
    AB_CUDA_CHECK(err, cudaStreamBeginCapture(self->capture_stream, cudaStreamCaptureModeThreadLocal));
    int rc = launch_calls(self, self->capture_stream, self->calls_per_sample, err);
    cudaError_t end = cudaStreamEndCapture(self->capture_stream, &self->graph);
    if (rc < 0)
        return -1;
    if (end != cudaSuccess)
        return ab_set_error(err, "cudaStreamEndCapture failed: %s", cudaGetErrorString(end));
    AB_CUDA_CHECK(err, cudaGraphInstantiate(&self->graph_exec, self->graph, 0));
    return 0;
}

static PyObject *launch_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"impl", "sets", "causal", "scale", "config", "calls_per_sample", "graph", NULL};
    const char *impl, *config = NULL;
    PyObject *sets, *scale = Py_None;
    int causal = 0, calls = 1, graph = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|pOzip", kwlist, &impl, &sets, &causal, &scale, &config, &calls,
                                     &graph))
        return NULL;
    PyObject *seq = PySequence_Fast(sets, "sets must be a sequence of (q, k, v, out[, lse]) tuples");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > 1 << 16 || calls < 1) {
        PyErr_SetString(PyExc_ValueError, n < 1 ? "sets must not be empty" : calls < 1 ? "calls_per_sample must be >= 1" : "too many sets");
        Py_DECREF(seq);
        return NULL;
    }
    LaunchObject *self = (LaunchObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    self->sets = PyMem_Calloc((size_t)n, sizeof *self->sets);
    self->keep = seq;  /* owns the reference: keeps the tensors alive */
    self->n_sets = (int)n;
    self->calls_per_sample = calls;
    if (self->sets == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(t) || (PyTuple_GET_SIZE(t) != 4 && PyTuple_GET_SIZE(t) != 5)) {
            PyErr_SetString(PyExc_TypeError, "each of sets must be a (q, k, v, out) or (q, k, v, out, lse) tuple");
            goto fail;
        }
        problem p;
        PyObject *lse = PyTuple_GET_SIZE(t) == 5 ? PyTuple_GET_ITEM(t, 4) : Py_None;
        if (parse_problem(PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1), PyTuple_GET_ITEM(t, 2),
                          PyTuple_GET_ITEM(t, 3), lse, causal, scale, AB_DLPACK_NO_SYNC, &p) < 0)
            goto fail;
        if (i == 0) {
            if (kernel_and_config(impl, config, &p, &self->kernel, &self->config) < 0)
                goto fail;
            self->device = p.device;
        } else {
            const ab_attn_args *a0 = &self->sets[0];
            if (p.device != self->device || p.args.dtype != a0->dtype || p.args.B != a0->B || p.args.Hq != a0->Hq ||
                p.args.Hkv != a0->Hkv || p.args.Sq != a0->Sq || p.args.Sk != a0->Sk || p.args.D != a0->D) {
                PyErr_SetString(PyExc_ValueError, "every input set must have the same shapes, dtype and device");
                goto fail;
            }
            ab_error err = {{0}};
            if (ab_kernel_supports(self->kernel, &p.args, p.sm, &err) < 0) {
                raise_error(PyExc_ValueError, &err);
                goto fail;
            }
        }
        self->sets[i] = p.args;
    }
    if (graph) {
        ab_error err = {{0}};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = launch_capture(self, &err);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            raise_error(PyExc_RuntimeError, &err);
            goto fail;
        }
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *launch_call(LaunchObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"stream", NULL};
    PyObject *stream_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &stream_obj))
        return NULL;
    cudaStream_t stream = NULL;
    if (stream_obj != Py_None && (stream = PyLong_AsVoidPtr(stream_obj)) == NULL && PyErr_Occurred())
        return NULL;
    if (use_device(self->device) < 0)
        return NULL;
    ab_error err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = launch_enqueue(self, stream, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_error(PyExc_RuntimeError, &err);
    Py_RETURN_NONE;
}

static PyObject *launch_get_impl(LaunchObject *self, void *c) { return PyUnicode_FromString(self->kernel->name); }
static PyObject *launch_get_config(LaunchObject *self, void *c)
{
    return PyUnicode_FromString(self->kernel->configs[self->config]);
}

static PyGetSetDef launch_getset[] = {
    {"impl", (getter)launch_get_impl, NULL, "the kernel's name", NULL},
    {"config", (getter)launch_get_config, NULL, "the kernel config", NULL},
    {NULL},
};
static PyMemberDef launch_members[] = {
    {"calls_per_sample", T_INT, offsetof(LaunchObject, calls_per_sample), READONLY, "calls in one sample"},
    {"device", T_INT, offsetof(LaunchObject, device), READONLY, "CUDA device index"},
    {NULL},
};

PyDoc_STRVAR(launch_doc,
"Launch(impl, sets, causal=False, scale=None, config=None, calls_per_sample=1, graph=False)\n\n"
"Kernel `impl` bound to input sets [(q, k, v, out[, lse]), ...], launched from C.\n"
"Each sample makes calls_per_sample calls rotating over the sets; with graph=True\n"
"they are captured once into a CUDA graph and a sample is one replay.\n"
"Calling it, launch(stream=0), enqueues one sample.");

DEVICE_RESTORING(launch_new, PyTypeObject *)

static PyObject *launch_call_restoring(PyObject *self, PyObject *args, PyObject *kw)
{
    device_guard g = guard_enter();
    PyObject *r = launch_call((LaunchObject *)self, args, kw);
    guard_leave(g);
    return r;
}

static PyType_Slot launch_slots[] = {
    {Py_tp_new, launch_new_restoring},
    {Py_tp_dealloc, launch_dealloc},
    {Py_tp_call, launch_call_restoring},
    {Py_tp_getset, launch_getset},
    {Py_tp_members, launch_members},
    {Py_tp_doc, (void *)launch_doc},
    {0, NULL},
};

static PyType_Spec launch_spec = {
    .name = "attnbench._core.Launch",
    .basicsize = sizeof(LaunchObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = launch_slots,
};

int ab_gpu_add_types(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &launch_spec, NULL);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(module, "Launch", type);
    Py_DECREF(type);
    return rc;
}

/* ---- the timing loop ---------------------------------------------------- */

typedef struct {
    PyObject *fn;
    int calls;                /* invocations per sample (a graph replay makes many calls in one) */
} py_candidate;

/* A Python callable as a candidate: called with the GIL re-taken.  An
 * exception stays set on this thread and stops the loop. */
static int py_enqueue(void *ctx, cudaStream_t stream, ab_error *err)
{
    py_candidate *c = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = 0;
    for (int i = 0; i < c->calls && rc == 0; i++) {
        PyObject *r = PyObject_CallNoArgs(c->fn);
        if (r == NULL) {
            ab_set_error(err, "a Python candidate raised an exception");
            rc = -1;
        }
        Py_XDECREF(r);
    }
    PyGILState_Release(g);
    return rc;
}

static PyObject *ndarray_from(const double *x, npy_intp n)
{
    PyObject *a = PyArray_SimpleNew(1, &n, NPY_DOUBLE);
    if (a != NULL && n > 0)
        memcpy(PyArray_DATA((PyArrayObject *)a), x, (size_t)n * sizeof *x);
    return a;
}

static PyObject *run_to_dict(const ab_timing_run *run)
{
    PyObject *times = PyList_New(run->n_candidates), *noise = PyList_New(run->n_candidates);
    if (times == NULL || noise == NULL)
        goto fail;
    for (int c = 0; c < run->n_candidates; c++) {
        PyObject *a = ndarray_from(run->times + (size_t)c * run->capacity, run->n_samples);
        if (a == NULL)
            goto fail;
        PyList_SET_ITEM(times, c, a);
        PyList_SET_ITEM(noise, c, PyFloat_FromDouble(run->noise[c]));
    }
    npy_intp n = run->n_samples;
    PyObject *released = PyArray_SimpleNew(1, &n, NPY_BOOL);
    if (released == NULL)
        goto fail;
    for (npy_intp i = 0; i < n; i++)
        ((npy_bool *)PyArray_DATA((PyArrayObject *)released))[i] = run->released_by_timeout[i] != 0;
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:s,s:d,s:i}", "times", times, "sm_mhz",
                         ndarray_from(run->sm_mhz, run->n_samples), "released_by_timeout", released, "noise", noise,
                         "stop_reason", run->stop_reason, "wall_seconds", run->wall_seconds, "samples",
                         run->n_samples);
fail:
    Py_XDECREF(times);
    Py_XDECREF(noise);
    return NULL;
}

PyDoc_STRVAR(time_doc,
"time(candidates, stream=0, device=0, mode='cold', warmup_iters=10, warmup_seconds=0.025,\n"
"     min_samples=20, max_samples=100000, min_gpu_seconds=0.02, max_seconds=3.0,\n"
"     target_noise=0.005, blocking=True, blocking_timeout_ms=100) -> dict\n\n"
"Time candidates round-robin.  A candidate is a Launch or a tuple (callable,\n"
"calls_per_sample[, calls_per_invocation=1]): each sample invokes the callable\n"
"calls_per_sample / calls_per_invocation times (a CUDA graph replay makes many calls in\n"
"one invocation) and the sample's time is divided by calls_per_sample.  Returns raw\n"
"per-call times (seconds) per candidate, the SM clock per round, the stop reason.");
static PyObject *py_time(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"candidates", "stream", "device", "mode", "warmup_iters", "warmup_seconds",
                             "min_samples", "max_samples", "min_gpu_seconds", "max_seconds", "target_noise",
                             "blocking", "blocking_timeout_ms", NULL};
    ab_timing_options opt;
    ab_timing_defaults(&opt);
    PyObject *cands_obj, *stream_obj = Py_None;
    int device = 0;
    const char *mode = "cold";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Oisidiidddpd", kwlist, &cands_obj, &stream_obj, &device, &mode,
                                     &opt.warmup_iters, &opt.warmup_seconds, &opt.min_samples, &opt.max_samples,
                                     &opt.min_gpu_seconds, &opt.max_seconds, &opt.target_noise, &opt.blocking,
                                     &opt.blocking_timeout_ms))
        return NULL;
    if (strcmp(mode, "cold") == 0)
        opt.mode = AB_MODE_COLD;
    else if (strcmp(mode, "hot") == 0)
        opt.mode = AB_MODE_HOT;
    else if (strcmp(mode, "graph") == 0)
        opt.mode = AB_MODE_GRAPH;
    else
        return PyErr_Format(PyExc_ValueError, "mode must be 'cold', 'hot' or 'graph', got '%s'", mode);
    if (ab_check_min_long(opt.warmup_iters, 0, "warmup_iters") < 0 || ab_check_min_long(opt.min_samples, 1, "min_samples") < 0 ||
        ab_check_min_long(opt.max_samples, opt.min_samples, "max_samples") < 0)
        return NULL;
    if (!(opt.max_seconds > 0) || !(opt.target_noise > 0) || !(opt.blocking_timeout_ms > 0) ||
        !(opt.warmup_seconds >= 0) || !(opt.min_gpu_seconds >= 0))
        return PyErr_Format(PyExc_ValueError,
                            "max_seconds, target_noise and blocking_timeout_ms must be > 0; warmup_seconds and "
                            "min_gpu_seconds >= 0");
    cudaStream_t stream = NULL;
    if (stream_obj != Py_None && (stream = PyLong_AsVoidPtr(stream_obj)) == NULL && PyErr_Occurred())
        return NULL;
    /* A private tuple: Python candidates run during the loop and must not be
     * able to free the candidates by editing the caller's list. */
    if (!PySequence_Check(cands_obj))
        return PyErr_Format(PyExc_TypeError, "candidates must be a sequence");
    PyObject *seq = PySequence_Tuple(cands_obj);
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    ab_timed *cands = PyMem_Calloc((size_t)(n ? n : 1), sizeof *cands);
    py_candidate *pys = PyMem_Calloc((size_t)(n ? n : 1), sizeof *pys);
    PyObject *result = NULL;
    PyTypeObject *launch_type = NULL;
    if (cands == NULL || pys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "candidates must not be empty");
        goto done;
    }
    launch_type = (PyTypeObject *)PyObject_GetAttrString(self, "Launch");
    if (launch_type == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyTuple_GET_ITEM(seq, i);
        if (Py_IS_TYPE(c, launch_type)) {
            LaunchObject *l = (LaunchObject *)c;
            if (l->device != device) {
                PyErr_Format(PyExc_ValueError, "candidates[%zd] is bound to tensors on cuda:%d but device=%d", i,
                             l->device, device);
                goto done;
            }
            cands[i] = (ab_timed){launch_enqueue, l, l->calls_per_sample};
        } else if (PyTuple_Check(c) && (PyTuple_GET_SIZE(c) == 2 || PyTuple_GET_SIZE(c) == 3) &&
                   PyCallable_Check(PyTuple_GET_ITEM(c, 0))) {
            long calls = PyLong_AsLong(PyTuple_GET_ITEM(c, 1));
            if (calls == -1 && PyErr_Occurred())
                goto done;
            long per = PyTuple_GET_SIZE(c) == 3 ? PyLong_AsLong(PyTuple_GET_ITEM(c, 2)) : 1;
            if (per == -1 && PyErr_Occurred())
                goto done;
            if (calls < 1 || calls > INT32_MAX || per < 1 || calls % per != 0) {
                PyErr_Format(PyExc_ValueError, "candidates[%zd]: calls_per_sample must be >= 1 and a multiple of "
                             "calls_per_invocation (>= 1)", i);
                goto done;
            }
            pys[i].fn = PyTuple_GET_ITEM(c, 0);
            pys[i].calls = (int)(calls / per);
            cands[i] = (ab_timed){py_enqueue, &pys[i], (int)calls};
        } else {
            PyErr_Format(PyExc_TypeError, "candidates[%zd] must be a Launch or a (callable, calls_per_sample) pair", i);
            goto done;
        }
    }
    if (use_device(device) < 0)
        goto done;
    ab_timing_run run;
    ab_error err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ab_time_candidates(cands, (int)n, stream, &opt, &run, &err);
    Py_END_ALLOW_THREADS
    if (rc == 0)
        result = run_to_dict(&run);
    else if (!PyErr_Occurred())
        raise_error(PyExc_RuntimeError, &err);
    ab_timing_run_free(&run);
done:
    Py_XDECREF(launch_type);
    PyMem_Free(cands);
    PyMem_Free(pys);
    Py_DECREF(seq);
    return result;
}

/* ---- holding a stream: the guard against work done on another stream ---- */

typedef struct {
    int *flag;                /* mapped pinned memory the blocking kernel polls */
    ab_clock_probe *probe;
    cudaStream_t stream;
    int released;
    int timed_out;            /* read from the probe at the release */
} stream_block;

/* Let the held stream run, wait for it, keep the probe's verdict and free
 * the mapped memory; a second call does nothing. */
static cudaError_t release_block_nogil(stream_block *b)
{
    if (b->released)
        return cudaSuccess;
    b->released = 1;
    __atomic_store_n(b->flag, 1, __ATOMIC_SEQ_CST);
    cudaError_t rc = cudaStreamSynchronize(b->stream);
    b->timed_out = rc == cudaSuccess && b->probe->timed_out;
    cudaFreeHost(b->flag);
    cudaFreeHost(b->probe);
    b->flag = NULL;
    b->probe = NULL;
    return rc;
}

static int release_block(stream_block *b)
{
    cudaError_t rc = release_block_nogil(b);
    return rc == cudaSuccess ? 0 : cuda_failed(rc, "cudaStreamSynchronize");
}

static void block_capsule_destructor(PyObject *cap)
{
    stream_block *b = PyCapsule_GetPointer(cap, "attnbench.stream_block");
    if (b != NULL) {
        if (release_block(b) < 0)
            PyErr_Clear();
        PyMem_Free(b);
    }
}

PyDoc_STRVAR(block_stream_doc,
"block_stream(stream, device=0, timeout_ms=1000) -> handle\n\n"
"Queue a spin kernel on `stream` that holds back all later work on it until\n"
"release_block(handle) (or the timeout).  Work a candidate puts on `stream`\n"
"cannot run meanwhile, so output appearing before the release was written\n"
"from another stream.");
static PyObject *py_block_stream(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"stream", "device", "timeout_ms", NULL};
    PyObject *stream_obj;
    int device = 0;
    double timeout_ms = 1000;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|id", kwlist, &stream_obj, &device, &timeout_ms))
        return NULL;
    cudaStream_t stream = NULL;
    if (stream_obj != Py_None && (stream = PyLong_AsVoidPtr(stream_obj)) == NULL && PyErr_Occurred())
        return NULL;
    if (!(timeout_ms > 0))
        return PyErr_Format(PyExc_ValueError, "timeout_ms must be > 0");
    if (use_device(device) < 0)
        return NULL;
    stream_block *b = PyMem_Calloc(1, sizeof *b);
    if (b == NULL)
        return PyErr_NoMemory();
    b->stream = stream;
    int *flag_dev;
    ab_clock_probe *probe_dev;
    ab_error err = {{0}};
    cudaError_t rc = ab_host_mapped(sizeof *b->flag, (void **)&b->flag, (void **)&flag_dev);
    if (rc == cudaSuccess)
        rc = ab_host_mapped(sizeof *b->probe, (void **)&b->probe, (void **)&probe_dev);
    if (rc != cudaSuccess) {
        if (b->flag) cudaFreeHost(b->flag);
        if (b->probe) cudaFreeHost(b->probe);
        PyMem_Free(b);
        return cuda_failed(rc, "cudaHostAlloc"), NULL;
    }
    *b->flag = 0;
    if (ab_launch_blocking_kernel(flag_dev, probe_dev, (long long)(timeout_ms * 1e6), 0, stream, &err) < 0) {
        cudaFreeHost(b->flag);
        cudaFreeHost(b->probe);
        PyMem_Free(b);
        return raise_error(PyExc_RuntimeError, &err);
    }
    PyObject *cap = PyCapsule_New(b, "attnbench.stream_block", block_capsule_destructor);
    if (cap == NULL) {
        release_block_nogil(b);  /* keeps the MemoryError */
        PyMem_Free(b);
    }
    return cap;
}

PyDoc_STRVAR(release_block_doc,
"release_block(handle) -> bool\n\nLet the stream run on and wait for it; True if the block\n"
"had already given up by its timeout.");
static const char round_order_doc[] =
"round_order(n, r) -> tuple: the order in which time() samples its n candidates\n"
"in round r: a Williams design, so that over a cycle of n rounds (2n when n is\n"
"odd) every candidate takes every position, and runs right after every other\n"
"candidate, equally often.";

static PyObject *py_round_order(PyObject *self, PyObject *args)
{
    (void)self;
    int n = 0, r = 0;
    if (!PyArg_ParseTuple(args, "ii", &n, &r))
        return NULL;
    if (n < 1 || n > 1 << 20)
        return PyErr_Format(PyExc_ValueError, "round_order: n must be in [1, 2**20], got %d", n);
    if (r < 0)
        return PyErr_Format(PyExc_ValueError, "round_order: r must be >= 0, got %d", r);
    int *order = PyMem_Malloc((size_t)n * sizeof *order);
    if (order == NULL)
        return PyErr_NoMemory();
    ab_round_order(n, r, order);
    PyObject *out = PyTuple_New(n);
    for (int i = 0; out != NULL && i < n; i++) {
        PyObject *v = PyLong_FromLong(order[i]);
        if (v == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    PyMem_Free(order);
    return out;
}

static PyObject *py_release_block(PyObject *self, PyObject *cap)
{
    stream_block *b = PyCapsule_GetPointer(cap, "attnbench.stream_block");
    if (b == NULL)
        return NULL;
    if (b->released)
        return PyErr_Format(PyExc_ValueError, "release_block: this block was already released");
    cudaError_t rc;
    Py_BEGIN_ALLOW_THREADS
    rc = release_block_nogil(b);
    Py_END_ALLOW_THREADS
    if (rc != cudaSuccess)
        return cuda_failed(rc, "cudaStreamSynchronize"), NULL;
    return PyBool_FromLong(b->timed_out);
}

/* ---- NaN scans that allocate nothing (for use while a stream is held) ----
 * Nothing that may wait on the device can run while a stream is held: not an
 * allocation (cudaMalloc, cudaHostAlloc), and not the first launch of a kernel
 * (lazy module loading).  So a counter is made, and its kernel loaded, first. */

typedef struct {
    unsigned long long *count;    /* mapped pinned memory the scan kernel adds into */
    unsigned long long *count_dev;
    cudaStream_t stream;          /* the stream of the last scan */
    int pending;                  /* a scan was queued and its result not yet read */
} nan_counter;

static void nan_counter_destructor(PyObject *cap)
{
    nan_counter *n = PyCapsule_GetPointer(cap, "attnbench.nan_counter");
    if (n != NULL) {
        cudaStreamSynchronize(n->stream);
        cudaFreeHost(n->count);
        PyMem_Free(n);
    }
}

static PyObject *py_nan_counter(PyObject *self, PyObject *args)
{
    int device = 0;
    if (!PyArg_ParseTuple(args, "|i", &device) || use_device(device) < 0)
        return NULL;
    nan_counter *h = PyMem_Calloc(1, sizeof *h);
    if (h == NULL)
        return PyErr_NoMemory();
    cudaError_t rc = ab_host_mapped(sizeof *h->count, (void **)&h->count, (void **)&h->count_dev);
    if (rc != cudaSuccess) {
        PyMem_Free(h);
        return cuda_failed(rc, "cudaHostAlloc"), NULL;
    }
    PyObject *cap = PyCapsule_New(h, "attnbench.nan_counter", nan_counter_destructor);
    if (cap == NULL) {
        cudaFreeHost(h->count);
        PyMem_Free(h);
    }
    return cap;
}

PyDoc_STRVAR(nan_scan_doc,
"nan_scan(counter, x, stream)\n\n"
"Queue a count of the NaN elements of contiguous device tensor x on `stream` into\n"
"`counter` (from nan_counter()); allocates nothing.  nan_scan_result(counter) waits\n"
"for that stream and returns the count.");
static PyObject *py_nan_scan(PyObject *self, PyObject *args)
{
    PyObject *cap, *obj, *stream_obj;
    if (!PyArg_ParseTuple(args, "OOO", &cap, &obj, &stream_obj))
        return NULL;
    nan_counter *h = PyCapsule_GetPointer(cap, "attnbench.nan_counter");
    if (h == NULL)
        return NULL;
    ab_tensor t;
    if (ab_tensor_from_object(obj, "x", AB_DLPACK_NO_SYNC, &t) < 0)
        return NULL;
    if (t.device_type != AB_DEVICE_CUDA || t.dtype < 0)
        return PyErr_Format(PyExc_ValueError, "x must be a CUDA float16/bfloat16/float32 tensor");
    long long n = 1;
    for (int i = t.ndim - 1; i >= 0; i--) {
        if (t.shape[i] != 1 && t.strides[i] != n)
            return PyErr_Format(PyExc_ValueError, "x must be contiguous");
        n *= t.shape[i];
    }
    cudaStream_t stream = NULL;
    if (stream_obj != Py_None && (stream = PyLong_AsVoidPtr(stream_obj)) == NULL && PyErr_Occurred())
        return NULL;
    if (use_device(t.device_id) < 0)
        return NULL;
    /* No synchronisation here (the stream may be held): the previous scan
     * must have been read, so that it cannot add into this one. */
    if (h->pending)
        return PyErr_Format(PyExc_RuntimeError, "nan_scan: read the previous scan with nan_scan_result first");
    *(volatile unsigned long long *)h->count = 0;
    ab_error err = {{0}};
    if (n > 0 && ab_launch_count_nan(t.data, t.dtype, n, h->count_dev, stream, &err) < 0)
        return raise_error(PyExc_RuntimeError, &err);
    h->stream = stream;
    h->pending = 1;
    Py_RETURN_NONE;
}

static PyObject *py_nan_scan_result(PyObject *self, PyObject *cap)
{
    nan_counter *h = PyCapsule_GetPointer(cap, "attnbench.nan_counter");
    if (h == NULL)
        return NULL;
    cudaError_t rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cudaStreamSynchronize(h->stream);
    Py_END_ALLOW_THREADS
    if (rc != cudaSuccess)
        return cuda_failed(rc, "cudaStreamSynchronize"), NULL;
    h->pending = 0;
    return PyLong_FromUnsignedLongLong(*(volatile unsigned long long *)h->count);
}

PyDoc_STRVAR(synchronize_doc, "synchronize(device=0)\n\ncudaDeviceSynchronize, with CUDA errors raised.");
static PyObject *py_synchronize(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"device", NULL};
    int device = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|i", kwlist, &device) || use_device(device) < 0)
        return NULL;
    cudaError_t rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cudaDeviceSynchronize();
    Py_END_ALLOW_THREADS
    if (rc != cudaSuccess)
        return cuda_failed(rc, "cudaDeviceSynchronize"), NULL;
    Py_RETURN_NONE;
}

DEVICE_RESTORING(py_device_info, PyObject *)
DEVICE_RESTORING(py_supports, PyObject *)
DEVICE_RESTORING(py_attention, PyObject *)
DEVICE_RESTORING(py_time, PyObject *)
DEVICE_RESTORING(py_block_stream, PyObject *)
DEVICE_RESTORING(py_synchronize, PyObject *)

DEVICE_RESTORING_POSITIONAL(py_nan_counter)
DEVICE_RESTORING_POSITIONAL(py_nan_scan)

PyMethodDef ab_gpu_methods[] = {
    {"device_count", py_device_count, METH_NOARGS, device_count_doc},
    {"device_info", (PyCFunction)(void (*)(void))py_device_info_restoring, METH_VARARGS | METH_KEYWORDS, device_info_doc},
    {"kernels", py_kernels, METH_NOARGS, kernels_doc},
    {"supports", (PyCFunction)(void (*)(void))py_supports_restoring, METH_VARARGS | METH_KEYWORDS, supports_doc},
    {"attention", (PyCFunction)(void (*)(void))py_attention_restoring, METH_VARARGS | METH_KEYWORDS, attention_doc},
    {"time", (PyCFunction)(void (*)(void))py_time_restoring, METH_VARARGS | METH_KEYWORDS, time_doc},
    {"block_stream", (PyCFunction)(void (*)(void))py_block_stream_restoring, METH_VARARGS | METH_KEYWORDS, block_stream_doc},
    {"release_block", py_release_block, METH_O, release_block_doc},
    {"round_order", py_round_order, METH_VARARGS, round_order_doc},
    {"nan_counter", py_nan_counter_restoring, METH_VARARGS, "nan_counter(device=0) -> counter for nan_scan."},
    {"nan_scan", py_nan_scan_restoring, METH_VARARGS, nan_scan_doc},
    {"nan_scan_result", py_nan_scan_result, METH_O, "nan_scan_result(counter) -> int: wait for the last scan, return its NaN count."},
    {"synchronize", (PyCFunction)(void (*)(void))py_synchronize_restoring, METH_VARARGS | METH_KEYWORDS, synchronize_doc},
    {NULL, NULL, 0, NULL},
};
