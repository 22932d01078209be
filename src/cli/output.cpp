#include "output.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <new>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.hpp"
#include "errors.hpp"
#include "io/atomic_file.hpp"
#include "io/input_file.hpp"

namespace fs = std::filesystem;

namespace s2ft {
namespace cli {

// An absolute, lexically normal path without a trailing separator, so
// "out/", "x/../out" and "./out" all name "out" before the file system sees
// them (otherwise "missing/../ckpt" would not exist at check time but
// resolve to ckpt once "missing" is created).
static fs::path normalized(const std::string &p) {
  fs::path n = fs::absolute(p).lexically_normal();
  if (!n.has_filename() && n.has_parent_path() && n != n.root_path()) n = n.parent_path();
  return n;
}

bool same_path(const std::string &a, const std::string &b) {
  std::error_code ea, eb;
  const fs::path ra = fs::weakly_canonical(normalized(a), ea);
  const fs::path rb = fs::weakly_canonical(normalized(b), eb);
  if (ea || eb) return false;
  return ra == rb;
}

namespace {

std::string errno_text() { return std::strerror(errno); }

// True when `inner` is `outer` or lies under it.
bool is_within(const std::string &inner, const std::string &outer) {
  std::error_code e1, e2;
  const fs::path i = fs::weakly_canonical(normalized(inner), e1);
  const fs::path o = fs::weakly_canonical(normalized(outer), e2);
  if (e1 || e2) return false;
  auto oi = o.begin(), ii = i.begin();
  for (; oi != o.end(); ++oi, ++ii)
    if (ii == i.end() || *ii != *oi) return false;
  return true;
}

// Refuses an output that is an input, holds one, or lies inside an input
// folder (writing there would change that input, e.g. add files that a
// later `permute` or `merge` copies along, or make it look permuted).
void require_apart_from_inputs(const std::string &path, const std::vector<std::string> &inputs) {
  for (const std::string &in : inputs) {
    if (same_path(path, in) || is_within(in, path))
      die("the output " + path + " is an input (" + in + "); write to a new folder");
    if (is_within(path, in)) die("the output " + path + " is inside the input folder " + in + "; write elsewhere");
  }
}

// A file named like a permuted checkpoint's selection, written into a
// checkpoint folder, would make `merge` and `permute --inverse` take that
// folder for a permuted one.
void require_not_marking_permuted(const std::string &path) {
  const fs::path p = normalized(path);
  if (p.filename() == kSelectionFile && is_checkpoint_dir(p.parent_path().string()))
    die("the output " + path + " would mark the checkpoint folder " + p.parent_path().string() +
        " as permuted; write it elsewhere");
}

// A link whose target does not exist: neither "exists" nor absent, and a
// rename or mkdir there fails only at the end of the work.
void require_not_dangling(const fs::path &p, const std::string &given) {
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(p, ec)) && !fs::exists(p, ec))
    die("the output " + given + " cannot be written: " + p.string() + " is a link to something that does not exist");
}

std::string without_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

bool same_file(const struct stat &a, const struct stat &b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

}  // namespace

OutputDir::OutputDir(const std::string &path, const std::vector<std::string> &inputs) : given_(path) {
  if (path.empty()) die("the output folder name is empty");
  require_apart_from_inputs(path, inputs);
  const fs::path normal = normalized(path);
  require_not_dangling(normal, given_);
  std::error_code ec;
  if (fs::exists(normal, ec))
    prepare_existing(normal.string());
  else
    prepare_new(normal.string());
}

// An existing empty folder: the finished output will replace it (the folder
// a link names, not the link), so it must be where a rename can reach it.
void OutputDir::prepare_existing(const std::string &normal) {
  std::error_code ec;
  if (!fs::is_directory(normal, ec)) die("the output " + given_ + " exists and is not a folder");
  if (!fs::is_empty(normal, ec) || ec) die("the output folder " + given_ + " is not empty");
  target_ = fs::canonical(normal, ec).string();
  if (ec) die("cannot resolve the output folder " + given_ + ": " + ec.message());
  const std::string parent = fs::path(target_).parent_path().string();
  struct stat self {}, above {}, cwd {};
  if (::stat(target_.c_str(), &self) != 0 || ::stat(parent.c_str(), &above) != 0)
    die("cannot examine the output folder " + given_ + ": " + errno_text());
  if (self.st_dev != above.st_dev)
    die("the output folder " + given_ + " is a mount point; the output is built beside it and renamed into place, "
        "so give a new folder inside it (" + without_trailing_slashes(given_) + "/NAME)");
  if (::stat(".", &cwd) == 0 && same_file(self, cwd))
    die("the output folder " + given_ + " is the current folder; the output is built beside it and renamed into "
        "place, which would leave this shell in a removed folder; give a new folder");
  replaces_empty_ = true;
  replaced_mode_ = self.st_mode & 07777;
  make_build_folder(parent);
}

// A new folder: built beside its nearest existing ancestor, which is where
// the missing parents will be made (so on the same file system).
void OutputDir::prepare_new(const std::string &normal) {
  target_ = normal;
  fs::path dir = fs::path(normal).parent_path();
  std::error_code ec;
  while (!fs::exists(dir, ec)) {
    require_not_dangling(dir, given_);
    missing_parents_.insert(missing_parents_.begin(), dir.string());
    dir = dir.parent_path();
  }
  if (!fs::is_directory(dir, ec))
    die("the output folder " + given_ + " cannot be made: " + dir.string() + " is not a folder");
  make_build_folder(dir.string());
}

void OutputDir::make_build_folder(const std::string &beside) {
  const std::string stem = (fs::path(beside) / fs::path(target_).filename()).string();
  io::remove_stale_temporaries(stem);  // build folders of killed runs
  const std::string build = io::temporary_name(stem);
  if (::mkdir(build.c_str(), 0777) != 0)
    die("cannot make a folder in " + beside + " for the output " + given_ + ": " + errno_text());
  build_ = build;
  lock_fd_ = ::open(build_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock_fd_ >= 0) io::lock_temporary(lock_fd_);  // best effort: the pid in the name marks it too
}

OutputDir::~OutputDir() {
  if (!committed_ && !build_.empty()) {
    std::error_code ec;
    fs::remove_all(build_, ec);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void OutputDir::fill(const std::function<void(const std::string &dir)> &write) {
  try {
    write(build_);
  } catch (const std::bad_alloc &) {
    throw;
  } catch (const std::exception &e) {
    die(replace_all(e.what(), build_, without_trailing_slashes(given_)));
  }
}

void OutputDir::make_parents() {
  for (const std::string &p : missing_parents_) {
    if (::mkdir(p.c_str(), 0777) == 0) {
      made_parents_.push_back(p);
      continue;
    }
    std::error_code ec;
    if (errno == EEXIST && fs::is_directory(p, ec)) continue;  // made meanwhile by someone else
    const std::string why = errno_text();
    remove_made_parents();
    die("cannot make the folder " + p + " for the output " + given_ + ": " + why);
  }
}

void OutputDir::remove_made_parents() {
  // rmdir removes only empty folders: never anything another process put there.
  for (auto it = made_parents_.rbegin(); it != made_parents_.rend(); ++it) ::rmdir(it->c_str());
  made_parents_.clear();
}

void OutputDir::commit() {
  make_parents();
  if (replaces_empty_) ::chmod(build_.c_str(), static_cast<mode_t>(replaced_mode_));
  if (::rename(build_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    remove_made_parents();
    if (err == ENOTEMPTY || err == EEXIST)
      die("the output folder " + given_ + " was filled by another process while this command ran; nothing was written");
    die("cannot move the finished output into place at " + given_ + ": " + std::strerror(err));
  }
  committed_ = true;
}

void check_output_file(const std::string &path, const std::vector<std::string> &inputs) {
  if (path.empty()) die("the output file name is empty");
  for (const std::string &in : inputs) {
    if (same_path(path, in)) die("the output " + path + " is an input; write to another file");
    if (is_within(path, in)) die("the output " + path + " is inside the input folder " + in + "; write elsewhere");
  }
  const fs::path n = normalized(path);
  struct stat st {};
  if (::stat(n.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) die("the output " + path + " is a folder");
    // Replacing a device or FIFO would remove it (as root, even /dev/null).
    if (!S_ISREG(st.st_mode)) die("the output " + path + " is " + io::file_type_name(st.st_mode) + "; s2ft writes regular files only");
  }
  std::error_code ec;
  const fs::path parent = n.parent_path();
  if (!fs::exists(parent, ec)) die("the folder " + parent.string() + " of the output " + path + " does not exist");
  if (!fs::is_directory(parent, ec)) die("the output " + path + " cannot be written: " + parent.string() + " is not a folder");
  require_not_marking_permuted(path);
}

}  // namespace cli
}  // namespace s2ft
