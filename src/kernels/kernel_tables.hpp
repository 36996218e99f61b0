// Tables of kernel instantiations for the per-tier templates (conv_direct_impl.hpp,
// conv_depthwise_impl.hpp): table[A][B] = &Kernel<V, A, B>::run for every A, B >= 1 whose
// block fits the registers (Kernel<V, A, B>::ok), null elsewhere, filled at compile time.
#pragma once

#include <utility>

namespace cnnkit {
namespace kernel_tables {

// &Kernel<V, A, B>::run where A, B >= 1 and the block fits the registers, else null.
template <template <class, int, int> class Kernel, class V, class Fn, int A, int B>
constexpr Fn entry() {
  if constexpr (A >= 1 && B >= 1 && Kernel<V, A, B>::ok)
    return &Kernel<V, A, B>::run;
  else
    return nullptr;
}
template <template <class, int, int> class Kernel, class V, class Fn, int A, int... B>
constexpr void fill_row(Fn* row, std::integer_sequence<int, B...>) {
  ((row[B] = entry<Kernel, V, Fn, A, B>()), ...);
}
// table [A][NB] for the A of the sequence.
template <template <class, int, int> class Kernel, class V, class Fn, int NB, int... A>
constexpr void fill(Fn (*table)[NB], std::integer_sequence<int, A...>) {
  (fill_row<Kernel, V, Fn, A>(table[A], std::make_integer_sequence<int, NB>()), ...);
}

}  // namespace kernel_tables
}  // namespace cnnkit
