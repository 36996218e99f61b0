// Microbenchmark of issue 4's layers over bench/shapes/layers.txt and locally_connected.txt:
// batch norm (training forward, backward, evaluation forward), Lp pooling, adaptive average
// pooling, zero padding and the locally connected layer. Batch norm and the locally
// connected layer are validated once against their __ref loops (relative difference printed,
// a failure above 1e-4); the others have no separate reference here (tests/ hold them to
// float64 references). These ops are memory-bound except the locally connected layer, so each
// line prints ms and the effective bandwidth of the forward (bytes of x and y, plus w).
#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "common.hpp"
#include "ops/adaptive_pool.hpp"
#include "ops/batchnorm.hpp"
#include "ops/locally_connected.hpp"
#include "ops/lp_pool.hpp"
#include "ops/pad.hpp"
#include "ops/pool.hpp"

using namespace cnnkit;

namespace {

constexpr double kTolerance = 1e-4;

void print_row(const std::string& name, const char* op, double fwd, double bwd, double bytes) {
  std::printf("%-20s %-9s %9.3f %9.3f %9.2f\n", name.c_str(), op, fwd, bwd, bytes / fwd * 1e-6);
}

int check(const std::string& name, const char* what, double diff) {
  if (diff <= kTolerance) return 0;
  std::printf("%-20s %s differs from __ref: max relative difference %.3g\n", name.c_str(), what, diff);
  return 1;
}

int bench_batch_norm(const std::string& name, int64_t N, int64_t C, int64_t HW, int reps) {
  const BatchNormShape train = batch_norm_shape(N, C, HW, true), eval = batch_norm_shape(N, C, HW, false);
  const size_t n = N * C * HW;
  std::vector<float> x = bench::random_floats(n, 1), dy = bench::random_floats(n, 2);
  std::vector<float> w = bench::random_floats(C, 3, 0.5f, 1.5f), b = bench::random_floats(C, 4);
  std::vector<float> y(n), y_ref(n), dx(n), dx_ref(n), dw(C), dw_ref(C), db(C), db_ref(C);
  std::vector<float> mean(C), invstd(C), mean_ref(C), invstd_ref(C), rm(C, 0.0f), rv(C, 1.0f);
  int failures = 0;
  batch_norm_forward(y.data(), mean.data(), invstd.data(), nullptr, nullptr, x.data(), w.data(), b.data(), train, 0.1, 1e-5);
  batch_norm_forward__ref(y_ref.data(), mean_ref.data(), invstd_ref.data(), nullptr, nullptr, x.data(), w.data(),
                          b.data(), train, 0.1, 1e-5);
  batch_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), invstd.data(), w.data(), train);
  batch_norm_backward__ref(dx_ref.data(), dw_ref.data(), db_ref.data(), dy.data(), x.data(), mean_ref.data(),
                           invstd_ref.data(), w.data(), train);
  failures += check(name, "batch norm forward", bench::max_rel_diff(y, y_ref));
  failures += check(name, "batch norm dx", bench::max_rel_diff(dx, dx_ref));
  failures += check(name, "batch norm dweight", bench::max_rel_diff(dw, dw_ref));
  const double fwd = bench::median_ms([&] {
    batch_norm_forward(y.data(), mean.data(), invstd.data(), rm.data(), rv.data(), x.data(), w.data(), b.data(),
                       train, 0.1, 1e-5);
  }, reps);
  const double bwd = bench::median_ms([&] {
    batch_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), invstd.data(), w.data(),
                        train);
  }, reps);
  // training forward: x read twice (statistics, then the map), y written once
  print_row(name, "bn train", fwd, bwd, 12.0 * n);
  const double ev = bench::median_ms([&] {
    batch_norm_forward(y.data(), mean.data(), invstd.data(), rm.data(), rv.data(), x.data(), w.data(), b.data(),
                       eval, 0.1, 1e-5);
  }, reps);
  print_row(name, "bn eval", ev, 0.0, 8.0 * n);
  return failures;
}

void bench_pools(const std::string& name, int64_t N, int64_t C, int64_t H, int64_t W, int reps) {
  const size_t nx = N * C * H * W;
  std::vector<float> x = bench::random_floats(nx, 5, 0.0f, 1.0f), dx(nx);
  {
    const Pool2dShape s = pool2d_shape(N, C, H, W, 2, 2, 2, 2, 0, 0, 0, 0);
    const size_t ny = N * C * s.OH * s.OW;
    std::vector<float> y(ny), dy = bench::random_floats(ny, 6);
    const double fwd = bench::median_ms([&] { lp_pool2d_forward(y.data(), x.data(), s, 2.0f); }, reps);
    const double bwd = bench::median_ms([&] { lp_pool2d_backward(dx.data(), dy.data(), x.data(), s, 2.0f); }, reps);
    print_row(name, "lp2 2x2", fwd, bwd, 4.0 * (nx + ny));
  }
  for (int64_t out : {int64_t{1}, int64_t{7}}) {
    if (out > H || out > W) continue;
    const AdaptivePool2dShape s = adaptive_pool2d_shape(N, C, H, W, out, out);
    const size_t ny = N * C * out * out;
    std::vector<float> y(ny), dy = bench::random_floats(ny, 7);
    const double fwd = bench::median_ms([&] { adaptive_avg_pool2d_forward(y.data(), x.data(), s); }, reps);
    const double bwd = bench::median_ms([&] { adaptive_avg_pool2d_backward(dx.data(), dy.data(), s); }, reps);
    print_row(name, out == 1 ? "adapt 1" : "adapt 7", fwd, bwd, 4.0 * (nx + ny));
  }
  {
    const Pad2dShape s = pad2d_shape(N * C, H, W, 1, 1, 1, 1);
    const size_t ny = N * C * s.OH * s.OW;
    std::vector<float> y(ny), dy = bench::random_floats(ny, 8);
    const double fwd = bench::median_ms([&] { pad2d_forward(y.data(), x.data(), s, 0.0f); }, reps);
    const double bwd = bench::median_ms([&] { pad2d_backward(dx.data(), dy.data(), s); }, reps);
    print_row(name, "pad 1", fwd, bwd, 4.0 * (nx + ny));
  }
}

int bench_locally_connected(const std::vector<std::string>& row, int reps, double peak) {
  const std::string& name = row[0];
  const int64_t N = std::stoll(row[1]), C = std::stoll(row[2]), H = std::stoll(row[3]), W = std::stoll(row[4]),
                OC = std::stoll(row[5]), K = std::stoll(row[6]), S = std::stoll(row[7]), P = std::stoll(row[8]);
  const LocallyConnected2dShape s = locally_connected2d_shape(N, C, H, W, OC, K, K, S, S, P, P, P, P, true);
  const size_t nx = N * C * H * W, ny = N * OC * s.OH * s.OW, nw = s.OH * s.OW * OC * C * K * K;
  const size_t nb = OC * s.OH * s.OW;
  std::vector<float> x = bench::random_floats(nx, 1), w = bench::random_floats(nw, 2), b = bench::random_floats(nb, 3);
  std::vector<float> dy = bench::random_floats(ny, 4), y(ny), y_ref(ny), dx(nx), dx_ref(nx), dw(nw), dw_ref(nw),
                     db(nb), db_ref(nb);
  Workspace ws;
  locally_connected2d_forward(y.data(), x.data(), w.data(), b.data(), s, ws);
  locally_connected2d_forward__ref(y_ref.data(), x.data(), w.data(), b.data(), s);
  locally_connected2d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s, ws);
  locally_connected2d_backward__ref(dx_ref.data(), dw_ref.data(), db_ref.data(), dy.data(), x.data(), w.data(), s);
  int failures = check(name, "locally connected forward", bench::max_rel_diff(y, y_ref)) +
                 check(name, "locally connected dx", bench::max_rel_diff(dx, dx_ref)) +
                 check(name, "locally connected dw", bench::max_rel_diff(dw, dw_ref));
  const double fwd = bench::median_ms([&] {
    locally_connected2d_forward(y.data(), x.data(), w.data(), b.data(), s, ws);
  }, reps);
  const double bwd = bench::median_ms([&] {
    locally_connected2d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s, ws);
  }, reps);
  const double gflop = 2.0 * N * OC * C * K * K * s.OH * s.OW * 1e-9;
  std::printf("%-20s %-9s %9.3f %9.3f %9.2f   fwd %.1f GFLOP/s (%.0f%% of peak), bwd %.1f GFLOP/s\n",
              name.c_str(), "local", fwd, bwd, 4.0 * (nx + ny + nw) / fwd * 1e-6, gflop / fwd * 1e3,
              100.0 * gflop / fwd * 1e3 / peak, 2.0 * gflop / bwd * 1e3);
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args = bench::parse_args(argc, argv);
  const double peak = bench::fma_peak_gflops(args.threads, cnnkit::active_simd_tier());
  bench::print_header("layers", args, peak);
  std::printf("%-20s %-9s %9s %9s %9s\n", "case", "op", "fwd ms", "bwd ms", "fwd GB/s");
  int failures = 0;
  for (const auto& row : bench::read_shapes(args, "layers.txt")) {
    const int64_t N = std::stoll(row[1]), C = std::stoll(row[2]), H = std::stoll(row[3]), W = std::stoll(row[4]);
    failures += bench_batch_norm(row[0], N, C, H * W, args.reps);
    bench_pools(row[0], N, C, H, W, args.reps);
  }
  for (const auto& row : bench::read_shapes(args, "locally_connected.txt"))
    failures += bench_locally_connected(row, args.reps, peak);
  return failures ? 1 : 0;
}
