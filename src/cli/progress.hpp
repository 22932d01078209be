// Progress lines such as "permuting layer 3/32" on stderr, shown only when
// stderr is a terminal so logs and pipes stay clean. Each line redraws the
// previous one; the destructor ends it.
#pragma once

#include <string>

namespace s2ft {
namespace cli {

class Progress {
 public:
  Progress(std::string what, int total);  // e.g. ("permuting layer", 32)
  ~Progress();                            // ends the line if one was drawn
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;
  void step(int done);                    // shows "<what> <done>/<total>"
  void note(const std::string &text);     // shows `text`, for a step without a count

 private:
  void draw(const std::string &line);
  std::string what_;
  int total_;
  bool enabled_, drawn_ = false;
};

}  // namespace cli
}  // namespace s2ft
