// Threading policy in one place: the thread count set by cnnkit.set_num_threads, and
// parallel_for, which opens an OpenMP region only when the work pays for it and never nests.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace cnnkit {

int num_threads();               // threads a parallel region may use (>= 1)
void set_num_threads(int n);     // n >= 1; later calls from any thread see it
bool openmp_enabled();
int thread_index();              // 0 outside a parallel region

// Below this many flops (or bytes touched) per thread, a parallel region costs more than it
// saves (~2-5 us to wake a thread here).
constexpr int64_t kMinWorkPerThread = 1 << 16;

// Threads worth using for `work` units of cost, capped by num_threads() and by `items`;
// 1 inside an existing parallel region (no nesting).
int threads_for(int64_t items, int64_t work);

// Calls f(begin, end, thread) on `nthreads` contiguous static chunks of [0, items) in
// parallel. Chunks depend only on items and nthreads, so a reduction that keeps one partial
// per chunk and sums them in chunk order is deterministic for a fixed thread count.
template <class F>
void parallel_chunks(int64_t items, int nthreads, F&& f) {
  if (nthreads <= 1 || items <= 1) {
    f(int64_t{0}, items, 0);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = items * t / nt, end = items * (t + 1) / nt;
    if (begin < end) f(begin, end, t);
  }
#else
  f(int64_t{0}, items, 0);
#endif
}

// parallel_chunks with the thread count chosen by threads_for(items, work).
template <class F>
void parallel_for(int64_t items, int64_t work, F&& f) {
  parallel_chunks(items, threads_for(items, work), static_cast<F&&>(f));
}

}  // namespace cnnkit
