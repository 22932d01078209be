#include "run_pool.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>

// OpenBLAS's thread count, when the BLAS linked is OpenBLAS (weak: absent
// with another BLAS).
extern "C" void openblas_set_num_threads(int n) __attribute__((weak));

namespace ft {

namespace {

RunTrace guarded(const RunFn &run) {
  try {
    return run();
  } catch (const std::exception &e) {
    RunTrace r;
    r.error = e.what();
    return r;
  }
}

// A child's result goes through an unlinked temporary file rather than a
// pipe, so a child never blocks on a full pipe while its parent waits for
// another child to end.
struct Child {
  size_t index = 0;
  FILE *result = nullptr;
};

RunTrace collect(Child &c, int status) {
  std::string text;
  std::rewind(c.result);
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, c.result)) > 0) text.append(buf, n);
  std::fclose(c.result);
  c.result = nullptr;
  RunTrace r;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) {
    r.error = "the run's process ended without a result (" +
              (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                   : "exit status " + std::to_string(WEXITSTATUS(status))) +
              ")";
    return r;
  }
  try {
    return parse_run(text);
  } catch (const std::exception &e) {
    r.error = std::string("the run's result could not be read: ") + e.what();
    return r;
  }
}

}  // namespace

std::vector<RunTrace> run_all(const std::vector<RunFn> &runs, int jobs, bool fork_runs,
                              const std::function<void(size_t, const RunTrace &)> &done) {
  std::vector<RunTrace> out(runs.size());
  if (!fork_runs) {
    for (size_t i = 0; i < runs.size(); ++i) {
      out[i] = guarded(runs[i]);
      if (done) done(i, out[i]);
    }
    return out;
  }
  if (jobs < 1) jobs = 1;
  std::map<pid_t, Child> running;
  size_t next = 0;
  std::fflush(nullptr);  // nothing buffered here may be written twice by a child
  while (next < runs.size() || !running.empty()) {
    while (next < runs.size() && static_cast<int>(running.size()) < jobs) {
      Child c;
      c.index = next;
      c.result = std::tmpfile();
      if (c.result == nullptr) throw std::runtime_error("run_all: cannot create a temporary file");
      const pid_t pid = fork();
      if (pid < 0) {
        std::fclose(c.result);
        throw std::runtime_error("run_all: fork failed");
      }
      if (pid == 0) {
        // Runs side by side each get one core, so that their times per step
        // are comparable (and not BLAS threads fighting over the cores).
        if (jobs > 1 && openblas_set_num_threads != nullptr) openblas_set_num_threads(1);
        const std::string text = serialize_run(guarded(runs[next]));
        const bool ok = std::fwrite(text.data(), 1, text.size(), c.result) == text.size() && std::fflush(c.result) == 0;
        _exit(ok ? 0 : 3);
      }
      running[pid] = c;
      ++next;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) throw std::runtime_error("run_all: waitpid failed");
    auto it = running.find(pid);
    if (it == running.end()) continue;  // not one of ours
    Child c = it->second;
    running.erase(it);
    out[c.index] = collect(c, status);
    if (done) done(c.index, out[c.index]);
  }
  return out;
}

}  // namespace ft
