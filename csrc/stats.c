/* stats.c: summaries and percentile-bootstrap intervals (see stats.h). */
#include "stats.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

const double ab_default_quantiles[] = {0.5, 0.9, 0.95, 0.99};
const size_t ab_n_default_quantiles = sizeof ab_default_quantiles / sizeof ab_default_quantiles[0];

/* Values below this magnitude are summed as they are: n < 2^63 squared
 * deviations, each below (2 * 2^448)^2 = 2^898, sum to less than 2^961,
 * far from DBL_MAX (~2^1024).  Larger values are first scaled by a power of
 * two, which is exact, so sums of huge finite samples do not overflow. */
#define AB_SAFE_MAGNITUDE 0x1p448

static const char *const statistic_names[AB_N_STATISTICS] = {
    [AB_STAT_MEDIAN] = "median",
    [AB_STAT_MEAN] = "mean",
};

const char *ab_stats_strerror(ab_stats_status status)
{
    switch (status) {
    case AB_STATS_OK: return "success";
    case AB_STATS_EMPTY: return "no samples";
    case AB_STATS_NONFINITE: return "a sample is NaN or infinite";
    case AB_STATS_NONPOSITIVE: return "a sample that must be positive is zero or negative";
    case AB_STATS_BAD_QUANTILE: return "a quantile lies outside [0, 1]";
    case AB_STATS_BAD_CONFIDENCE: return "confidence must lie strictly between 0 and 1";
    case AB_STATS_BAD_RESAMPLES: return "resamples must be at least 1 and at most AB_MAX_RESAMPLES";
    case AB_STATS_BAD_STATISTIC: return "unknown statistic";
    case AB_STATS_BAD_PARAMETER: return "a tolerance or threshold is negative, NaN or infinite";
    case AB_STATS_NOMEM: return "out of memory";
    }
    return "unknown status";
}

const char *ab_statistic_name(ab_statistic stat)
{
    return (unsigned)stat < AB_N_STATISTICS ? statistic_names[stat] : NULL;
}

int ab_statistic_from_name(const char *name, ab_statistic *out)
{
    for (int i = 0; i < AB_N_STATISTICS; i++) {
        if (strcmp(name, statistic_names[i]) == 0) {
            *out = (ab_statistic)i;
            return 0;
        }
    }
    return -1;
}

/* A total order (NaN last), so qsort stays well defined even if a caller's
 * buffer changes under us: glibc's qsort may misbehave when the comparison
 * is not transitive. */
static int compare_doubles(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    if (isnan(a) || isnan(b))
        return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}

static void sort_doubles(double *x, size_t n)
{
    qsort(x, n, sizeof *x, compare_doubles);
}

static int all_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* A fresh malloc'ed copy of x sorted ascending, or NULL. */
static double *sorted_copy(const double *x, size_t n)
{
    if (n > SIZE_MAX / sizeof(double))
        return NULL;
    double *v = malloc(n * sizeof *v);
    if (v != NULL) {
        memcpy(v, x, n * sizeof *v);
        sort_doubles(v, n);
    }
    return v;
}

/* NumPy's linear interpolation (numpy/lib/_function_base_impl.py, _lerp),
 * whose two branches keep the result monotonic in t and exact at t = 1.
 * When b - a overflows (endpoints near +-DBL_MAX of opposite signs) the
 * weighted sum gives the finite answer NumPy's formula would lose. */
static double lerp(double a, double b, double t)
{
    double diff = b - a;
    if (isfinite(diff))
        return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
    if (t == 0.0 || a == b)
        return a;
    return a * (1.0 - t) + b * t;
}

/* Where numpy.quantile's 'linear' method looks for the q-quantile of n
 * sorted values: between order statistics *lo and *hi with weight *t. */
static void quantile_position(size_t n, double q, size_t *lo, size_t *hi, double *t)
{
    double h = (double)(n - 1) * q;
    if (h >= (double)(n - 1)) {
        *lo = *hi = n - 1;
        *t = 0.0;
        return;
    }
    double f = floor(h);
    *lo = (size_t)f;
    *hi = *lo + 1;
    *t = h - f;
}

double ab_quantile_sorted(const double *sorted, size_t n, double q)
{
    size_t lo, hi;
    double t;
    quantile_position(n, q, &lo, &hi, &t);
    return lerp(sorted[lo], sorted[hi], t);
}

/* The power-of-two exponent e such that values up to maxabs, scaled by
 * 2^-e, can be summed and squared without overflow (0 for ordinary data). */
static int scale_exponent(double maxabs)
{
    if (maxabs < AB_SAFE_MAGNITUDE)
        return 0;
    int e;
    frexp(maxabs, &e);
    return e;
}

/* Neumaier's compensated sum of x[i] * 2^-e: the mean stays accurate to an
 * ulp or so even when positive and negative values cancel. */
static double scaled_sum(const double *x, size_t n, int e)
{
    const double s = ldexp(1.0, -e);
    double sum = 0.0, comp = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i] * s, t = sum + v;
        comp += fabs(sum) >= fabs(v) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    return sum + comp;
}

static double mean_of(const double *x, size_t n, int e)
{
    return ldexp(scaled_sum(x, n, e) / (double)n, e);
}

/* Sample standard deviation (ddof = 1) by the two-pass formula. */
static double std_of(const double *x, size_t n, double mean, int e)
{
    if (n < 2)
        return NAN;
    const double s = ldexp(1.0, -e), m = mean * s;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] * s - m;
        ss += d * d;
    }
    return ldexp(sqrt(ss / (double)(n - 1)), e);
}

/* Median absolute deviation from `median`; overwrites v (sorted) with the
 * deviations.  Halving first keeps |x - median| finite near DBL_MAX. */
static double mad_of(double *v, size_t n, double median, double maxabs)
{
    const double h = maxabs > DBL_MAX / 2 ? 0.5 : 1.0;
    for (size_t i = 0; i < n; i++)
        v[i] = fabs(v[i] * h - median * h);
    sort_doubles(v, n);
    return ab_quantile_sorted(v, n, 0.5) / h;
}

ab_stats_status ab_summarize(const double *x, size_t n, const double *q, size_t nq,
                             double *q_out, ab_summary *out)
{
    if (n == 0)
        return AB_STATS_EMPTY;
    if (!all_finite(x, n))
        return AB_STATS_NONFINITE;
    for (size_t j = 0; j < nq; j++)
        if (!(q[j] >= 0.0 && q[j] <= 1.0))
            return AB_STATS_BAD_QUANTILE;
    double *v = sorted_copy(x, n);
    if (v == NULL)
        return AB_STATS_NOMEM;

    ab_summary s;
    s.n = n;
    s.min = v[0];
    s.max = v[n - 1];
    const double maxabs = fmax(fabs(s.min), fabs(s.max));
    const int e = scale_exponent(maxabs);
    s.mean = mean_of(v, n, e);
    s.std = std_of(v, n, s.mean, e);
    s.median = ab_quantile_sorted(v, n, 0.5);
    s.q1 = ab_quantile_sorted(v, n, 0.25);
    s.q3 = ab_quantile_sorted(v, n, 0.75);
    s.iqr = s.q3 - s.q1;
    for (size_t j = 0; j < nq; j++)
        q_out[j] = ab_quantile_sorted(v, n, q[j]);
    s.mad = mad_of(v, n, s.median, maxabs); /* last: it reuses v */
    s.rel_std = s.std / s.mean;
    free(v);
    *out = s;
    return AB_STATS_OK;
}

/* ---- bootstrap ---------------------------------------------------------- */

/* One sample prepared for resampling.  A resample is n indices drawn
 * uniformly into the sorted sample; its median is then an order statistic
 * found by counting how often each index was drawn, in O(n). */
typedef struct resampler {
    double *sorted;  /* owned, ascending */
    size_t *counts;  /* owned, n draw counters (median only) */
    size_t n;
    int exponent;    /* scale_exponent of the sample, for sums (mean only) */
} resampler;

static void resampler_free(resampler *r)
{
    free(r->sorted);
    free(r->counts);
    r->sorted = NULL;
    r->counts = NULL;
}

static ab_stats_status resampler_init(resampler *r, const double *x, size_t n, ab_statistic stat)
{
    r->n = n;
    r->counts = NULL;
    r->sorted = sorted_copy(x, n);
    if (r->sorted == NULL)
        return AB_STATS_NOMEM;
    r->exponent = scale_exponent(fmax(fabs(r->sorted[0]), fabs(r->sorted[n - 1])));
    if (stat == AB_STAT_MEDIAN) {
        r->counts = calloc(n, sizeof *r->counts);
        if (r->counts == NULL) {
            resampler_free(r);
            return AB_STATS_NOMEM;
        }
    }
    return AB_STATS_OK;
}

/* The statistic of the sample itself. */
static double resampler_point(const resampler *r, ab_statistic stat)
{
    return stat == AB_STAT_MEAN ? mean_of(r->sorted, r->n, r->exponent)
                                : ab_quantile_sorted(r->sorted, r->n, 0.5);
}

/* The k-th smallest drawn value (0-based), from the draw counts. */
static size_t order_statistic_index(const size_t *counts, size_t k)
{
    size_t i = 0, seen = counts[0];
    while (seen <= k)
        seen += counts[++i];
    return i;
}

/* The statistic of one fresh resample. */
static double resampler_draw(resampler *r, ab_rng *rng, ab_statistic stat)
{
    const size_t n = r->n;
    if (stat == AB_STAT_MEAN) {
        const double s = ldexp(1.0, -r->exponent);
        double sum = 0.0;
        for (size_t i = 0; i < n; i++)
            sum += r->sorted[ab_rng_below(rng, n)] * s;
        return ldexp(sum / (double)n, r->exponent);
    }
    memset(r->counts, 0, n * sizeof *r->counts);
    for (size_t i = 0; i < n; i++)
        r->counts[ab_rng_below(rng, n)]++;
    size_t lo, hi;
    double t;
    quantile_position(n, 0.5, &lo, &hi, &t);
    return lerp(r->sorted[order_statistic_index(r->counts, lo)],
                r->sorted[order_statistic_index(r->counts, hi)], t);
}

static ab_stats_status check_bootstrap_args(double confidence, size_t resamples)
{
    if (!(confidence > 0.0 && confidence < 1.0))
        return AB_STATS_BAD_CONFIDENCE;
    if (resamples < 1 || resamples > AB_MAX_RESAMPLES)
        return AB_STATS_BAD_RESAMPLES;
    return AB_STATS_OK;
}

/* The percentile bootstrap of stat(x), or of stat(x) / stat(y) when y is
 * not NULL; arguments already checked.  Each resample draws x's indices,
 * then y's, from one stream, so the result depends only on the seed. */
static ab_stats_status bootstrap(const double *x, size_t nx, const double *y, size_t ny,
                                 ab_statistic stat, double confidence, size_t resamples,
                                 uint64_t seed, ab_interval *out)
{
    resampler rx = {0}, ry = {0};
    double *dist = NULL;
    ab_stats_status st = resampler_init(&rx, x, nx, stat);
    if (st == AB_STATS_OK && y != NULL)
        st = resampler_init(&ry, y, ny, stat);
    if (st == AB_STATS_OK && (dist = malloc(resamples * sizeof *dist)) == NULL)
        st = AB_STATS_NOMEM;
    if (st == AB_STATS_OK) {
        ab_rng rng;
        ab_rng_seed(&rng, seed);
        for (size_t i = 0; i < resamples; i++) {
            double v = resampler_draw(&rx, &rng, stat);
            if (y != NULL)
                v /= resampler_draw(&ry, &rng, stat);
            dist[i] = v;
        }
        sort_doubles(dist, resamples);
        const double alpha = (1.0 - confidence) / 2.0;
        ab_interval iv;
        iv.point = resampler_point(&rx, stat);
        if (y != NULL)
            iv.point /= resampler_point(&ry, stat);
        iv.low = ab_quantile_sorted(dist, resamples, alpha);
        iv.high = ab_quantile_sorted(dist, resamples, 1.0 - alpha);
        *out = iv;
    }
    free(dist);
    resampler_free(&rx);
    resampler_free(&ry);
    return st;
}

ab_stats_status ab_bootstrap_ci(const double *x, size_t n, ab_statistic stat, double confidence,
                                size_t resamples, uint64_t seed, ab_interval *out)
{
    if (n == 0)
        return AB_STATS_EMPTY;
    if (!all_finite(x, n))
        return AB_STATS_NONFINITE;
    if (ab_statistic_name(stat) == NULL)
        return AB_STATS_BAD_STATISTIC;
    ab_stats_status st = check_bootstrap_args(confidence, resamples);
    if (st != AB_STATS_OK)
        return st;
    return bootstrap(x, n, NULL, 0, stat, confidence, resamples, seed, out);
}

ab_stats_status ab_ratio_ci(const double *a, size_t na, const double *b, size_t nb, double confidence,
                            size_t resamples, uint64_t seed, ab_interval *out)
{
    if (na == 0 || nb == 0)
        return AB_STATS_EMPTY;
    if (!all_finite(a, na) || !all_finite(b, nb))
        return AB_STATS_NONFINITE;
    for (size_t i = 0; i < nb; i++)
        if (!(b[i] > 0.0))
            return AB_STATS_NONPOSITIVE;
    ab_stats_status st = check_bootstrap_args(confidence, resamples);
    if (st != AB_STATS_OK)
        return st;
    return bootstrap(a, na, b, nb, AB_STAT_MEDIAN, confidence, resamples, seed, out);
}
