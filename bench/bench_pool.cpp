// Pooling microbenchmark over bench/shapes/pool.txt: max and average pooling, forward,
// backward and both, each validated once against the __ref loops (bit for bit) on the active
// SIMD tier (CNNKIT_SIMD picks another). Pooling is memory-bound, so besides ms it prints the
// forward's effective bandwidth (bytes of x, y and argmax moved).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "ops/pool.hpp"

using namespace cnnkit;

namespace {
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
}  // namespace

int main(int argc, char** argv) {
  bench::Args args = bench::parse_args(argc, argv);
  bench::print_header("pool", args, bench::fma_peak_gflops(args.threads, cnnkit::active_simd_tier()));
  std::printf("%-18s %-5s %9s %9s %10s %9s\n", "case", "op", "fwd ms", "bwd ms", "fwd+bwd ms",
              "fwd GB/s");
  int failures = 0;
  for (const auto& row : bench::read_shapes(args, "pool.txt")) {
    const std::string& name = row[0];
    const int64_t N = std::stoll(row[1]), C = std::stoll(row[2]), H = std::stoll(row[3]),
                  W = std::stoll(row[4]), K = std::stoll(row[5]), S = std::stoll(row[6]),
                  P = std::stoll(row[7]);
    const Pool2dShape s = pool2d_shape(N, C, H, W, K, K, S, S, P, P, P, P);
    const size_t nx = N * C * H * W, ny = N * C * s.OH * s.OW;
    std::vector<float> x = bench::random_floats(nx, 1), y(ny), y_ref(ny);
    std::vector<float> dy = bench::random_floats(ny, 2), dx(nx), dx_ref(nx);
    std::vector<int64_t> idx(ny), idx_ref(ny);

    max_pool2d_forward(y.data(), idx.data(), x.data(), s);
    max_pool2d_forward__ref(y_ref.data(), idx_ref.data(), x.data(), s);
    max_pool2d_backward(dx.data(), dy.data(), idx.data(), s);
    max_pool2d_backward__ref(dx_ref.data(), dy.data(), idx_ref.data(), s);
    if (!same_bits(y, y_ref) || idx != idx_ref || !same_bits(dx, dx_ref)) {
      std::printf("%-18s max pool differs from __ref\n", name.c_str());
      ++failures;
    }
    const double max_f = bench::median_ms([&] { max_pool2d_forward(y.data(), idx.data(), x.data(), s); }, args.reps);
    const double max_b = bench::median_ms([&] { max_pool2d_backward(dx.data(), dy.data(), idx.data(), s); }, args.reps);
    const double max_fb = bench::median_ms([&] {
      max_pool2d_forward(y.data(), idx.data(), x.data(), s);
      max_pool2d_backward(dx.data(), dy.data(), idx.data(), s);
    }, args.reps);
    const double max_bytes = 4.0 * nx + 4.0 * ny + 8.0 * ny;
    std::printf("%-18s %-5s %9.3f %9.3f %10.3f %9.2f\n", name.c_str(), "max", max_f, max_b, max_fb,
                max_bytes / max_f * 1e-6);

    avg_pool2d_forward(y.data(), x.data(), s, true);
    avg_pool2d_forward__ref(y_ref.data(), x.data(), s, true);
    avg_pool2d_backward(dx.data(), dy.data(), s, true);
    avg_pool2d_backward__ref(dx_ref.data(), dy.data(), s, true);
    if (!same_bits(y, y_ref) || !same_bits(dx, dx_ref)) {
      std::printf("%-18s avg pool differs from __ref\n", name.c_str());
      ++failures;
    }
    const double avg_f = bench::median_ms([&] { avg_pool2d_forward(y.data(), x.data(), s, true); }, args.reps);
    const double avg_b = bench::median_ms([&] { avg_pool2d_backward(dx.data(), dy.data(), s, true); }, args.reps);
    const double avg_fb = bench::median_ms([&] {
      avg_pool2d_forward(y.data(), x.data(), s, true);
      avg_pool2d_backward(dx.data(), dy.data(), s, true);
    }, args.reps);
    std::printf("%-18s %-5s %9.3f %9.3f %10.3f %9.2f\n", name.c_str(), "avg", avg_f, avg_b, avg_fb,
                (4.0 * nx + 4.0 * ny) / avg_f * 1e-6);
  }
  return failures ? 1 : 0;
}
