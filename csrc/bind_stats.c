/* bind_stats.c: Python bindings of the stats unit (placeholder until the unit lands). */
#include "pyutil.h"

PyMethodDef ab_stats_methods[] = {
    {NULL, NULL, 0, NULL},
};
