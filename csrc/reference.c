/* reference.c: the float64 oracle attention (see reference.h for the
 * definition it computes, the causal alignment and the GQA head mapping). */
#define _POSIX_C_SOURCE 200809L /* sysconf(_SC_NPROCESSORS_ONLN) */

#include "reference.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "attn.h"

/* A thread costs tens of microseconds to create and join; below about a
 * million multiply-adds (~1 ms of scalar float64 work) per thread, starting
 * one costs more than it saves, so small problems run on the calling thread. */
#define AB_REF_MIN_WORK_PER_THREAD (1 << 20)

/* The largest element count of a float64 array whose size in bytes still
 * fits in ptrdiff_t (and so in size_t and NumPy's npy_intp). */
#define AB_REF_MAX_ELEMENTS ((int64_t)(PTRDIFF_MAX / (ptrdiff_t)sizeof(double)))

/* The product of dims[0..n), or -1 if it exceeds AB_REF_MAX_ELEMENTS.
 * Every dim must be at least 1. */
static int64_t element_count(const int64_t *dims, int n)
{
    int64_t count = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] > AB_REF_MAX_ELEMENTS / count)
            return -1;
        count *= dims[i];
    }
    return count;
}

static void format_dims(char *buf, size_t size, const int64_t *dims, int n)
{
    int used = snprintf(buf, size, "(");
    for (int i = 0; i < n && used >= 0 && (size_t)used < size; i++)
        used += snprintf(buf + used, size - (size_t)used, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (used >= 0 && (size_t)used < size)
        snprintf(buf + used, size - (size_t)used, ")");
}

/* Every dim of the n-dim array `name` at least 1, and not too many elements. */
static ab_ref_status check_dims(const char *name, const int64_t *dims, int n, ab_error *err)
{
    char text[128];
    for (int i = 0; i < n; i++) {
        if (dims[i] < 1) {
            format_dims(text, sizeof text, dims, n);
            ab_set_error(err, "%s has shape %s; every dimension must be at least 1", name, text);
            return AB_REF_INVALID;
        }
    }
    if (element_count(dims, n) < 0) {
        format_dims(text, sizeof text, dims, n);
        ab_set_error(err, "%s shape %s has more than %lld elements, too many to address as float64", name, text,
                     (long long)AB_REF_MAX_ELEMENTS);
        return AB_REF_INVALID;
    }
    return AB_REF_OK;
}

/* The one check of a filled shape, used by both public functions. */
static ab_ref_status check_shape(const ab_ref_shape *s, ab_error *err)
{
    const int64_t q[4] = {s->B, s->Hq, s->Sq, s->D}, k[4] = {s->B, s->Hkv, s->Sk, s->D};
    const int64_t v[4] = {s->B, s->Hkv, s->Sk, s->Dv}, out[4] = {s->B, s->Hq, s->Sq, s->Dv};
    if (check_dims("q", q, 4, err) || check_dims("k", k, 4, err) || check_dims("v", v, 4, err))
        return AB_REF_INVALID;
    if (s->Hq % s->Hkv != 0) {
        ab_set_error(err, "q has %lld heads, not a multiple of the %lld heads of k and v "
                     "(grouped-query attention needs Hq %% Hkv == 0)", (long long)s->Hq, (long long)s->Hkv);
        return AB_REF_INVALID;
    }
    /* out has at least as many elements as lse, so checking out covers both. */
    if (check_dims("the output", out, 4, err))
        return AB_REF_INVALID;
    return AB_REF_OK;
}

ab_ref_status ab_ref_shape_from_dims(const int64_t q_dims[4], const int64_t k_dims[4],
                                     const int64_t v_dims[4], ab_ref_shape *shape, ab_error *err)
{
    /* Each array on its own first, so that a zero dim is reported as such
     * rather than as a mismatch with another array. */
    if (check_dims("q", q_dims, 4, err) || check_dims("k", k_dims, 4, err) || check_dims("v", v_dims, 4, err))
        return AB_REF_INVALID;
    if (k_dims[0] != q_dims[0] || v_dims[0] != q_dims[0]) {
        const char *name = k_dims[0] != q_dims[0] ? "k" : "v";
        int64_t got = k_dims[0] != q_dims[0] ? k_dims[0] : v_dims[0];
        ab_set_error(err, "%s has batch size %lld but q has %lld; q, k and v must share the batch size B", name,
                     (long long)got, (long long)q_dims[0]);
        return AB_REF_INVALID;
    }
    if (k_dims[3] != q_dims[3]) {
        ab_set_error(err, "k has head dim %lld but q has %lld; q and k must share the head dim D",
                     (long long)k_dims[3], (long long)q_dims[3]);
        return AB_REF_INVALID;
    }
    if (v_dims[1] != k_dims[1]) {
        ab_set_error(err, "v has %lld heads but k has %lld; k and v must share the number of heads Hkv",
                     (long long)v_dims[1], (long long)k_dims[1]);
        return AB_REF_INVALID;
    }
    if (v_dims[2] != k_dims[2]) {
        ab_set_error(err, "v has sequence length %lld but k has %lld; k and v must share the sequence length Sk",
                     (long long)v_dims[2], (long long)k_dims[2]);
        return AB_REF_INVALID;
    }
    ab_ref_shape s = {
        .B = q_dims[0], .Hq = q_dims[1], .Hkv = k_dims[1], .Sq = q_dims[2],
        .Sk = k_dims[2], .D = q_dims[3], .Dv = v_dims[3],
    };
    if (check_shape(&s, err))
        return AB_REF_INVALID;
    *shape = s;
    return AB_REF_OK;
}

/* What every worker shares: the problem, read-only. */
typedef struct ref_job {
    ab_ref_shape s;
    const double *q, *k, *v;
    double *out, *lse;
    double scale;
    int causal;
    int64_t n_threads;
} ref_job;

typedef struct ref_worker {
    const ref_job *job;
    int64_t index;    /* this worker takes rows index, index + n_threads, ... */
    double *scores;   /* Sk scratch doubles: the scaled scores of one row */
    double *acc;      /* Dv scratch doubles: the row's unnormalised output */
    pthread_t thread;
} ref_worker;

static double dot(const double *a, const double *b, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* One query row: its scores over the visible keys, the stable softmax, and
 * the weighted sum of value rows, all in double.  `acc` is accumulated in
 * the worker's own scratch and copied out once, so that threads writing
 * neighbouring rows do not share cache lines while they accumulate. */
static void attend_row(const ref_worker *w, int64_t row)
{
    const ref_job *j = w->job;
    const ab_ref_shape *s = &j->s;
    int64_t bh = row / s->Sq, i = row % s->Sq;
    int64_t b = bh / s->Hq, h = bh % s->Hq;
    int64_t kv_head = b * s->Hkv + h / (s->Hq / s->Hkv);
    const double *q_row = j->q + row * s->D;
    const double *k_head = j->k + kv_head * s->Sk * s->D;
    const double *v_head = j->v + kv_head * s->Sk * s->Dv;
    /* Top-left causal alignment: query i sees keys 0..i (all of them once i >= Sk). */
    int64_t n_keys = j->causal && i + 1 < s->Sk ? i + 1 : s->Sk;

    double max = -INFINITY;
    for (int64_t key = 0; key < n_keys; key++) {
        double score = j->scale * dot(q_row, k_head + key * s->D, s->D);
        w->scores[key] = score;
        if (score > max) /* false for NaN: a NaN score still reaches the sum below */
            max = score;
    }
    for (int64_t d = 0; d < s->Dv; d++)
        w->acc[d] = 0.0;
    double sum = 0.0;
    for (int64_t key = 0; key < n_keys; key++) {
        double p = exp(w->scores[key] - max);
        const double *v_row = v_head + key * s->Dv;
        sum += p;
        for (int64_t d = 0; d < s->Dv; d++)
            w->acc[d] += p * v_row[d];
    }
    double *out_row = j->out + row * s->Dv;
    for (int64_t d = 0; d < s->Dv; d++)
        out_row[d] = w->acc[d] / sum;
    if (j->lse != NULL)
        j->lse[row] = max + log(sum);
}

static void *run_worker(void *arg)
{
    const ref_worker *w = arg;
    const ref_job *j = w->job;
    int64_t rows = j->s.B * j->s.Hq * j->s.Sq;
    for (int64_t row = w->index; row < rows; row += j->n_threads)
        attend_row(w, row);
    return NULL;
}

/* Enough threads to keep each busy for a while, no more than the CPUs. */
static int64_t thread_count(const ab_ref_shape *s)
{
    int64_t rows = s->B * s->Hq * s->Sq;
    double work = (double)rows * (double)s->Sk * (double)(s->D + s->Dv);
    double by_work = work / AB_REF_MIN_WORK_PER_THREAD;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t n = cpus > 0 ? (int64_t)cpus : 1;
    if (n > AB_REF_MAX_THREADS)
        n = AB_REF_MAX_THREADS;
    if (n > rows)
        n = rows;
    if ((double)n > by_work)
        n = by_work >= 1.0 ? (int64_t)by_work : 1;
    return n;
}

ab_ref_status ab_reference_attention(const ab_ref_shape *shape, const double *q, const double *k,
                                     const double *v, double scale, int causal, double *out,
                                     double *lse, ab_error *err)
{
    if (check_shape(shape, err))
        return AB_REF_INVALID;
    if (!isfinite(scale)) {
        ab_set_error(err, "scale must be finite, got %s", isnan(scale) ? "nan" : scale > 0 ? "inf" : "-inf");
        return AB_REF_INVALID;
    }
    ref_job job = {
        .s = *shape, .q = q, .k = k, .v = v, .out = out, .lse = lse,
        .scale = scale, .causal = causal != 0, .n_threads = thread_count(shape),
    };
    int64_t per_worker = shape->Sk + shape->Dv; /* cannot overflow: both are bounded by AB_REF_MAX_ELEMENTS */
    if ((uint64_t)per_worker > SIZE_MAX / sizeof(double) / (uint64_t)job.n_threads) {
        ab_set_error(err, "cannot allocate %lld score rows of %lld doubles", (long long)job.n_threads,
                     (long long)per_worker);
        return AB_REF_NO_MEMORY;
    }
    double *scratch = malloc((size_t)job.n_threads * (size_t)per_worker * sizeof(double));
    if (scratch == NULL) {
        ab_set_error(err, "cannot allocate %lld score rows of %lld doubles", (long long)job.n_threads,
                     (long long)per_worker);
        return AB_REF_NO_MEMORY;
    }
    ref_worker workers[AB_REF_MAX_THREADS];
    int started[AB_REF_MAX_THREADS] = {0};
    for (int64_t t = 0; t < job.n_threads; t++) {
        workers[t] = (ref_worker){
            .job = &job, .index = t,
            .scores = scratch + t * per_worker, .acc = scratch + t * per_worker + shape->Sk,
        };
    }
    /* Worker 0 runs on the calling thread.  A worker whose thread cannot be
     * started runs there too: the answer is the same, only slower. */
    for (int64_t t = 1; t < job.n_threads; t++)
        started[t] = pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]) == 0;
    run_worker(&workers[0]);
    for (int64_t t = 1; t < job.n_threads; t++) {
        if (started[t])
            pthread_join(workers[t].thread, NULL);
        else
            run_worker(&workers[t]);
    }
    free(scratch);
    return AB_REF_OK;
}
