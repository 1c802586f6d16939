/* timing.h: the one timing loop of attnbench.
 *
 * It times any number of candidates on one stream with CUDA events, in named
 * steps: warm-up (by count and by time, no blocking kernel) -> rounds of
 * samples taken round-robin (so that drift in clocks or temperature hits all
 * candidates alike), each round in the order of ab_round_order -> a stopping
 * rule -> raw samples, SM clocks and the reason it stopped.  A candidate is anything that can enqueue its work on a
 * stream: an attnbench kernel launched from C, or a Python callable (SDPA). */
#ifndef ATTNBENCH_TIMING_H
#define ATTNBENCH_TIMING_H

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ab_mode {
    AB_MODE_COLD = 0,   /* L2 flushed before each sample, one call per sample */
    AB_MODE_HOT = 1,    /* calls_per_sample calls back to back, time / calls */
    AB_MODE_GRAPH = 2,  /* the candidate enqueues a CUDA graph replay of calls_per_sample calls */
} ab_mode;

typedef struct ab_timed {
    /* Enqueue one sample's work (calls_per_sample calls) on `stream`. */
    int (*enqueue)(void *ctx, cudaStream_t stream, ab_error *err);
    void *ctx;
    int calls_per_sample;
} ab_timed;

typedef struct ab_timing_options {
    ab_mode mode;
    int warmup_iters;         /* at least this many warm-up samples per candidate ... */
    double warmup_seconds;    /* ... and at least this much wall time of warm-up in all */
    int min_samples;          /* no stop before this many samples per candidate */
    int max_samples;
    double min_gpu_seconds;   /* no 'converged' stop before each candidate has this much GPU time */
    double max_seconds;       /* wall-time limit for the sampling step */
    double target_noise;      /* converged when every candidate's relative noise of the median is below this */
    int blocking;             /* queue each round behind a blocking spin kernel */
    double blocking_timeout_ms;
} ab_timing_options;

/* The order of the n candidates in round r (r >= 0), written to order[0..n-1]:
 * row r of a Williams design (a balanced Latin square, mirrored when n is odd).
 * Over a cycle of n rounds (2n when n is odd) every candidate takes every
 * position, and runs right after every other candidate, equally often.  The
 * predecessor matters: the L2 flush leaves the SMs' instruction caches warm, so
 * a kernel timed right after an identical one (impl="auto" after the config it
 * picks, SDPA's default after cudnn) ran 2-4% faster on short shapes when the
 * order was a plain rotation. */
void ab_round_order(int n, int r, int *order);

/* Defaults, with their reasons, in timing.c. */
void ab_timing_defaults(ab_timing_options *opt);

typedef struct ab_timing_run {
    int n_candidates;
    int n_samples;            /* samples per candidate (equal: rounds are round-robin) */
    double *times;            /* [n_candidates][capacity]: seconds per call */
    double *sm_mhz;           /* [capacity]: SM clock measured in each round (NaN if not measured) */
    int *released_by_timeout; /* [capacity]: 1 if the blocking kernel gave up waiting in that round */
    int capacity;
    double wall_seconds;
    double *noise;            /* [n_candidates]: relative noise of the median at the stop */
    char stop_reason[256];
} ab_timing_run;

/* Time `n` candidates on `stream` (device already current).  On success the
 * caller owns `run` and frees it with ab_timing_run_free, also after errors. */
int ab_time_candidates(const ab_timed *cands, int n, cudaStream_t stream, const ab_timing_options *opt,
                       ab_timing_run *run, ab_error *err);
void ab_timing_run_free(ab_timing_run *run);

/* Relative noise of the median of x[0..n): the standard error of the median
 * estimated from the MAD (1.2533 * 1.4826 * MAD / sqrt(n)), over the median. */
double ab_median_noise(const double *x, int n);

/* Zeroed mapped pinned host memory of `bytes` and its device address: how the
 * host and a spinning kernel talk.  On failure nothing stays allocated. */
cudaError_t ab_host_mapped(size_t bytes, void **host, void **dev);

/* GPU helpers (kernels/timing.cu). */
typedef struct ab_clock_probe {
    long long cycles;         /* clock64() ticks while spinning */
    long long nanoseconds;    /* %globaltimer ticks over the same span */
    int timed_out;
} ab_clock_probe;
int ab_launch_blocking_kernel(const volatile int *flag, ab_clock_probe *probe, long long timeout_ns,
                              long long min_spin_ns, cudaStream_t stream, ab_error *err);
int ab_launch_count_nan(const void *x, int dtype, long long n, unsigned long long *count, cudaStream_t stream,
                        ab_error *err);
int ab_launch_fill(void *buf, size_t bytes, unsigned value, cudaStream_t stream, ab_error *err);

#ifdef __cplusplus
}
#endif
#endif
