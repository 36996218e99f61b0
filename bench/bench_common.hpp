// Shared harness of the C++ microbenchmarks: command-line arguments, the named shapes in
// bench/shapes/, timing by median of repeated runs, the FMA peak measured on this machine, and
// comparison against the __ref result.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/simd.hpp"

namespace bench {

struct Args {
  int threads = 1;          // --threads N (the benchmark calls cnnkit::set_num_threads)
  int reps = 0;             // --reps R: timed repetitions (0: as many as fit in ~0.5 s, >= 5)
  std::string filter;       // --filter S: only cases whose name contains S
  std::string shapes_dir;   // --shapes DIR (default: the source tree's bench/shapes)
};
Args parse_args(int argc, char** argv);

// Tokens of each non-blank, non-comment line of bench/shapes/<file>.
std::vector<std::vector<std::string>> read_shapes(const Args& args, const std::string& file);

// Median wall time in milliseconds of f() over repeated runs, after one warm-up run.
double median_ms(const std::function<void()>& f, int reps);

// FP32 FMA peak of `threads` threads in GFLOP/s at the vector width of `isa` (avx2: 8 lanes,
// avx512: 16; ref and portable are held to the avx2 peak), measured now: independent FMA
// chains per thread, the median of 5 short runs. 0 when this CPU lacks the ISA.
double fma_peak_gflops(int threads, cnnkit::SimdTier isa = cnnkit::SimdTier::avx2);

std::vector<float> random_floats(std::size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f);

// max |a - b| / (max |b| + tiny): relative to the reference's size.
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b);

// Prints the header line (machine peak, threads, tier) every benchmark starts with.
void print_header(const char* what, const Args& args, double peak);

}  // namespace bench
