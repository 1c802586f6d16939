// wgmma.cu: attention forward for Hopper (sm_90a only) on the Hopper-only path:
// wgmma.mma_async (fp16/bf16 operands, fp32 accumulators), Q/K/V tiles loaded
// by the tensor memory accelerator (cp.async.bulk.tensor completing on
// mbarriers) into 128B-swizzled shared memory, warp specialization.
//
// One thread block of 1 + NC warpgroups computes BM = 64 NC query rows of one
// (batch, head) at a time (64 NC / SPLIT with split-KV tiles, below):
//   warpgroup 0, the producer, drops to PRODUCER_REGS registers (setmaxnreg)
//     and one of its threads issues every TMA load: Q, then K and V blocks of
//     BN keys into a STAGES-deep ring.  full_k/full_v mbarriers complete when
//     a block's bytes have landed; empty_k (empty_v) completes when every
//     consumer warp that reads the slot (SPLIT: one key split's) is done with
//     a K (V) slot: K right after its S GEMM, V after its P V GEMM, so the
//     next K loads an iteration earlier.
//   warpgroups 1..NC, the consumers, rise to CONSUMER_REGS registers and own
//     64 query rows each (SPLIT: the splits of a row group share its rows and
//     take every SPLIT-th block).  Per K/V block: S = Q K^T by wgmma with both
//     operands in shared memory (K-major descriptors), online softmax on the
//     fp32 accumulators in registers (ex2 with scale*log2(e) folded in; a
//     row's max moves only by more than a slack, and its later blocks take P
//     against it before their own max is known: softmax_stale; so does an
//     unmasked first block with later blocks after it, against m = 0:
//     seed_first), P
//     packed to fp16/bf16 in registers, where the accumulator layout already
//     is the A-fragment layout, and O += P V by wgmma with A from registers and
//     V from shared memory (an N-major descriptor, so V needs no transpose).
// The schedules (tile_cfg): OVERLAP keeps the next S GEMM and this P V in
// flight during the softmax (SINK keeps ptxas from undoing that: sink_rows); PP makes the consumers issue their GEMMs by turns
// on named barriers (one's softmax under the others' GEMMs); PERSIST runs one
// CTA per SM over the tiles (causal: handed out by an atomic counter, a
// head-major heavy share first; else a static rotated round robin)
// with the next tile's Q (double-buffered where shared memory allows) and K/V
// loading under this tile, and O stored from registers or (TMA_O) by a bulk
// tensor store from the tile's Q buffer.
// Shared memory tiles are [D/64][rows][64 elements]: each row of a column
// block is one 128-byte swizzle span, which is what a TMA box with
// CU_TENSOR_MAP_SWIZZLE_128B writes and what a wgmma descriptor in 128B
// swizzle mode reads (8-row atoms of 1024 bytes, tiles 1024-byte aligned).
//
// Semantics as kernels/attn.h: fp16 and bf16; D = 64 or 128; causal
// (top-left, as SDPA's is_causal) or not; any Sq, Sk >= 1 (TMA zero-fills rows
// past the end of a head, keys >= Sk are masked, rows >= Sq are never
// written); Sq != Sk; GQA; any non-zero scale (a negative scale negates Q in
// shared memory once, so the softmax always sees a positive factor); fp32
// natural-log lse.  TMA needs 16-byte aligned base pointers and strides, and
// supports() rejects anything else, and any GPU but sm_90, with the reason
// (impl='auto' then falls back to mma).  The tensor maps are encoded on the
// host per launch through cuTensorMapEncodeTiled, reached with
// cudaGetDriverEntryPointByVersion so the module does not link libcuda.
//
// Configs: AB_WGMMA_CONFIGS below, each with its reason; "auto" picks one per
// case from side-by-side timings (auto_config).  Checked on an H200: the
// package's GPU parity suite (tests/test_gpu_parity.py: test_every_config
// runs every config on tails, Sq != Sk and GQA) and compute-sanitizer's four
// tools (benchmarks/sanitize.sh, sanitize_cases.py with impl@config names).
//
// Tried and dropped after side-by-side timings (NOTES.md, third
// to fifth sessions): a tile's first S GEMM issued in the previous tile's
// last slot (twice), split row-max chains, the next Q prefetched into L2,
// causal tiles ordered in L2-sized head groups, 64-key blocks at D = 64, a
// share of the exponentials on the FMA pipe, row sums by the tensor cores
// (P V against extra columns of ones), K and V issued by two producer
// threads, the tensor maps prefetched, a tile's O stored under the next
// tile's first S GEMM, that S GEMM issued without a ping-pong turn, and two
// co-resident causal CTAs paired heavy with light, and one flat loop over all
// of a CTA's key blocks across its tiles (sixth session: 1% faster to 5%
// slower), and five-stage K/V rings; none gained where `auto` would use it.
// Eighth session: ranks copied into shared memory by cp.async.bulk (level),
// and split-KV tiles of four 64-key splits or of 128 rows in two splits, four
// consumers at 112 registers (4x8x512x64: slower than m64_ov).
// Ninth session: the row max and sum over four partials each (shorter chains;
// with the slack, slower in 34 of 36 config-and-case pairs).
// Tenth session, on the split tiles at 4x8x512x64 (NOTES.md, runs 56-60): the
// consumers taking turns, at their GEMMs or at their softmaxes (-2 to -4%);
// the merge split by column halves between the two splits (level); an eighth
// or a quarter of the exponentials on the FMA pipe again (-1 to -4%); Q and
// the first K blocks by the consumers' plain loads instead of TMA (-10%: the
// first loads wait on DRAM either way); Q and the first K blocks before the
// rest of the first loads (level).
// Eleventh session (runs 64-69, 4x8x512x64): one CTA per SM of two row groups
// by two key splits, sharing K/V, overlapped or not, four or eight stages (-4
// to -7%); split tiles' O stored from registers (-3%) or by a bulk tensor
// store (level); the merge's factors and 1/l on the FMA pipe (level); two
// K/V blocks issued before the first barrier instead of four, and the merge
// folding 1/l into each split's factor (run 69: level).
// Twelfth session (runs 70-74, 4x8x512x64, code in commit 67325ad): the last
// split or the later warp of each pair merging (level; 1x8 3-5% slower), no
// warpgroup barrier before staging O and 1/l folded into the merge (level),
// fixed grid axes (head, batch, query block) (-2.5%), K before Q (-3%), V's
// first round right after K's (level to -1%), and the first dispatch wave
// sleeping so that co-resident CTAs end together (-3% and worse).
// Fourteenth session (runs 78-79, NOTES.md): a warpgroup's first unmasked
// block against a running max of 0, its max checked after the exp2s
// (softmax_first, peeled out of the plain loop to avoid a spill: level at
// 4x8x512x64 non-causal, 4-9% slower causal and at 1x8, the kernel 1,856 ->
// 3,440 instructions), and the plain loop's max-first softmax written once
// for the first blocks and the rare redo (104 instructions fewer: level).
// Fifteenth session (run 82): the plain loop by 64-key block halves, both
// halves' S GEMMs issued together, each half's P V under the other's softmax
// (HALVES, code in commit 33f942d: 5% slower on every short case).
//
// Build check (no GPU needed):
//   nvcc -c kernels/wgmma.cu -o /tmp/w.o -std=c++17 -O3 --use_fast_math -Ikernels \
//     -gencode=arch=compute_90a,code=sm_90a \
//     -gencode=arch=compute_80,code=[sm_80,compute_80] -Xptxas -v
// must report 0 bytes spill stores/loads and 0 bytes stack frame for every
// sm_90a instantiation, and no "wgmma.mma_async instructions are serialized"
// message (ptxas prints it as "ptxas info ... (C7518)/(C7520) Potential
// Performance Loss", so grep for "serialized", not "warning"); the sm_80 pass builds empty kernel bodies (the device code is
// guarded by the sm_90a feature macro).  Then `python benchmarks/sass_check.py
// /tmp/w.o` must exit 0: in every overlapped config with SINK the wait for P V
// comes after the softmax's last MUFU in SASS.
#include <cuda.h>  // CUtensorMap and the encode function's types only: no libcuda link
#include <cuda_runtime.h>
#include <stdint.h>
#include <algorithm>
#include <stdlib.h>  // calloc for pick_rotation
#include <string.h>  // memset

#include "common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define AB_WGMMA_DEVICE 1  // this pass targets sm_90a: wgmma, setmaxnreg and TMA exist
#else
#define AB_WGMMA_DEVICE 0  // any other pass (sm_80, host) builds empty kernel bodies
#endif

namespace ab {
namespace wgmma_impl {

// ---------------------------------------------------------------------------
// Tile geometry
// ---------------------------------------------------------------------------

// Every shared-memory tile is [D/64][rows][64 elements]: one 128-byte row per
// column block, the span of the 128B swizzle, 8 rows to a 1024-byte atom.
constexpr uint32_t ROW_BYTES = 128;
constexpr uint32_t ATOM_BYTES = 8 * ROW_BYTES;
constexpr int COL_BLOCK = 64;  // elements of one 128-byte row
constexpr int WG_ROWS = 64;    // query rows of one consumer warpgroup (wgmma's M)

// One kernel variant.  NC consumer warpgroups of 64 query rows each (BM =
// 64 NC / SPLIT), BN keys per K/V block, a STAGES-deep K/V ring, and the schedule:
//   OVERLAP  the next S GEMM and this block's P V in flight during the softmax
//   PP       ping-pong: the consumers issue their GEMMs by turns (round robin
//            on named barriers), so one's softmax runs under the others' GEMMs
//   PERSIST  one CTA per SM walks the tiles (next_rank: causal ones handed out
//            dynamically, heavy share head-major); Q of the next tile loads as soon as the
//            last S GEMM of this one is done, K/V stream on across tiles, and
//            O is stored from registers so Q's buffer is free at once
//   TMA_O    (PERSIST with two Q buffers) O goes through this warpgroup's rows of
//            the Q buffer and out by a bulk tensor store; the buffer goes back
//            to the producer once the store has read it
//   SPLIT    (not persistent) the consumers split each tile's key blocks SPLIT
//            ways, block j to consumer split j % SPLIT, and merge their partial
//            O, maxima and sums in shared memory at the end: NC / SPLIT
//            consumers per split own 64 rows each, BM = 64 NC / SPLIT, so a
//            latency-bound launch gets SPLIT times the warpgroups per tile
//   MINB     CTAs per SM the registers are divided for (0: two with one
//            consumer, else one)
//   EARLY    (not persistent) the tile comes from a 3-d grid (no divisions), and
//            the thread that initializes the barriers issues Q 57 SASS
//            instructions into the kernel (m64_kv2_x2), right after Q's and K's barriers are
//            initialized, then the first STAGES K blocks, then (the other
//            barriers initialized) their V blocks, all before the CTA's first
//            barrier; it stores the tile in shared memory for the consumers
template <int D_, int NC_, int BN_, int STAGES_, bool OVERLAP_, bool PP_, bool PERSIST_, bool OWN_ = false,
          bool SINK_ = true, bool TMA_O_ = false, int SPLIT_ = 1, int MINB_ = 0,
          bool EARLY_ = false>
struct tile_cfg {
    static constexpr int SPLIT = SPLIT_;
    static constexpr int ROWG = NC_ / SPLIT_;  // consumer warpgroups per key split, 64 rows each
    static constexpr int D = D_, NC = NC_, BM = ROWG * WG_ROWS, BN = BN_, STAGES = STAGES_;
    static_assert(SPLIT >= 1 && NC_ % SPLIT == 0, "every key split has the same row groups");
    static_assert(SPLIT == 1 || (!PERSIST_ && !PP_ && !OWN_),
                  "split tiles are one per CTA, without turns or per-consumer extents");
    // Ring slot s then only ever holds blocks of split s % SPLIT, so each split
    // waits on a slot's full barrier only after it released the slot's previous
    // round.  Otherwise a split could pass a wait of parity p on a barrier still
    // in the phase before (try_wait.parity reads that as complete) and read a
    // block that has not landed.  (STAGES = SPLIT leaves a split one slot: no
    // prefetch past its own S GEMM; only the D = 128 split geometry does that.)
    static_assert(STAGES_ % SPLIT_ == 0, "each ring slot belongs to one key split");
    static constexpr bool OVERLAP = OVERLAP_;
    static constexpr bool PINGPONG = PP_ && NC_ > 1;
    static constexpr bool PERSIST = PERSIST_;
    static constexpr bool OWN = OWN_;  // per-consumer K/V extent (see the consumer loop)
    static constexpr bool EARLY = EARLY_ && !PERSIST_;
    static_assert(!EARLY_ || !PERSIST_, "EARLY issues a non-persistent CTA's one tile");
    static constexpr bool SINK = SINK_ && OVERLAP_;  // the softmax pinned above the wait for P V (sink_rows)
    static_assert(!PP_ || OVERLAP, "ping-pong is built on the overlapped loop");
    static_assert(!PERSIST || OVERLAP, "the persistent loop is built on the overlapped loop");
    static_assert(NC >= 1 && NC <= 4, "one to four consumer warpgroups");
    // Named barriers: 0 is __syncthreads; 1 + c is consumer c's own (128
    // threads); PP_BAR0 + c is consumer c's ping-pong turn (256 threads), or
    // with SPLIT, PP_BAR0 + rg is row group rg's (128 SPLIT threads: negate_q's
    // sync, then the merge).
    static constexpr int PP_BAR0 = 1 + NC;
    static constexpr int THREADS = 128 * (1 + NC);
    // One consumer: two CTAs share an SM (latency-bound shapes get twice the CTAs).
    static constexpr int MIN_BLOCKS = MINB_ > 0 ? MINB_ : NC == 1 ? 2 : 1;
    // Registers per thread after setmaxnreg: the producer needs a handful for
    // coordinates and barrier addresses; the consumers get the rest of the
    // CTA's registers.  setmaxnreg moves registers within what the launch gave
    // the CTA, which is ptxas's per-thread count (65536 / (MIN_BLOCKS THREADS),
    // down to a multiple of 8) times THREADS, not the whole register file:
    // NC = 2: 168 * 384 = 64512 = 128 * 24 + 256 * 240; NC = 3: 128 * 512 =
    // 65536 >= 128 * 24 + 384 * 160; NC = 1: 128 * 256 = 32768 = 128 * 24 + 128 * 232.
    // A larger total makes a consumer's setmaxnreg.inc wait forever.
    // NC = 4: 96 * 640 = 61440 >= 128 * 24 + 512 * 112; NC = 2 at two CTAs
    // per SM: 80 * 384 = 30720 >= 128 * 24 + 256 * 104.
    static constexpr int PRODUCER_REGS = 24;
    static constexpr int CTA_REGS = (65536 / (MIN_BLOCKS * THREADS)) / 8 * 8 * THREADS;
    static constexpr int CONSUMER_REGS = std::min(240, (CTA_REGS / 128 - PRODUCER_REGS) / NC / 8 * 8);
    static_assert(128 * (PRODUCER_REGS + NC * CONSUMER_REGS) <= CTA_REGS, "the CTA's registers");
    // setmaxnreg.dec (inc) may only lower (raise) a warp's count from the launch's.
    static_assert(PRODUCER_REGS <= CTA_REGS / THREADS && CONSUMER_REGS >= CTA_REGS / THREADS,
                  "setmaxnreg moves registers from the producer to the consumers");
    static constexpr int CB = D / COL_BLOCK;  // column blocks per row
    static constexpr uint32_t Q_BYTES = BM * D * 2;
    static constexpr uint32_t KV_BYTES = BN * D * 2;  // one K or V block
    // Persistent: two Q buffers where shared memory allows, so that the next
    // tile's Q loads while this tile's last blocks still read the other one.
    // Static shared memory: sink_rows's slots (8 bytes per consumer thread).
    static constexpr size_t SMEM_STATIC = SINK ? NC * 128 * 8 : 8;
    static constexpr size_t SMEM_1Q =
        Q_BYTES + 2 * STAGES * KV_BYTES + (4 + 4 * STAGES) * 8 + ATOM_BYTES + SMEM_STATIC;
    static constexpr int QBUF = (PERSIST && SMEM_1Q + Q_BYTES <= 227 * 1024) ? 2 : 1;
    // O stored by TMA from the warpgroup's own rows of the tile's Q buffer, which
    // then goes back to the producer only once the store has read it: with two Q
    // buffers that is a tile before the next Q load needs it; with one it would
    // hold up the next tile's Q, so those configs store from registers.
    static constexpr bool TMA_O = TMA_O_ && PERSIST && QBUF == 2;
    static constexpr uint32_t Q_OFF = 0;
    static constexpr uint32_t K_OFF = Q_OFF + QBUF * Q_BYTES;
    static constexpr uint32_t V_OFF = K_OFF + STAGES * KV_BYTES;
    static constexpr uint32_t BAR_OFF = V_OFF + STAGES * KV_BYTES;
    // mbarriers: q_full and q_empty per Q buffer, then full_k, full_v, empty_k
    // and empty_v per stage.
    static constexpr int N_BARS = 2 * QBUF + 4 * STAGES;
    // SPLIT: the partial results of key splits 1.. for split 0 to merge, per
    // row group and consumer thread PART_F4 float4s (O, then m m l l), laid out
    // [split - 1][row group][float4][thread] so that a warp's accesses are contiguous.
    static constexpr uint32_t PART_F4 = D / 8 + 1;
    // EARLY: the CTA's work_tile, decoded once.
    static constexpr uint32_t TILE_OFF = BAR_OFF + N_BARS * 8;
    static constexpr uint32_t TILE_BYTES = EARLY ? 32 : 0;
    static constexpr uint32_t PART_OFF = (TILE_OFF + TILE_BYTES + 15) & ~15u;
    static constexpr uint32_t PART_BYTES = (SPLIT - 1) * ROWG * PART_F4 * 128 * 16;
    // + ATOM_BYTES: the dynamic shared window is aligned up to an atom in the kernel.
    static constexpr size_t SMEM = (SPLIT > 1 ? PART_OFF + PART_BYTES : TILE_OFF + TILE_BYTES) + ATOM_BYTES;
    static_assert(D % COL_BLOCK == 0, "D must be a multiple of 64");
    static_assert(BN % 16 == 0 && BN >= 64 && BN <= 256, "wgmma N and TMA box limits");
    static_assert(BM <= 256, "TMA box limit");
    static_assert(STAGES >= 2, "at least one K/V block in flight");
    static_assert(SMEM + SMEM_STATIC <= 227 * 1024, "fits an sm_90 block's shared memory (dynamic + static)");
    // 228 KB per SM, 1 KB of it reserved per resident CTA.
    static_assert(MIN_BLOCKS * (SMEM + SMEM_STATIC + 1024) <= 228 * 1024, "MIN_BLOCKS CTAs fit an SM");
};

struct kparams {
    const void *q, *k;  // read only by recompute_s (the rare path of softmax_stale)
    int64_t q_strides[3], k_strides[3];
    void *o;
    float *lse;
    int64_t lse_sb, lse_sh;
    int64_t os[3];
    int Hq, Hkv, Sq, Sk;
    int n_mblocks;
    int bh_count;      // B * Hq
    int n_work;        // n_mblocks * bh_count tiles
    int rot;           // static non-causal order: round i is rotated by i * rot CTAs (pick_rotation)
    int n_heavy;       // causal rank order: each head's n_heavy heaviest query blocks come first, head-major
    int ticket;        // persistent: this launch's counter in tickets[] and rows of mailboxes[]
    int dynamic;       // persistent: ranks drawn from the counter (else the static order)
    float scale_log2;  // |scale| * log2(e): scores go straight into ex2
    float slack;       // how far (log2 units) a block's max may pass the running max before O is rescaled
    float p_lim;       // 2^slack: softmax_stale's bound on P
    int stale;         // later blocks by softmax_stale (else softmax_block, the max first)
    int seed;          // with stale: unmasked first blocks too, against m = 0 (seed_first)
    int negate_q;      // scale < 0: Q is negated in shared memory once
    int kv_group;      // Hq / Hkv (EARLY: the kv head without a division when 1)
    int grid_axes;     // EARLY: the grid axis (0 x, 1 y, 2 z) of the query block, head and batch, 2 bits each
    int causal;
};

// Per persistent launch in flight (kparams::ticket): the dynamic schedule's
// tile counter, zero when the module loads and left at zero by each launch
// (next_rank), and each CTA's mailbox, through which its producer hands tile
// ranks to its consumers.  In global memory, not shared: the hand-off is
// ordered by the q_full mbarrier, which compute-sanitizer's racecheck does not
// follow for shared memory (it flagged every rank slot there, though the
// producer rewrites a slot only RANK_SLOTS tiles later); racecheck checks
// shared memory only.  It costs each consumer thread one global load per
// tile; a copy of each entry into shared memory by cp.async.bulk, completing
// on q_full, timed level with it (eighth session, run 41: within 0.7% either
// way over the long bf16 grid) and was dropped.
// Launches take tickets round robin (next_ticket), so eager launches share one
// only N_TICKETS launches apart, and one at a time unless they run concurrently
// on different streams.  Known limit: a CUDA graph keeps the ticket it was
// captured with, so a replay can share it with every N_TICKETS-th eager launch,
// or with another instantiation of the same graph; if two such launches run at
// the same time on different streams, they corrupt each other's hand-out and
// can leave the counter non-zero for later launches with that ticket.
// (attnbench's own timer runs its candidates on one stream.)
constexpr int N_TICKETS = 256, MAX_CTAS = 256, RANK_SLOTS = 4;
__device__ int tickets[N_TICKETS];
__device__ int mailboxes[N_TICKETS][MAX_CTAS][RANK_SLOTS];
#ifdef AB_WGMMA_TRACE
// Timeline probes (AB_WGMMA_TRACE, experiment drivers only): [CTA][warp][event].
constexpr int TRACE_CTAS = 1024, TRACE_WARPS = 20, TRACE_EVENTS = 32;
__device__ long long trace_buf[TRACE_CTAS][TRACE_WARPS][TRACE_EVENTS];
#endif

#if AB_WGMMA_DEVICE

// ---------------------------------------------------------------------------
// PTX wrappers
// ---------------------------------------------------------------------------

// Timeline probes for experiment drivers (-DAB_WGMMA_TRACE, never in the
// package): lane 0 of each warp stores clock64 at event ev of its CTA's row.
#ifdef AB_WGMMA_TRACE
__device__ __forceinline__ void trace_at(int ev, long long v)
{
    const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if ((threadIdx.x & 31) == 0 && cta < TRACE_CTAS && ev >= 0 && ev < TRACE_EVENTS)
        trace_buf[cta][threadIdx.x >> 5][ev] = v;
}
__device__ __forceinline__ long long global_ns()
{
    long long t;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
    return t;
}
__device__ __forceinline__ int sm_id()
{
    int v;
    asm volatile("mov.u32 %0, %%smid;\n" : "=r"(v));
    return v;
}
#define AB_TRACE(ev) trace_at((ev), clock64())
#define AB_TRACE_V(ev, v) trace_at((ev), (long long)(v))
#else
#define AB_TRACE(ev) ((void)0)
#define AB_TRACE_V(ev, v) ((void)0)
#endif

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 2^x on the SFU whatever the build's math flags; ex2.approx(-inf) = +0.
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Fetches a tensor map (a __grid_constant__ parameter) ahead of its first TMA use.
__device__ __forceinline__ void prefetch_tensormap(const CUtensorMap *map)
{
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Makes the initialized barriers visible to the TMA unit (the async proxy).
__device__ __forceinline__ void mbar_init_fence()
{
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` of TMA traffic for this phase.
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}

// Weak global accesses kept in place and in order (volatile asm): the
// mailbox's ordering comes from the mbarriers around them.
__device__ __forceinline__ void st_global_s32(int *addr, int v)
{
    asm volatile("st.global.b32 [%0], %1;\n" ::"l"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ int ld_global_s32(const int *addr)
{
    int v;
    asm volatile("ld.global.b32 %0, [%1];\n" : "=r"(v) : "l"(addr) : "memory");
    return v;
}

// Spin until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

// A [64 x rows] box of a 4-d tensor map at (c0, c1, c2, c3), innermost first,
// into shared memory at `dst`; completes `bytes` on `bar`.  Out-of-range
// elements are zero-filled.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, int c3,
                                            uint32_t bar)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}

// A [64 x rows] box from shared memory at `src` to a 4-d tensor map at (c0, c1,
// c2, c3); elements out of range are not written.  One bulk group per commit.
__device__ __forceinline__ void tma_store_4d(const CUtensorMap *map, uint32_t src, int c0, int c1, int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// This thread's bulk groups have read their shared memory (it may be overwritten).
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
// This thread's bulk groups are complete.
__device__ __forceinline__ void bulk_wait() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// `n` arrivals at once.
__device__ __forceinline__ void mbar_arrive_n(uint32_t bar, uint32_t n)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar), "r"(n) : "memory");
}

template <int R> __device__ __forceinline__ void regs_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void regs_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}

// Barrier over the 128 threads of one warpgroup (ids 1.. ; 0 is __syncthreads).
__device__ __forceinline__ void warpgroup_bar(int id)
{
    asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory");
}

// Named barrier `id` over n threads (a multiple of 32).
__device__ __forceinline__ void named_bar_sync(int id, int n)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int n)
{
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

// Named barrier `id` over 256 threads: both consumer warpgroups, one waiting
// (sync) and the other signalling (arrive, which does not wait).
__device__ __forceinline__ void pair_bar_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void pair_bar_arrive(int id)
{
    asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory");
}

// Orders this thread's generic-proxy shared-memory writes before later reads
// by the async proxy (wgmma, TMA).
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Pins register values at this point of the instruction stream: reads of
// wgmma results stay after the wait, writes of its inputs before the fence.
template <int N> __device__ __forceinline__ void fence_regs(float (&r)[N])
{
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void fence_regs(uint32_t (&r)[N])
{
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Shared-memory matrix descriptor, 128B swizzle (mode 1 in bits 62-63), stride
// byte offset one 8-row atom (1024 B).  The leading byte offset matters only
// for N-major operands wider than 64 elements: the distance between column
// blocks.  K-major swizzled operands ignore it (16 = the encoded value 1).
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo_bytes)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(lbo_bytes >> 4) << 16) |
           ((uint64_t)(ATOM_BYTES >> 4) << 32) | (1ull << 62);
}

// wgmma.mma_async m64nNk16 with fp32 accumulators d[N/2] (per thread):
//   ss:  d (+)= A B, A [64 x 16] and B [N x 16] K-major in shared memory
//        (accumulate = 0 overwrites d);
//   rs:  d += A B, A [64 x 16] from registers (the mma.m16n8k16 A-fragment
//        layout, per warp) and B [16 x N] N-major in shared memory.
#define AB_R8(a, b, c, d, e, f, g, h) "%" #a ", %" #b ", %" #c ", %" #d ", %" #e ", %" #f ", %" #g ", %" #h
#define AB_REGS_0_31                                                                                       \
    AB_R8(0, 1, 2, 3, 4, 5, 6, 7) ", " AB_R8(8, 9, 10, 11, 12, 13, 14, 15) ", " AB_R8(16, 17, 18, 19, 20, 21, 22, 23) \
        ", " AB_R8(24, 25, 26, 27, 28, 29, 30, 31)
#define AB_REGS_32_63                                                                                      \
    AB_R8(32, 33, 34, 35, 36, 37, 38, 39) ", " AB_R8(40, 41, 42, 43, 44, 45, 46, 47) ", " AB_R8(48, 49, 50, 51, 52, 53, 54, 55) \
        ", " AB_R8(56, 57, 58, 59, 60, 61, 62, 63)
#define AB_REGS_64_87                                                                                      \
    AB_R8(64, 65, 66, 67, 68, 69, 70, 71) ", " AB_R8(72, 73, 74, 75, 76, 77, 78, 79) ", " AB_R8(80, 81, 82, 83, 84, 85, 86, 87)
#define AB_REGS32 "{" AB_REGS_0_31 "}"
#define AB_REGS40 "{" AB_REGS_0_31 ", " AB_R8(32, 33, 34, 35, 36, 37, 38, 39) "}"
#define AB_REGS64 "{" AB_REGS_0_31 ", " AB_REGS_32_63 "}"
#define AB_REGS88 "{" AB_REGS_0_31 ", " AB_REGS_32_63 ", " AB_REGS_64_87 "}"
#define AB_ACC8(d, i)                                                                                      \
    "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]),             \
        "+f"(d[(i) + 5]), "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define AB_ACC32(d) AB_ACC8(d, 0), AB_ACC8(d, 8), AB_ACC8(d, 16), AB_ACC8(d, 24)
#define AB_ACC40(d) AB_ACC32(d), AB_ACC8(d, 32)
#define AB_ACC64(d) AB_ACC32(d), AB_ACC8(d, 32), AB_ACC8(d, 40), AB_ACC8(d, 48), AB_ACC8(d, 56)
#define AB_ACC88(d) AB_ACC64(d), AB_ACC8(d, 64), AB_ACC8(d, 72), AB_ACC8(d, 80)

template <typename T, int N> struct wgmma;

// SS_ARGS / RS_ARGS: operand numbers of the descriptors (and A registers)
// after the N/2 accumulators; SS_P / RS_P: the operand holding scale-d.
#define AB_WGMMA_OPS(T, PT, N, REGS, ACC, SS_ARGS, SS_P, RS_ARGS, RS_P)                                  \
    template <> struct wgmma<T, N> {                                                                     \
        __device__ static __forceinline__ void ss(float (&d)[N / 2], uint64_t a, uint64_t b, int accumulate) \
        {                                                                                                \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SS_P ", 0;\n"                                \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PT "." PT " " REGS ", " SS_ARGS \
                         ", p, 1, 1, 0, 0;\n}\n"                                                          \
                         : ACC(d)                                                                        \
                         : "l"(a), "l"(b), "r"(accumulate));                                             \
        }                                                                                                \
        __device__ static __forceinline__ void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b)   \
        {                                                                                                \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " RS_P ", 0;\n"                                \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PT "." PT " " REGS ", " RS_ARGS \
                         ", p, 1, 1, 1;\n}\n"                                                             \
                         : ACC(d)                                                                        \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(1));                  \
        }                                                                                                \
    };

AB_WGMMA_OPS(__half, "f16", 64, AB_REGS32, AB_ACC32, "%32, %33", "%34", "{%32, %33, %34, %35}, %36", "%37")
AB_WGMMA_OPS(__half, "f16", 128, AB_REGS64, AB_ACC64, "%64, %65", "%66", "{%64, %65, %66, %67}, %68", "%69")
AB_WGMMA_OPS(__nv_bfloat16, "bf16", 64, AB_REGS32, AB_ACC32, "%32, %33", "%34", "{%32, %33, %34, %35}, %36",
             "%37")
AB_WGMMA_OPS(__nv_bfloat16, "bf16", 128, AB_REGS64, AB_ACC64, "%64, %65", "%66", "{%64, %65, %66, %67}, %68",
             "%69")
// N = 80: the S GEMM of 80-key blocks (three consumers at D = 128: 160 registers each).
AB_WGMMA_OPS(__half, "f16", 80, AB_REGS40, AB_ACC40, "%40, %41", "%42", "{%40, %41, %42, %43}, %44", "%45")
AB_WGMMA_OPS(__nv_bfloat16, "bf16", 80, AB_REGS40, AB_ACC40, "%40, %41", "%42", "{%40, %41, %42, %43}, %44", "%45")
// N = 176: the S GEMM of 176-key blocks (the widest that leaves registers for O at D = 128).
AB_WGMMA_OPS(__half, "f16", 176, AB_REGS88, AB_ACC88, "%88, %89", "%90", "{%88, %89, %90, %91}, %92", "%93")
AB_WGMMA_OPS(__nv_bfloat16, "bf16", 176, AB_REGS88, AB_ACC88, "%88, %89", "%90", "{%88, %89, %90, %91}, %92",
             "%93")

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}


// ---------------------------------------------------------------------------
// Consumer steps
// ---------------------------------------------------------------------------

// S = Q K^T for one K block: D/16 k-steps over 64-element column blocks,
// 32 bytes per step inside their 128-byte rows.  Issued, not committed.
template <typename T, typename C>
__device__ __forceinline__ void issue_s(float (&sc)[C::BN / 2], uint64_t dq, uint64_t dk)
{
#pragma unroll
    for (int kk = 0; kk < C::D / 16; ++kk) {
        const uint32_t a_off = (kk / 4) * C::BM * ROW_BYTES + (kk % 4) * 32;
        const uint32_t b_off = (kk / 4) * C::BN * ROW_BYTES + (kk % 4) * 32;
        wgmma<T, C::BN>::ss(sc, dq + (a_off >> 4), dk + (b_off >> 4), kk > 0);
    }
}

// O += P V for one V block: BN/16 k-steps, each 16 keys = two 8-row atoms on.
template <typename T, typename C>
__device__ __forceinline__ void issue_pv(float (&o)[C::D / 2], const uint32_t (&pf)[C::BN / 16][4], uint64_t dv)
{
#pragma unroll
    for (int kk = 0; kk < C::BN / 16; ++kk) wgmma<T, C::D>::rs(o, pf[kk], dv + ((kk * 2 * ATOM_BYTES) >> 4));
}

// -inf for keys >= Sk and (causal) keys past the row.  sc[4*nt + 2*hf + e]
// holds key key0 + nt*8 + 2t + e of row row_lo + 8*hf (the wgmma accumulator
// layout: per warp 16 rows, per lane rows g and g + 8, columns 2t, 2t + 1 of
// each n8 tile).  Per row, the last key it may see becomes a limit on the
// element's compile-time column nt*8 + e: one compare and one select per
// element (computing each element's key cost 3.5 instructions).
template <int BN>
__device__ __forceinline__ void mask_block(float (&sc)[BN / 2], int key0, int Sk, int causal, int row_lo, int t)
{
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        const int last = causal ? min(Sk - 1, row_lo + 8 * hf) : Sk - 1;
        const int lim = last - key0 - 2 * t;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e)
                if (nt * 8 + e > lim) sc[4 * nt + 2 * hf + e] = -INFINITY;
    }
}

// Online softmax of one S block, in place: new running maxima (scaled), S
// becomes P = exp2(S * sl2 - max), row sums, and alpha, the factor for O and
// l.  Returns whether O needs rescaling (warp-uniform).
//
// A row's running max moves only when the block's max exceeds it by more
// than `slack` (log2 units, kparams::slack).  Until then P is taken against
// the stale max, so P <= 2^slack: fp16/bf16 P and the fp32 O and l hold that
// with room to spare, and O / l and m + log2 l come out the same, since every
// term of a row shares one max.  The max that is used is a real element's
// scaled score (P = 1 there), so l >= 1 still.  With slack = 0 this is the
// exact running max; with slack > 0 O is rescaled almost only at a row's
// first block.
template <int BN>
__device__ __forceinline__ bool softmax_block(float (&sc)[BN / 2], float (&m_run)[2], float (&l_run)[2],
                                              float (&alpha)[2], float sl2, float slack)
{
    bool moved = false;
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) mx = fmaxf(mx, fmaxf(sc[4 * nt + 2 * hf], sc[4 * nt + 2 * hf + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // -inf + slack is -inf: a row's first unmasked block always moves it.
        const bool up = mx * sl2 > m_run[hf] + slack;
        const float m_new = up ? mx * sl2 : m_run[hf];
        // A row masked so far has max -inf: subtract 0 instead so that exp2
        // gives 0 rather than NaN.
        const float ms = (m_new == -INFINITY) ? 0.f : m_new;
        alpha[hf] = up ? fast_exp2(m_run[hf] - ms) : 1.f;
        moved |= up;
        m_run[hf] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                float &x = sc[4 * nt + 2 * hf + e];
                x = fast_exp2(fmaf(x, sl2, -ms));
                sum += x;
            }
        l_run[hf] = l_run[hf] * alpha[hf] + sum;
    }
    return __any_sync(0xffffffffu, moved);
}

// A row's later blocks (once every row of the warp has a finite running max):
// P against the running max at once, without the block's max first.  That
// max is a chain of BN/8 dependent compares and two shuffles per row ahead of
// every exp2 (bf16, side by side, without it: m192_pp_persist_own_tmao 652 -> 754
// TFLOP/s at 2x16x8192x128, NOTES.md, ninth session).  Instead each thread's
// partial row sums bound its P: while both are at most p_lim = 2^slack, so is
// every P, the bound softmax_block keeps.  A warp with a larger sum (its max
// rose by about slack or more) takes its P's max per row and, where that
// passes p_lim, moves m up by the max's binary exponent: P, O and l scale by
// an exact power of two.  Sums past 2^100 (or NaN: exp2 overflowed, or NaN
// inputs) return 2, and the caller recomputes S and takes softmax_block.
// Else returns whether O needs rescaling by alpha (warp-uniform).
//
// A warpgroup's first block, when it needs no mask and later blocks follow,
// comes here too, against a running max of 0 (seed_first) and with lo = 1:
// the fast path then also asks each thread's partial sums (BN/4 keys of a
// row) to be at least 1, so that every row's max P is at least 4/BN (fp16 P
// keeps its precision; l >= 1 as before), and rows whose max P is below 1
// move m down by its binary exponent, P and l scaling up by an exact power
// of two.  Sums below 2^-100 return 2 as well.  Later blocks pass lo = 0,
// which changes nothing.
template <int BN>
__device__ __forceinline__ int softmax_stale(float (&sc)[BN / 2], float (&m_run)[2], float (&l_run)[2],
                                             float (&alpha)[2], float sl2, float p_lim, float lo = 0.f)
{
    float sum[2];
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        sum[hf] = 0.f;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                float &x = sc[4 * nt + 2 * hf + e];
                x = fast_exp2(fmaf(x, sl2, -m_run[hf]));
                sum[hf] += x;
            }
    }
    if (__all_sync(0xffffffffu, sum[0] <= p_lim && sum[1] <= p_lim && sum[0] >= lo && sum[1] >= lo)) {
        alpha[0] = alpha[1] = 1.f;
        l_run[0] += sum[0];
        l_run[1] += sum[1];
        return 0;
    }
    const float tiny = lo * 0x1p-100f;
    if (!__all_sync(0xffffffffu, sum[0] <= 0x1p100f && sum[1] <= 0x1p100f && sum[0] >= tiny && sum[1] >= tiny))
        return 2;
    bool moved = false;
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        float mx = 0.f;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) mx = fmaxf(mx, fmaxf(sc[4 * nt + 2 * hf], sc[4 * nt + 2 * hf + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        alpha[hf] = 1.f;
        if (mx > p_lim || mx < lo) {
            // slack <= ex <= 100, or (lo = 1) -106 <= ex <= -1: mx >= a sum * 4/BN >= 2^-106
            const int ex = ((__float_as_int(mx) >> 23) & 0xff) - 127;
            alpha[hf] = __int_as_float((127 - ex) << 23);              // 2^-ex, exact
            m_run[hf] += (float)ex;
            moved = true;
#pragma unroll
            for (int i = 0; i < BN / 8; ++i) {
                sc[4 * i + 2 * hf] *= alpha[hf];
                sc[4 * i + 2 * hf + 1] *= alpha[hf];
            }
        }
        l_run[hf] = l_run[hf] * alpha[hf] + sum[hf] * alpha[hf];
    }
    return __any_sync(0xffffffffu, moved) ? 1 : 0;
}

// One m16n8k16 tensor-core MMA (a warp's own, not a warpgroup's), fp32 accumulate.
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
#define AB_MMA16816(T, PTX_T)                                                                                       \
    template <>                                                                                                     \
    __device__ __forceinline__ void mma16816<T>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)   \
    {                                                                                                               \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_T "." PTX_T ".f32 {%0, %1, %2, %3}, "            \
                     "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"                                              \
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                                \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                                 \
    }
AB_MMA16816(__half, "f16")
AB_MMA16816(__nv_bfloat16, "bf16")
#undef AB_MMA16816

// This thread's S elements of the block at key0, recomputed by the warp from
// Q and K in global memory: the rare path, for a block whose exp2 overflowed
// against the running max (softmax_stale returned 2).  The K slot of the ring
// is already released, and the warps of a warpgroup decide apart, so no
// wgmma: mma.sync's m16n8 accumulator is the wgmma layout of sc (per warp 16
// rows; lane g, t: rows g and g + 8, columns 2t, 2t + 1 of each n8 tile), and
// its fragments are pairs of elements along D, one 32-bit load each (strides
// are multiples of 8 elements).  Runtime loops over D keep the code small.
// Rows past Sq and keys past Sk read the last row / key (the mask follows);
// the sign of a negative scale (Q negated in shared memory) is applied at the end.
template <typename T, int BN, int D>
__device__ __forceinline__ void recompute_s(float (&sc)[BN / 2], const kparams &p, int b, int h, int kvh,
                                            int row_lo, int key0, int g, int t)
{
    const T *qh = static_cast<const T *>(p.q) + b * p.q_strides[0] + h * p.q_strides[1] + 2 * t;
    const T *kh = static_cast<const T *>(p.k) + b * p.k_strides[0] + kvh * p.k_strides[1] + 2 * t;
    const uint32_t *q_lo = reinterpret_cast<const uint32_t *>(qh + (int64_t)min(row_lo, p.Sq - 1) * p.q_strides[2]);
    const uint32_t *q_hi = reinterpret_cast<const uint32_t *>(qh + (int64_t)min(row_lo + 8, p.Sq - 1) * p.q_strides[2]);
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) sc[i] = 0.f;
    // Four n8 tiles at a time, over D in a runtime loop: 12 loads in flight at
    // most, so that the registers of the main loop suffice.
#pragma unroll
    for (int n0 = 0; n0 < BN / 8; n0 += 4) {
        const uint32_t *kr[4];
#pragma unroll
        for (int u = 0; u < 4; ++u)
            kr[u] = reinterpret_cast<const uint32_t *>(kh + (int64_t)min(key0 + 8 * (n0 + u) + g, p.Sk - 1) * p.k_strides[2]);
#pragma unroll 1
        for (int w = 0; w < D / 2; w += 8) {  // 16 elements of D: 8 32-bit words
            const uint32_t a[4] = {__ldg(q_lo + w), __ldg(q_hi + w), __ldg(q_lo + w + 4), __ldg(q_hi + w + 4)};
#pragma unroll
            for (int u = 0; u < 4 && n0 + u < BN / 8; ++u) {
                float c[4] = {sc[4 * (n0 + u)], sc[4 * (n0 + u) + 1], sc[4 * (n0 + u) + 2], sc[4 * (n0 + u) + 3]};
                mma16816<T>(c, a, __ldg(kr[u] + w), __ldg(kr[u] + w + 4));
#pragma unroll
                for (int i = 0; i < 4; ++i) sc[4 * (n0 + u) + i] = c[i];
            }
        }
    }
    if (p.negate_q)
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) sc[i] = -sc[i];
}

// P (fp32, the S accumulator layout) packed to T pairs: the A fragments of
// P V.  Fragment kk (keys 16kk..16kk+15) is {row lo keys 0-7, row hi keys 0-7,
// row lo keys 8-15, row hi keys 8-15} of the n8 tiles 2kk, 2kk+1, so the
// pair of tile nt, half hf goes to pf[nt/2][2*(nt&1) + hf]: the accumulator
// layout already is the fragment layout.
template <typename T, int BN>
__device__ __forceinline__ void pack_p(const float (&sc)[BN / 2], uint32_t (&pf)[BN / 16][4])
{
#pragma unroll
    for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
            pf[nt / 2][2 * (nt & 1) + hf] = pack2<T>(sc[4 * nt + 2 * hf], sc[4 * nt + 2 * hf + 1]);
}

// o[4*dt + 2*hf + e]: row lo (hf = 0) or hi (hf = 1) of n8 tile dt.
template <int D> __device__ __forceinline__ void rescale_o(float (&o)[D / 2], const float (&alpha)[2])
{
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
        o[4 * dt + 0] *= alpha[0];
        o[4 * dt + 1] *= alpha[0];
        o[4 * dt + 2] *= alpha[1];
        o[4 * dt + 3] *= alpha[1];
    }
}

template <int KS> __device__ __forceinline__ void fence_regs(uint32_t (&r)[KS][4])
{
#pragma unroll
    for (int k = 0; k < KS; ++k) fence_regs(r[k]);
}

#endif  // AB_WGMMA_DEVICE

// ---------------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------------

// One unit of work: BM query rows of one (batch, head).
struct work_tile {
    int b, h, kvh, m0, n_kv;
};

template <typename T, typename C>
__global__ void __launch_bounds__(C::THREADS, C::MIN_BLOCKS)
    attn_fwd_wgmma(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                   const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_o,
                   const kparams p)
{
#if AB_WGMMA_DEVICE
    constexpr int D = C::D, BM = C::BM, BN = C::BN, STAGES = C::STAGES, CB = C::CB, NC = C::NC;

    extern __shared__ unsigned char smem_raw[];
    // 128B-swizzled tiles must start on an atom (the swizzle reads address bits 4-9).
    const uint32_t base = (smem_u32(smem_raw) + ATOM_BYTES - 1) & ~(ATOM_BYTES - 1);
    unsigned char *const q_tile = smem_raw + (base - smem_u32(smem_raw)) + C::Q_OFF;  // generic view of Q
    const uint32_t sQ = base + C::Q_OFF, sK = base + C::K_OFF, sV = base + C::V_OFF;
    // Q buffer qb's barriers: bar_q_full + 8 qb, bar_q_empty + 8 qb.
    const uint32_t bar_q_full = base + C::BAR_OFF, bar_q_empty = bar_q_full + 8 * C::QBUF;
    const uint32_t bar_full_k = bar_q_empty + 8 * C::QBUF, bar_full_v = bar_full_k + 8 * STAGES;
    const uint32_t bar_empty_k = bar_full_v + 8 * STAGES, bar_empty_v = bar_empty_k + 8 * STAGES;
    // This CTA's mailbox: tile i's rank in slot i % RANK_SLOTS (persistent only).
    int *const mailbox = C::PERSIST ? mailboxes[p.ticket][blockIdx.x] : nullptr;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wg = warp >> 2;

    // The work list.  Causal ranks start with every head's n_heavy heaviest
    // query blocks, head by head (heaviest first within a head: the CTAs that
    // share a head stream its K/V at about the same time, so they stay in L2),
    // then the other blocks heaviest first across heads, so the light ones fill
    // the tail (n_heavy = 0: all of them that way).  Non-causal ranks are
    // head-major.  Without PERSIST, CTA x takes rank x.  With PERSIST, CTA x
    // takes rank x first; then, when p.dynamic, the next unclaimed rank (one
    // atomic per tile: whichever CTA frees first takes the next tile), else
    // one rank per round of G = gridDim.x: i G + G-1-x in odd rounds when
    // causal (snake order), else i G + (x + i rot) mod G.  The rotation matters
    // when BM does not divide Sq and G is a multiple of n_mblocks (132 SMs,
    // BM = 192, Sq = 1024 or 2048): unrotated, CTA x always gets query block x
    // mod n_mblocks, so a sixth of the CTAs do every light last block and the
    // rest only full ones (pick_rotation).  Only the producer computes ranks;
    // it hands them to the consumers through the CTA's mailbox.
    auto next_rank = [&](int i) -> int {
        const int G = (int)gridDim.x, x = (int)blockIdx.x;
        int r;
        if (p.dynamic) {
            // Every CTA draws until it gets a rank past the end: n_work draws in
            // all (n_work - G ranks, then G misses), so the draw that returns
            // n_work - 1 is the launch's last, and it zeroes the counter for
            // the next launch (stream order: that one starts after this one ends).
            int *const counter = &tickets[p.ticket];
            const int t = atomicAdd(counter, 1);
            if (t == p.n_work - 1) atomicExch(counter, 0);
            r = G + t;
        } else {
            // 32-bit: the host keeps n_work + gridDim.x below 2^31 and rot <= 3.
            r = i * G + (p.causal ? ((i & 1) ? G - 1 - x : x) : (x + i * p.rot) % G);
        }
        return r < p.n_work ? r : -1;
    };
    // K/V blocks of the tile at query row m0; causal: keys up to its last real row
    // (rows >= Sq are never written).
    auto kv_blocks = [&](int m0) { return ceil_div(p.causal ? min(p.Sk, min(m0 + BM, p.Sq)) : p.Sk, BN); };
    auto decode = [&](int rank) {
        work_tile w;
        int mb, bh;
        if (p.causal) {
            const int n_first = p.n_heavy * p.bh_count;
            if (rank < n_first) {
                bh = rank / p.n_heavy;
                mb = p.n_mblocks - 1 - rank % p.n_heavy;
            } else {
                mb = p.n_mblocks - p.n_heavy - 1 - (rank - n_first) / p.bh_count;
                bh = (rank - n_first) % p.bh_count;
            }
        } else {
            mb = rank % p.n_mblocks;
            bh = rank / p.n_mblocks;
        }
        w.b = bh / p.Hq;
        w.h = bh % p.Hq;
        w.kvh = kv_head(w.h, p.Hq, p.Hkv);
        w.m0 = mb * BM;
        w.n_kv = kv_blocks(w.m0);
        return w;
    };

    // The producer's loads: tile w's Q into buffer qb; K (V) block j of tile w
    // into ring position it (the slot's previous round released).
    auto issue_q = [&](int qb, const work_tile &w) {
        mbar_expect_tx(bar_q_full + 8 * qb, C::Q_BYTES);
#pragma unroll
        for (int cb = 0; cb < CB; ++cb)
            tma_load_4d(sQ + qb * C::Q_BYTES + cb * BM * ROW_BYTES, &tm_q, cb * COL_BLOCK, w.m0, w.h, w.b,
                        bar_q_full + 8 * qb);
    };
    auto issue_kv = [&](const CUtensorMap *map, uint32_t ring, uint32_t bar_full, int it, int j, const work_tile &w) {
        const int s = it % STAGES;
        mbar_expect_tx(bar_full + 8 * s, C::KV_BYTES);
#pragma unroll
        for (int cb = 0; cb < CB; ++cb)
            tma_load_4d(ring + s * C::KV_BYTES + cb * BN * ROW_BYTES, map, cb * COL_BLOCK, j * BN, w.kvh, w.b,
                        bar_full + 8 * s);
    };

    int n_early = 0;  // EARLY: the K/V blocks issued before the first barrier
    work_tile *const tile_smem = reinterpret_cast<work_tile *>(q_tile - C::Q_OFF + C::TILE_OFF);
    AB_TRACE(0);
    AB_TRACE_V(29, sm_id());
    AB_TRACE_V(30, global_ns());
    if (tid == 0) {
        work_tile w0;  // EARLY: this CTA's tile
        if constexpr (C::EARLY) {
            // Q first: in a cold launch (its code and data out of L2) the first loads
            // land about as much later as they are issued (tenth and eleventh
            // sessions, NOTES.md), so only Q's and K's barriers are initialized
            // before it, and the tile is read off the grid: the query block, head
            // and batch each have a grid axis (p.grid_axes), causal query blocks
            // heaviest first.  Its TMA fetches the tensor map itself.
            mbar_init(bar_q_full, 1);
            for (int s = 0; s < STAGES; ++s) mbar_init(bar_full_k + 8 * s, 1);
            mbar_init_fence();
            const unsigned ax = (unsigned)p.grid_axes;
            auto coord = [&](unsigned a) { return (int)(a == 0 ? blockIdx.x : a == 1 ? blockIdx.y : blockIdx.z); };
            const int mbi = coord(ax & 3u);
            w0.h = coord((ax >> 2) & 3u);
            w0.b = coord((ax >> 4) & 3u);
            w0.m0 = (p.causal ? p.n_mblocks - 1 - mbi : mbi) * BM;
            issue_q(0, w0);
            w0.kvh = p.kv_group == 1 ? w0.h : w0.h / p.kv_group;
            w0.n_kv = kv_blocks(w0.m0);
            // K before V: with key splits, each split's first S GEMM needs one.
            n_early = min(w0.n_kv, STAGES);
            for (int j = 0; j < n_early; ++j) issue_kv(&tm_k, sK, bar_full_k, j, j, w0);
            *tile_smem = w0;
            prefetch_tensormap(&tm_v);
        }
        for (int qb = 0; qb < C::QBUF; ++qb) {
            if (!C::EARLY) mbar_init(bar_q_full + 8 * qb, 1);  // EARLY: QBUF = 1, initialized above
            mbar_init(bar_q_empty + 8 * qb, NC * 4);  // one arrival per consumer warp
        }
        for (int s = 0; s < STAGES; ++s) {
            if (!C::EARLY) mbar_init(bar_full_k + 8 * s, 1);
            mbar_init(bar_full_v + 8 * s, 1);
            // A K/V block is read by one key split's consumers.
            mbar_init(bar_empty_k + 8 * s, C::ROWG * 4);
            mbar_init(bar_empty_v + 8 * s, C::ROWG * 4);
        }
        mbar_init_fence();
        if constexpr (C::EARLY)
            for (int j = 0; j < n_early; ++j) issue_kv(&tm_v, sV, bar_full_v, j, j, w0);
    }
    __syncthreads();
    AB_TRACE(1);

    if (wg == 0) {
        // ---- producer ----
        regs_dec<C::PRODUCER_REGS>();
        if (tid == 0) {
            int it = n_early;  // K/V blocks issued so far: ring slot it % STAGES, round it / STAGES
            int rank = (int)blockIdx.x;  // the grid has at most n_work CTAs
            for (int i = 0;; ++i) {
                // Tile i's Q goes to buffer i % QBUF, once tile i - QBUF is done with it;
                // its rank goes to mailbox slot i % RANK_SLOTS first, and the q_full
                // arrival (release) publishes both.  The producer runs at most QBUF <= 2
                // tiles ahead, so a slot is rewritten only after its tile's consumers
                // have read it.  Past the last tile the consumers find -1 there, in a
                // q_full phase of no bytes.
                const int qb = i % C::QBUF;
                if (i >= C::QBUF) mbar_wait(bar_q_empty + 8 * qb, (uint32_t)(((i / C::QBUF) - 1) & 1));
                if constexpr (C::PERSIST) st_global_s32(mailbox + i % RANK_SLOTS, rank);
                if (rank < 0) {
                    mbar_arrive(bar_q_full + 8 * qb);
                    break;
                }
                // EARLY: tile 0 (the only one) was decoded, and its Q issued, before the barrier.
                const work_tile w = C::EARLY ? *tile_smem : decode(rank);
                if (!C::EARLY) issue_q(qb, w);
                for (int j = i == 0 ? n_early : 0; j < w.n_kv; ++j, ++it) {
                    const int s = it % STAGES;
                    // Round r >= 1 of a slot waits for the consumers' release of round r - 1;
                    // K and V are released apart (K after its S GEMM, V after its P V GEMM),
                    // so the next K lands a whole iteration earlier than with one release.
                    const uint32_t prev = (uint32_t)(((it / STAGES) - 1) & 1);
                    if (it >= STAGES) mbar_wait(bar_empty_k + 8 * s, prev);
                    AB_TRACE(2 + j);
                    issue_kv(&tm_k, sK, bar_full_k, it, j, w);
                    if (it >= STAGES) mbar_wait(bar_empty_v + 8 * s, prev);
                    issue_kv(&tm_v, sV, bar_full_v, it, j, w);
                }
                if constexpr (!C::PERSIST) break;
                // Drawn once this tile's last K/V block is issued (a few blocks
                // before its consumers finish), so a dynamic draw goes to a CTA
                // about to be free; the atomic's latency hides under the ring.
                rank = next_rank(i + 1);
            }
        }
        return;
    }

    // ---- consumers ----
    regs_inc<C::CONSUMER_REGS>();
    AB_TRACE(2);
    __shared__ float2 sink_slots[C::SMEM_STATIC / 8];  // written by sink_rows, never read
    const uint32_t sink = smem_u32(sink_slots);
    // Consumer warpgroup cw (rows cw*64 .. cw*64+63 of the tile; SPLIT: rg's).  Broadcast
    // from lane 0, so that ptxas knows it is warp-uniform and keeps what derives
    // from it (the OWN loop bound, the idle branch) on the uniform datapath: the
    // main loops got 2-10% shorter (686 against 700 SASS instructions for
    // m192 at D=64; OWN's loop at 128x176 927 against 1019).
    const int cw = __shfl_sync(0xffffffffu, wg - 1, 0);
    // SPLIT: row group rg (rows rg*64 .. rg*64+63) and key split ks (blocks ks,
    // ks + SPLIT, ...); without, every consumer is its own row group of all blocks.
    const int rg = C::SPLIT > 1 ? cw % C::ROWG : cw;
    const int ks = C::SPLIT > 1 ? cw / C::ROWG : 0;
    auto blk = [&](int j) { return C::SPLIT > 1 ? ks + j * C::SPLIT : j; };  // the j-th block of this split
    auto n_mine = [&](int n_kv) {  // blocks of this split among a tile's n_kv
        return C::SPLIT > 1 ? (n_kv > ks ? (n_kv - ks + C::SPLIT - 1) / C::SPLIT : 0) : n_kv;
    };
    const int wq = warp & 3;  // warp within the warpgroup: 16 of those rows
    const int g = lane >> 2, t = lane & 3;
    const float sl2 = p.scale_log2;

    // K is K-major (leading offset unused); V is the N-major B operand of P V:
    // its column blocks lie BN rows apart.  `it` counts K/V blocks across tiles.
    auto desc_k = [&](int it) { return smem_desc(sK + (it % STAGES) * C::KV_BYTES, 16); };
    auto desc_v = [&](int it) { return smem_desc(sV + (it % STAGES) * C::KV_BYTES, BN * ROW_BYTES); };
    auto parity = [&](int it) { return (uint32_t)((it / STAGES) & 1); };
    // The GEMM that read K (V) of block `it` is complete: hand its slot back to the producer.
    auto release_k = [&](int it) {
        __syncwarp();
        if (lane == 0) mbar_arrive(bar_empty_k + 8 * (it % STAGES));
    };
    auto release_v = [&](int it) {
        __syncwarp();
        if (lane == 0) mbar_arrive(bar_empty_v + 8 * (it % STAGES));
    };
    // This warp's last S GEMM of the tile is complete: Q buffer qb may take a
    // later tile.  With TMA_O a warpgroup that stores O from its Q rows hands
    // them back later instead (settle_q); `now` is for one that stores nothing.
    auto release_q = [&](int qb, bool now = false) {
        if constexpr (C::PERSIST) {
            if (C::TMA_O && !now) return;
            __syncwarp();
            if (lane == 0) mbar_arrive(bar_q_empty + 8 * qb);
        }
    };
    // TMA_O: Q buffer q_owed - 1 holds the O rows of this warpgroup's previous
    // tile, under a bulk store issued by its first thread.  Once the store has
    // read them, that thread hands the buffer back for the warpgroup (4 warps'
    // arrivals).  Run early in the next tile, after its first S GEMM: the
    // producer needs the buffer only for the Q of the tile after that.
    int q_owed = 0;
    auto settle_q = [&]() {
        if constexpr (C::TMA_O) {
            if (q_owed != 0) {
                if ((threadIdx.x & 127) == 0) {
                    bulk_wait_read();
                    mbar_arrive_n(bar_q_empty + 8 * (q_owed - 1), 4);
                }
                q_owed = 0;
            }
        }
    };
    // Ping-pong: each issue slot (S_0; S_j with P_{j-1} V_{j-1}; the last P V)
    // waits on this warpgroup's turn barrier, which the previous warpgroup
    // arrives at after its own slot.  Every consumer runs the same tiles, so
    // the same number of slots: the last consumer lets consumer 0 go first,
    // and consumer 0 takes one more turn after its last tile, so that every
    // barrier phase completes (the consumers need not know which tile is the
    // last one before they reach it).
    // The barrier ids come from the warp index at each use (S2R is cheap):
    // holding them would cost two registers across the main loop.
    auto my_cw = [&]() { return (int)(threadIdx.x >> 7) - 1; };
    auto take_turn = [&]() {
        if constexpr (C::PINGPONG) pair_bar_sync(C::PP_BAR0 + my_cw());
    };
    auto pass_turn = [&]() {
        if constexpr (C::PINGPONG) {
            const int c = my_cw();
            pair_bar_arrive(C::PP_BAR0 + (c == NC - 1 ? 0 : c + 1));
        }
    };
    if constexpr (C::PINGPONG)
        if (cw == NC - 1) pair_bar_arrive(C::PP_BAR0);

    int it = 0;  // ring position of this tile's first K/V block
    // Only the tile count i and `it` are carried from tile to tile.
    for (int i = 0;; ++i) {
        const int qb = i % C::QBUF;
        mbar_wait(bar_q_full + 8 * qb, (uint32_t)((i / C::QBUF) & 1));
        AB_TRACE(3);
        // Read once, after the q_full wait that orders it after the producer's store.
        const int rank = C::PERSIST ? ld_global_s32(mailbox + i % RANK_SLOTS) : (int)blockIdx.x;
        if (rank < 0) break;
        // Registers are the tight resource here (three consumers: 160 each), so
        // the tile's scalars are decoded twice: here for the main loop, and after
        // it from an opaque copy of the rank (so that the compiler cannot keep
        // the first decode alive across the loop instead).
        auto rank_again = [&]() {
            int r;
            asm volatile("mov.b32 %0, %1;\n" : "=r"(r) : "r"(rank));
            return r;
        };
        // EARLY: decoded once, in shared memory.
        const work_tile w = C::EARLY ? *tile_smem : decode(rank);
        auto tile_again = [&]() { return C::EARLY ? *tile_smem : decode(rank_again()); };
        const int wg_row0 = w.m0 + rg * WG_ROWS;
        const int row_lo = wg_row0 + wq * 16 + g;  // this thread's rows: row_lo and row_lo + 8

        const uint64_t dq = smem_desc(sQ + qb * C::Q_BYTES + rg * WG_ROWS * ROW_BYTES, 16);
        if (p.negate_q) {
            // scale < 0: softmax(scale * Q K^T) = softmax(|scale| * (-Q) K^T); negating
            // fp16/bf16 is exact (a sign-bit flip).  Each warpgroup flips its own rows
            // (SPLIT: split 0's, for all the row group's splits).
#pragma unroll
            for (int cb = 0; cb < CB && ks == 0; ++cb) {
                unsigned char *const rows = q_tile + qb * C::Q_BYTES + cb * BM * ROW_BYTES + rg * WG_ROWS * ROW_BYTES;
#pragma unroll
                for (int k = 0; k < WG_ROWS * ROW_BYTES / 16 / 128; ++k) {
                    uint4 *chunk = reinterpret_cast<uint4 *>(rows + (k * 128 + (tid - 128 * wg)) * 16);
                    uint4 v = *chunk;
                    v.x ^= 0x80008000u;
                    v.y ^= 0x80008000u;
                    v.z ^= 0x80008000u;
                    v.w ^= 0x80008000u;
                    *chunk = v;
                }
            }
            fence_proxy_async();
            if constexpr (C::SPLIT > 1)
                named_bar_sync(C::PP_BAR0 + rg, 128 * C::SPLIT);
            else
                warpgroup_bar(1 + cw);
        }

        float o[D / 2];
#pragma unroll
        for (int k = 0; k < D / 2; ++k) o[k] = 0.f;
        // Running row maxima, already multiplied by scale*log2(e), and row sums
        // (this thread's quarter of them; the quad is reduced at the end).
        float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
        float alpha[2];
        // Every row of this warp has a finite running max: its later blocks
        // go by softmax_stale (warp-uniform; first set after the first block).
        bool seeded = false;
        float sc[BN / 2];         // S of the current block
        uint32_t pf[BN / 16][4];  // P of the block whose P V is next

        // Whether block key0 needs a mask (warpgroup-uniform).
        auto needs_mask = [&](int key0) {
            // row_lo - (its offset in the warpgroup) is the warpgroup's first row,
            // recomputed rather than held in a register across the loop.
            const int first_row = row_lo - (int)(((threadIdx.x & 127) >> 5) * 16 + ((threadIdx.x & 31) >> 2));
            return key0 + BN > p.Sk || (p.causal && key0 + BN - 1 > first_row);
        };
        auto mask = [&](int key0) {
            if (needs_mask(key0)) mask_block<BN>(sc, key0, p.Sk, p.causal, row_lo, t);
        };
        // seed_first: a warpgroup's first block of the tile (its split's first),
        // when it needs no mask, skips the max too: its rows start at m = 0, and
        // softmax_stale with lo = 1 checks that against the sums (O is still
        // zero, so a move of m costs only the rescale of P and l).  That max's
        // chain was ~300 cycles on every warpgroup's path (NOTES.md, run 77).
        // lo is 1 for that block only (cleared after its softmax, redo included).
        // Only where the warpgroup has later blocks (n >= 2), which go by
        // softmax_stale anyway: a row's largest P is then rarely exactly 1 (as
        // max first makes it in the block that holds the row's max), so its
        // rounding to T is part of the error either way.  A lone block stays max
        // first: seeded, fp16 at Sk = 100 measured twice SDPA's max error
        // (7.6e-4 against 3.7e-4; NOTES.md, fifteenth session), where max first
        // matches it.
        float lo = 0.f;
        auto seed_first = [&](int j, int n) {
            // A vote, though the test is uniform: so the compiler knows `seeded` is
            // (else it guards the softmax's shuffles with divergent-path copies).
            if (__all_sync(0xffffffffu, p.seed && n >= 2 && !needs_mask(j * BN))) {
                m_run[0] = m_run[1] = 0.f;
                seeded = true;
                lo = 1.f;
            }
        };
        auto max_first = [&]() {
            const bool moved = softmax_block<BN>(sc, m_run, l_run, alpha, sl2, p.slack);
            seeded = __all_sync(0xffffffffu, m_run[0] != -INFINITY && m_run[1] != -INFINITY);
            return (int)moved;
        };
        // The mask and softmax of block j in sc: 0, or 1 when O needs rescaling by
        // alpha, or 2 (softmax_stale's rare path): sc is lost and redo_softmax(j)
        // is to recompute it, which the overlapped loop does once P_{j-1} V_{j-1}
        // is complete, so that its P fragments are no longer live.
        auto mask_and_softmax = [&](int j) {
            mask(j * BN);
            return p.stale && seeded ? softmax_stale<BN>(sc, m_run, l_run, alpha, sl2, p.p_lim, lo) : max_first();
        };
        // A seeded first block's redo starts over from m = -inf (l is still 0).
        auto redo_softmax = [&](int j) {
            const work_tile wt = tile_again();
            recompute_s<T, BN, D>(sc, p, wt.b, wt.h, wt.kvh, row_lo, j * BN, g, t);
            mask(j * BN);
            if (lo != 0.f) m_run[0] = m_run[1] = -INFINITY;
            return max_first();
        };
        // Pins the wait for P_{j-1} V_{j-1} below the softmax of S_j.  ptxas hoists
        // a lone wgmma wait to the top of its basic block, which put it before the
        // softmax in every overlapped loop (the overlap lost: the softmax waited for
        // P V).  It does not hoist the wait above a shared-memory store, and the
        // row sums stored here are the softmax's last results.
        auto sink_rows = [&]() {
            if constexpr (C::SINK)
                asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(sink + 8 * (threadIdx.x - 128)),
                             "f"(l_run[0]), "f"(l_run[1])
                             : "memory");
        };

        if constexpr (!C::OVERLAP) {
            seed_first(ks, n_mine(w.n_kv));
            for (int j = ks; j < w.n_kv; j += C::SPLIT) {
                const int ij = it + j;
                mbar_wait(bar_full_k + 8 * (ij % STAGES), parity(ij));
                wgmma_fence();
                issue_s<T, C>(sc, dq, desc_k(ij));
                wgmma_commit();
                wgmma_wait<0>();
                fence_regs(sc);
                AB_TRACE(4 + 3 * (j / C::SPLIT));
                release_k(ij);
                int r = mask_and_softmax(j);
                if (r == 2) r = redo_softmax(j);
                lo = 0.f;
                if (r) rescale_o<D>(o, alpha);
                pack_p<T, BN>(sc, pf);
                AB_TRACE(5 + 3 * (j / C::SPLIT));
                mbar_wait(bar_full_v + 8 * (ij % STAGES), parity(ij));
                fence_regs(o);
                fence_regs(pf);
                wgmma_fence();
                issue_pv<T, C>(o, pf, desc_v(ij));
                wgmma_commit();
                wgmma_wait<0>();
                fence_regs(o);
                AB_TRACE(6 + 3 * (j / C::SPLIT));
                release_v(ij);
            }
        } else {
            // Intra-warpgroup overlap: S_j = Q K_j^T and O += P_{j-1} V_{j-1} are in
            // flight together, and the softmax of S_j (in place, fp32) runs while
            // the tensor cores finish P_{j-1} V_{j-1}.  Only once that GEMM is
            // complete are O rescaled and P_j packed into the fragments it read
            // (packing earlier would overwrite registers the GEMM still reads).
            //
          // Slots `first` .. n_kv of a warpgroup with nothing (more) to compute:
          // empty turns (slot `first` too unless it was taken already), and every
          // block from `first` on released as soon as it has landed (after the
          // turn is passed, so a wait never holds a turn).
          // (SPLIT: this split's blocks.)
          auto idle_slots = [&](int first, bool first_taken) {
              settle_q();
              const int n_kv = n_mine(tile_again().n_kv);
              for (int j = first; j <= n_kv; ++j) {
                  if (j > first || !first_taken) {
                      take_turn();
                      pass_turn();
                  }
                  if (j < n_kv) {
                      const int is = it + blk(j);
                      mbar_wait(bar_full_k + 8 * (is % STAGES), parity(is));
                      release_k(is);
                      mbar_wait(bar_full_v + 8 * (is % STAGES), parity(is));
                      release_v(is);
                  }
              }
          };
          // Slots 0 .. n of this warpgroup's first n >= 1 blocks of the tile: S_0;
          // S_j with P_{j-1} V_{j-1} for j = 1 .. n-1; the last P V.  (SPLIT:
          // block j of the loop is the tile's blk(j).)
          auto run_blocks = [&](const int n) {
              const int i0 = it + blk(0);
              mbar_wait(bar_full_k + 8 * (i0 % STAGES), parity(i0));
              take_turn();
              wgmma_fence();
              issue_s<T, C>(sc, dq, desc_k(i0));
              wgmma_commit();
              pass_turn();
              wgmma_wait<0>();
              fence_regs(sc);
              AB_TRACE(4);
              release_k(i0);
              settle_q();
              if (n == 1) release_q(qb);
              // O is still zero: nothing to rescale.  One max-first softmax for both
              // the unseeded block and the seeded one's redo (each a copy of BN/2
              // exp2s per thread in these loops otherwise).
              seed_first(blk(0), n);
              if (!seeded || softmax_stale<BN>(sc, m_run, l_run, alpha, sl2, p.p_lim, lo) == 2) {
                  if (seeded) {
                      const work_tile wt = tile_again();
                      recompute_s<T, BN, D>(sc, p, wt.b, wt.h, wt.kvh, row_lo, blk(0) * BN, g, t);
                      m_run[0] = m_run[1] = -INFINITY;
                  }
                  mask(blk(0) * BN);
                  max_first();
              }
              lo = 0.f;
              pack_p<T, BN>(sc, pf);
              AB_TRACE(5);
              for (int j = 1; j < n; ++j) {
                  const int ik = it + blk(j), iv = it + blk(j - 1);
                  // Both waits and both descriptors before the fence: nothing but
                  // wgmma may define a wgmma input between the fence and the commits,
                  // or ptxas serializes them.  V_{j-1} landed long before K_j.
                  mbar_wait(bar_full_k + 8 * (ik % STAGES), parity(ik));
                  mbar_wait(bar_full_v + 8 * (iv % STAGES), parity(iv));
                  const uint64_t dk = desc_k(ik), dv = desc_v(iv);
                  fence_regs(o);
                  fence_regs(pf);
                  take_turn();
                  wgmma_fence();
                  issue_s<T, C>(sc, dq, dk);
                  wgmma_commit();
                  issue_pv<T, C>(o, pf, dv);
                  wgmma_commit();
                  pass_turn();
                  wgmma_wait<1>();  // S_j is complete; P_{j-1} V_{j-1} may still run
                  fence_regs(sc);
                  AB_TRACE(4 + 3 * j);
                  release_k(ik);
                  if (j == n - 1) release_q(qb);
                  int r = mask_and_softmax(blk(j));
                  sink_rows();
                  wgmma_wait<0>();
                  fence_regs(o);
                  // P_{j-1} pinned live until P V is complete.  On its own this did not
                  // keep the wait below the softmax (sink_rows does); it stays because
                  // every timed and sanitized build had it, and dropping it changes the
                  // SASS (not timed).
                  fence_regs(pf);
                  release_v(iv);
                  AB_TRACE(3 + 3 * j);  // P_{j-1} V_{j-1} is complete
                  if (r == 2) r = redo_softmax(blk(j));
                  if (r) rescale_o<D>(o, alpha);
                  pack_p<T, BN>(sc, pf);
                  AB_TRACE(5 + 3 * j);
              }
              const int il = it + blk(n - 1);
              mbar_wait(bar_full_v + 8 * (il % STAGES), parity(il));
              const uint64_t dv = desc_v(il);
              fence_regs(o);
              fence_regs(pf);
              take_turn();
              wgmma_fence();
              issue_pv<T, C>(o, pf, dv);
              wgmma_commit();
              pass_turn();
              wgmma_wait<0>();
              fence_regs(o);
              AB_TRACE(3 + 3 * n);
              release_v(il);
          };
          if constexpr (!C::OWN) {
            // Every consumer computes all of the tile's blocks (SPLIT: its
            // split's), except that a warpgroup whose rows all lie past Sq (the
            // last tile of a head when BM does not divide Sq: 1024 = 5 x 192 +
            // 64) only passes its turns:
            // 16x16x1024x64 with three consumers went from 386 to 395 TFLOP/s.
            if (wg_row0 < p.Sq) {
                // SPLIT: a split with no block of the tile (causal) keeps O = 0, l = 0.
                const int n = n_mine(w.n_kv);
                if (C::SPLIT == 1 || n > 0) run_blocks(n);
            } else {
                release_q(qb, true);  // no S GEMM of this warpgroup reads Q, nor does it store O
                idle_slots(0, false);
            }
          } else {
            // This warpgroup computes only its own n_own blocks (causal: up to its
            // last row; none when all its rows are past Sq); its later slots are
            // empty turns, and blocks it skips are released as they land.  The
            // uniform branch above measured 1-2% faster on non-causal D=64 (NOTES.md,
            // third session, runs 7-8 and 14), so both stay.
            const int own_end = p.causal ? min(p.Sk, min(wg_row0 + WG_ROWS, p.Sq)) : p.Sk;
            const int n_own = wg_row0 < p.Sq ? min(w.n_kv, ceil_div(own_end, BN)) : 0;
            if (n_own > 0)
                run_blocks(n_own);
            else
                release_q(qb, true);  // no S GEMM of this warpgroup reads Q, nor does it store O
            idle_slots(n_own, n_own > 0);
          }
        }
        const work_tile we = tile_again();
        it += we.n_kv;
        AB_TRACE(16);

        if constexpr (C::SPLIT > 1) {
            // ---- merge the key splits: split 0 takes the others' partial O, maxima
            // and sums from shared memory (thread for thread: the same rows and
            // columns), rescales both to the larger maximum and adds; then it
            // alone writes the tile.  l is still this thread's quarter of the row.
            float4 *const part = reinterpret_cast<float4 *>(q_tile - C::Q_OFF + C::PART_OFF) + (threadIdx.x & 127);
            constexpr int F4 = C::PART_F4;
            if (ks > 0) {
                float4 *const mine = part + ((ks - 1) * C::ROWG + rg) * F4 * 128;
#pragma unroll
                for (int k = 0; k < D / 8; ++k) mine[k * 128] = make_float4(o[4 * k], o[4 * k + 1], o[4 * k + 2], o[4 * k + 3]);
                mine[(F4 - 1) * 128] = make_float4(m_run[0], m_run[1], l_run[0], l_run[1]);
                AB_TRACE(17);
                named_bar_arrive(C::PP_BAR0 + rg, 128 * C::SPLIT);
                break;
            }
            named_bar_sync(C::PP_BAR0 + rg, 128 * C::SPLIT);
            AB_TRACE(17);
#pragma unroll
            for (int sp = 1; sp < C::SPLIT; ++sp) {
                const float4 *const theirs = part + ((sp - 1) * C::ROWG + rg) * F4 * 128;
                const float4 ml = theirs[(F4 - 1) * 128];
                const float m_o[2] = {ml.x, ml.y}, l_o[2] = {ml.z, ml.w};
                float a_me[2], a_o[2];
#pragma unroll
                for (int hf = 0; hf < 2; ++hf) {
                    const float m_new = fmaxf(m_run[hf], m_o[hf]);
                    const float ms = (m_new == -INFINITY) ? 0.f : m_new;  // as in softmax_block
                    a_me[hf] = fast_exp2(m_run[hf] - ms);
                    a_o[hf] = fast_exp2(m_o[hf] - ms);
                    m_run[hf] = m_new;
                    l_run[hf] = l_run[hf] * a_me[hf] + l_o[hf] * a_o[hf];
                }
#pragma unroll
                for (int k = 0; k < D / 8; ++k) {
                    const float4 v = theirs[k * 128];
                    o[4 * k + 0] = o[4 * k + 0] * a_me[0] + v.x * a_o[0];
                    o[4 * k + 1] = o[4 * k + 1] * a_me[0] + v.y * a_o[0];
                    o[4 * k + 2] = o[4 * k + 2] * a_me[1] + v.z * a_o[1];
                    o[4 * k + 3] = o[4 * k + 3] * a_me[1] + v.w * a_o[1];
                }
            }
        }

        AB_TRACE(28);
        // ---- epilogue: normalize, write O and lse ----
        T *og = static_cast<T *>(p.o) + we.b * p.os[0] + we.h * p.os[1];
        float inv[2];
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float l = l_run[hf];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            inv[hf] = 1.f / l;  // l >= 1: every row sees its max key
            const int row = row_lo + 8 * hf;
            if (p.lse != nullptr && t == 0 && row < p.Sq)
                // natural-log logsumexp: (scaled max + log2 of the sum) * ln 2
                p.lse[we.b * p.lse_sb + we.h * p.lse_sh + row] = (m_run[hf] + __log2f(l)) * 0.69314718055994531f;
        }
        AB_TRACE(18);
        const int wrow = rg * WG_ROWS + wq * 16;  // this warp's first row in the tile
        // Chunk c (16 bytes) of tile row r of a [CB][BM][64] buffer: column block c/8,
        // chunk (c%8) ^ (r%8) of its 128-byte row.  That is the 128B swizzle of a TMA
        // box, and the 8 rows of one store land in 8 distinct bank groups.
        auto staged = [&](unsigned char *buf, int r, int c) {
            return buf + (c / 8) * BM * ROW_BYTES + r * ROW_BYTES + (((c % 8) ^ (r & 7)) << 4);
        };
        // This thread's two rows of normalized O, staged in `buf` as its rows
        // row0 + g and row0 + g + 8 (row0: the warp's first).
        auto stage_o = [&](unsigned char *buf, int row0) {
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int r = row0 + g + 8 * hf;
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt)
                    *reinterpret_cast<uint32_t *>(staged(buf, r, dt) + 4 * t) =
                        pack2<T>(o[4 * dt + 2 * hf] * inv[hf], o[4 * dt + 2 * hf + 1] * inv[hf]);
            }
        };
        if constexpr (C::TMA_O) {
            // Into this warpgroup's rows of its Q buffer (all its GEMMs are complete),
            // then one bulk store per column block of a 64-row box; rows past Sq are
            // out of the map and not written.  The swizzle only sees a row mod 8, so
            // the warpgroup's rows stage from their own first row.
            if (wg_row0 < p.Sq) {
                stage_o(q_tile + qb * C::Q_BYTES + rg * WG_ROWS * ROW_BYTES, wq * 16);
                fence_proxy_async();
                warpgroup_bar(1 + cw);
                if ((threadIdx.x & 127) == 0) {
                    const uint32_t src = sQ + qb * C::Q_BYTES + rg * WG_ROWS * ROW_BYTES;
#pragma unroll
                    for (int cb = 0; cb < CB; ++cb)
                        tma_store_4d(&tm_o, src + cb * BM * ROW_BYTES, cb * COL_BLOCK, wg_row0, we.h, we.b);
                    bulk_commit();
                }
                q_owed = qb + 1;
            }
        } else if constexpr (C::PERSIST) {
            // Straight from registers: Q's buffer already belongs to the next tile.
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int row = row_lo + 8 * hf;
                if (row < p.Sq) {
                    T *orow = og + (int64_t)row * p.os[2] + 2 * t;
#pragma unroll
                    for (int dt = 0; dt < D / 8; ++dt)
                        *reinterpret_cast<uint32_t *>(orow + dt * 8) =
                            pack2<T>(o[4 * dt + 2 * hf] * inv[hf], o[4 * dt + 2 * hf + 1] * inv[hf]);
                }
            }
        } else {
            // Stage this warpgroup's rows in its Q rows, then 16-byte stores.
            // All four warps' GEMMs (the last readers of these Q rows) are complete
            // (SPLIT: the other splits' too, by the merge's barrier).
            warpgroup_bar(1 + cw);
            AB_TRACE(19);
            stage_o(q_tile, wrow);
            __syncwarp();  // each warp reads back only the 16 rows it wrote
            AB_TRACE(20);
            constexpr int CHUNKS = D / 8;  // 16-byte chunks per row
#pragma unroll
            for (int k = 0; k < 16 * CHUNKS / 32; ++k) {
                const int idx = lane + 32 * k;
                const int r = wrow + idx / CHUNKS, c = idx % CHUNKS;
                if (we.m0 + r < p.Sq)
                    *reinterpret_cast<uint4 *>(og + (int64_t)(we.m0 + r) * p.os[2] + c * 8) =
                        *reinterpret_cast<const uint4 *>(staged(q_tile, r, c));
            }
        }
        if constexpr (!C::PERSIST) break;
    }
    AB_TRACE(31);
    AB_TRACE_V(27, global_ns());
    if constexpr (C::PINGPONG)
        if (cw == 0) take_turn();  // the last consumer's arrival after its final slot
    // The last bulk store must be done with shared memory before the CTA exits.
    if constexpr (C::TMA_O)
        if (q_owed != 0 && (threadIdx.x & 127) == 0) bulk_wait();
#endif  // AB_WGMMA_DEVICE
}

// ---------------------------------------------------------------------------
// Host side: tensor maps, configs, launch
// ---------------------------------------------------------------------------

// cuTensorMapEncodeTiled's signature (CUDA 12.0 ABI), called through the
// pointer the runtime hands out, so the module needs no libcuda at link time.
typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                    const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static const unsigned ENCODE_ABI_VERSION = 12000;  // the function's first (and current) ABI

static int get_encoder(encode_tiled_fn *fn, ab_error *err)
{
    // Looked up once per process (the driver's entry point does not change);
    // racing first calls store the same pointer.
    static void *cached = nullptr;
    if (void *hit = __atomic_load_n(&cached, __ATOMIC_ACQUIRE)) {
        *fn = reinterpret_cast<encode_tiled_fn>(hit);
        return 0;
    }
    void *ptr = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    AB_CUDA_CHECK(err, cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, ENCODE_ABI_VERSION,
                                                        cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || ptr == nullptr)
        return ab_set_error(err, "wgmma: the CUDA driver has no cuTensorMapEncodeTiled (needs a CUDA 12 driver)");
    __atomic_store_n(&cached, ptr, __ATOMIC_RELEASE);
    *fn = reinterpret_cast<encode_tiled_fn>(ptr);
    return 0;
}

// Map a [B, H, S, D] tensor as 4-d (D, S, H, B), innermost first, read in
// boxes of 64 elements x `box_rows` rows with the 128B swizzle; rows past S
// come back as zeros.
static int encode_map(encode_tiled_fn encode, CUtensorMap *map, const void *ptr, ab_dtype dtype, int B, int H,
                      int S, int D, const int64_t stride[3], int box_rows, const char *name, ab_error *err)
{
    const cuuint64_t dims[4] = {(cuuint64_t)D, (cuuint64_t)S, (cuuint64_t)H, (cuuint64_t)B};
    const int extent[3] = {B, H, S};
    cuuint64_t strides[3];  // bytes, for S, H, B
    for (int i = 0; i < 3; ++i) {
        int64_t st = stride[2 - i];
        // A dimension of extent 1 is never stepped over: any legal stride does.
        if (extent[2 - i] == 1 && st == 0) st = (int64_t)D;
        strides[i] = (cuuint64_t)st * 2;
    }
    const cuuint32_t box[4] = {(cuuint32_t)COL_BLOCK, (cuuint32_t)box_rows, 1, 1};
    const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
    const CUresult rc = encode(map, dtype == AB_BFLOAT16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                               4, const_cast<void *>(ptr), dims, strides, box, elem_strides,
                               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (rc != CUDA_SUCCESS)
        return ab_set_error(err,
                            "wgmma: cuTensorMapEncodeTiled rejected %s (CUresult %d): strides (B, H, S) %lld, %lld, "
                            "%lld elements",
                            name, (int)rc, (long long)stride[0], (long long)stride[1], (long long)stride[2]);
    return 0;
}

// Q, K, V (boxes of bm, bn, bn rows) and, with_o, O (boxes of one
// warpgroup's 64 rows); without, maps[3] is zeroed (only TMA_O configs read it).
static int encode_maps(const ab_attn_args *a, int bm, int bn, bool with_o, CUtensorMap maps[4], ab_error *err)
{
    encode_tiled_fn encode;
    if (get_encoder(&encode, err) != 0) return -1;
    if (encode_map(encode, &maps[0], a->q, a->dtype, a->B, a->Hq, a->Sq, a->D, a->q_stride, bm, "q", err) != 0 ||
        encode_map(encode, &maps[1], a->k, a->dtype, a->B, a->Hkv, a->Sk, a->D, a->k_stride, bn, "k", err) != 0 ||
        encode_map(encode, &maps[2], a->v, a->dtype, a->B, a->Hkv, a->Sk, a->D, a->v_stride, bn, "v", err) != 0)
        return -1;
    if (!with_o) {
        memset(&maps[3], 0, sizeof(maps[3]));
        return 0;
    }
    return encode_map(encode, &maps[3], a->o, a->dtype, a->B, a->Hq, a->Sq, a->D, a->o_stride, WG_ROWS, "out", err);
}

// SMs of the current device, for the persistent grid (cached per device).
static int sm_count(int *out, ab_error *err)
{
    static int cached[64];
    int dev = 0;
    AB_CUDA_CHECK(err, cudaGetDevice(&dev));
    if (dev >= 0 && dev < 64 && cached[dev] > 0) {
        *out = cached[dev];
        return 0;
    }
    int n = 0;
    AB_CUDA_CHECK(err, cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    if (dev >= 0 && dev < 64) cached[dev] = n;
    *out = n;
    return 0;
}

// The non-causal persistent order's rotation (kparams::rot, next_rank): the
// k in 0..MAX_ROT whose static assignment leaves the most loaded CTA lightest,
// counting a full tile as 1 and a head's last, partial query block as its
// share of working consumers (a consumer whose rows all lie past Sq only
// passes its turns).  With BM = 192 and Sq = 1024 on 132 SMs, k = 0 gives 22
// CTAs every light tile and the other 110 twelve full ones, 1.15x the mean
// load; k = 1 gives 1.03x, the wave quantization of 1536 tiles.  O(B H + G).
constexpr int MAX_ROT = 3;
static int pick_rotation(int n_mblocks, int bh, int G, int n_work, double light)
{
    if (light >= 1.0 || G <= 1 || n_work <= G) return 0;
    double *load = static_cast<double *>(calloc((size_t)G, sizeof(double)));
    if (load == nullptr) return 0;  // any rotation is correct; this one is just slower
    const long long rounds = n_work / G, rest = n_work % G;
    int best = 0;
    double best_max = 0.0;
    for (int k = 0; k <= MAX_ROT; ++k) {
        for (int x = 0; x < G; ++x) load[x] = (double)rounds;
        // round `rounds` is partial: its positions y < rest go to CTA (y - rounds k) mod G
        for (long long y = 0; y < rest; ++y) load[((y - rounds * k) % G + G) % G] += 1.0;
        for (long long h = 0; h < bh; ++h) {
            const long long r = h * n_mblocks + n_mblocks - 1, i = r / G, y = r % G;
            load[((y - i * k) % G + G) % G] += light - 1.0;
        }
        double mx = 0.0;
        for (int x = 0; x < G; ++x) mx = load[x] > mx ? load[x] : mx;
        if (k == 0 || mx < best_max - 1e-9) {
            best = k;
            best_max = mx;
        }
    }
    free(load);
    return best;
}

// The causal rank order's head-major share (kparams::n_heavy, next_rank): the
// query blocks whose key extent is at least that of the block at the
// (1 - heavy_pct/100) quantile, counted per head.  benchmarks/sched_sim.py's
// two_phase order is the same list: at 70% it keeps the balance of handing
// out the plain heaviest-first order dynamically (16x16x1024, 128-row tiles:
// 1.011) with 2.6x fewer heads in flight (51 against 131).
static int heavy_blocks(int n_mblocks, int bm, int bn, int Sq, int Sk, int heavy_pct)
{
    if (heavy_pct <= 0) return 0;
    if (heavy_pct > 100) heavy_pct = 100;
    auto cost = [&](int mb) { return ceil_div(std::min(Sk, std::min((mb + 1) * bm, Sq)), bn); };
    int k = (int)((long long)n_mblocks * (100 - heavy_pct) / 100);
    if (k > n_mblocks - 1) k = n_mblocks - 1;
    const int thr = cost(k);
    int first = k;  // costs rise with mb: the heavy blocks are first .. n_mblocks - 1
    while (first > 0 && cost(first - 1) >= thr) --first;
    return n_mblocks - first;
}

// This launch's counter for the dynamic schedule, round robin over tickets[].
static int next_ticket()
{
    static unsigned counter = 0;
    return (int)(__atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED) % (unsigned)N_TICKETS);
}

// Host-side schedule switches, for side-by-side timing of a schedule against
// its absence (AB_WGMMA_EXPERIMENTS builds only): the kernel is the same.
//   SCHED_NO_ROT     static non-causal order without pick_rotation
//   SCHED_STATIC     causal: the static snake order over heaviest-first ranks
//   SCHED_DYN_NC     non-causal: dynamic hand-out of the head-major ranks
//   sched_heavy(p)   causal: the head-major share p% (default HEAVY_PCT)
//   SCHED_EXACT_MAX  the exact running max (slack 0: O rescaled whenever a row's max rises),
//                    every block by softmax_block
//   SCHED_MAX_FIRST  every block by softmax_block (the block's max first), with the slack
//   SCHED_NO_SEED    first blocks by softmax_block, later ones by softmax_stale (no seed_first)
enum {
    SCHED_ALL = 0,
    SCHED_NO_ROT = 1,
    SCHED_STATIC = 2,
    SCHED_DYN_NC = 4,
    SCHED_EXACT_MAX = 8,
    SCHED_MAX_FIRST = 16,
    SCHED_NO_SEED = 32
};
// softmax_block's slack (log2 units): the running max is kept until a block's
// max passes it by more than 8, so P <= 256.
constexpr float RESCALE_SLACK = 8.f;
constexpr int HEAVY_PCT = 70;
constexpr int sched_heavy(int pct) { return (pct + 1) << 8; }
constexpr int sched_heavy_pct(int sched) { return (sched >> 8) ? (sched >> 8) - 1 : HEAVY_PCT; }

template <typename T, typename C, int SCHED = SCHED_ALL>
static int launch_one(const ab_attn_args *a, cudaStream_t stream, ab_error *err)
{
    CUtensorMap maps[4];
    if (encode_maps(a, C::BM, C::BN, C::TMA_O, maps, err) != 0) return -1;
    kparams p;
    p.o = a->o;
    p.lse = a->lse;
    p.lse_sb = a->lse_stride_b;
    p.lse_sh = a->lse_stride_h;
    for (int i = 0; i < 3; ++i) p.os[i] = a->o_stride[i];
    p.Hq = a->Hq;
    p.Hkv = a->Hkv;
    p.Sq = a->Sq;
    p.Sk = a->Sk;
    p.n_mblocks = ceil_div(a->Sq, C::BM);
    p.scale_log2 = fabsf(a->scale) * 1.4426950408889634f;
    p.negate_q = a->scale < 0.f;
    p.slack = (SCHED & SCHED_EXACT_MAX) ? 0.f : RESCALE_SLACK;
    p.p_lim = exp2f(p.slack);
    p.stale = !(SCHED & (SCHED_EXACT_MAX | SCHED_MAX_FIRST));
    p.seed = p.stale && !(SCHED & SCHED_NO_SEED);
    p.q = a->q;
    p.k = a->k;
    for (int i = 0; i < 3; ++i) {
        p.q_strides[i] = a->q_stride[i];
        p.k_strides[i] = a->k_stride[i];
    }
    p.causal = a->causal;
    p.kv_group = a->Hq / a->Hkv;
    p.grid_axes = 0;

    const long long work = (long long)p.n_mblocks * a->B * a->Hq;
    // The persistent schedule counts ranks in 32 bits up to n_work + gridDim.x.
    if (work > 0x7fffffffLL - 65536)
        return ab_set_error(err, "wgmma: %lld tiles exceed the limit (2^31 - 65537)", work);
    p.bh_count = a->B * a->Hq;
    p.n_work = (int)work;
    long long grid = work;
    p.rot = 0;
    p.n_heavy = 0;
    p.ticket = 0;
    p.dynamic = 0;
    if (C::PERSIST) {
        int sms = 0;
        if (sm_count(&sms, err) != 0) return -1;
        if (sms > MAX_CTAS) sms = MAX_CTAS;  // one mailbox row per CTA
        if (grid > sms) grid = sms;
        p.ticket = next_ticket();
        // Causal tiles differ in cost up to n_mblocks-fold: handed out as CTAs
        // free up, the finish balances without a static order's snake, and the
        // head-major share keeps fewer heads' K/V in flight (NOTES.md, seventh session).
        if (a->causal && !(SCHED & SCHED_STATIC)) {
            p.n_heavy = heavy_blocks(p.n_mblocks, C::BM, C::BN, a->Sq, a->Sk, sched_heavy_pct(SCHED));
            p.dynamic = 1;
        }
        if (!a->causal && (SCHED & SCHED_DYN_NC)) p.dynamic = 1;
        if (!a->causal && !(SCHED & (SCHED_NO_ROT | SCHED_DYN_NC))) {
            const int last_rows = a->Sq - (p.n_mblocks - 1) * C::BM;  // rows of a head's last query block
            const double light = (double)ceil_div(last_rows, WG_ROWS) / C::NC;
            p.rot = pick_rotation(p.n_mblocks, p.bh_count, (int)grid, p.n_work, light);
        }
    }
    dim3 grid3((unsigned)grid);
    if (C::EARLY) {
        // The query block, head and batch on grid axes: non-causal (x, y, z), so that
        // a head's query blocks run side by side (its K/V shared in L2); causal
        // (z, x, y), heaviest query block first, as decode's ranks.  y and z stop at
        // 65535; n_work < 2^31 leaves at most one extent past that, which then
        // trades axes with the one on x.
        int axis[3] = {0, 1, 2};  // of the query block, head, batch
        if (a->causal) {
            axis[0] = 2;
            axis[1] = 0;
            axis[2] = 1;
        }
        const unsigned ext[3] = {(unsigned)p.n_mblocks, (unsigned)a->Hq, (unsigned)a->B};
        for (int r = 0; r < 3; ++r)
            if (axis[r] != 0 && ext[r] > 65535)
                for (int x = 0; x < 3; ++x)
                    if (axis[x] == 0) {
                        axis[x] = axis[r];
                        axis[r] = 0;
                        break;
                    }
        unsigned dims[3];
        for (int r = 0; r < 3; ++r) dims[axis[r]] = ext[r];
        grid3 = dim3(dims[0], dims[1], dims[2]);
        p.grid_axes = axis[0] | axis[1] << 2 | axis[2] << 4;
    }
    AB_CUDA_CHECK(err, cudaFuncSetAttribute(attn_fwd_wgmma<T, C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)C::SMEM));
    attn_fwd_wgmma<T, C><<<grid3, C::THREADS, C::SMEM, stream>>>(maps[0], maps[1], maps[2], maps[3], p);
    AB_LAUNCH_CHECK(err);
    return 0;
}

template <typename C, int SCHED> static int launch_dtype(const ab_attn_args *a, cudaStream_t s, ab_error *err)
{
    if (a->dtype == AB_FLOAT16) return launch_one<__half, C, SCHED>(a, s, err);
    if (a->dtype == AB_BFLOAT16) return launch_one<__nv_bfloat16, C, SCHED>(a, s, err);
    return ab_set_error(err, "wgmma: dtype %d not supported (float16, bfloat16)", (int)a->dtype);
}

// A config's kernel variant at D = 64 (C64) or D = 128 (C128).
template <typename C64, typename C128, int SCHED>
static int launch_head_dim(const ab_attn_args *a, cudaStream_t s, ab_error *err)
{
    if (a->D == 64) return launch_dtype<C64, SCHED>(a, s, err);
    if (a->D == 128) return launch_dtype<C128, SCHED>(a, s, err);
    return ab_set_error(err, "wgmma: head dim %d not supported (64, 128)", a->D);
}

template <int NC, int BN64, int ST64, int BN128, int ST128, bool OV, bool PP, bool PERS, bool OWN, bool SINK,
          bool TMA_O, int SCHED = SCHED_ALL>
static int launch_cfg(const ab_attn_args *a, cudaStream_t s, ab_error *err)
{
    return launch_head_dim<tile_cfg<64, NC, BN64, ST64, OV, PP, PERS, OWN, SINK, TMA_O>,
                           tile_cfg<128, NC, BN128, ST128, OV, PP, PERS, OWN, SINK, TMA_O>, SCHED>(a, s, err);
}

// Split-KV configs (SPLIT > 1, one tile per CTA, no turns) at D = 64: NC
// consumers, SPLIT key splits, MINB CTAs per SM, BN, STAGES, OVERLAP.  At
// D = 128 each is m64_kv2's geometry (64 rows, two splits of 128-key blocks,
// overlapped): with 64 accumulator registers for O, four consumers' 112
// registers spill, and two CTAs' merge areas do not fit an SM.
// EARLY64: tile_cfg's EARLY at D = 64 (the D = 128 geometry was not timed with it).
template <int NC, int SPLIT, int MINB, int BN64, int ST64, bool OV64, bool EARLY64, int SCHED = SCHED_ALL>
static int launch_split(const ab_attn_args *a, cudaStream_t s, ab_error *err)
{
    return launch_head_dim<tile_cfg<64, NC, BN64, ST64, OV64, false, false, false, true, false, SPLIT, MINB, EARLY64>,
                           tile_cfg<128, 2, 128, 2, true, false, false, false, true, false, 2, 1>, SCHED>(a, s, err);
}

// X(name, consumer warpgroups NC (BM = 64 NC), BN and STAGES at D = 64, BN
// and STAGES at D = 128, OVERLAP, PINGPONG, PERSIST, OWN, SINK, TMA_O), with the reason.  Names
// are BMxBN_sSTAGES when one geometry serves both head dims; the m64/m192
// configs (BM only) change BN or STAGES with D.
#define AB_WGMMA_CONFIGS(X)                                                                                      \
    /* 1: the plain schedule (S GEMM, softmax, P V GEMM in turn per consumer): the least work per */             \
    /*    launch, which the short (S = 512) shapes favour */                                                     \
    X("128x128_s2", 2, 128, 2, 128, 2, false, false, false, false, true, false)                                  \
    /* 2: one consumer, two CTAs per SM: twice the CTAs for latency-bound shapes (D=64: 64x128 s3; */            \
    /*    D=128: 64x64 s2, for two CTAs' shared memory); overlapped */                                           \
    X("m64_ov", 1, 128, 3, 64, 2, true, false, false, false, true, false)                                        \
    /* 3: three consumers by turns (ping-pong), overlapped: two GEMMs queue while one softmax runs */            \
    /*    (D=64: 192x128 s4; D=128: 192x64 s3, as 160 registers per consumer thread leave no room */             \
    /*    for a 128-key S) */                                                                                    \
    X("m192_pp", 3, 128, 4, 64, 3, true, true, false, false, true, false)                                        \
    /* 4-6: persistent: one CTA per SM over the tiles (next_rank), next Q (double-buffered where shared */          \
    /*    memory allows) and K/V loading under this tile.  m128: D=64 128x128 s4, D=128 128x128 s2 */            \
    X("m128_pp_persist", 2, 128, 4, 128, 2, true, true, true, false, true, false)                                \
    /*    176-key blocks: fewer softmax rounds and barriers per key (88 S registers; 208 KB at D=128) */         \
    X("128x176_s2_pp_persist", 2, 176, 2, 176, 2, true, true, true, false, true, false)                          \
    X("m192_pp_persist", 3, 128, 4, 64, 3, true, true, true, false, true, false)                                 \
    /* 7-8: as 5 and 6 with each consumer's own K/V extent (OWN): in a causal tile the first consumers */        \
    /*    stop at their last row (8x16x2048x128 causal: +4.4% for m192_pp_persist) */                            \
    X("128x176_s2_pp_persist_own", 2, 176, 2, 176, 2, true, true, true, true, true, false)                       \
    X("m192_pp_persist_own", 3, 128, 4, 64, 3, true, true, true, true, true, false)                              \
    /* 9: as 8 without sink_rows (ptxas then waits for P V before the softmax): 3% faster on */                  \
    /*    8x16x2048x128 causal, the one case where it measured faster (third session, run 14) */                 \
    X("m192_pp_persist_own_nosink", 3, 128, 4, 64, 3, true, true, true, true, false, false)                   \
    /* 10-11: as 4 and 6 with O stored by TMA (TMA_O) from the warpgroup's rows of its Q buffer: a */            \
    /*    few shared stores and one bulk store per column block instead of D/4 global stores per */              \
    /*    thread (8x16x2048x128 causal: m192 444 -> 492 TFLOP/s; at D=64 m128 loses 1%) */                       \
    X("m128_pp_persist_tmao", 2, 128, 4, 128, 2, true, true, true, false, true, true)                            \
    X("m192_pp_persist_tmao", 3, 128, 4, 64, 3, true, true, true, false, true, true)                            \
    /* 12: as 11 with each consumer's own K/V extent (OWN): causal D=64 (eighth session, run 43, bf16: */    \
    /*     16x16x1024 316.7 against 300.0, cuDNN 317.5; 2x16x8192 512.7 against 482.7) */                   \
    X("m192_pp_persist_own_tmao", 3, 128, 4, 64, 3, true, true, true, true, true, true)

// X(name, NC, SPLIT, MINB, BN, STAGES, OVERLAP, EARLY) at D = 64: launch_split's.
#define AB_WGMMA_SPLIT_CONFIGS(X)                                                  \
    /* 13: 64 rows, two key splits of 128-key blocks, overlapped: a latency-bound */ \
    /*     launch with fewer tiles than SMs (1x8x512) gets two warpgroups per tile */  \
    X("m64_kv2", 2, 2, 1, 128, 4, true, true)                                        \
    /* 14: as 13 with two CTAs per SM (104 registers per consumer: 64-key blocks, */  \
    /*     not overlapped, which spilled): also where there are more 64-row tiles */  \
    /*     than SMs (4x8x512: 256); run 42: 1x8x512x64 52.6 against 52.1 */         \
    /* Both with EARLY at D = 64 (tenth session, run 60, bf16: 4x8x512x64 178.0 */   \
    /* against 168.6 without, cuDNN 164.9; 1x8x512x64 56.5 against 50.8, 45.8); */    \
    /* EARLY's Q issued first off a 3-d grid: run 67, 185.4 against 182.4, 166.9 */ \
    X("m64_kv2_x2", 2, 2, 2, 64, 4, false, true)

#ifdef AB_WGMMA_EXPERIMENTS
// Experiment builds (ATTNBENCH_NVCC_FLAGS=-DAB_WGMMA_EXPERIMENTS): configs of
// the list above with a host-side schedule switched off, timed side by side.
// The causal-order sweep of a persistent config NAME (its X arguments after
// the name): the static snake, dynamic with head-major shares of 0, 50 and 85%
// (the default is 70%), and the non-causal order handed out dynamically.
#define AB_WGMMA_SCHED_SWEEP(X, NAME, ...)             \
    X(NAME "_static", __VA_ARGS__, SCHED_STATIC)       \
    X(NAME "_h0", __VA_ARGS__, sched_heavy(0))         \
    X(NAME "_h50", __VA_ARGS__, sched_heavy(50))       \
    X(NAME "_h85", __VA_ARGS__, sched_heavy(85))       \
    X(NAME "_dync", __VA_ARGS__, SCHED_DYN_NC)
#define AB_WGMMA_EXPERIMENT_CONFIGS(X)                                                                        \
    X("m128_pp_persist_norot", 2, 128, 4, 128, 2, true, true, true, false, true, false, SCHED_NO_ROT)       \
    X("m192_pp_persist_norot", 3, 128, 4, 64, 3, true, true, true, false, true, false, SCHED_NO_ROT)        \
    AB_WGMMA_SCHED_SWEEP(X, "m128_pp_persist", 2, 128, 4, 128, 2, true, true, true, false, true, false)      \
    AB_WGMMA_SCHED_SWEEP(X, "m128_pp_persist_tmao", 2, 128, 4, 128, 2, true, true, true, false, true, true)  \
    AB_WGMMA_SCHED_SWEEP(X, "m192_pp_persist_tmao", 3, 128, 4, 64, 3, true, true, true, false, true, true)  \
    X("m64_ov_exact", 1, 128, 3, 64, 2, true, false, false, false, true, false, SCHED_EXACT_MAX)            \
    X("m128_pp_persist_tmao_exact", 2, 128, 4, 128, 2, true, true, true, false, true, true, SCHED_EXACT_MAX) \
    X("m192_pp_persist_tmao_exact", 3, 128, 4, 64, 3, true, true, true, false, true, true, SCHED_EXACT_MAX)  \
    X("m192_pp_persist_own_tmao_exact", 3, 128, 4, 64, 3, true, true, true, true, true, true, SCHED_EXACT_MAX) \
    X("m64_ov_maxfirst", 1, 128, 3, 64, 2, true, false, false, false, true, false, SCHED_MAX_FIRST)         \
    X("m128_pp_persist_tmao_maxfirst", 2, 128, 4, 128, 2, true, true, true, false, true, true, SCHED_MAX_FIRST) \
    X("m192_pp_persist_tmao_maxfirst", 3, 128, 4, 64, 3, true, true, true, false, true, true, SCHED_MAX_FIRST) \
    X("m192_pp_persist_own_tmao_maxfirst", 3, 128, 4, 64, 3, true, true, true, true, true, true, SCHED_MAX_FIRST) \
    X("m64_ov_noseed", 1, 128, 3, 64, 2, true, false, false, false, true, false, SCHED_NO_SEED)           \
    X("m192_pp_persist_own_tmao_noseed", 3, 128, 4, 64, 3, true, true, true, true, true, true, SCHED_NO_SEED)
#define AB_WGMMA_SPLIT_EXPERIMENT_CONFIGS(X)                                      \
    X("m64_kv2_x2_exact", 2, 2, 2, 64, 4, false, true, SCHED_EXACT_MAX)       \
    X("m64_kv2_x2_maxfirst", 2, 2, 2, 64, 4, false, true, SCHED_MAX_FIRST)    \
    X("m64_kv2_x2_noseed", 2, 2, 2, 64, 4, false, true, SCHED_NO_SEED)        \
    X("m64_kv2_late", 2, 2, 1, 128, 4, true, false)                           \
    X("m64_kv2_x2_late", 2, 2, 2, 64, 4, false, false)
#else
#define AB_WGMMA_EXPERIMENT_CONFIGS(X)
#define AB_WGMMA_SPLIT_EXPERIMENT_CONFIGS(X)
#endif

#define AB_WGMMA_NAME(NAME, NC, BN64, ST64, BN128, ST128, OV, PP, PERS, OWN, SINK, TMA_O, ...) NAME,
#define AB_WGMMA_SPLIT_NAME(NAME, ...) NAME,
static constexpr const char *wgmma_config_names[] = {"auto", AB_WGMMA_CONFIGS(AB_WGMMA_NAME)
                                                                  AB_WGMMA_SPLIT_CONFIGS(AB_WGMMA_SPLIT_NAME)
                                                                      AB_WGMMA_EXPERIMENT_CONFIGS(AB_WGMMA_NAME)
                                                                          AB_WGMMA_SPLIT_EXPERIMENT_CONFIGS(
                                                                              AB_WGMMA_SPLIT_NAME)};
#undef AB_WGMMA_SPLIT_NAME
#undef AB_WGMMA_NAME
static constexpr int n_wgmma_configs = sizeof(wgmma_config_names) / sizeof(wgmma_config_names[0]);

typedef int (*launch_fn)(const ab_attn_args *, cudaStream_t, ab_error *);
#define AB_WGMMA_FN(NAME, NC, BN64, ST64, BN128, ST128, OV, PP, PERS, OWN, SINK, TMA_O, ...) \
    launch_cfg<NC, BN64, ST64, BN128, ST128, OV, PP, PERS, OWN, SINK, TMA_O, ##__VA_ARGS__>,
#define AB_WGMMA_SPLIT_FN(NAME, NC, SPLIT, MINB, BN, ST, OV, EARLY, ...) \
    launch_split<NC, SPLIT, MINB, BN, ST, OV, EARLY, ##__VA_ARGS__>,
static const launch_fn wgmma_launchers[] = {AB_WGMMA_CONFIGS(AB_WGMMA_FN) AB_WGMMA_SPLIT_CONFIGS(AB_WGMMA_SPLIT_FN)
                                                AB_WGMMA_EXPERIMENT_CONFIGS(AB_WGMMA_FN)
                                                    AB_WGMMA_SPLIT_EXPERIMENT_CONFIGS(AB_WGMMA_SPLIT_FN)};
#undef AB_WGMMA_SPLIT_FN
#undef AB_WGMMA_FN

// "auto": the config that measured fastest for the case's class, side by side
// on an H200 (benchmarks/NOTES.md, "Kernels II", eighth session, run 42, and
// ninth, run 51; TFLOP/s, bf16 unless said, against SDPA's cuDNN backend in
// the same call):
//   fewer 128-row tiles than SMs (latency-bound, e.g. B=1..4, H=8, S=512):
//     D=64: m64_kv2_x2, two key splits per 64-row tile, two CTAs per SM
//       (run 51: 1x8x512 53.3 against m64_ov 51.3 and cuDNN 46.3, causal
//       27.1 / 25.0 / 22.6; 4x8x512 173.9 / 170.8 / 166.9, causal 93.7 /
//       90.7 / 82.0; fp16 the same order).  With EARLY (tenth session, run
//       60): 1x8x512 56.5 against m64_kv2 56.1 and cuDNN 45.8, causal 28.1 /
//       27.7 / 22.1; 4x8x512 178.0 / 138.7 / 164.9, causal 97.0 / 78.8 / 80.7
//     D=128: m64_ov, twice the CTAs (run 51: 1x8x512x128 82.6 against
//       m64_kv2_x2 75.7 and cuDNN 76.8; causal 42.6 / 38.7 / 36.6)
//   else: m192_pp_persist_own_tmao, both head dims, causal or not: with
//     softmax_stale its 64-key blocks at D=128 no longer lose to 128-key ones
//     (run 51, non-causal 2x16x8192x128: 726.9 against m192_pp_persist_tmao
//     674.8, m128_pp_persist_tmao 666.6, cuDNN 639.3; causal 732.7 / 676.0 /
//     655.9 / 552.5; 2x16x8192x64 562.5 / 540.6 / 443.0 / 472.9; causal
//     16x16x1024x64 331.7 / 315.8 / 317.9 / 319.3; fp16 the same order)
enum {
    CFG_PLAIN = 1,
    CFG_M64 = 2,
    CFG_M192 = 3,
    CFG_M128_PERSIST = 4,
    CFG_176_PERSIST = 5,
    CFG_M192_PERSIST = 6,
    CFG_176_PERSIST_OWN = 7,
    CFG_M192_PERSIST_OWN = 8,
    CFG_M192_PERSIST_OWN_NOSINK = 9,
    CFG_M128_PERSIST_TMAO = 10,
    CFG_M192_PERSIST_TMAO = 11,
    CFG_M192_PERSIST_OWN_TMAO = 12,
    CFG_M64_KV2_X2 = 14
};

// auto_config's indices name the configs it means (the list above is positional).
constexpr bool same_name(const char *a, const char *b)
{
    return *a == *b && (*a == '\0' || same_name(a + 1, b + 1));
}
static_assert(same_name(wgmma_config_names[CFG_M64], "m64_ov") &&
                  same_name(wgmma_config_names[CFG_M192_PERSIST_OWN_TMAO], "m192_pp_persist_own_tmao") &&
                  same_name(wgmma_config_names[CFG_M64_KV2_X2], "m64_kv2_x2"),
              "auto_config's CFG_ indices and AB_WGMMA_CONFIGS disagree");

static int auto_config(const ab_attn_args *a)
{
    int sms = 132;
    ab_error ignored;
    if (sm_count(&sms, &ignored) != 0) sms = 132;
    const long long tiles128 = (long long)a->B * a->Hq * ((a->Sq + 127) / 128);
    if (tiles128 < sms) return a->D == 64 ? CFG_M64_KV2_X2 : CFG_M64;
    return CFG_M192_PERSIST_OWN_TMAO;
}

static const int wgmma_head_dims[] = {64, 128};

static int is_aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

// Everything but the tensor maps; launch() and supports() share it.
static int check_args(const ab_attn_args *a, int sm, ab_error *err)
{
    if (sm != 90)
        return ab_set_error(err, "wgmma: needs an sm_90 GPU (H100/H200: wgmma, TMA, setmaxnreg), got sm_%d", sm);
    if (a->dtype != AB_FLOAT16 && a->dtype != AB_BFLOAT16)
        return ab_set_error(err, "wgmma: dtype must be float16 or bfloat16");
    if (a->D != 64 && a->D != 128)
        return ab_set_error(err, "wgmma: head dim %d not supported; supported head dims: 64, 128", a->D);
    const void *ptrs[4] = {a->q, a->k, a->v, a->o};
    const int64_t *strides[4] = {a->q_stride, a->k_stride, a->v_stride, a->o_stride};
    static const char *const names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; ++i) {
        if (!is_aligned16(ptrs[i]))
            return ab_set_error(err, "wgmma: %s must be 16-byte aligned (TMA and 16-byte stores)", names[i]);
        for (int d = 0; d < 3; ++d)
            if (strides[i][d] % 8 != 0)
                return ab_set_error(err,
                                    "wgmma: %s strides (B, H, S) must be multiples of 8 elements "
                                    "(TMA needs 16-byte strides); got %lld, %lld, %lld",
                                    names[i], (long long)strides[i][0], (long long)strides[i][1],
                                    (long long)strides[i][2]);
    }
    return 0;
}

static int wgmma_supports(const ab_attn_args *a, int sm, ab_error *err)
{
    if (check_args(a, sm, err) != 0) return -1;
    // The driver has the last word on a layout: encode the maps once (O's too:
    // TMA_O configs store through it).
    CUtensorMap maps[4];
    return encode_maps(a, 128, 128, true, maps, err);
}

static int wgmma_launch(const ab_attn_args *a, int config, cudaStream_t stream, ab_error *err)
{
    if (config < 0 || config >= n_wgmma_configs)
        return ab_set_error(err, "wgmma: config %d out of range [0, %d)", config, n_wgmma_configs);
    if (check_args(a, 90, err) != 0) return -1;
    const int idx = config == 0 ? auto_config(a) : config;
    return wgmma_launchers[idx - 1](a, stream, err);
}

}  // namespace wgmma_impl
}  // namespace ab

extern "C" const ab_kernel ab_kernel_wgmma = {
    "wgmma",
    "Hopper forward: wgmma.mma_async, TMA K/V ring on mbarriers, producer/consumer warpgroups, setmaxnreg",
    AB_DTYPE_BIT(AB_FLOAT16) | AB_DTYPE_BIT(AB_BFLOAT16),
    ab::wgmma_impl::wgmma_head_dims,
    2,
    128,
    1, 1, 1,
    90, 90,
    "sm_90a",
    ab::wgmma_impl::wgmma_config_names,
    ab::wgmma_impl::n_wgmma_configs,
    ab::wgmma_impl::wgmma_supports,
    ab::wgmma_impl::wgmma_launch,
};
