// GEMM dispatch and the blocked GotoBLAS/BLIS driver shared by every SIMD tier. Loops, outer
// to inner: jc over NC-wide column panels of C; pc over KC slices of K; ic over MC-tall row
// blocks, packing A's MC x KC block (L2-resident); then jr / ir over the NR / MR tiles, one
// microkernel call each, the KC x NR micro-panel of B re-read from L1 (L2 at the avx512 tier's
// KC) by every tile of its column. B's KC x NC panel is packed during the first row block, a
// few micro-panels at a time just before their tiles, and re-used by the later row blocks.
// Threads first split C into disjoint row or column ranges and run these loops on their range
// independently (no barriers, no shared buffers).
#include "kernels/gemm.hpp"

#include <algorithm>

#include "common.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Pack buffers: per thread, grow-only, 64-byte aligned, so a GEMM allocates nothing once a
// thread has seen its largest block (OpenMP keeps its worker threads alive between regions,
// so their buffers survive too). Concurrent GEMMs on different threads never share one.
enum PackSlot { kSlotA = 0, kSlotB = 1 };
float* pack_buffer(PackSlot slot, int64_t count) {
  thread_local Workspace ws;
  return ws.buffer(slot, static_cast<std::size_t>(count));
}

// K == 0: C = beta * C + epilogue, written as gemm__ref does (alpha * 0 first).
void gemm_no_k(int64_t M, int64_t N, float alpha, float beta, float* C, int64_t ldc,
               const GemmEpilogue& ep) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float c = alpha * 0.0f;
      if (beta != 0.0f) c += beta * C[i * ldc + j];
      if (ep.row_bias) c += ep.row_bias[i];
      if (ep.col_bias) c += ep.col_bias[j];
      if (ep.relu) c = std::max(c, 0.0f);
      C[i * ldc + j] = c;
    }
}

// B is packed this many NR-wide panels per pack() call (see gemm_range).
constexpr int64_t kBPanelsPerChunk = 4;

// C rows [m0, m1) x columns [n0, n1), all of K, on the calling thread.
void gemm_range(const GemmKernel& kr, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                int64_t K, float alpha, const GemmOperand& A, const GemmOperand& B,
                float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  const int MR = kr.MR, NR = kr.NR;
  // Equal K slices (K = 300 with KC = 256 runs 2 x 150, not 256 + 44): a thin last slice
  // would re-read and re-write all of C for little work.
  const int64_t kslices = ceil_div(K, kr.KC), kcb = ceil_div(K, kslices);
  const int64_t mcb = std::min(kr.MC, ceil_div(m1 - m0, MR) * MR);
  const int64_t ncb = std::min(kr.NC, ceil_div(n1 - n0, NR) * NR);
  const int64_t chunk = kBPanelsPerChunk * NR;
  // With a single row block, a packed chunk of B is dead once its tiles are done: reuse one
  // chunk-sized buffer, which stays in L1/L2, instead of writing the panel out to memory.
  const bool one_block = m1 - m0 <= mcb;
  float* bp = pack_buffer(kSlotB, kcb * (one_block ? std::min(chunk, ncb) : ncb));
  float* ap = pack_buffer(kSlotA, kcb * mcb);

  for (int64_t jc = n0; jc < n1; jc += ncb) {
    const int64_t nc = std::min(ncb, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kcb) {
      const int64_t kc = std::min(kcb, K - pc);
      const bool first = pc == 0, last = pc + kc == K;
      // The tiles of C rows [ic, ic + mc) x columns [j0, j1) of this KC slice, the packed
      // panels of those columns starting at b.
      // A's panels of the current row block: a (panel p at a + p * astride).
      const float* a = ap;
      int64_t astride = 0;
      auto tiles = [&](int64_t ic, int64_t mc, int64_t j0, int64_t j1, const float* b) {
        for (int64_t jr = j0; jr < j1; jr += NR) {
          const int n = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int m = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            // Earlier slices are already in C: later ones accumulate (beta 1); the epilogue
            // waits for the last.
            GemmTileArgs args{alpha, first ? beta : 1.0f, nullptr, nullptr, false};
            if (last) {
              args.row_bias = ep.row_bias ? ep.row_bias + ic + ir : nullptr;
              args.col_bias = ep.col_bias ? ep.col_bias + jc + jr : nullptr;
              args.relu = ep.relu;
            }
            kr.micro(kc, a + ir / MR * astride, b + (jr - j0) * kc,
                     C + (ic + ir) * ldc + jc + jr, ldc, m, n, args);
          }
        }
      };
      for (int64_t ic = m0; ic < m1; ic += mcb) {
        const int64_t mc = std::min(mcb, m1 - ic);
        // An operand that holds its panels already (PrepackedOperand) is read in place.
        a = A.panels(ic, mc, pc, kc, MR, &astride);
        if (!a) {
          A.pack(ic, mc, pc, kc, MR, ap);
          a = ap;
          astride = kc * MR;
        }
        if (ic != m0) {
          tiles(ic, mc, 0, nc, bp);
          continue;
        }
        // The first row block packs B as it goes, a chunk of panels just before their tiles:
        // the chunk is consumed from L1/L2 while hot instead of after the whole KC x NC
        // panel went out to L3 and memory (all that a small-M GEMM ever does with it).
        for (int64_t j0 = 0; j0 < nc; j0 += chunk) {
          const int64_t j1 = std::min(nc, j0 + chunk);
          float* b = one_block ? bp : bp + j0 * kc;
          B.pack(jc + j0, j1 - j0, pc, kc, NR, b);
          tiles(ic, mc, j0, j1, b);
        }
      }
    }
  }
}

}  // namespace

const GemmKernel* gemm_kernel(SimdTier tier) {
  if (!simd_tier_supported(tier)) return nullptr;
  switch (tier) {
    case SimdTier::ref: return nullptr;
    case SimdTier::portable: return &gemm_kernel__portable;
    case SimdTier::avx2:
#ifdef CNNKIT_HAVE_AVX2
      return &gemm_kernel__avx2;
#else
      return nullptr;
#endif
    case SimdTier::avx512:
#ifdef CNNKIT_HAVE_AVX512
      return &gemm_kernel__avx512;
#else
      return nullptr;
#endif
  }
  return nullptr;
}

GemmSplit gemm_split(const GemmKernel& kr, int64_t M, int64_t N, int64_t K) {
  // Threads own disjoint ranges of C, cut at tile boundaries along whichever dimension has
  // more tiles (the better balance; the other operand, the one every thread packs whole, is
  // then the smaller). Every element is computed by one thread with the same K slices and
  // the same microkernel, so the result is bit-identical for any thread count.
  const int64_t mtiles = ceil_div(M, kr.MR), ntiles = ceil_div(N, kr.NR);
  // A GEMM thread should get >= ~2 MFLOP (10-20 us) to pay for waking it: threads_for counts
  // work in units of kMinWorkPerThread, so flops are scaled down by 32 (2^16 * 32 = 2 M).
  const int64_t flops = 2 * M * N * K;
  const int nmax = threads_for(std::max(mtiles, ntiles), flops >> 5);
  // Per-thread cost of each split: its share of the multiply-adds plus packing its rows of A
  // and columns of B (every thread packs the unsplit operand whole), a packed element taken
  // as kPackCost multiply-adds. Ties go to columns: B is usually the gathered operand
  // (im2col offsets), A a contiguous weight copy. 16x256x4x4->256 3x3 conv (M = N = 256,
  // K = 2304) split rows 2 ways and packed its whole im2col B twice.
  constexpr int64_t kPackCost = 32;
  auto cost = [&](int64_t tiles, int64_t tile, int64_t other) {
    const int64_t share = std::min(ceil_div(tiles, nmax) * tile, tile * tiles);
    return share * other + kPackCost * (share + other);
  };
  const bool split_n = nmax <= 1 ? ntiles >= mtiles
                                 : cost(ntiles, kr.NR, M) <= cost(mtiles, kr.MR, N);
  return {static_cast<int>(std::min<int64_t>(nmax, split_n ? ntiles : mtiles)), split_n};
}

void gemm_blocked(const GemmKernel& kr, int64_t M, int64_t N, int64_t K, float alpha,
                  const GemmOperand& A, const GemmOperand& B, float beta, float* C,
                  int64_t ldc, const GemmEpilogue& ep) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    gemm_no_k(M, N, alpha, beta, C, ldc, ep);
    return;
  }
  const GemmSplit split = gemm_split(kr, M, N, K);
  const bool split_n = split.columns;
  const int nt = split.threads;
  const int64_t mtiles = ceil_div(M, kr.MR), ntiles = ceil_div(N, kr.NR);
  parallel_chunks(split_n ? ntiles : mtiles, nt, [&](int64_t t0, int64_t t1, int) {
    if (split_n)
      gemm_range(kr, 0, M, t0 * kr.NR, std::min(N, t1 * kr.NR), K, alpha, A, B, beta, C, ldc,
                 ep);
    else
      gemm_range(kr, t0 * kr.MR, std::min(M, t1 * kr.MR), 0, N, K, alpha, A, B, beta, C, ldc,
                 ep);
  });
}

void gemm_prepack(const GemmOperand& src, int64_t no, int64_t K, int width, float* packed) {
  const int64_t panels = ceil_div(no, width);
  parallel_for(panels, no * K, [&](int64_t p0, int64_t p1, int) {
    const int64_t o0 = p0 * width;
    src.pack(o0, std::min(no, p1 * width) - o0, 0, K, width, packed + o0 * K);
  });
}

void gemm(SimdTier tier, int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
          const GemmOperand& B, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  if (const GemmKernel* kr = gemm_kernel(tier))
    gemm_blocked(*kr, M, N, K, alpha, A, B, beta, C, ldc, ep);
  else
    gemm__ref(M, N, K, alpha, A, B, beta, C, ldc, ep);
}

void gemm(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperand& A,
          const GemmOperand& B, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  gemm(active_simd_tier(), M, N, K, alpha, A, B, beta, C, ldc, ep);
}

}  // namespace cnnkit
