// Harness implementation (see bench_common.hpp).
#include "bench_common.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "kernels/simd.hpp"
#include "peak_isa.hpp"
#include "parallel.hpp"

#ifndef CNNKIT_BENCH_SHAPES_DIR
#define CNNKIT_BENCH_SHAPES_DIR "bench/shapes"
#endif

namespace bench {

Args parse_args(int argc, char** argv) {
  Args a;
  a.shapes_dir = CNNKIT_BENCH_SHAPES_DIR;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--threads") a.threads = std::atoi(value().c_str());
    else if (k == "--reps") a.reps = std::atoi(value().c_str());
    else if (k == "--filter") a.filter = value();
    else if (k == "--shapes") a.shapes_dir = value();
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--reps R] [--filter NAME] [--shapes DIR]\n", argv[0]);
      std::exit(2);
    }
  }
  if (a.threads < 1) a.threads = 1;
  cnnkit::set_num_threads(a.threads);
  return a;
}

std::vector<std::vector<std::string>> read_shapes(const Args& args, const std::string& file) {
  const std::string path = args.shapes_dir + "/" + file;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(2);
  }
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    std::istringstream ss(line);
    std::vector<std::string> tok;
    for (std::string t; ss >> t;) tok.push_back(t);
    if (tok.empty()) continue;
    if (!args.filter.empty() && tok[0].find(args.filter) == std::string::npos) continue;
    rows.push_back(tok);
  }
  return rows;
}

double median_ms(const std::function<void()>& f, int reps) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  f();  // warm-up: first-touch of outputs and workspaces, caches
  const double first = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  if (reps <= 0) reps = std::clamp(static_cast<int>(500.0 / std::max(first, 1e-3)), 5, 200);
  std::vector<double> ms(reps);
  for (int r = 0; r < reps; ++r) {
    auto t = clock::now();
    f();
    ms[r] = std::chrono::duration<double, std::milli>(clock::now() - t).count();
  }
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return ms[reps / 2];
}

std::vector<float> random_floats(std::size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, size = 1e-30;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    size = std::max(size, static_cast<double>(std::fabs(b[i])));
  }
  return a.size() == b.size() ? diff / size : INFINITY;
}

double fma_peak_gflops(int threads, cnnkit::SimdTier isa) {
  const bool wide = isa == cnnkit::SimdTier::avx512;
  const cnnkit::SimdTier need = wide ? cnnkit::SimdTier::avx512 : cnnkit::SimdTier::avx2;
  if (!cnnkit::simd_tier_supported(need)) return 0.0;
  const int64_t iters = wide ? 10'000'000 : 20'000'000;  // ~0.05-0.1 s per run
  const double flops_per_iter = wide ? 2.0 * 16 * 16 : 2.0 * 8 * 12;
  std::vector<double> runs;
  volatile float sink = 0.0f;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    { sink = sink + (wide ? fma_chains__avx512(iters) : fma_chains__avx2(iters)); }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    runs.push_back(flops_per_iter * iters * threads / s * 1e-9);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

void print_header(const char* what, const Args& args, double peak) {
  std::printf("# %s | threads %d | SIMD tier %s | measured FMA peak %.1f GFLOP/s\n", what,
              args.threads, cnnkit::simd_tier_name(cnnkit::active_simd_tier()), peak);
}

}  // namespace bench
