/* bind_reference.c: Python bindings of the reference unit (placeholder until the unit lands). */
#include "pyutil.h"

PyMethodDef ab_reference_methods[] = {
    {NULL, NULL, 0, NULL},
};
