/* timing.c: the timing loop (see timing.h for its steps). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stats.h"
#include "timing.h"

/* Defaults.  run() must finish a short shape with five candidates in a few
 * seconds, so the limits are tighter than nvbench's (0.5 s GPU time, 15 s). */
enum {
    WARMUP_ITERS = 10,          /* first calls pay for module loads and lazy init */
    MIN_SAMPLES = 20,           /* a median and a MAD from fewer are not worth reporting */
    MAX_SAMPLES = 100000,
};
static const double WARMUP_SECONDS = 0.025;    /* as triton.testing.do_bench: clocks ramp up */
static const double MIN_GPU_SECONDS = 0.02;    /* per candidate, before a 'converged' stop */
static const double MAX_SECONDS = 3.0;         /* wall time for sampling; 'max_time' stop */
static const double TARGET_NOISE = 0.005;      /* 0.5% relative noise of the median, as nvbench's stdrel */
static const double BLOCKING_TIMEOUT_MS = 100; /* long enough to queue a round of Python calls */
static const long long CLOCK_MIN_SPIN_NS = 20000; /* 20 us spans ~20 globaltimer ticks: ~5% clock error */
static const int NOISE_CHECK_EVERY = 8;        /* rounds between stopping-rule checks (each sorts) */

void ab_timing_defaults(ab_timing_options *opt)
{
    opt->mode = AB_MODE_COLD;
    opt->warmup_iters = WARMUP_ITERS;
    opt->warmup_seconds = WARMUP_SECONDS;
    opt->min_samples = MIN_SAMPLES;
    opt->max_samples = MAX_SAMPLES;
    opt->min_gpu_seconds = MIN_GPU_SECONDS;
    opt->max_seconds = MAX_SECONDS;
    opt->target_noise = TARGET_NOISE;
    opt->blocking = 1;
    opt->blocking_timeout_ms = BLOCKING_TIMEOUT_MS;
}

cudaError_t ab_host_mapped(size_t bytes, void **host, void **dev)
{
    *host = NULL;
    cudaError_t rc = cudaHostAlloc(host, bytes, cudaHostAllocMapped);
    if (rc == cudaSuccess)
        rc = cudaHostGetDevicePointer(dev, *host, 0);
    if (rc != cudaSuccess) {
        if (*host)
            cudaFreeHost(*host);
        *host = NULL;
        return rc;
    }
    memset(*host, 0, bytes);
    return cudaSuccess;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ab_median_noise(const double *x, int n)
{
    ab_summary s;
    if (n < 2 || ab_summarize(x, (size_t)n, NULL, 0, NULL, &s) != AB_STATS_OK || !(s.median > 0))
        return INFINITY;
    return 1.2533 * 1.4826 * s.mad / sqrt((double)n) / s.median;
}

/* Resources of one timing call, made and released together. */
typedef struct sampler {
    cudaEvent_t *start, *stop;
    int n_events;
    int *order;               /* [n_events]: this round's candidate order */
    void *flush;              /* twice the L2, so a memset evicts everything timed work left there */
    size_t flush_bytes;
    int *flag;                /* mapped pinned memory: the blocking kernel's release flag */
    int *flag_dev;
    ab_clock_probe *probe, *probe_dev;
    int clock_khz;            /* the device's default SM clock, for the throttle flag */
} sampler;

static void timer_close(sampler *t)
{
    for (int i = 0; i < t->n_events; i++) {
        if (t->start && t->start[i])
            cudaEventDestroy(t->start[i]);
        if (t->stop && t->stop[i])
            cudaEventDestroy(t->stop[i]);
    }
    free(t->start);
    free(t->stop);
    free(t->order);
    if (t->flush)
        cudaFree(t->flush);
    if (t->flag)
        cudaFreeHost(t->flag);
    if (t->probe)
        cudaFreeHost(t->probe);
    memset(t, 0, sizeof *t);
}

static int timer_open(sampler *t, int n, const ab_timing_options *opt, ab_error *err)
{
    memset(t, 0, sizeof *t);
    t->start = calloc((size_t)n, sizeof *t->start);
    t->stop = calloc((size_t)n, sizeof *t->stop);
    if (t->start == NULL || t->stop == NULL)
        return ab_set_error(err, "out of host memory for %d timing events", n);
    t->n_events = n;
    t->order = calloc((size_t)n, sizeof *t->order);
    if (t->order == NULL)
        return ab_set_error(err, "out of host memory for %d timing candidates", n);
    for (int i = 0; i < n; i++) {
        AB_CUDA_CHECK(err, cudaEventCreate(&t->start[i]));
        AB_CUDA_CHECK(err, cudaEventCreate(&t->stop[i]));
    }
    int dev, l2;
    AB_CUDA_CHECK(err, cudaGetDevice(&dev));
    AB_CUDA_CHECK(err, cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    AB_CUDA_CHECK(err, cudaDeviceGetAttribute(&t->clock_khz, cudaDevAttrClockRate, dev));
    if (opt->mode == AB_MODE_COLD) {
        t->flush_bytes = 2 * (size_t)l2;
        AB_CUDA_CHECK(err, cudaMalloc(&t->flush, t->flush_bytes));
    }
    AB_CUDA_CHECK(err, ab_host_mapped(sizeof *t->flag, (void **)&t->flag, (void **)&t->flag_dev));
    AB_CUDA_CHECK(err, ab_host_mapped(sizeof *t->probe, (void **)&t->probe, (void **)&t->probe_dev));
    return 0;
}

static int grow_run(ab_timing_run *run, int need, ab_error *err)
{
    if (need <= run->capacity)
        return 0;
    int cap = run->capacity ? run->capacity : 256;
    while (cap < need)
        cap *= 2;
    double *times = malloc((size_t)cap * run->n_candidates * sizeof *times);
    double *mhz = realloc(run->sm_mhz, (size_t)cap * sizeof *mhz);
    if (mhz != NULL)
        run->sm_mhz = mhz;
    int *rel = realloc(run->released_by_timeout, (size_t)cap * sizeof *rel);
    if (rel != NULL)
        run->released_by_timeout = rel;
    if (times == NULL || mhz == NULL || rel == NULL) {
        free(times);
        return ab_set_error(err, "out of host memory for %d samples", cap);
    }
    for (int c = 0; c < run->n_candidates; c++)
        if (run->n_samples)
            memcpy(times + (size_t)c * cap, run->times + (size_t)c * run->capacity,
                   (size_t)run->n_samples * sizeof *times);
    free(run->times);
    run->times = times;
    run->capacity = cap;
    return 0;
}

void ab_timing_run_free(ab_timing_run *run)
{
    free(run->times);
    free(run->sm_mhz);
    free(run->released_by_timeout);
    free(run->noise);
    memset(run, 0, sizeof *run);
}

/* Step 1: warm-up.  No blocking kernel: only get the clocks up and every lazy
 * initialisation (module loads, handles, workspaces) done, the flush's
 * included, since a first launch while the spin kernel holds the stream can
 * wait for it (lazy loading) and stall the round until its timeout. */
static int warm_up(const ab_timed *c, int n, cudaStream_t stream, const ab_timing_options *opt, const sampler *t,
                   ab_error *err)
{
    if (t->flush != NULL && ab_launch_fill(t->flush, t->flush_bytes, 0, stream, err) < 0)
        return -1;
    double t0 = now_seconds();
    for (int it = 0; it < opt->warmup_iters || now_seconds() - t0 < opt->warmup_seconds; it++) {
        for (int i = 0; i < n; i++)
            if (c[i].enqueue(c[i].ctx, stream, err) < 0)
                return -1;
        AB_CUDA_CHECK(err, cudaStreamSynchronize(stream));
        if (now_seconds() - t0 > opt->max_seconds)
            break;
    }
    return 0;
}

void ab_round_order(int n, int r, int *order)
{
    const int cycle = n % 2 == 0 ? n : 2 * n;
    int row = r % cycle;
    const int mirrored = row >= n;
    if (mirrored)
        row -= n;
    /* Row 0 is 0, 1, n-1, 2, n-2, ...; row k adds k (mod n) to every entry. */
    for (int k = 0; k < n; k++) {
        const int first = k == 0 ? 0 : k % 2 == 1 ? (k + 1) / 2 : n - k / 2;
        order[mirrored ? n - 1 - k : k] = (first + row) % n;
    }
}

/* Step 2: one round, one sample of every candidate, queued (when blocking)
 * behind the spin kernel, in the order of ab_round_order. */
static int take_round(const ab_timed *c, int n, cudaStream_t stream, const ab_timing_options *opt, sampler *t,
                      ab_timing_run *run, ab_error *err)
{
    int r = run->n_samples;
    if (opt->blocking) {
        *(volatile int *)t->flag = 0;
        long long timeout_ns = (long long)(opt->blocking_timeout_ms * 1e6);
        if (ab_launch_blocking_kernel(t->flag_dev, t->probe_dev, timeout_ns, CLOCK_MIN_SPIN_NS, stream, err) < 0)
            return -1;
    }
    int rc = 0;
    ab_round_order(n, r, t->order);
    for (int j = 0; j < n && rc == 0; j++) {
        int i = t->order[j];
        if (opt->mode == AB_MODE_COLD)
            rc = ab_launch_fill(t->flush, t->flush_bytes, (unsigned)r, stream, err);
        if (rc == 0 && (rc = (cudaEventRecord(t->start[i], stream) != cudaSuccess)))
            ab_set_error(err, "cudaEventRecord failed: %s", cudaGetErrorString(cudaGetLastError()));
        if (rc == 0)
            rc = c[i].enqueue(c[i].ctx, stream, err);
        if (rc == 0 && (rc = (cudaEventRecord(t->stop[i], stream) != cudaSuccess)))
            ab_set_error(err, "cudaEventRecord failed: %s", cudaGetErrorString(cudaGetLastError()));
    }
    /* Release the spin kernel on every path, so that an error never leaves it waiting. */
    __atomic_store_n(t->flag, 1, __ATOMIC_SEQ_CST);
    cudaError_t sync = cudaStreamSynchronize(stream);
    if (rc != 0)
        return -1;
    if (sync != cudaSuccess)
        return ab_set_error(err, "cudaStreamSynchronize failed after a round of samples: %s (%s)",
                            cudaGetErrorString(sync), cudaGetErrorName(sync));
    if (grow_run(run, r + 1, err) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        float ms = 0;
        AB_CUDA_CHECK(err, cudaEventElapsedTime(&ms, t->start[i], t->stop[i]));
        run->times[(size_t)i * run->capacity + r] = 1e-3 * (double)ms / c[i].calls_per_sample;
    }
    const ab_clock_probe *p = t->probe;
    run->sm_mhz[r] = (opt->blocking && p->nanoseconds > 0) ? 1e3 * (double)p->cycles / (double)p->nanoseconds : NAN;
    run->released_by_timeout[r] = opt->blocking ? p->timed_out : 0;
    run->n_samples = r + 1;
    return 0;
}

/* Step 3: the stopping rule.  Returns 1 (and writes the reason) to stop. */
static int should_stop(const ab_timing_run *run, const ab_timed *cands, const ab_timing_options *opt, double elapsed)
{
    int n = run->n_samples;
    double worst = 0;
    int enough_gpu_time = 1;
    for (int c = 0; c < run->n_candidates; c++) {
        const double *x = run->times + (size_t)c * run->capacity;
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += x[i];
        /* x holds per-call times; a sample was calls_per_sample calls of GPU time */
        enough_gpu_time &= sum * cands[c].calls_per_sample >= opt->min_gpu_seconds;
        run->noise[c] = ab_median_noise(x, n);
        if (run->noise[c] > worst)
            worst = run->noise[c];
    }
    char *why = ((ab_timing_run *)run)->stop_reason;
    size_t len = sizeof run->stop_reason;
    if (n >= opt->min_samples && enough_gpu_time && worst <= opt->target_noise) {
        snprintf(why, len, "converged: noise of the median %.3f%% <= %.3f%% after %d samples", 100 * worst,
                 100 * opt->target_noise, n);
        return 1;
    }
    if (n >= opt->max_samples) {
        snprintf(why, len, "max_samples: %d samples taken; noise of the median %.3f%% (target %.3f%%)", n,
                 100 * worst, 100 * opt->target_noise);
        return 1;
    }
    if (elapsed >= opt->max_seconds && n >= 1) {
        snprintf(why, len, "max_time: %.2f s reached after %d samples; noise of the median %.3f%% (target %.3f%%)",
                 elapsed, n, 100 * worst, 100 * opt->target_noise);
        return 1;
    }
    return 0;
}

int ab_time_candidates(const ab_timed *cands, int n, cudaStream_t stream, const ab_timing_options *opt,
                       ab_timing_run *run, ab_error *err)
{
    memset(run, 0, sizeof *run);
    run->n_candidates = n;
    if (n < 1)
        return ab_set_error(err, "nothing to time");
    run->noise = calloc((size_t)n, sizeof *run->noise);
    if (run->noise == NULL)
        return ab_set_error(err, "out of host memory");
    sampler t;
    int rc = timer_open(&t, n, opt, err);
    if (rc == 0)
        rc = warm_up(cands, n, stream, opt, &t, err);
    double t0 = now_seconds();
    for (int round = 0; rc == 0; round++) {
        rc = take_round(cands, n, stream, opt, &t, run, err);
        int check = (round + 1) % NOISE_CHECK_EVERY == 0 || run->n_samples >= opt->max_samples;
        if (rc == 0 && (check || now_seconds() - t0 >= opt->max_seconds) && should_stop(run, cands, opt, now_seconds() - t0))
            break;
    }
    run->wall_seconds = now_seconds() - t0;
    timer_close(&t);
    return rc;
}
