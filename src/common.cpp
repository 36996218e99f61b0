// Workspace and aligned allocation.
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
