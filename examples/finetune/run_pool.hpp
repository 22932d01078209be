// Runs fine-tuning runs in forked child processes, a few at a time: each run
// gets its own peak RSS, a crash in one run is a failed run rather than a
// dead comparison, and independent runs use the machine's cores.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "fidelity_trace.hpp"

namespace ft {

using RunFn = std::function<RunTrace()>;

// Calls every run (in order of start) with at most `jobs` at once, each in a
// child process (with jobs > 1, on one BLAS thread) unless `fork_runs` is
// false (then in this process, one at a time); `done(i, trace)` is called
// in this process as run i finishes. A run that throws or whose process
// dies is returned with `error` set.
std::vector<RunTrace> run_all(const std::vector<RunFn> &runs, int jobs, bool fork_runs,
                              const std::function<void(size_t, const RunTrace &)> &done);

}  // namespace ft
