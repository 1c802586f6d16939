/* error.c: ab_set_error, the one way kernels and the core record an error. */
#include <stdarg.h>
#include <stdio.h>

#include "attn.h"

int ab_set_error(ab_error *err, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
