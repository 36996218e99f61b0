// The FMA loops behind bench::fma_peak_gflops, one per ISA, each in a file built with that
// ISA's flags. Call only on a CPU with the ISA.
#pragma once

#include <cstdint>

namespace bench {

// 12 chains x 8 lanes x iters FMAs (2 flops each); AVX2+FMA.
float fma_chains__avx2(int64_t iters);
// 16 chains x 16 lanes x iters FMAs (2 flops each); AVX-512F.
float fma_chains__avx512(int64_t iters);

}  // namespace bench
