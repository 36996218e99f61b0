// GEMM microbenchmark over bench/shapes/gemm.txt: each shape is first validated against
// gemm__ref (on a sample of rows, once plain and once with beta and the full epilogue, and that
// again into a C with ldc > N, which must give the same bits), then timed: median ms, GFLOP/s and the share of the FMA peak measured in the same run.
//   bench_gemm [--threads N] [--reps R] [--filter NAME] [--tier ref|portable|avx2|avx512]
//              [--mc MC] [--kc KC] [--nc NC]     (block sizes override the tier's, for tuning)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kernels/gemm.hpp"
#include "kernels/simd.hpp"


namespace {

struct GemmArgs {
  cnnkit::SimdTier tier = cnnkit::active_simd_tier();
  int64_t mc = 0, kc = 0, nc = 0;  // 0: the tier's own
};

// Takes this benchmark's own options out of argv, leaving the common ones to bench::parse_args.
GemmArgs take_gemm_args(int& argc, char** argv) {
  GemmArgs g;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const bool ours = k == "--tier" || k == "--mc" || k == "--kc" || k == "--nc";
    if (!ours) {
      argv[out++] = argv[i];
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", k.c_str());
      std::exit(2);
    }
    const char* v = argv[++i];
    if (k == "--tier") g.tier = cnnkit::parse_simd_tier(v);
    else if (k == "--mc") g.mc = std::atoll(v);
    else if (k == "--kc") g.kc = std::atoll(v);
    else g.nc = std::atoll(v);
  }
  argc = out;
  return g;
}

// Rows of C the validation recomputes with gemm__ref: the first and last MR-ish rows (tails)
// and a spread in between.
std::vector<int64_t> sample_rows(int64_t M) {
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < M; ++i)
    if (i < 8 || i >= M - 8 || i % std::max<int64_t>(1, M / 16) == 0) rows.push_back(i);
  return rows;
}

// Runs `run` (which computes C from A, B, C0 and the epilogue) and compares the sampled rows
// with gemm__ref; returns the max relative difference.
double validate(int64_t M, int64_t N, int64_t K, const std::vector<float>& A,
                const std::vector<float>& B, float beta, const cnnkit::GemmEpilogue& ep,
                const std::vector<float>& C, const std::vector<float>& C0) {
  const std::vector<int64_t> rows = sample_rows(M);
  const int64_t R = static_cast<int64_t>(rows.size());
  std::vector<float> a_rows(R * K), c_rows(R * N), got(R * N), row_bias(R);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t k = 0; k < K; ++k) a_rows[r * K + k] = A[rows[r] * K + k];
    for (int64_t j = 0; j < N; ++j) {
      c_rows[r * N + j] = C0[rows[r] * N + j];
      got[r * N + j] = C[rows[r] * N + j];
    }
    if (ep.row_bias) row_bias[r] = ep.row_bias[rows[r]];
  }
  cnnkit::GemmEpilogue ep_rows = ep;
  if (ep.row_bias) ep_rows.row_bias = row_bias.data();
  cnnkit::gemm__ref(R, N, K, 1.0f, cnnkit::gemm_a(a_rows.data(), K, false),
                    cnnkit::gemm_b(B.data(), N, false), beta, c_rows.data(), N, ep_rows);
  return bench::max_rel_diff(got, c_rows);
}

}  // namespace

int main(int argc, char** argv) {
  const GemmArgs g = take_gemm_args(argc, argv);
  const bench::Args args = bench::parse_args(argc, argv);
  if (!cnnkit::simd_tier_supported(g.tier)) {
    std::fprintf(stderr, "tier %s is not supported here\n", cnnkit::simd_tier_name(g.tier));
    return 2;
  }
  cnnkit::GemmKernel kernel{};
  const cnnkit::GemmKernel* tier_kernel = cnnkit::gemm_kernel(g.tier);
  if (tier_kernel) {
    kernel = *tier_kernel;
    if (g.mc > 0) kernel.MC = g.mc;
    if (g.kc > 0) kernel.KC = g.kc;
    if (g.nc > 0) kernel.NC = g.nc;
  }
  // The peak of the vector width the tier uses: 512-bit FMAs for avx512, 256-bit otherwise.
  const double peak = bench::fma_peak_gflops(args.threads, g.tier);
  const std::string what = std::string("gemm --tier ") + cnnkit::simd_tier_name(g.tier) +
                          (g.tier == cnnkit::SimdTier::avx512 ? " (peak: 512-bit FMAs)"
                                                              : " (peak: 256-bit FMAs)");
  bench::print_header(what.c_str(), args, peak);
  if (tier_kernel)
    std::printf("# tier %s: kernel %s, MR %d NR %d MC %lld KC %lld NC %lld\n",
                cnnkit::simd_tier_name(g.tier), kernel.name, kernel.MR, kernel.NR,
                static_cast<long long>(kernel.MC), static_cast<long long>(kernel.KC),
                static_cast<long long>(kernel.NC));
  else
    std::printf("# tier %s: the reference triple loop\n", cnnkit::simd_tier_name(g.tier));
  std::printf("%-22s %6s %6s %6s %9s %9s %10s %9s %7s\n", "shape", "M", "N", "K", "err",
              "err(ep)", "ms", "GFLOP/s", "%peak");

  bool ok = true;
  for (const auto& row : bench::read_shapes(args, "gemm.txt")) {
    if (row.size() < 4) continue;
    const int64_t M = std::atoll(row[1].c_str()), N = std::atoll(row[2].c_str()),
                  K = std::atoll(row[3].c_str());
    const std::vector<float> A = bench::random_floats(M * K, 1), B = bench::random_floats(K * N, 2),
                             C0 = bench::random_floats(M * N, 3),
                             row_bias = bench::random_floats(M, 4),
                             col_bias = bench::random_floats(N, 5);
    std::vector<float> C = C0;
    const cnnkit::DenseOperand a = cnnkit::gemm_a(A.data(), K, false),
                               b = cnnkit::gemm_b(B.data(), N, false);
    auto run = [&](float beta, const cnnkit::GemmEpilogue& ep) {
      if (tier_kernel)
        cnnkit::gemm_blocked(kernel, M, N, K, 1.0f, a, b, beta, C.data(), N, ep);
      else
        cnnkit::gemm(g.tier, M, N, K, 1.0f, a, b, beta, C.data(), N, ep);
    };

    // Validation, plain and with everything the epilogue does.
    run(0.0f, {});
    const double err = validate(M, N, K, A, B, 0.0f, {}, C, C0);
    cnnkit::GemmEpilogue ep;
    ep.row_bias = row_bias.data();
    ep.col_bias = col_bias.data();
    ep.relu = true;
    C = C0;
    run(0.5f, ep);
    const double err_ep = validate(M, N, K, A, B, 0.5f, ep, C, C0);
    // The same into a wider C (ldc = N + 5): bit-identical, and the gap columns untouched.
    const int64_t ldc = N + 5;
    std::vector<float> wide(M * ldc, -7.0f);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) wide[i * ldc + j] = C0[i * N + j];
    if (tier_kernel)
      cnnkit::gemm_blocked(kernel, M, N, K, 1.0f, a, b, 0.5f, wide.data(), ldc, ep);
    else
      cnnkit::gemm(g.tier, M, N, K, 1.0f, a, b, 0.5f, wide.data(), ldc, ep);
    bool strided_same = true;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < ldc; ++j)
        strided_same = strided_same && wide[i * ldc + j] == (j < N ? C[i * N + j] : -7.0f);
    // Float sums of K products of values in [-1, 1] carry ~sqrt(K) * 6e-8 relative error on
    // either side; a wrong element is off by O(1).
    const bool good = err < 1e-4 && err_ep < 1e-4 && strided_same;
    ok = ok && good;

    const double ms = bench::median_ms([&] { run(0.0f, {}); }, args.reps);
    const double gflops = 2.0 * M * N * K / (ms * 1e6);
    std::printf("%-22s %6lld %6lld %6lld %9.2e %9.2e %10.3f %9.1f %6.1f%%%s\n", row[0].c_str(),
                static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                err, err_ep, ms, gflops, peak > 0 ? 100.0 * gflops / peak : 0.0,
                good ? "" : strided_same ? "   <-- WRONG RESULT" : "   <-- WRONG WITH ldc > N");
    std::fflush(stdout);
  }
  if (!ok) {
    std::fprintf(stderr, "bench_gemm: results differ from gemm__ref\n");
    return 1;
  }
  return 0;
}
