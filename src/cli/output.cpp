#include "output.hpp"

#include <filesystem>

#include "checkpoint.hpp"
#include "errors.hpp"

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

}  // namespace

OutputDir::OutputDir(const std::string &path, const std::vector<std::string> &inputs) : given_(path) {
  if (path.empty()) die("the output folder name is empty");
  path_ = normalized(path).string();
  require_apart_from_inputs(path, inputs);
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    if (!fs::is_directory(path_, ec)) die("the output " + path + " exists and is not a folder");
    if (!fs::is_empty(path_, ec) || ec) die("the output folder " + path + " is not empty");
  } else {
    fs::create_directories(path_, ec);
    if (ec) die("cannot create the output folder " + path + ": " + ec.message());
    created_ = true;
  }
}

OutputDir::~OutputDir() {
  if (committed_) return;
  std::error_code ec;
  if (created_) {
    fs::remove_all(path_, ec);
    return;
  }
  for (const fs::directory_entry &e : fs::directory_iterator(path_, ec)) fs::remove_all(e.path(), ec);
}

std::string OutputDir::file(const std::string &name) const { return (fs::path(path_) / name).string(); }

void check_output_file(const std::string &path, const std::vector<std::string> &inputs) {
  if (path.empty()) die("the output file name is empty");
  for (const std::string &in : inputs) {
    if (same_path(path, in)) die("the output " + path + " is an input; write to another file");
    if (is_within(path, in)) die("the output " + path + " is inside the input folder " + in + "; write elsewhere");
  }
  std::error_code ec;
  if (fs::is_directory(path, ec)) die("the output " + path + " is a folder");
  require_not_marking_permuted(path);
}

}  // namespace cli
}  // namespace s2ft
