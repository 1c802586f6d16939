/* rng.h: attnbench's own pseudo-random generator, so that a bootstrap with a
 * given seed gives the same interval on every platform and C library
 * (rand() differs between them and is too weak for 10^7 draws).
 *
 *   xoshiro256** (Blackman & Vigna, 2018): 256 bits of state, period 2^256-1,
 *       passes BigCrush; fast enough that drawing is not the bootstrap's cost.
 *   splitmix64 expands the 64-bit seed into the four state words, as the
 *       xoshiro authors recommend: nearby seeds give unrelated streams and
 *       the state is never all zero.
 *   ab_rng_below draws an unbiased integer in [0, bound) by Lemire's
 *       multiply-and-reject method (ACM TOMS 2019): one multiplication, and a
 *       division only in the rare case that rejection is possible.
 *
 * Header-only (static inline) so the bootstrap's inner loop inlines the draw.
 * Plain C11, no Python. */
#ifndef ATTNBENCH_RNG_H
#define ATTNBENCH_RNG_H

#include <stdint.h>

typedef struct ab_rng {
    uint64_t s[4];
} ab_rng;

/* One step of splitmix64 on *state: the seeding function. */
static inline uint64_t ab_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline void ab_rng_seed(ab_rng *rng, uint64_t seed)
{
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = ab_splitmix64(&sm);
}

static inline uint64_t ab_rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The next 64 random bits (xoshiro256**). */
static inline uint64_t ab_rng_next(ab_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = ab_rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ab_rotl64(s[3], 45);
    return result;
}

/* The full 128-bit product x * y as high and low words.  Defining
 * AB_RNG_PORTABLE_MUL forces the portable branch (the C unit test checks
 * that both give the same bits). */
static inline uint64_t ab_mul64_hi(uint64_t x, uint64_t y, uint64_t *lo)
{
#if defined(__SIZEOF_INT128__) && !defined(AB_RNG_PORTABLE_MUL)
    __extension__ typedef unsigned __int128 u128; /* __extension__: GCC and Clang's, quiet under -pedantic */
    u128 p = (u128)x * y;
    *lo = (uint64_t)p;
    return (uint64_t)(p >> 64);
#else
    /* Portable schoolbook product of 32-bit halves, for compilers without
     * a 128-bit integer (MSVC); gives the same bits. */
    uint64_t x0 = x & 0xFFFFFFFFu, x1 = x >> 32, y0 = y & 0xFFFFFFFFu, y1 = y >> 32;
    uint64_t p00 = x0 * y0, p01 = x0 * y1, p10 = x1 * y0, p11 = x1 * y1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
    *lo = (mid << 32) | (p00 & 0xFFFFFFFFu);
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

/* An unbiased integer in [0, bound); bound must be > 0. */
static inline uint64_t ab_rng_below(ab_rng *rng, uint64_t bound)
{
    uint64_t lo;
    uint64_t hi = ab_mul64_hi(ab_rng_next(rng), bound, &lo);
    if (lo < bound) {
        /* 2^64 mod bound: the low words below it belong to an incomplete
         * last stripe, and accepting them would favour small results. */
        const uint64_t reject_below = (0 - bound) % bound;
        while (lo < reject_below)
            hi = ab_mul64_hi(ab_rng_next(rng), bound, &lo);
    }
    return hi;
}

#endif /* ATTNBENCH_RNG_H */
