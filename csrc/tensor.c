/* tensor.c: read a device tensor from any framework through DLPack
 * (`__dlpack__`) or the CUDA array interface, without linking any framework.
 * The DLPack structs below follow the DLPack v1 ABI (dlpack.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyutil.h"
#include "tensor.h"
#include "tensor_py.h"

typedef struct { int32_t device_type, device_id; } DLDevice;
typedef struct { uint8_t code, bits; uint16_t lanes; } DLDataType;
typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides;  /* NULL: compact row-major */
    uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *);
} DLManagedTensor;
typedef struct { uint32_t major, minor; } DLPackVersion;
typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;

enum { DL_INT = 0, DL_UINT = 1, DL_FLOAT = 2, DL_BFLOAT = 4 };
enum { DL_CUDA_MANAGED = 13 };
#define DLPACK_FLAG_READ_ONLY (1ULL << 0)

static void set_dtype(ab_tensor *t, int code, int bits, int lanes)
{
    t->dtype = -1;
    if (lanes == 1 && code == DL_FLOAT && bits == 16)
        t->dtype = AB_FLOAT16;
    else if (lanes == 1 && code == DL_BFLOAT && bits == 16)
        t->dtype = AB_BFLOAT16;
    else if (lanes == 1 && code == DL_FLOAT && bits == 32)
        t->dtype = AB_FLOAT32;
    if (t->dtype >= 0) {
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s",
                 t->dtype == AB_FLOAT16 ? "float16" : t->dtype == AB_BFLOAT16 ? "bfloat16" : "float32");
        return;
    }
    const char *kind = code == DL_INT ? "int" : code == DL_UINT ? "uint" : code == DL_FLOAT ? "float"
                     : code == DL_BFLOAT ? "bfloat" : "code";
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s%d%s", kind, bits, lanes == 1 ? "" : "xN");
}

static int from_dltensor(const DLTensor *dl, int readonly, const char *argname, ab_tensor *t)
{
    if (dl->ndim < 0 || dl->ndim > AB_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s has %d dimensions; attnbench takes at most %d", argname, (int)dl->ndim,
                     AB_MAX_DIMS);
        return -1;
    }
    memset(t, 0, sizeof *t);
    set_dtype(t, dl->dtype.code, dl->dtype.bits, dl->dtype.lanes);
    t->device_type = dl->device.device_type == DL_CUDA_MANAGED ? AB_DEVICE_CUDA : dl->device.device_type;
    t->device_id = dl->device.device_id;
    t->ndim = dl->ndim;
    t->readonly = readonly;
    int64_t compact = 1;
    for (int i = dl->ndim - 1; i >= 0; i--) {
        t->shape[i] = dl->shape[i];
        t->strides[i] = dl->strides ? dl->strides[i] : compact;
        compact *= dl->shape[i];
    }
    t->data = (char *)dl->data + dl->byte_offset;
    return 0;
}

/* Ask for a capsule ready on `stream`, in DLPack's terms: the stream attnbench
 * will run on (1 for the legacy default stream), or -1 for no synchronisation.
 * Producers differ in what they accept (JAX rejects -1), so a producer that
 * refuses the argument is asked again without it. */
static PyObject *call_dlpack(PyObject *obj, long long stream)
{
    PyObject *meth = PyObject_GetAttrString(obj, "__dlpack__");
    if (meth == NULL)
        return NULL;
    PyObject *kw = Py_BuildValue("{s:L}", "stream", stream);
    PyObject *empty = PyTuple_New(0);
    PyObject *cap = (kw && empty) ? PyObject_Call(meth, empty, kw) : NULL;
    if (cap == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
        cap = PyObject_CallNoArgs(meth);
    }
    Py_XDECREF(kw);
    Py_XDECREF(empty);
    Py_DECREF(meth);
    return cap;
}

static int from_dlpack(PyObject *obj, const char *argname, long long stream, ab_tensor *t)
{
    PyObject *cap = call_dlpack(obj, stream);
    if (cap == NULL)
        return -1;
    int rc = -1;
    /* Reading a capsule without renaming it leaves its destructor in charge
     * of the deleter; the producer object (alive in the caller) keeps the memory. */
    if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        DLManagedTensorVersioned *m = PyCapsule_GetPointer(cap, "dltensor_versioned");
        rc = from_dltensor(&m->dl_tensor, (m->flags & DLPACK_FLAG_READ_ONLY) != 0, argname, t);
    } else if (PyCapsule_IsValid(cap, "dltensor")) {
        DLManagedTensor *m = PyCapsule_GetPointer(cap, "dltensor");
        rc = from_dltensor(&m->dl_tensor, 0, argname, t);
    } else {
        PyErr_Format(PyExc_TypeError, "%s.__dlpack__() did not return a DLPack capsule", argname);
    }
    Py_DECREF(cap);
    return rc;
}

static int seq_to_int64(PyObject *seq, int64_t *out, int n, const char *argname, const char *what)
{
    for (int i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(seq, i);
        if (item == NULL)
            return -1;
        long long v = PyLong_AsLongLong(item);
        Py_DECREF(item);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "%s: __cuda_array_interface__ %s must hold integers", argname, what);
            return -1;
        }
        out[i] = v;
    }
    return 0;
}

static int from_cuda_array_interface(PyObject *obj, const char *argname, ab_tensor *t)
{
    PyObject *cai = PyObject_GetAttrString(obj, "__cuda_array_interface__");
    if (cai == NULL)
        return -1;
    int rc = -1;
    memset(t, 0, sizeof *t);
    PyObject *shape = PyDict_Check(cai) ? PyDict_GetItemString(cai, "shape") : NULL;
    PyObject *typestr = PyDict_Check(cai) ? PyDict_GetItemString(cai, "typestr") : NULL;
    PyObject *data = PyDict_Check(cai) ? PyDict_GetItemString(cai, "data") : NULL;
    PyObject *strides = PyDict_Check(cai) ? PyDict_GetItemString(cai, "strides") : NULL;
    if (!shape || !typestr || !data || !PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2 ||
        !PyUnicode_Check(typestr) || !PySequence_Check(shape)) {
        PyErr_Format(PyExc_TypeError, "%s has a malformed __cuda_array_interface__", argname);
        goto done;
    }
    Py_ssize_t nd = PySequence_Size(shape);
    if (nd < 0 || nd > AB_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s has %zd dimensions; attnbench takes at most %d", argname, nd, AB_MAX_DIMS);
        goto done;
    }
    t->ndim = (int)nd;
    if (seq_to_int64(shape, t->shape, t->ndim, argname, "shape") < 0)
        goto done;
    const char *ts = PyUnicode_AsUTF8(typestr);
    if (ts == NULL)
        goto done;
    int bits = 0, code = -1;
    if (ts[0] == '<' || ts[0] == '|' || ts[0] == '=') {
        code = ts[1] == 'f' ? DL_FLOAT : ts[1] == 'i' ? DL_INT : ts[1] == 'u' ? DL_UINT : -1;
        bits = 8 * atoi(ts + 2);
    }
    set_dtype(t, code, bits, 1);
    if (t->dtype < 0)
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", ts);
    size_t esize = bits >= 8 ? (size_t)bits / 8 : 1;  /* strides are in bytes */
    if (strides != NULL && strides != Py_None) {
        if (!PySequence_Check(strides) || PySequence_Size(strides) != nd) {
            PyErr_Format(PyExc_TypeError, "%s has malformed __cuda_array_interface__ strides", argname);
            goto done;
        }
        if (seq_to_int64(strides, t->strides, t->ndim, argname, "strides") < 0)
            goto done;
        for (int i = 0; i < t->ndim; i++) {
            if (t->strides[i] % (int64_t)esize != 0) {
                PyErr_Format(PyExc_ValueError, "%s has a stride not a multiple of its element size", argname);
                goto done;
            }
            t->strides[i] /= (int64_t)esize;
        }
    } else {
        int64_t compact = 1;
        for (int i = t->ndim - 1; i >= 0; i--) {
            t->strides[i] = compact;
            compact *= t->shape[i];
        }
    }
    t->data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(data, 0));
    if (t->data == NULL && PyErr_Occurred())
        goto done;
    t->readonly = PyObject_IsTrue(PyTuple_GET_ITEM(data, 1)) == 1;
    struct cudaPointerAttributes attr;
    cudaError_t e = cudaPointerGetAttributes(&attr, t->data);
    if (e != cudaSuccess) {
        cudaGetLastError();  /* not to be blamed on a later launch */
        PyErr_Format(PyExc_RuntimeError, "%s: cudaPointerGetAttributes failed: %s", argname, cudaGetErrorString(e));
        goto done;
    }
    t->device_type = (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) ? AB_DEVICE_CUDA
                                                                                               : AB_DEVICE_CPU;
    t->device_id = attr.device;
    rc = 0;
done:
    Py_DECREF(cai);
    return rc;
}

int ab_tensor_from_object(PyObject *obj, const char *argname, long long dlpack_stream, ab_tensor *t)
{
    if (PyObject_HasAttrString(obj, "__dlpack__"))
        return from_dlpack(obj, argname, dlpack_stream, t);
    if (PyObject_HasAttrString(obj, "__cuda_array_interface__"))
        return from_cuda_array_interface(obj, argname, t);
    PyErr_Format(PyExc_TypeError,
                 "%s must be a device tensor supporting DLPack (__dlpack__) or __cuda_array_interface__ "
                 "(torch, CuPy, JAX ...), got %s", argname, Py_TYPE(obj)->tp_name);
    return -1;
}
