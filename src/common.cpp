// Workspace, aligned allocation and the size check.
#include "common.hpp"

#include <cstdlib>
#include <new>

namespace cnnkit {

float* aligned_alloc_floats(std::size_t count) {
  std::size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

void aligned_free(void* p) { std::free(p); }

void check_elements(const std::string& op, const std::string& what,
                    std::initializer_list<int64_t> dims, int64_t limit, const std::string& why) {
  int64_t count = 1;
  bool overflow = false;
  std::string shape = "(";
  for (int64_t d : dims) {
    shape += (shape.size() > 1 ? ", " : "") + std::to_string(d);
    overflow = overflow || __builtin_mul_overflow(count, d, &count);
  }
  shape += dims.size() == 1 ? ",)" : ")";
  if (overflow || count > limit)
    throw ShapeError(op + ": " + what + " " + shape + " has " +
                     (overflow ? "more than 2^63" : std::to_string(count)) +
                     " elements, more than the " + std::to_string(limit) + " " + why);
}

void Workspace::Free::operator()(float* p) const { aligned_free(p); }

float* Workspace::buffer(int slot, std::size_t count) {
  if (slot < 0 || slot >= kSlots) throw std::out_of_range("Workspace slot out of range");
  if (count > size_[slot]) {
    data_[slot].reset();  // release before allocating: the old contents are not kept
    data_[slot].reset(aligned_alloc_floats(count));
    size_[slot] = count;
  }
  return data_[slot].get();
}

}  // namespace cnnkit
