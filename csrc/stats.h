/* stats.h: summaries and bootstrap confidence intervals of timing samples.
 *
 * Pure C11 with no Python, so that the timing loop and the gates can call
 * it directly and tests/c/test_stats.c can test it alone:
 *     cc -std=c11 -Icsrc tests/c/test_stats.c csrc/stats.c csrc/gate.c -lm
 *
 * Conventions:
 *   - Functions that can fail return an ab_stats_status (AB_STATS_OK == 0)
 *     and write their results only on success.  They check their inputs
 *     (empty, NaN/Inf, parameters out of range): callers from Python check
 *     first to name the argument, these checks keep C callers safe.
 *   - Quantiles follow numpy.quantile's default ('linear', Hyndman & Fan
 *     type 7): q-quantile of sorted x[0..n-1] interpolates at (n-1)*q, with
 *     NumPy's own interpolation formula, so results agree bit for bit.  The
 *     median is the 0.5-quantile.
 *   - Bootstrap intervals are percentile intervals (as scipy.stats.bootstrap
 *     with method="percentile"): the (1-c)/2 and (1+c)/2 quantiles of the
 *     bootstrap distribution.  They are reproducible for a given seed on
 *     every platform (rng.h).
 *   - Memory is allocated with malloc and freed before return, on every path;
 *     nothing is kept between calls, so every function is thread-safe.
 */
#ifndef ATTNBENCH_STATS_H
#define ATTNBENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults, in one place; the Python layer reads them from attnbench._core. */
#define AB_DEFAULT_CONFIDENCE 0.95 /* the usual two-sided 95% interval */
/* 10^4 resamples put the Monte Carlo error of a 95% percentile endpoint
 * well below the interval's width (about 1% of it for a median of a few
 * hundred samples) and take a few milliseconds. */
#define AB_DEFAULT_RESAMPLES 10000
#define AB_DEFAULT_SEED 0
/* Beyond 10^8 resamples (800 MB of bootstrap statistics) the endpoints no
 * longer move and a call runs for minutes: a larger count is a mistake. */
#define AB_MAX_RESAMPLES 100000000
/* summarize's default quantiles: the median and the tail a latency table shows. */
extern const double ab_default_quantiles[];
extern const size_t ab_n_default_quantiles;

typedef enum ab_stats_status {
    AB_STATS_OK = 0,
    AB_STATS_EMPTY,           /* no samples */
    AB_STATS_NONFINITE,       /* a sample is NaN or infinite */
    AB_STATS_NONPOSITIVE,     /* a sample that must be positive (a denominator, a time) is <= 0 */
    AB_STATS_BAD_QUANTILE,    /* a quantile outside [0, 1] or NaN */
    AB_STATS_BAD_CONFIDENCE,  /* confidence not strictly between 0 and 1 */
    AB_STATS_BAD_RESAMPLES,   /* resamples outside [1, AB_MAX_RESAMPLES] */
    AB_STATS_BAD_STATISTIC,   /* not an ab_statistic */
    AB_STATS_BAD_PARAMETER,   /* a tolerance or threshold that is negative, NaN or infinite */
    AB_STATS_NOMEM,           /* malloc failed */
} ab_stats_status;

/* A static English sentence for `status` (never NULL). */
const char *ab_stats_strerror(ab_stats_status status);

/* The statistics a bootstrap can resample. */
typedef enum ab_statistic {
    AB_STAT_MEDIAN = 0,
    AB_STAT_MEAN = 1,
    AB_N_STATISTICS
} ab_statistic;

/* bootstrap_ci's default: the median, because GPU timings have a long
 * right tail (clock ramps, preemption) that moves the mean but not it. */
#define AB_DEFAULT_STATISTIC AB_STAT_MEDIAN

/* "median", "mean"; NULL for a value that is not an ab_statistic. */
const char *ab_statistic_name(ab_statistic stat);
/* 0 and *out set if `name` names a statistic, else -1. */
int ab_statistic_from_name(const char *name, ab_statistic *out);

/* numpy.quantile(sorted, q) for ascending `sorted` of n >= 1 finite values
 * and 0 <= q <= 1 (unchecked: the caller sorted and checked). */
double ab_quantile_sorted(const double *sorted, size_t n, double q);

typedef struct ab_summary {
    size_t n;
    double min, max;
    double mean;
    double std;      /* sample standard deviation (ddof = 1); NaN when n == 1 */
    double median;
    double q1, q3;   /* 0.25- and 0.75-quantiles */
    double iqr;      /* q3 - q1 */
    double mad;      /* median(|x - median|), unscaled (no 1.4826 factor) */
    double rel_std;  /* std / mean: signed like the mean, +-Inf when the mean is 0, NaN when n == 1 */
} ab_summary;

/* Summary of x[0..n-1] and its quantiles q[0..nq-1] into q_out[0..nq-1].
 * Sums are taken compensated (Neumaier) and rescaled by a power of two
 * when values are near DBL_MAX, so huge finite samples give finite results
 * wherever the true value is representable.  EMPTY, NONFINITE,
 * BAD_QUANTILE, NOMEM. */
ab_stats_status ab_summarize(const double *x, size_t n, const double *q, size_t nq,
                             double *q_out, ab_summary *out);

typedef struct ab_interval {
    double point;    /* the statistic of the samples themselves */
    double low, high;
} ab_interval;

/* Percentile-bootstrap interval of `stat` of x[0..n-1]: `resamples`
 * resamples of n draws with replacement.  The median of a resample is found
 * in O(n) from how often each order statistic was drawn (no sort per
 * resample).  EMPTY, NONFINITE, BAD_CONFIDENCE, BAD_RESAMPLES,
 * BAD_STATISTIC, NOMEM. */
ab_stats_status ab_bootstrap_ci(const double *x, size_t n, ab_statistic stat, double confidence,
                                size_t resamples, uint64_t seed, ab_interval *out);

/* Percentile-bootstrap interval of median(a) / median(b), a and b resampled
 * independently.  Every value of b must be positive (NONPOSITIVE otherwise):
 * a resample can consist of b's smallest value alone, so this is exactly
 * what makes every resampled denominator positive.  Also EMPTY, NONFINITE,
 * BAD_CONFIDENCE, BAD_RESAMPLES, NOMEM. */
ab_stats_status ab_ratio_ci(const double *a, size_t na, const double *b, size_t nb, double confidence,
                            size_t resamples, uint64_t seed, ab_interval *out);

#ifdef __cplusplus
}
#endif
#endif /* ATTNBENCH_STATS_H */
