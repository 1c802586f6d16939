// timing.cu: the small GPU helpers of the timing loop (csrc/timing.c).
//
// - blocking_kernel: one thread spins until the host sets a flag in mapped
//   pinned memory (or a timeout passes), so that a whole round of timed work
//   is queued behind it and host launch overhead never shows as GPU time.
//   While it spins it measures the SM clock: clock64() ticks against
//   %globaltimer nanoseconds.
// - count_nan: the NaN scan of the held-stream guard (harness.py).
// Built with the package (setup.py); exercised by tests/test_timing_gpu.py.
#include "common.cuh"
#include "../csrc/timing.h"

namespace {

__device__ __forceinline__ long long global_ns() {
    long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__global__ void blocking_kernel(const volatile int *flag, ab_clock_probe *probe, long long timeout_ns,
                                long long min_spin_ns) {
    const long long t0 = global_ns();
    const long long c0 = clock64();
    long long t = t0;
    int timed_out = 0;
    // Spin at least min_spin_ns so that the clock measurement spans enough
    // globaltimer ticks, then until released.
    while (t - t0 < min_spin_ns || *flag == 0) {
        t = global_ns();
        if (t - t0 > timeout_ns) {
            timed_out = 1;
            break;
        }
    }
    const long long c1 = clock64();
    probe->cycles = c1 - c0;
    probe->nanoseconds = t - t0;
    probe->timed_out = timed_out;
}

}  // namespace

extern "C" int ab_launch_blocking_kernel(const volatile int *flag, ab_clock_probe *probe, long long timeout_ns,
                                         long long min_spin_ns, cudaStream_t stream, ab_error *err) {
    blocking_kernel<<<1, 1, 0, stream>>>(flag, probe, timeout_ns, min_spin_ns);
    AB_LAUNCH_CHECK(err);
    return 0;
}

// count_nan: the number of NaN elements of a contiguous fp16/bf16/fp32
// array, added into *count (mapped pinned memory, so no allocation and no
// copy is needed: the held-stream guard must not allocate while a stream is held).
template <typename T>
__global__ void count_nan(const T *x, long long n, unsigned long long *count) {
    unsigned long long mine = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        mine += isnan(ab::num<T>::to_float(x[i])) ? 1 : 0;
    for (int offset = 16; offset > 0; offset /= 2)
        mine += __shfl_down_sync(0xffffffffu, mine, offset);
    if ((threadIdx.x & 31) == 0 && mine)
        atomicAdd_system(count, mine);
}

extern "C" int ab_launch_count_nan(const void *x, int dtype, long long n, unsigned long long *count,
                                   cudaStream_t stream, ab_error *err) {
    const int threads = 256;
    const int blocks = (int)(n / threads + 1 < 1024 ? n / threads + 1 : 1024);
    switch (dtype) {
    case AB_FLOAT16: count_nan<<<blocks, threads, 0, stream>>>((const __half *)x, n, count); break;
    case AB_BFLOAT16: count_nan<<<blocks, threads, 0, stream>>>((const __nv_bfloat16 *)x, n, count); break;
    case AB_FLOAT32: count_nan<<<blocks, threads, 0, stream>>>((const float *)x, n, count); break;
    default: return ab_set_error(err, "count_nan: unsupported dtype %d", dtype);
    }
    AB_LAUNCH_CHECK(err);
    return 0;
}

extern "C" int ab_launch_fill(void *buf, size_t bytes, unsigned value, cudaStream_t stream, ab_error *err) {
    AB_CUDA_CHECK(err, cudaMemsetAsync(buf, (int)(value & 0xff), bytes, stream));
    return 0;
}
