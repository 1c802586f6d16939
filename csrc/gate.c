/* gate.c: closeness, speed and regression gates, and verdicts (see gate.h). */
#include "gate.h"

#include <math.h>

const ab_verdict_level ab_verdict_levels[] = {
    {"Excellent", AB_VERDICT_EXCELLENT_MIN},
    {"Good", AB_VERDICT_GOOD_MIN},
    {"Modest", AB_VERDICT_MODEST_MIN},
    {"Parity", AB_VERDICT_PARITY_MIN},
};
const size_t ab_n_verdict_levels = sizeof ab_verdict_levels / sizeof ab_verdict_levels[0];

const char *ab_verdict(double speedup)
{
    if (!(isfinite(speedup) && speedup > 0.0))
        return NULL;
    for (size_t i = 0; i < ab_n_verdict_levels; i++)
        if (speedup >= ab_verdict_levels[i].min_speedup)
            return ab_verdict_levels[i].name;
    return AB_VERDICT_BELOW_ALL;
}

/* ---- closeness ------------------------------------------------------------ */

void ab_close_begin(ab_close_result *r)
{
    r->size = 0;
    r->mismatches = 0;
    r->nan_count = 0;
    r->inf_count = 0;
    r->max_abs = 0.0;
    r->max_rel = 0.0;
    r->worst = 0;
    r->worst_excess = -INFINITY;
}

void ab_close_accumulate(ab_close_result *r, const char *out, ptrdiff_t out_stride, const char *ref,
                         ptrdiff_t ref_stride, size_t count, double atol, double rtol)
{
    for (size_t i = 0; i < count; i++, out += out_stride, ref += ref_stride) {
        const double o = *(const double *)out, f = *(const double *)ref;
        r->nan_count += isnan(o) != 0;
        r->inf_count += isinf(o) != 0;
        double excess;
        if (isfinite(o) && isfinite(f)) {
            const double diff = fabs(o - f), tol = atol + rtol * fabs(f);
            r->mismatches += diff > tol;
            /* Inf - Inf (an overflowing difference against an overflowing
             * tolerance) is no mismatch, so it must not rank as the worst. */
            excess = isnan(diff - tol) ? -INFINITY : diff - tol;
            if (diff > r->max_abs)
                r->max_abs = diff;
            if (f != 0.0 && diff / fabs(f) > r->max_rel)
                r->max_rel = diff / fabs(f);
        } else if ((isnan(o) && isnan(f)) || o == f) {
            excess = -INFINITY; /* the same NaN or infinity: a match */
        } else {
            r->mismatches++;
            excess = INFINITY;
            r->max_abs = INFINITY;
            r->max_rel = INFINITY;
        }
        if (excess > r->worst_excess) {
            r->worst_excess = excess;
            r->worst = r->size + i;
        }
    }
    r->size += count;
}

int ab_close_passed(const ab_close_result *r)
{
    return r->mismatches == 0;
}

ab_stats_status ab_check_close(const double *out, const double *ref, size_t n, double atol, double rtol,
                               ab_close_result *r)
{
    if (!(isfinite(atol) && atol >= 0.0 && isfinite(rtol) && rtol >= 0.0))
        return AB_STATS_BAD_PARAMETER;
    ab_close_begin(r);
    ab_close_accumulate(r, (const char *)out, sizeof *out, (const char *)ref, sizeof *ref, n, atol, rtol);
    return AB_STATS_OK;
}

/* ---- speed gates ------------------------------------------------------------ */

/* Samples of times: present, finite and positive. */
static ab_stats_status check_times(const double *x, size_t n)
{
    if (n == 0)
        return AB_STATS_EMPTY;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return AB_STATS_NONFINITE;
    for (size_t i = 0; i < n; i++)
        if (!(x[i] > 0.0))
            return AB_STATS_NONPOSITIVE;
    return AB_STATS_OK;
}

/* The ratio interval of two samples of times. */
static ab_stats_status time_ratio(const double *a, size_t na, const double *b, size_t nb, double confidence,
                                  size_t resamples, uint64_t seed, ab_interval *iv)
{
    ab_stats_status st = check_times(a, na);
    if (st == AB_STATS_OK)
        st = check_times(b, nb);
    if (st == AB_STATS_OK)
        st = ab_ratio_ci(a, na, b, nb, confidence, resamples, seed, iv);
    return st;
}

ab_stats_status ab_speedup_gate(const double *candidate, size_t nc, const double *baseline, size_t nb,
                                double threshold, double confidence, size_t resamples, uint64_t seed,
                                ab_speedup_result *out)
{
    if (!(isfinite(threshold) && threshold > 0.0))
        return AB_STATS_BAD_PARAMETER;
    ab_interval iv;
    ab_stats_status st = time_ratio(candidate, nc, baseline, nb, confidence, resamples, seed, &iv);
    if (st != AB_STATS_OK)
        return st;
    out->ratio = iv.point;
    out->low = iv.low;
    out->high = iv.high;
    out->speedup = 1.0 / iv.point;
    out->passed_speed = iv.point < threshold;
    out->passed_significance = iv.high < 1.0;
    out->passed = out->passed_speed && out->passed_significance;
    return AB_STATS_OK;
}

static const char *const regression_names[AB_N_REGRESSION_STATUSES] = {
    [AB_REGRESSION_FAST] = "FAST",
    [AB_REGRESSION_SAME] = "SAME",
    [AB_REGRESSION_SLOW] = "SLOW",
    [AB_REGRESSION_UNCERTAIN] = "UNCERTAIN",
};

const char *ab_regression_name(ab_regression_status status)
{
    return (unsigned)status < AB_N_REGRESSION_STATUSES ? regression_names[status] : NULL;
}

ab_regression_status ab_classify_regression(double ratio, double low, double high, double tolerance)
{
    if (low >= 1.0 - tolerance && high <= 1.0 + tolerance)
        return AB_REGRESSION_SAME;
    if (ratio > 1.0 + tolerance && low > 1.0)
        return AB_REGRESSION_SLOW;
    if (ratio < 1.0 - tolerance && high < 1.0)
        return AB_REGRESSION_FAST;
    return AB_REGRESSION_UNCERTAIN;
}

ab_stats_status ab_regression_gate(const double *current, size_t nc, const double *baseline, size_t nb,
                                   double tolerance, double confidence, size_t resamples, uint64_t seed,
                                   ab_regression_result *out)
{
    if (!(isfinite(tolerance) && tolerance >= 0.0 && tolerance < 1.0))
        return AB_STATS_BAD_PARAMETER;
    ab_interval iv;
    ab_stats_status st = time_ratio(current, nc, baseline, nb, confidence, resamples, seed, &iv);
    if (st != AB_STATS_OK)
        return st;
    out->ratio = iv.point;
    out->low = iv.low;
    out->high = iv.high;
    out->status = ab_classify_regression(iv.point, iv.low, iv.high, tolerance);
    return AB_STATS_OK;
}
