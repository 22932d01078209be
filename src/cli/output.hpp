// Where commands write: a new checkpoint folder, or a single file. Both
// refuse to touch an input (compared by real path): the output may not be
// an input, hold one, or lie inside an input folder; and a folder must not
// exist yet or be empty. A failed command removes what it had written.
#pragma once

#include <string>
#include <vector>

namespace s2ft {
namespace cli {

class OutputDir {
 public:
  // Creates `path` (and missing parents) or accepts it when it is an empty
  // folder. `inputs` are the paths the command reads.
  OutputDir(const std::string &path, const std::vector<std::string> &inputs);
  ~OutputDir();  // removes the folder's content (and the folder, if created) unless committed
  OutputDir(const OutputDir &) = delete;
  OutputDir &operator=(const OutputDir &) = delete;

  const std::string &path() const { return path_; }  // absolute, normalized
  const std::string &given() const { return given_; }  // as the user wrote it, for messages
  std::string file(const std::string &name) const;
  void commit() { committed_ = true; }

 private:
  std::string path_, given_;
  bool created_ = false, committed_ = false;
};

// Checks that a single output file is not one of the inputs, not inside an
// input folder, not a folder, and not an s2ft-selection.json inside a
// checkpoint folder (which would mark it as permuted). An existing file of
// another name is replaced atomically.
void check_output_file(const std::string &path, const std::vector<std::string> &inputs);

// Whether two paths name the same file or folder (by real path).
bool same_path(const std::string &a, const std::string &b);

}  // namespace cli
}  // namespace s2ft
