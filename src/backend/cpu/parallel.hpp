// The CPU backend's own threads, for the operations BLAS does not cover
// (SDDMM, packing): run_parallel(n, f) runs f(0), ..., f(n - 1) at once,
// f(0) on the calling thread and the others on threads made for the call,
// and returns when all are done. An exception thrown by any of them is
// rethrown (the first, by task number) after all have finished.
#pragma once

#include <exception>
#include <thread>
#include <vector>

namespace s2ft {
namespace cpu {

// The number of threads a context uses: its num_threads option, or the
// hardware's when that is 0.
inline int default_threads(int32_t requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

template <typename F>
void run_parallel(int n, F &&f) {
  if (n <= 1) {
    f(0);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  auto task = [&](int k) {
    try {
      f(k);
    } catch (...) {
      errors[static_cast<size_t>(k)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n - 1));
  try {
    for (int k = 1; k < n; ++k) threads.emplace_back(task, k);
  } catch (...) {  // could not start a thread: run the rest here
    for (int k = static_cast<int>(threads.size()) + 1; k < n; ++k) task(k);
  }
  task(0);
  for (std::thread &t : threads) t.join();
  for (const std::exception_ptr &e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace cpu
}  // namespace s2ft
