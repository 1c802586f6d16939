/* gate.h: pass/fail decisions: is an output close to its reference, is a
 * kernel faster than its baseline (and significantly so), did a benchmark
 * regress, and the verdict word a report prints for a speedup.
 *
 * Pure C11 with no Python (built on stats.h), usable by the timing loop.
 * Functions that can fail return an ab_stats_status (stats.h). */
#ifndef ATTNBENCH_GATE_H
#define ATTNBENCH_GATE_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Defaults (the Python layer reads them from attnbench._core) -------- */

/* speedup_gate passes a candidate whose median time is below 95% of the
 * baseline's: a 5% gain is the smallest a kernel change is worth keeping
 * for, and well above the run-to-run drift of a quiet GPU (~1%). */
#define AB_DEFAULT_SPEEDUP_THRESHOLD 0.95
/* regression_gate calls medians within 2% of the baseline's the SAME:
 * clock and thermal drift between runs on one GPU is of that order. */
#define AB_DEFAULT_REGRESSION_TOLERANCE 0.02

/* ---- Verdicts ------------------------------------------------------------ */

/* The one place the verdict thresholds live.  A speedup s (baseline time /
 * candidate time) earns the first verdict, best first, whose minimum it
 * reaches; below every minimum it is AB_VERDICT_BELOW_ALL.
 *   Excellent  >= 1.5   half again as fast: a new kernel design, not tuning
 *   Good       >= 1.1   a gain that survives any realistic noise
 *   Modest     >= 1.02  beyond regression_gate's default 2% band, but small
 *   Parity     >= 0.98  within 2% either way: the same speed
 *   Regression  < 0.98  slower by more than the band */
#define AB_VERDICT_EXCELLENT_MIN 1.5
#define AB_VERDICT_GOOD_MIN 1.1
#define AB_VERDICT_MODEST_MIN 1.02
#define AB_VERDICT_PARITY_MIN 0.98
#define AB_VERDICT_BELOW_ALL "Regression"

typedef struct ab_verdict_level {
    const char *name;
    double min_speedup;
} ab_verdict_level;

/* The levels above, best first (ab_n_verdict_levels of them). */
extern const ab_verdict_level ab_verdict_levels[];
extern const size_t ab_n_verdict_levels;

/* The verdict for `speedup`, or NULL if it is not finite and positive. */
const char *ab_verdict(double speedup);

/* ---- Closeness of an output to its reference ----------------------------- */

/* Element i mismatches when |out - ref| > atol + rtol * |ref| (numpy.isclose
 * with the tolerance scaled by ref only), or when it involves NaN or Inf:
 * both NaN, or the same infinity, match; any other NaN or Inf mismatches and
 * counts as infinitely far (max_abs and max_rel become Inf). */
typedef struct ab_close_result {
    size_t size;        /* elements compared so far */
    size_t mismatches;
    size_t nan_count;   /* NaNs in out */
    size_t inf_count;   /* infinities in out */
    double max_abs;     /* max |out - ref| */
    double max_rel;     /* max |out - ref| / |ref| over ref != 0 */
    size_t worst;       /* flat index (in visiting order) of the largest excess
                         * |out - ref| - (atol + rtol |ref|); first on ties; meaningful iff size > 0 */
    double worst_excess;
} ab_close_result;

/* Start an empty comparison. */
void ab_close_begin(ab_close_result *r);

/* Compare `count` more elements, out and ref read as doubles at the given
 * byte strides (any sign): the piecewise form for iterators over arrays of
 * any layout.  atol and rtol must be finite and >= 0 (see ab_check_close). */
void ab_close_accumulate(ab_close_result *r, const char *out, ptrdiff_t out_stride, const char *ref,
                         ptrdiff_t ref_stride, size_t count, double atol, double rtol);

/* 1 when no element mismatched. */
int ab_close_passed(const ab_close_result *r);

/* Compare two contiguous double arrays of n elements.  BAD_PARAMETER when
 * atol or rtol is negative or not finite. */
ab_stats_status ab_check_close(const double *out, const double *ref, size_t n, double atol, double rtol,
                               ab_close_result *r);

/* ---- Speed gates ---------------------------------------------------------- */

typedef struct ab_speedup_result {
    double ratio;             /* median(candidate) / median(baseline) */
    double low, high;         /* its percentile-bootstrap interval */
    double speedup;           /* 1 / ratio */
    int passed_speed;         /* ratio < threshold */
    int passed_significance;  /* high < 1: faster at the stated confidence */
    int passed;               /* both */
} ab_speedup_result;

/* Is the candidate faster than the baseline?  Both are samples of times
 * (all positive: NONPOSITIVE otherwise); threshold must be finite and > 0
 * (BAD_PARAMETER); other failures as ab_ratio_ci. */
ab_stats_status ab_speedup_gate(const double *candidate, size_t nc, const double *baseline, size_t nb,
                                double threshold, double confidence, size_t resamples, uint64_t seed,
                                ab_speedup_result *out);

typedef enum ab_regression_status {
    AB_REGRESSION_FAST = 0,
    AB_REGRESSION_SAME,
    AB_REGRESSION_SLOW,
    AB_REGRESSION_UNCERTAIN,
    AB_N_REGRESSION_STATUSES
} ab_regression_status;

/* "FAST", "SAME", "SLOW", "UNCERTAIN"; NULL for other values. */
const char *ab_regression_name(ab_regression_status status);

/* Classify a ratio current/baseline with interval [low, high] against the
 * band [1 - tolerance, 1 + tolerance], checked in this order:
 *   SAME       the interval lies wholly inside the band
 *   SLOW       ratio > 1 + tolerance and low > 1
 *   FAST       ratio < 1 - tolerance and high < 1
 *   UNCERTAIN  anything else (the data cannot tell)
 * So SAME is never given when the interval reaches outside the band. */
ab_regression_status ab_classify_regression(double ratio, double low, double high, double tolerance);

typedef struct ab_regression_result {
    ab_regression_status status;
    double ratio, low, high;  /* median(current) / median(baseline) and its interval */
} ab_regression_result;

/* Did `current` get slower or faster than `baseline` (samples of times, all
 * positive)?  tolerance must be finite and in [0, 1) (BAD_PARAMETER);
 * other failures as ab_ratio_ci. */
ab_stats_status ab_regression_gate(const double *current, size_t nc, const double *baseline, size_t nb,
                                   double tolerance, double confidence, size_t resamples, uint64_t seed,
                                   ab_regression_result *out);

#ifdef __cplusplus
}
#endif
#endif /* ATTNBENCH_GATE_H */
