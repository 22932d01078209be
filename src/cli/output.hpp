// Where commands write: a new checkpoint folder, or a single file. Both
// refuse to touch an input (compared by real path): the output may not be
// an input, hold one, or lie inside an input folder; and a folder must not
// exist yet or be empty.
//
// A folder output appears whole or not at all. Its files are written into a
// build folder "<NAME>.tmp.<pid>.<n>" beside it, which is renamed to NAME as
// the command's last step; a command that fails removes the build folder, and
// one that is killed leaves it to the next command writing the same output,
// which removes it (io::remove_stale_temporaries). Missing parent folders
// of the output are made only for that final rename, so a failed command
// leaves no new folder behind.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace s2ft {
namespace cli {

class OutputDir {
 public:
  // Checks `path` against `inputs` (the paths the command reads) and makes
  // the empty build folder. An existing empty folder at `path` is accepted
  // (and replaced by the finished output at commit()) unless it is a mount
  // point or the current folder, which a rename cannot replace in place.
  OutputDir(const std::string &path, const std::vector<std::string> &inputs);
  ~OutputDir();  // removes the build folder unless committed
  OutputDir(const OutputDir &) = delete;
  OutputDir &operator=(const OutputDir &) = delete;

  const std::string &given() const { return given_; }  // as the user wrote it, for messages

  // Runs `write` with the build folder's path. A failure is rethrown as a
  // CliError whose message names the output rather than the build folder.
  void fill(const std::function<void(const std::string &dir)> &write);

  // Makes the missing parent folders and renames the build folder to the
  // output. On failure, removes the parents it made and throws CliError.
  void commit();

 private:
  void prepare_existing(const std::string &normal);
  void prepare_new(const std::string &normal);
  void make_build_folder(const std::string &beside);
  void make_parents();
  void remove_made_parents();

  std::string given_, target_, build_;
  std::vector<std::string> missing_parents_;  // outermost first; made by commit()
  std::vector<std::string> made_parents_;
  int lock_fd_ = -1;                          // holds build_ locked as in use
  bool replaces_empty_ = false, committed_ = false;
  unsigned replaced_mode_ = 0;                // permissions of the empty folder replaced
};

// Checks that a single output file is not one of the inputs, not inside an
// input folder, not a folder, device or FIFO, in a folder that exists, and
// not an s2ft-selection.json inside a checkpoint folder (which would mark it
// as permuted). An existing regular file of another name is replaced
// atomically.
void check_output_file(const std::string &path, const std::vector<std::string> &inputs);

// Whether two paths name the same file or folder (by real path).
bool same_path(const std::string &a, const std::string &b);

}  // namespace cli
}  // namespace s2ft
