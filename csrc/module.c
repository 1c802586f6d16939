/* module.c: the CPython module attnbench._core.
 *
 * Multi-phase initialisation (PEP 489) with no mutable globals.  Each unit
 * of the core has a binding file (bind_*.c) that parses arguments and calls
 * the pure-C unit; this file only gathers their method tables.  Nothing here
 * touches CUDA: importing the module needs no GPU and no driver. */
#define AB_IMPORT_ARRAY
#include "pyutil.h"

PyDoc_STRVAR(module_doc,
"attnbench's C core: statistics, gates, the float64 reference attention,\n"
"the kernel registry and the CUDA timing loop.  Use it through `attnbench`.");

static int core_exec(PyObject *module)
{
    if (PyArray_ImportNumPyAPI() < 0)
        return -1;
    PyMethodDef *tables[] = {ab_stats_methods, ab_gate_methods, ab_reference_methods, ab_gpu_methods};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (PyModule_AddFunctions(module, tables[i]) < 0)
            return -1;
    return ab_gpu_add_types(module);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "attnbench._core",
    .m_doc = module_doc,
    .m_size = 0,
    .m_slots = core_slots,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
