// Shared vocabulary of the core: the error type that bindings turn into ValueError, and the
// caller-owned Workspace that ops take their scratch memory from (reused across calls, so a
// training step touches no fresh pages).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>

namespace cnnkit {

// Bad sizes or arguments found by an op's shape function; bindings map it to ValueError.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The most elements one image plane (H x W) of a pooling op may have: its SIMD kernels
// address a plane with 32-bit lanes. Everything else indexes with int64_t (the SIMD im2col
// packs, which use 32-bit lanes too, fall back to their 64-bit scalar loops for planes of
// 2^29 elements and more: kernels/im2col_taps.hpp, fits_int32).
constexpr int64_t kMaxPlaneElements = (int64_t{1} << 31) - 1;

// Throws ShapeError unless the product of dims is at most limit (overflow-safe), naming the
// op, what the dims are and both counts: "<op>: <what> (d0, d1, ..) has <n> elements, more
// than the <limit> <why>". Ops call it from their shape functions, which the bindings run
// before converting (copying) any input.
void check_elements(const std::string& op, const std::string& what,
                    std::initializer_list<int64_t> dims, int64_t limit, const std::string& why);

// Grow-only, 64-byte aligned scratch buffers in a few numbered slots. A slot's contents are
// unspecified after buffer() returns; distinct slots never alias. Not thread-safe: one
// Workspace per thread of callers (ops use it only outside their parallel regions).
class Workspace {
 public:
  static constexpr int kSlots = 7;
  float* buffer(int slot, std::size_t count);

 private:
  struct Free { void operator()(float* p) const; };
  std::unique_ptr<float, Free> data_[kSlots];
  std::size_t size_[kSlots] = {};
};

// 64-byte aligned allocation for float arrays; throws std::bad_alloc.
float* aligned_alloc_floats(std::size_t count);
void aligned_free(void* p);

}  // namespace cnnkit
