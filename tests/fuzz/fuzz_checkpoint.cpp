// libFuzzer target: the s2ft tool's checkpoint reader (src/cli/checkpoint.cpp)
// on arbitrary Hugging Face folders: config.json, model.safetensors or
// model.safetensors.index.json and its shards, and any other file. One input
// is one folder (fuzz_folder.hpp). The reader must load it or refuse it with
// a CliError: no crash, no out-of-bounds read, no other exception. Beyond
// that, for every input:
//   - a folder that loads whole also loads headers-only (as `s2ft inspect`
//     reads it), with the same shape and tensors;
//   - every tensor of a loaded folder can be read to its last byte, and the
//     seven projections of every layer have the shapes config.json implies;
//   - the tool's own pipeline runs on it: a selection by weight norms
//     (select_for_checkpoint, as `s2ft select` makes it; at random where the
//     tool refuses to score weights holding NaN or Inf), then `s2ft
//     permute`'s co-permutation of every layer and its inverse, which must
//     restore every weight byte for byte.
//
// The reader takes a folder path and reads through the file system, so the
// files are written into a folder on a memory-backed file system (/dev/shm
// when there is one; $S2FT_FUZZ_TMPDIR overrides it), and only the files
// that changed since the previous input are rewritten. That keeps the
// reader's own file handling (regular files only, sizes checked against
// headers) under test with no seam in it, at microseconds per input; on a
// disk file system replacing a file's contents can cost milliseconds (ext4
// forces the blocks out on close).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "errors.hpp"
#include "fuzz_folder.hpp"
#include "handles.hpp"
#include "selection_options.hpp"

namespace {

using s2ft::cli::Checkpoint;

[[noreturn]] void finding(const std::string &what) {
  std::fprintf(stderr, "fuzz_checkpoint: %s\n", what.c_str());
  std::abort();
}

// A name the fuzzer may create inside its folder: plain, no path, no dot
// files. Other names in an input are skipped (they stay possible inside the
// index, whose checks are the reader's business).
bool creatable(const std::string &name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

std::string scratch_root() {
  if (const char *dir = std::getenv("S2FT_FUZZ_TMPDIR")) return dir;
  struct stat st;
  if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0) return "/dev/shm";
  if (const char *dir = std::getenv("TMPDIR")) return dir;
  return "/tmp";
}

// The folder the inputs are written to, and what it holds now.
class Folder {
 public:
  Folder() {
    std::string pattern = scratch_root() + "/s2ft-fuzz-checkpoint-XXXXXX";
    if (::mkdtemp(&pattern[0]) == nullptr) finding("cannot make a folder under " + scratch_root());
    dir_ = pattern;
  }
  ~Folder() {
    for (const auto &kv : on_disk_) ::unlink(path(kv.first).c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string &dir() const { return dir_; }

  // Makes the folder hold exactly `files` (the first of two equal names wins).
  void hold(const std::vector<s2ft_fuzz::FolderFile> &files) {
    std::map<std::string, const std::string *> want;
    for (const s2ft_fuzz::FolderFile &f : files)
      if (creatable(f.name) && want.size() < 16) want.emplace(f.name, &f.content);
    for (auto it = on_disk_.begin(); it != on_disk_.end();) {
      if (want.count(it->first) == 0) {
        ::unlink(path(it->first).c_str());
        it = on_disk_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto &kv : want) {
      auto it = on_disk_.find(kv.first);
      if (it != on_disk_.end() && it->second == *kv.second) continue;
      write_file(path(kv.first), *kv.second);
      on_disk_[kv.first] = *kv.second;
    }
  }

 private:
  std::string path(const std::string &name) const { return dir_ + "/" + name; }
  static void write_file(const std::string &path, const std::string &content) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) finding("cannot write " + path);
    size_t done = 0;
    while (done < content.size()) {
      const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
      if (n <= 0) finding("cannot write " + path);
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  }

  std::string dir_;
  std::map<std::string, std::string> on_disk_;
};

std::unique_ptr<Checkpoint> try_load(const std::string &dir, Checkpoint::Contents contents) {
  try {
    return Checkpoint::load(dir, contents);
  } catch (const s2ft::cli::CliError &) {
    return nullptr;  // refused with a message: what the tool prints
  }
}

size_t tensor_bytes(const s2ft_tensor &t) {
  size_t n = t.dtype.bits / 8u;
  for (int32_t i = 0; i < t.ndim; ++i) n *= static_cast<size_t>(t.shape[i]);
  return n;
}

// Reads every byte of every tensor, so ASan sees any offset past the image.
void read_everything(const Checkpoint &c) {
  volatile uint8_t sink = 0;
  for (const s2ft::cli::TensorEntry &t : c.tensors()) {
    const uint8_t *p = c.bytes(t.name);
    for (uint64_t i = 0; i < t.nbytes; ++i) sink = static_cast<uint8_t>(sink ^ p[i]);
  }
  (void)sink;
}

// The seven projections of every layer, as the library sees them.
std::vector<std::string> snapshot(Checkpoint &c) {
  std::vector<std::string> out;
  for (int32_t l = 0; l < c.shape().n_layers; ++l)
    for (int p = 0; p < s2ft::cli::kNumProjections; ++p) {
      const s2ft_tensor *t = c.weight(l, p);
      out.emplace_back(static_cast<const char *>(t->data), tensor_bytes(*t));
    }
  return out;
}

s2ft_context *context() {
  static s2ft::cli::ContextPtr ctx = s2ft::cli::make_cpu_context();
  return ctx.get();
}

void check_pipeline(Checkpoint &c) {
  const s2ft_model_shape &s = c.shape();
  const int64_t d = s.d_model, q = int64_t{s.n_heads} * s.head_dim, kv = int64_t{s.n_kv_heads} * s.head_dim;
  const int64_t want[s2ft::cli::kNumProjections][2] = {{q, d}, {kv, d}, {kv, d}, {d, q}, {s.d_ff, d}, {s.d_ff, d}, {d, s.d_ff}};
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int p = 0; p < s2ft::cli::kNumProjections; ++p) {
      const s2ft_tensor *t = c.weight(l, p);
      if (t->ndim != 2 || t->shape[0] != want[p][0] || t->shape[1] != want[p][1])
        finding("a projection's descriptor does not have the shape config.json implies");
    }
  // `s2ft select` with its defaults (weight norms, o 5%, down 2%), then
  // `s2ft permute` and `--inverse`. The tool refuses weight scores of
  // weights that hold NaN or infinities, with a message; a random selection
  // reads no weight and must always be made.
  s2ft_select_options opts = s2ft::cli::select_options_from_args(s2ft::cli::ParsedArgs{});
  s2ft::cli::SelectionPtr sel;
  try {
    sel = s2ft::cli::select_for_checkpoint(context(), c, opts);
  } catch (const s2ft::cli::CliError &) {
    opts.strategy = S2FT_STRATEGY_RANDOM;
    try {
      sel = s2ft::cli::select_for_checkpoint(context(), c, opts);
    } catch (const s2ft::cli::CliError &e) {
      finding(std::string("a loaded checkpoint cannot be selected from at random: ") + e.what());
    }
  }
  const std::vector<std::string> before = snapshot(c);
  for (int32_t l = 0; l < s.n_layers; ++l) {
    const s2ft_layer_weights w = c.layer(l);
    if (s2ft_permute(context(), sel.get(), l, &w, S2FT_PERMUTE_FORWARD) != S2FT_OK ||
        s2ft_permute(context(), sel.get(), l, &w, S2FT_PERMUTE_INVERSE) != S2FT_OK)
      finding(std::string("s2ft_permute refused a loaded checkpoint: ") + s2ft_last_error());
  }
  if (snapshot(c) != before) finding("permuting and unpermuting did not restore the weights byte for byte");
}

void check(const std::string &dir) {
  // A headers-only load runs the first steps of a whole load and stops, so
  // it adds nothing where the whole load fails; it is compared where it
  // succeeds.
  std::unique_ptr<Checkpoint> whole = try_load(dir, Checkpoint::Contents::kWeights);
  if (whole == nullptr) return;
  std::unique_ptr<Checkpoint> headers = try_load(dir, Checkpoint::Contents::kHeadersOnly);
  if (headers == nullptr) finding("a folder that loads whole is refused headers-only");
  if (std::memcmp(&headers->shape(), &whole->shape(), sizeof(s2ft_model_shape)) != 0)
    finding("the headers-only shape differs from the whole load's");
  const auto a = headers->tensors(), b = whole->tensors();
  if (a.size() != b.size()) finding("the headers-only tensors differ from the whole load's");
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].dtype != b[i].dtype || a[i].shape != b[i].shape || a[i].nbytes != b[i].nbytes)
      finding("the headers-only tensor " + a[i].name + " differs from the whole load's");
  read_everything(*whole);
  (void)whole->parameter_count();
  check_pipeline(*whole);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static Folder folder;
  folder.hold(s2ft_fuzz::decode_folder(data, size));
  check(folder.dir());
  return 0;
}
