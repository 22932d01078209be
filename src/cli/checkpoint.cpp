#include "checkpoint.hpp"

#include <cstring>
#include <filesystem>

#include "errors.hpp"
#include "file_kind.hpp"
#include "progress.hpp"
#include "io/strict_json.hpp"

namespace fs = std::filesystem;

namespace s2ft {
namespace cli {

namespace {

std::string join(const std::string &dir, const std::string &name) { return (fs::path(dir) / name).string(); }

}  // namespace

std::string shape_text(const s2ft_model_shape &s) {
  return "layers " + std::to_string(s.n_layers) + ", d_model " + std::to_string(s.d_model) + ", heads " +
         std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + " kv, head_dim " +
         std::to_string(s.head_dim) + ", d_ff " + std::to_string(s.d_ff);
}

bool trains_columns(int32_t target) { return target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN; }

std::string line_text(int32_t layer, int32_t target, int64_t line) {
  return projection_name(layer, target_projection(target)) + (trains_columns(target) ? " column " : " row ") +
         std::to_string(line);
}

bool is_checkpoint_dir(const std::string &dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::exists(join(dir, checkpoint::kConfigFile), ec);
}

bool is_permuted_dir(const std::string &dir) {
  std::error_code ec;
  return fs::exists(join(dir, kSelectionFile), ec);
}

// The library's messages name the function; the tool's name the folder.
void check_open(s2ft_status status) {
  if (status == S2FT_OK) return;
  std::string message = s2ft_last_error();
  for (const char *prefix : {"s2ft_checkpoint_open: ", "s2ft_checkpoint_shape: "})
    if (message.compare(0, std::strlen(prefix), prefix) == 0) message.erase(0, std::strlen(prefix));
  die(message);
}

std::unique_ptr<Checkpoint> Checkpoint::load(const std::string &dir, Contents contents) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) die(dir + " does not exist");
  if (!fs::is_directory(dir, ec)) require_kind(dir, FileKind::kCheckpoint);  // says what the file is instead
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->dir_ = dir;
  c->headers_only_ = contents == Contents::kHeadersOnly;
  check_open(s2ft_checkpoint_open(dir.c_str(), &c->ckpt_));
  c->read_config();
  c->list_tensors();
  if (!c->headers_only_) c->bind_weights();
  return c;
}

Checkpoint::~Checkpoint() { s2ft_checkpoint_destroy(ckpt_); }

// The model shape as the library reads it (checked against the tensors),
// and the fields the summary shows.
void Checkpoint::read_config() {
  check_open(s2ft_checkpoint_shape(ckpt_, &shape_));
  const char *text = nullptr;
  check(s2ft_checkpoint_config(ckpt_, &text));
  const std::string path = join(dir_, checkpoint::kConfigFile);
  config_ = io::parse_strict_json(text, text + std::strlen(text), 64, [&](const std::string &why) { die(path + ": " + why); });
  auto tie = config_.find("tie_word_embeddings");
  if (tie != config_.end() && !tie->is_null()) {
    if (!tie->is_boolean()) die(path + ": \"tie_word_embeddings\" must be true or false");
    tied_ = tie->get<bool>();
  }
  auto dt = config_.find("torch_dtype");
  if (dt != config_.end() && dt->is_string()) torch_dtype_ = dt->get<std::string>();
}

void Checkpoint::list_tensors() {
  int64_t n = 0;
  check(s2ft_checkpoint_tensor_count(ckpt_, &n));
  tensors_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    TensorEntry &t = tensors_[static_cast<size_t>(i)];
    const char *name = nullptr, *dtype = nullptr;
    int32_t ndim = 0;
    check(s2ft_checkpoint_tensor_info(ckpt_, i, &name, &dtype, &ndim, nullptr, 0, &t.nbytes));
    t.name = name;
    t.dtype = dtype;
    t.shape.resize(static_cast<size_t>(ndim));
    check(s2ft_checkpoint_tensor_info(ckpt_, i, nullptr, nullptr, nullptr, t.shape.data(), ndim, nullptr));
    where_[t.name] = static_cast<size_t>(i);
  }
  int64_t files = 0;
  check(s2ft_checkpoint_file_count(ckpt_, &files));
  for (int64_t i = 0; i < files; ++i) {
    const char *file = nullptr;
    check(s2ft_checkpoint_file(ckpt_, i, &file));
    files_.push_back(file);
  }
  std::error_code ec;
  sharded_ = fs::exists(join(dir_, checkpoint::kIndexFile), ec);
}

// Descriptors of the projection weights, which s2ft_checkpoint_shape checked.
void Checkpoint::bind_weights() {
  weights_.resize(static_cast<size_t>(shape_.n_layers) * kNumProjections);
  for (int32_t l = 0; l < shape_.n_layers; ++l)
    for (int p = 0; p < kNumProjections; ++p)
      check(s2ft_checkpoint_tensor(ckpt_, projection_name(l, p).c_str(),
                                   &weights_[static_cast<size_t>(l) * kNumProjections + static_cast<size_t>(p)]));
}

const TensorEntry *Checkpoint::find(const std::string &name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t *Checkpoint::bytes(const std::string &name) const {
  const void *data = nullptr;
  uint64_t n = 0;
  check(s2ft_checkpoint_tensor_data(ckpt_, name.c_str(), &data, &n));
  return static_cast<const uint8_t *>(data);
}

uint64_t Checkpoint::parameter_count() const {
  uint64_t n = 0;
  for (const TensorEntry &t : tensors_) {
    uint64_t e = 1;
    for (int64_t x : t.shape) e *= static_cast<uint64_t>(x);
    n += e;
  }
  return n;
}

s2ft_tensor *Checkpoint::weight(int32_t layer, int projection) {
  if (headers_only_) die("internal: the weights of " + dir_ + " were not prepared");
  if (layer < 0 || layer >= shape_.n_layers || projection < 0 || projection >= kNumProjections)
    die("internal: weight (" + std::to_string(layer) + ", " + std::to_string(projection) + ") out of range");
  return &weights_[static_cast<size_t>(layer) * kNumProjections + static_cast<size_t>(projection)];
}

s2ft_layer_weights Checkpoint::layer(int32_t l) {
  return s2ft_layer_weights{weight(l, kQ),    weight(l, kK),  weight(l, kV),   weight(l, kO),
                            weight(l, kGate), weight(l, kUp), weight(l, kDown)};
}

void Checkpoint::save(const std::string &out_dir, const std::set<std::string> &skip_files) {
  if (headers_only_) die("internal: the weights of " + dir_ + " were not prepared");
  std::vector<const char *> exclude;
  for (const std::string &s : skip_files) exclude.push_back(s.c_str());
  s2ft_checkpoint_write_options opts;
  check(s2ft_checkpoint_write_options_init(&opts, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION));
  opts.exclude = exclude.data();
  opts.n_exclude = static_cast<int64_t>(exclude.size());
  Progress progress("writing " + out_dir, 100);
  opts.progress_user = &progress;
  opts.progress = [](void *user, uint64_t done, uint64_t total) {
    static_cast<Progress *>(user)->step(total == 0 ? 100 : static_cast<int>(done * 100 / total));
  };
  const s2ft_status st = s2ft_checkpoint_write(ckpt_, out_dir.c_str(), nullptr, nullptr, 0, &opts);
  if (st != S2FT_OK) die(replace_all(s2ft_last_error(), "s2ft_checkpoint_write: ", ""));
}

}  // namespace cli
}  // namespace s2ft
