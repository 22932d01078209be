// Progress lines such as "permuting layer 3/32" on stderr, shown only when
// stderr is a terminal so logs and pipes stay clean.
#pragma once

#include <string>

namespace s2ft {
namespace cli {

class Progress {
 public:
  Progress(std::string what, int total);  // e.g. ("permuting layer", 32)
  ~Progress();                            // ends the line if one was drawn
  void step(int done);                    // shows "<what> <done>/<total>"

 private:
  std::string what_;
  int total_;
  bool enabled_, drawn_ = false;
};

}  // namespace cli
}  // namespace s2ft
