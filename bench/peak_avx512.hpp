// The 512-bit counterpart of the FMA peak in bench_common.hpp (which is 256-bit).
#pragma once

#include <cstdint>

namespace bench {

// 16 chains x 16 lanes x iters FMAs (2 flops each); only on a CPU with AVX-512F.
float fma_chains__avx512(int64_t iters);

}  // namespace bench
