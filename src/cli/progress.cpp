#include "progress.hpp"

#include <cstdio>
#include <utility>

#include <unistd.h>

#include "printable.hpp"

namespace s2ft {
namespace cli {

Progress::Progress(std::string what, int total)
    : what_(std::move(what)), total_(total), enabled_(isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
  if (drawn_) std::fputc('\n', stderr);
}

void Progress::step(int done) { draw(what_ + " " + std::to_string(done) + "/" + std::to_string(total_)); }

void Progress::note(const std::string &text) { draw(text); }

void Progress::draw(const std::string &line) {
  if (!enabled_) return;
  // "\r" and erase-to-end redraw the same line; the line itself (a path)
  // may not move the cursor or drive the terminal.
  std::fprintf(stderr, "\r%s\x1b[K", printable(line).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace cli
}  // namespace s2ft
