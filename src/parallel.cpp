// Thread-count state for parallel.hpp.
#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>

namespace cnnkit {

namespace {
int initial_threads() {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());  // honours OMP_NUM_THREADS
#else
  return 1;
#endif
}
std::atomic<int> g_threads{initial_threads()};
}  // namespace

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  g_threads.store(n, std::memory_order_relaxed);
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int threads_for(int64_t items, int64_t work) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
#endif
  int64_t t = std::min<int64_t>(num_threads(), std::max<int64_t>(1, items));
  t = std::min<int64_t>(t, std::max<int64_t>(1, work / kMinWorkPerThread));
  return static_cast<int>(t);
}

}  // namespace cnnkit
