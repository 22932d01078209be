#include "progress.hpp"

#include <cstdio>
#include <utility>

#include <unistd.h>

namespace s2ft {
namespace cli {

Progress::Progress(std::string what, int total)
    : what_(std::move(what)), total_(total), enabled_(isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
  if (drawn_) std::fputc('\n', stderr);
}

void Progress::step(int done) {
  if (!enabled_) return;
  // "\r" and erase-to-end redraw the same line.
  std::fprintf(stderr, "\r%s %d/%d\x1b[K", what_.c_str(), done, total_);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace cli
}  // namespace s2ft
