/* bind_gate.c: Python bindings of the gate unit (placeholder until the unit lands). */
#include "pyutil.h"

PyMethodDef ab_gate_methods[] = {
    {NULL, NULL, 0, NULL},
};
