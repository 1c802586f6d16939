/* test_stats.c: unit test of csrc/stats.c, csrc/gate.c and csrc/rng.h
 * without Python.  Build and run (tests/test_c_units.py does this, also with
 * -DAB_RNG_PORTABLE_MUL to check the portable 128-bit product):
 *
 *     cc -std=c11 -O2 -Wall -Icsrc tests/c/test_stats.c csrc/stats.c csrc/gate.c -lm -o test_stats
 *     ./test_stats
 *
 * Exit status 0 when every check passes; each failure prints its line.
 * Expected values are exact: by hand, from numpy (printed with %.17g), or
 * the published test vectors of splitmix64 and xoshiro256**. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "rng.h"
#include "stats.h"

static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Exact equality of doubles, printing both on failure. */
#define CHECK_EQ(got, want)                                                \
    do {                                                                   \
        double g_ = (got), w_ = (want);                                    \
        if (!(g_ == w_)) {                                                 \
            fprintf(stderr, "%s:%d: %s = %.17g, want %.17g\n", __FILE__, __LINE__, #got, g_, w_); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_rng_vectors(void)
{
    /* splitmix64 from state 0: the reference implementation's first outputs. */
    uint64_t sm = 0;
    CHECK(ab_splitmix64(&sm) == UINT64_C(0xe220a8397b1dcdaf));
    CHECK(ab_splitmix64(&sm) == UINT64_C(0x6e789e6aa1b965f4));

    /* xoshiro256** from state {1, 2, 3, 4}: the reference implementation's outputs. */
    ab_rng r = {{1, 2, 3, 4}};
    CHECK(ab_rng_next(&r) == UINT64_C(11520));
    CHECK(ab_rng_next(&r) == UINT64_C(0));
    CHECK(ab_rng_next(&r) == UINT64_C(1509978240));
    CHECK(ab_rng_next(&r) == UINT64_C(1215971899390074240));

    /* Seeding through splitmix64: seed 0 (values from a Python re-implementation). */
    ab_rng_seed(&r, 0);
    CHECK(ab_rng_next(&r) == UINT64_C(0x99ec5f36cb75f2b4));
    CHECK(ab_rng_next(&r) == UINT64_C(0xbf6e1f784956452a));
    CHECK(ab_rng_next(&r) == UINT64_C(0x1a5f849d4933e6e0));
}

static void test_mul64(void)
{
    uint64_t lo, hi;
    hi = ab_mul64_hi(UINT64_MAX, UINT64_MAX, &lo); /* (2^64-1)^2 = 2^128 - 2^65 + 1 */
    CHECK(hi == UINT64_MAX - 1 && lo == 1);
    hi = ab_mul64_hi(UINT64_C(0x123456789abcdef0), UINT64_C(0x0fedcba987654321), &lo);
    CHECK(hi == UINT64_C(0x0121fa00ad77d742) && lo == UINT64_C(0x2236d88fe5618cf0));
    hi = ab_mul64_hi(UINT64_C(1) << 63, 2, &lo);
    CHECK(hi == 1 && lo == 0);
}

static void test_rng_below(void)
{
    ab_rng r, r2;
    ab_rng_seed(&r, 42);
    ab_rng_seed(&r2, 42);
    /* Reproducible, in range, for bounds with and without rejection. */
    const uint64_t bounds[] = {1, 2, 3, 7, 1000, (UINT64_C(1) << 63) + 1, UINT64_MAX};
    for (size_t b = 0; b < N_OF(bounds); b++) {
        for (int i = 0; i < 1000; i++) {
            uint64_t v = ab_rng_below(&r, bounds[b]);
            CHECK(v < bounds[b]);
            CHECK(v == ab_rng_below(&r2, bounds[b]));
        }
    }
    /* Uniform: 600,000 draws in [0, 6); each count within 5 standard
     * deviations (sqrt(600000 * 1/6 * 5/6) ~ 289) of 100,000. */
    long counts[6] = {0};
    for (int i = 0; i < 600000; i++)
        counts[ab_rng_below(&r, 6)]++;
    for (int k = 0; k < 6; k++)
        CHECK(labs(counts[k] - 100000) < 5 * 289);

    /* Different seeds give different streams. */
    ab_rng a, b;
    ab_rng_seed(&a, 1);
    ab_rng_seed(&b, 2);
    CHECK(ab_rng_next(&a) != ab_rng_next(&b));
}

static void test_quantiles(void)
{
    const double x[] = {1, 2, 3, 4};
    CHECK_EQ(ab_quantile_sorted(x, 4, 0.0), 1.0);
    CHECK_EQ(ab_quantile_sorted(x, 4, 0.25), 1.75);
    CHECK_EQ(ab_quantile_sorted(x, 4, 0.5), 2.5);
    CHECK_EQ(ab_quantile_sorted(x, 4, 0.9), 3.7);  /* numpy: 3.7 */
    CHECK_EQ(ab_quantile_sorted(x, 4, 0.1), 1.3);  /* numpy: 1.3 */
    CHECK_EQ(ab_quantile_sorted(x, 4, 1.0 / 3.0), 2.0);
    CHECK_EQ(ab_quantile_sorted(x, 4, 1.0), 4.0);

    const double y[] = {-3.5, 0.001, 0.25, 7, 10}; /* sorted; numpy.quantile values */
    CHECK_EQ(ab_quantile_sorted(y, 5, 0.1), -2.0995999999999997);
    CHECK_EQ(ab_quantile_sorted(y, 5, 0.37), 0.12052);
    CHECK_EQ(ab_quantile_sorted(y, 5, 0.95), 9.399999999999999);

    const double one[] = {42};
    CHECK_EQ(ab_quantile_sorted(one, 1, 0.0), 42.0);
    CHECK_EQ(ab_quantile_sorted(one, 1, 0.7), 42.0);

    /* Endpoints of opposite sign near DBL_MAX: b - a overflows, the result must not. */
    const double huge[] = {-1.5e308, 1.5e308};
    CHECK_EQ(ab_quantile_sorted(huge, 2, 0.5), 0.0);
}

static void test_summarize(void)
{
    const double x[] = {5, 9, 2, 4, 7, 4, 5, 4}; /* unsorted on purpose */
    const double q[] = {0.5, 0.9, 0.0, 1.0};
    double qv[4];
    ab_summary s;
    CHECK(ab_summarize(x, N_OF(x), q, N_OF(q), qv, &s) == AB_STATS_OK);
    CHECK(s.n == 8);
    CHECK_EQ(s.min, 2.0);
    CHECK_EQ(s.max, 9.0);
    CHECK_EQ(s.mean, 5.0);
    CHECK_EQ(s.std, 2.138089935299395); /* sqrt(32 / 7), numpy.std(ddof=1) */
    CHECK_EQ(s.median, 4.5);
    CHECK_EQ(s.q1, 4.0);
    CHECK_EQ(s.q3, 5.5);
    CHECK_EQ(s.iqr, 1.5);
    CHECK_EQ(s.mad, 0.5);
    CHECK_EQ(s.rel_std, 2.138089935299395 / 5.0);
    CHECK_EQ(qv[0], 4.5);
    CHECK_EQ(qv[1], 7.6);
    CHECK_EQ(qv[2], 2.0);
    CHECK_EQ(qv[3], 9.0);

    const double one[] = {3.25};
    CHECK(ab_summarize(one, 1, NULL, 0, NULL, &s) == AB_STATS_OK);
    CHECK(s.n == 1 && s.min == 3.25 && s.max == 3.25 && s.mean == 3.25 && s.median == 3.25);
    CHECK(isnan(s.std) && isnan(s.rel_std));
    CHECK_EQ(s.mad, 0.0);
    CHECK_EQ(s.iqr, 0.0);

    /* Cancellation: the compensated sum recovers the exact mean. */
    const double c[] = {1e16, 1.0, -1e16, 1.0};
    CHECK(ab_summarize(c, 4, NULL, 0, NULL, &s) == AB_STATS_OK);
    CHECK_EQ(s.mean, 0.5);

    /* Near DBL_MAX: scaled sums keep the mean and std finite. */
    const double h[] = {1.7e308, 1.6e308, -1.0e308};
    CHECK(ab_summarize(h, 3, NULL, 0, NULL, &s) == AB_STATS_OK);
    CHECK(fabs(s.mean / 7.666666666666667e307 - 1) < 1e-15);
    CHECK(fabs(s.std / 1.5307950004273378e308 - 1) < 1e-15); /* exact: sqrt(ss / 2), in rationals */
    CHECK_EQ(s.mad, 1.7e308 - 1.6e308);

    /* Errors. */
    const double bad[] = {1.0, NAN};
    const double badq[] = {1.5};
    CHECK(ab_summarize(x, 0, NULL, 0, NULL, &s) == AB_STATS_EMPTY);
    CHECK(ab_summarize(bad, 2, NULL, 0, NULL, &s) == AB_STATS_NONFINITE);
    CHECK(ab_summarize(x, 2, badq, 1, qv, &s) == AB_STATS_BAD_QUANTILE);
}

/* With one resample the interval is that resample's statistic, so the
 * counting median (and the mean) can be checked against a plain sort of the
 * same draws. */
static double brute_resample(const double *sorted, size_t n, ab_rng *rng, ab_statistic stat)
{
    double *r = malloc(n * sizeof *r), v;
    for (size_t i = 0; i < n; i++)
        r[i] = sorted[ab_rng_below(rng, n)];
    if (stat == AB_STAT_MEAN) {
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += r[i];
        v = sum / (double)n;
    } else {
        qsort(r, n, sizeof *r, cmp);
        v = ab_quantile_sorted(r, n, 0.5);
    }
    free(r);
    return v;
}

static void test_bootstrap_matches_brute_force(void)
{
    for (size_t n = 1; n <= 12; n++) {
        double x[12], sorted[12];
        for (size_t i = 0; i < n; i++)
            x[i] = sorted[i] = (double)((i * 7) % 5) - 1.5 * (double)i; /* ties and negatives */
        qsort(sorted, n, sizeof *sorted, cmp);
        for (int stat = 0; stat < AB_N_STATISTICS; stat++) {
            for (uint64_t seed = 0; seed < 5; seed++) {
                ab_interval iv;
                CHECK(ab_bootstrap_ci(x, n, (ab_statistic)stat, 0.9, 1, seed, &iv) == AB_STATS_OK);
                ab_rng rng;
                ab_rng_seed(&rng, seed);
                double want = brute_resample(sorted, n, &rng, (ab_statistic)stat);
                CHECK_EQ(iv.low, want);
                CHECK_EQ(iv.high, want);
            }
        }
    }
    /* ratio: a's draws, then b's, from the one stream. */
    const double a[] = {3, 1, 2, 5, 4}, b[] = {2, 1, 4, 8};
    double as[] = {1, 2, 3, 4, 5}, bs[] = {1, 2, 4, 8};
    for (uint64_t seed = 0; seed < 5; seed++) {
        ab_interval iv;
        CHECK(ab_ratio_ci(a, 5, b, 4, 0.5, 1, seed, &iv) == AB_STATS_OK);
        ab_rng rng;
        ab_rng_seed(&rng, seed);
        double ma = brute_resample(as, 5, &rng, AB_STAT_MEDIAN);
        double mb = brute_resample(bs, 4, &rng, AB_STAT_MEDIAN);
        CHECK_EQ(iv.low, ma / mb);
        CHECK_EQ(iv.point, 3.0 / 3.0);
    }
}

static void test_bootstrap(void)
{
    double x[101];
    for (int i = 0; i < 101; i++)
        x[i] = 1.0 + 0.01 * (double)((i * 37) % 101); /* 1.00 .. 2.00, shuffled */
    ab_interval a, b, c;
    CHECK(ab_bootstrap_ci(x, 101, AB_STAT_MEDIAN, 0.95, 2000, 7, &a) == AB_STATS_OK);
    CHECK(ab_bootstrap_ci(x, 101, AB_STAT_MEDIAN, 0.95, 2000, 7, &b) == AB_STATS_OK);
    CHECK(a.point == b.point && a.low == b.low && a.high == b.high);
    CHECK_EQ(a.point, 1.5);
    CHECK(a.low < 1.5 && a.high > 1.5 && a.low > 1.3 && a.high < 1.7);

    /* The mean's bootstrap distribution is (nearly) continuous: another seed moves it. */
    CHECK(ab_bootstrap_ci(x, 101, AB_STAT_MEAN, 0.95, 2000, 7, &a) == AB_STATS_OK);
    CHECK(ab_bootstrap_ci(x, 101, AB_STAT_MEAN, 0.95, 2000, 8, &c) == AB_STATS_OK);
    CHECK(fabs(a.point - 1.5) < 1e-15);
    CHECK(a.low < 1.5 && a.high > 1.5);
    CHECK(a.low != c.low && a.high != c.high);
    /* The exact intervals for seed 7 on every platform and with either
     * 128-bit product (recorded from the first build): a change here means
     * published intervals would no longer reproduce. */
    CHECK_EQ(a.low, 1.4410816831683166);
    CHECK_EQ(a.high, 1.5555445544554456);
    CHECK(ab_ratio_ci(x, 101, x + 50, 51, 0.95, 2000, 7, &a) == AB_STATS_OK);
    CHECK_EQ(a.point, 0.99337748344370858);
    CHECK_EQ(a.low, 0.89399886830413289);
    CHECK_EQ(a.high, 1.1231884057971016);

    const double same[] = {2.5, 2.5, 2.5};
    CHECK(ab_bootstrap_ci(same, 3, AB_STAT_MEAN, 0.95, 100, 0, &a) == AB_STATS_OK);
    CHECK(a.point == 2.5 && a.low == 2.5 && a.high == 2.5);
    CHECK(ab_bootstrap_ci(same, 1, AB_STAT_MEDIAN, 0.95, 100, 0, &a) == AB_STATS_OK);
    CHECK(a.point == 2.5 && a.low == 2.5 && a.high == 2.5);

    CHECK(ab_ratio_ci(x, 101, same, 3, 0.95, 500, 0, &a) == AB_STATS_OK);
    CHECK_EQ(a.point, 1.5 / 2.5);
    CHECK(ab_ratio_ci(x, 101, x, 101, 0.95, 500, 0, &a) == AB_STATS_OK);
    CHECK_EQ(a.point, 1.0);
    CHECK(a.low < 1.0 && a.high > 1.0);

    /* Errors. */
    const double nan[] = {1.0, NAN}, nonpos[] = {1.0, 0.0};
    CHECK(ab_bootstrap_ci(x, 0, AB_STAT_MEDIAN, 0.95, 10, 0, &a) == AB_STATS_EMPTY);
    CHECK(ab_bootstrap_ci(nan, 2, AB_STAT_MEDIAN, 0.95, 10, 0, &a) == AB_STATS_NONFINITE);
    CHECK(ab_bootstrap_ci(x, 5, (ab_statistic)7, 0.95, 10, 0, &a) == AB_STATS_BAD_STATISTIC);
    CHECK(ab_bootstrap_ci(x, 5, AB_STAT_MEDIAN, 1.0, 10, 0, &a) == AB_STATS_BAD_CONFIDENCE);
    CHECK(ab_bootstrap_ci(x, 5, AB_STAT_MEDIAN, NAN, 10, 0, &a) == AB_STATS_BAD_CONFIDENCE);
    CHECK(ab_bootstrap_ci(x, 5, AB_STAT_MEDIAN, 0.95, 0, 0, &a) == AB_STATS_BAD_RESAMPLES);
    CHECK(ab_ratio_ci(x, 5, nonpos, 2, 0.95, 10, 0, &a) == AB_STATS_NONPOSITIVE);
    CHECK(ab_ratio_ci(x, 5, x, 0, 0.95, 10, 0, &a) == AB_STATS_EMPTY);

    ab_statistic st;
    CHECK(ab_statistic_from_name("mean", &st) == 0 && st == AB_STAT_MEAN);
    CHECK(ab_statistic_from_name("median", &st) == 0 && st == AB_STAT_MEDIAN);
    CHECK(ab_statistic_from_name("mode", &st) == -1);
    CHECK(strcmp(ab_stats_strerror(AB_STATS_NOMEM), "out of memory") == 0);
}

static void test_check_close(void)
{
    const double ref[] = {1.0, 2.0, 0.0, NAN, INFINITY, -4.0};
    double out[] = {1.0, 2.001, 0.0, NAN, INFINITY, -4.0};
    ab_close_result r;
    CHECK(ab_check_close(out, ref, 6, 0.0, 1e-3, &r) == AB_STATS_OK);
    CHECK(ab_close_passed(&r) && r.mismatches == 0);
    CHECK(r.nan_count == 1 && r.inf_count == 1);
    CHECK(fabs(r.max_abs - 0.001) < 1e-15 && fabs(r.max_rel - 0.0005) < 1e-15);
    CHECK(r.worst == 2); /* 0 vs 0 with zero tolerance: excess 0, the largest */

    CHECK(ab_check_close(out, ref, 6, 0.0, 1e-4, &r) == AB_STATS_OK);
    CHECK(!ab_close_passed(&r) && r.mismatches == 1 && r.worst == 1);

    out[5] = NAN; /* NaN where ref is finite: infinitely wrong */
    CHECK(ab_check_close(out, ref, 6, 0.0, 1e-3, &r) == AB_STATS_OK);
    CHECK(r.mismatches == 1 && r.worst == 5 && isinf(r.max_abs) && r.nan_count == 2);
    out[5] = -4.0;
    out[4] = -INFINITY; /* the other infinity */
    CHECK(ab_check_close(out, ref, 6, 0.0, 1e-3, &r) == AB_STATS_OK);
    CHECK(r.mismatches == 1 && r.worst == 4);

    /* Strided: every other element of a buffer. */
    const double buf[] = {1.0, 99.0, 2.0, 99.0, 3.0};
    const double want[] = {1.0, 2.0, 3.5};
    ab_close_begin(&r);
    ab_close_accumulate(&r, (const char *)buf, 2 * sizeof(double), (const char *)want, sizeof(double), 3, 0.1, 0.0);
    CHECK(r.size == 3 && r.mismatches == 1 && r.worst == 2 && r.max_abs == 0.5);

    CHECK(ab_check_close(out, ref, 6, -1.0, 0.0, &r) == AB_STATS_BAD_PARAMETER);
    CHECK(ab_check_close(out, ref, 6, 0.0, NAN, &r) == AB_STATS_BAD_PARAMETER);
    CHECK(ab_check_close(out, ref, 0, 0.0, 0.0, &r) == AB_STATS_OK && r.size == 0 && ab_close_passed(&r));
}

static void test_gates(void)
{
    CHECK(strcmp(ab_verdict(1.5), "Excellent") == 0);
    CHECK(strcmp(ab_verdict(1.4999), "Good") == 0);
    CHECK(strcmp(ab_verdict(1.1), "Good") == 0);
    CHECK(strcmp(ab_verdict(1.02), "Modest") == 0);
    CHECK(strcmp(ab_verdict(1.0), "Parity") == 0);
    CHECK(strcmp(ab_verdict(0.98), "Parity") == 0);
    CHECK(strcmp(ab_verdict(0.9799), "Regression") == 0);
    CHECK(ab_verdict(0.0) == NULL && ab_verdict(-1.0) == NULL && ab_verdict(NAN) == NULL);
    CHECK(ab_verdict(INFINITY) == NULL);

    CHECK(ab_classify_regression(1.0, 0.99, 1.01, 0.02) == AB_REGRESSION_SAME);
    CHECK(ab_classify_regression(1.1, 1.05, 1.15, 0.02) == AB_REGRESSION_SLOW);
    CHECK(ab_classify_regression(0.9, 0.85, 0.95, 0.02) == AB_REGRESSION_FAST);
    CHECK(ab_classify_regression(1.0, 0.9, 1.1, 0.02) == AB_REGRESSION_UNCERTAIN);
    CHECK(ab_classify_regression(1.01, 1.005, 1.03, 0.02) == AB_REGRESSION_UNCERTAIN);
    CHECK(strcmp(ab_regression_name(AB_REGRESSION_UNCERTAIN), "UNCERTAIN") == 0);

    double fast[50], slow[50];
    for (int i = 0; i < 50; i++) {
        fast[i] = 1.0 + 0.001 * i;
        slow[i] = 2.0 + 0.001 * i;
    }
    ab_speedup_result s;
    CHECK(ab_speedup_gate(fast, 50, slow, 50, 0.95, 0.95, 1000, 0, &s) == AB_STATS_OK);
    CHECK(s.passed && s.passed_speed && s.passed_significance && s.high < 1.0 && s.speedup > 1.9);
    CHECK(ab_speedup_gate(slow, 50, fast, 50, 0.95, 0.95, 1000, 0, &s) == AB_STATS_OK);
    CHECK(!s.passed && !s.passed_speed && !s.passed_significance);
    CHECK(ab_speedup_gate(slow, 50, fast, 50, 0.0, 0.95, 1000, 0, &s) == AB_STATS_BAD_PARAMETER);
    slow[3] = -1.0;
    CHECK(ab_speedup_gate(slow, 50, fast, 50, 0.95, 0.95, 1000, 0, &s) == AB_STATS_NONPOSITIVE);

    ab_regression_result g;
    CHECK(ab_regression_gate(fast, 50, fast, 50, 0.02, 0.95, 1000, 0, &g) == AB_STATS_OK);
    CHECK(g.status == AB_REGRESSION_SAME && g.ratio == 1.0);
    CHECK(ab_regression_gate(fast, 50, fast, 50, 1.0, 0.95, 1000, 0, &g) == AB_STATS_BAD_PARAMETER);
}

int main(void)
{
    test_rng_vectors();
    test_mul64();
    test_rng_below();
    test_quantiles();
    test_summarize();
    test_bootstrap_matches_brute_force();
    test_bootstrap();
    test_check_close();
    test_gates();
    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_stats: all checks passed\n");
    return 0;
}
