#include "checkpoint.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sys/resource.h>
#include <sys/sysinfo.h>

#include "common/error.hpp"
#include "errors.hpp"
#include "file_kind.hpp"
#include "io/atomic_file.hpp"
#include "io/input_file.hpp"
#include "io/safetensors.hpp"
#include "io/strict_json.hpp"
#include "progress.hpp"

namespace fs = std::filesystem;

namespace s2ft {
namespace cli {

namespace {

const char *const kConfigFile = "config.json";
const char *const kSingleFile = "model.safetensors";
const char *const kIndexFile = "model.safetensors.index.json";
// config.json and the index are small; refuse anything absurd before parsing.
const size_t kMaxJsonBytes = size_t(64) << 20;

std::string join(const std::string &dir, const std::string &name) { return (fs::path(dir) / name).string(); }

// The most memory this process can have: the machine's memory and swap,
// or less under an address-space or data-size limit (ulimit -v, -d).
uint64_t usable_memory_bytes() {
  uint64_t limit = std::numeric_limits<uint64_t>::max();
  struct sysinfo si {};
  if (::sysinfo(&si) == 0)
    limit = (static_cast<uint64_t>(si.totalram) + static_cast<uint64_t>(si.totalswap)) * si.mem_unit;
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    struct rlimit rl {};
    if (::getrlimit(resource, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      limit = std::min<uint64_t>(limit, static_cast<uint64_t>(rl.rlim_cur));
  }
  return limit;
}

// "1.5 GiB", for messages.
std::string bytes_text(uint64_t bytes) {
  const char *const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 6) v /= 1024.0, ++unit;
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[unit]);
  return text;
}

// Reads a whole regular file (a FIFO, device or folder is refused, never read).
std::vector<uint8_t> read_binary(const std::string &path) {
  try {
    return io::read_file_bytes(path, std::numeric_limits<size_t>::max());
  } catch (const s2ft::Error &e) {
    die(e.what());
  }
}

std::string read_text(const std::string &path) {
  try {
    return io::read_file(path, kMaxJsonBytes);
  } catch (const s2ft::Error &e) {
    die(e.what());
  }
}

// Parses config.json or the index with the library's strict parser: a key
// twice in one object (nlohmann would keep the last, hiding e.g. a tensor
// listed twice) or nesting deeper than any configuration needs is refused.
nlohmann::ordered_json parse_json(const std::string &text, const std::string &path) {
  constexpr size_t kMaxDepth = 64;
  return io::parse_strict_json(text.data(), text.data() + text.size(), kMaxDepth,
                               [&](const std::string &why) { die(path + ": " + why); });
}

// A positive int32 field of config.json; `fallback` < 0 means required.
int32_t config_int(const nlohmann::ordered_json &cfg, const std::string &path, const char *key, int64_t fallback) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (fallback < 0) die(path + " has no \"" + key + "\"");
    return static_cast<int32_t>(fallback);
  }
  if (!it->is_number_integer()) die(path + ": \"" + key + "\" must be an integer");
  const int64_t v = it->get<int64_t>();
  if (v < 1 || v > std::numeric_limits<int32_t>::max())
    die(path + ": \"" + key + "\" is " + std::to_string(v) + ", expected a positive 32-bit integer");
  return static_cast<int32_t>(v);
}

// A shard name from the index must name a file directly inside the folder.
void check_shard_name(const std::string &name, const std::string &index_path) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name.find("..") != std::string::npos || name.find('\0') != std::string::npos)
    die(index_path + ": shard name '" + name + "' is not a plain file name inside the folder");
}

int library_dtype(const std::string &dtype) {
  if (dtype == "F32") return S2FT_F32;
  if (dtype == "F16") return S2FT_F16;
  if (dtype == "BF16") return S2FT_BF16;
  return -1;
}

}  // namespace

std::string projection_name(int32_t layer, int projection) {
  static const char *const kNames[kNumProjections] = {
      "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return "model.layers." + std::to_string(layer) + "." + kNames[projection] + ".weight";
}

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

int target_projection(int32_t target) {
  switch (target) {
    case S2FT_TARGET_O: return kO;
    case S2FT_TARGET_V: return kV;
    case S2FT_TARGET_DOWN: return kDown;
    default: return kUp;
  }
}

bool is_checkpoint_dir(const std::string &dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::exists(join(dir, kConfigFile), ec);
}

bool is_permuted_dir(const std::string &dir) {
  std::error_code ec;
  return fs::exists(join(dir, kSelectionFile), ec);
}

std::unique_ptr<Checkpoint> Checkpoint::load(const std::string &dir, Contents contents) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) die(dir + " does not exist");
  if (!fs::is_directory(dir, ec)) require_kind(dir, FileKind::kCheckpoint);  // says what the file is instead
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->dir_ = dir;
  c->headers_only_ = contents == Contents::kHeadersOnly;
  c->read_config();
  c->read_headers();
  c->check_weights();
  if (c->headers_only_) return c;
  c->require_memory_for_data();
  c->read_data();
  c->bind_weights();
  return c;
}

void Checkpoint::read_config() {
  const std::string path = join(dir_, kConfigFile);
  std::error_code ec;
  if (!fs::exists(path, ec)) die(dir_ + " has no config.json (not a Hugging Face checkpoint folder)");
  config_text_ = read_text(path);  // refuses a FIFO, device or folder by name
  config_ = parse_json(config_text_, path);
  if (!config_.is_object()) die(path + " is not a JSON object");
  shape_.d_model = config_int(config_, path, "hidden_size", -1);
  shape_.n_layers = config_int(config_, path, "num_hidden_layers", -1);
  shape_.n_heads = config_int(config_, path, "num_attention_heads", -1);
  shape_.n_kv_heads = config_int(config_, path, "num_key_value_heads", shape_.n_heads);
  shape_.d_ff = config_int(config_, path, "intermediate_size", -1);
  if (shape_.d_model % shape_.n_heads != 0 && config_.find("head_dim") == config_.end())
    die(path + ": hidden_size is not a multiple of num_attention_heads and there is no head_dim");
  shape_.head_dim = config_int(config_, path, "head_dim", shape_.d_model / shape_.n_heads);
  if (shape_.n_heads % shape_.n_kv_heads != 0)
    die(path + ": num_attention_heads (" + std::to_string(shape_.n_heads) +
        ") is not a multiple of num_key_value_heads (" + std::to_string(shape_.n_kv_heads) + ")");
  auto tie = config_.find("tie_word_embeddings");
  if (tie != config_.end() && !tie->is_null()) {
    if (!tie->is_boolean()) die(path + ": \"tie_word_embeddings\" must be true or false");
    tied_ = tie->get<bool>();
  }
  auto dt = config_.find("torch_dtype");
  if (dt != config_.end() && dt->is_string()) torch_dtype_ = dt->get<std::string>();
}

// The shard files in index order, and (sharded) which shard each tensor is in.
std::vector<std::string> Checkpoint::shard_list(std::map<std::string, std::string> *weight_map) {
  const std::string index_path = join(dir_, kIndexFile);
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(join(dir_, kSingleFile), ec))
      die(dir_ + " has neither model.safetensors nor model.safetensors.index.json");
    return {kSingleFile};
  }
  sharded_ = true;
  index_text_ = read_text(index_path);
  const nlohmann::ordered_json index = parse_json(index_text_, index_path);
  if (!index.is_object()) die(index_path + " is not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object() || wm->empty())
    die(index_path + " has no \"weight_map\" object listing the tensors");
  std::vector<std::string> files;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) die(index_path + ": weight_map entry \"" + it.key() + "\" is not a file name");
    const std::string file = it.value().get<std::string>();
    check_shard_name(file, index_path);
    (*weight_map)[it.key()] = file;
    if (std::find(files.begin(), files.end(), file) == files.end()) files.push_back(file);
  }
  for (const std::string &f : files)  // a shard that is not a regular file is refused when read
    if (!fs::exists(join(dir_, f), ec))
      die(index_path + " names shard '" + f + "', which does not exist in " + dir_);
  return files;
}

// One shard's header, checked against the file's size by the library's
// reader; no tensor data is read.
Checkpoint::Shard Checkpoint::read_shard_header(const std::string &file) const {
  Shard shard;
  shard.file = file;
  io::SafetensorsHeader h;
  try {
    h = io::read_safetensors_header(join(dir_, file));
  } catch (const s2ft::Error &e) {
    die(e.what());
  }
  shard.tensors = std::move(h.tensors);
  shard.data_start = static_cast<size_t>(h.data_start);
  shard.file_size = h.file_size;
  return shard;
}

// Records where each of a shard's tensors is, refusing a tensor stored
// twice or in another shard than the index says.
void Checkpoint::add_shard(Shard shard, const std::map<std::string, std::string> &weight_map) {
  const size_t s = shards_.size();
  for (size_t i = 0; i < shard.tensors.size(); ++i) {
    const std::string &name = shard.tensors[i].name;
    if (where_.count(name) != 0)
      die("tensor " + name + " is stored twice (in " + shards_[where_[name].first].file + " and " + shard.file + ")");
    if (sharded_) {
      auto w = weight_map.find(name);
      if (w == weight_map.end())
        die(join(dir_, shard.file) + " holds tensor " + name + ", which " + kIndexFile + " does not list");
      if (w->second != shard.file)
        die(kIndexFile + std::string(" puts ") + name + " in " + w->second + ", but it is in " + shard.file);
    }
    where_[name] = {s, i};
  }
  shards_.push_back(std::move(shard));
}

void Checkpoint::read_headers() {
  std::map<std::string, std::string> weight_map;  // tensor -> shard file (sharded only)
  const std::vector<std::string> files = shard_list(&weight_map);
  for (const std::string &file : files) add_shard(read_shard_header(file), weight_map);
  for (const auto &kv : weight_map)
    if (where_.count(kv.first) == 0)
      die(kIndexFile + std::string(" lists tensor ") + kv.first + " in " + kv.second + ", which does not hold it");
}

// Refuses, before allocating, a checkpoint whose files are larger than the
// memory this process can have (the machine's memory and swap, or a lower
// address-space or data limit): it is read whole, and an allocation of that
// size would otherwise end in an out-of-memory kill or a failed allocation.
void Checkpoint::require_memory_for_data() const {
  uint64_t needed = 0;
  for (const Shard &s : shards_) needed += s.file_size;
  const uint64_t available = usable_memory_bytes();
  if (needed > available)
    die("reading " + dir_ + " needs " + bytes_text(needed) + " of memory (its safetensors files are read whole), more "
        "than the " + bytes_text(available) + " this process can use");
}

void Checkpoint::read_data() {
  Progress progress("reading " + dir_, static_cast<int>(shards_.size()));
  for (size_t i = 0; i < shards_.size(); ++i) {
    progress.step(static_cast<int>(i + 1));
    read_shard_data(shards_[i]);
  }
}

// The whole file, which must still be the file whose header was checked:
// the same size and header length, so every tensor's offsets lie inside it.
void Checkpoint::read_shard_data(Shard &shard) const {
  const std::string path = join(dir_, shard.file);
  shard.image = read_binary(path);
  uint64_t header = 0;
  for (int i = 0; i < 8 && static_cast<size_t>(i) < shard.image.size(); ++i)
    header |= static_cast<uint64_t>(shard.image[static_cast<size_t>(i)]) << (8 * i);
  if (shard.image.size() != shard.file_size || header + 8 != shard.data_start)
    die(path + " changed while it was being read");
}

uint8_t *Checkpoint::mutable_bytes(size_t shard, const io::TensorInfo &t) {
  return shards_[shard].image.data() + shards_[shard].data_start + t.begin;
}

// Every projection weight is present with a supported dtype and the shape
// config.json implies.
void Checkpoint::check_weights() const {
  const s2ft_model_shape &s = shape_;
  const int64_t d = s.d_model, nq = int64_t(s.n_heads) * s.head_dim, nkv = int64_t(s.n_kv_heads) * s.head_dim;
  const int64_t expected[kNumProjections][2] = {{nq, d}, {nkv, d}, {nkv, d}, {d, nq}, {s.d_ff, d}, {s.d_ff, d}, {d, s.d_ff}};
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int p = 0; p < kNumProjections; ++p) {
      const std::string name = projection_name(l, p);
      const io::TensorInfo *info = find(name);
      if (info == nullptr)
        die(dir_ + " has no tensor " + name + " (config.json says num_hidden_layers is " + std::to_string(s.n_layers) +
            ")");
      if (library_dtype(info->dtype) < 0) die(name + " has dtype " + info->dtype + "; expected F32, F16 or BF16");
      const std::vector<int64_t> want = {expected[p][0], expected[p][1]};
      if (info->shape != want)
        die(name + " has shape " + nlohmann::json(info->shape).dump() + ", but config.json implies " +
            nlohmann::json(want).dump());
    }
}

// Descriptors over the projection weights' bytes (checked by check_weights).
void Checkpoint::bind_weights() {
  weights_.resize(static_cast<size_t>(shape_.n_layers) * kNumProjections);
  for (int32_t l = 0; l < shape_.n_layers; ++l)
    for (int p = 0; p < kNumProjections; ++p) {
      Weight &w = weights_[static_cast<size_t>(l) * kNumProjections + p];
      const std::pair<size_t, size_t> at = where_.at(projection_name(l, p));
      w.shard = at.first;
      w.info = &shards_[w.shard].tensors[at.second];
      const int dtype = library_dtype(w.info->dtype);
      uint8_t *data = mutable_bytes(w.shard, *w.info);
      const size_t elem = dtype == S2FT_F32 ? 4 : 2;
      const size_t nbytes = static_cast<size_t>(w.info->end - w.info->begin);
      if (reinterpret_cast<uintptr_t>(data) % elem != 0) {
        // The library reads elements in place; give it an aligned copy.
        w.staging.assign((nbytes + 7) / 8, 0);
        std::memcpy(w.staging.data(), data, nbytes);
        data = reinterpret_cast<uint8_t *>(w.staging.data());
      }
      check(s2ft_tensor_init(&w.tensor, data, dtype, S2FT_DEVICE_CPU, 0, 2, w.info->shape.data()));
    }
}

std::vector<std::string> Checkpoint::shard_files() const {
  std::vector<std::string> out;
  for (const Shard &s : shards_) out.push_back(s.file);
  return out;
}

std::vector<const io::TensorInfo *> Checkpoint::tensors() const {
  std::vector<const io::TensorInfo *> out;
  for (const Shard &s : shards_)
    for (const io::TensorInfo &t : s.tensors) out.push_back(&t);
  return out;
}

const io::TensorInfo *Checkpoint::find(const std::string &name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : &shards_[it->second.first].tensors[it->second.second];
}

const uint8_t *Checkpoint::bytes(const std::string &name) const {
  if (headers_only_) die("internal: the tensor data of " + dir_ + " was not read");
  auto it = where_.find(name);
  if (it == where_.end()) die(dir_ + " has no tensor " + name);
  // A staged projection's current bytes live in its working copy.
  for (const Weight &w : weights_)
    if (w.info == &shards_[it->second.first].tensors[it->second.second] && !w.staging.empty())
      return reinterpret_cast<const uint8_t *>(w.staging.data());
  const Shard &s = shards_[it->second.first];
  return s.image.data() + s.data_start + s.tensors[it->second.second].begin;
}

uint64_t Checkpoint::parameter_count() const {
  uint64_t n = 0;
  for (const io::TensorInfo *t : tensors()) {
    uint64_t e = 1;
    for (int64_t x : t->shape) e *= static_cast<uint64_t>(x);
    n += e;
  }
  return n;
}

s2ft_tensor *Checkpoint::weight(int32_t layer, int projection) {
  if (headers_only_) die("internal: the weights of " + dir_ + " were not read");
  if (layer < 0 || layer >= shape_.n_layers || projection < 0 || projection >= kNumProjections)
    die("internal: weight (" + std::to_string(layer) + ", " + std::to_string(projection) + ") out of range");
  return &weights_[static_cast<size_t>(layer) * kNumProjections + projection].tensor;
}

s2ft_layer_weights Checkpoint::layer(int32_t l) {
  return s2ft_layer_weights{weight(l, kQ),    weight(l, kK),  weight(l, kV),   weight(l, kO),
                            weight(l, kGate), weight(l, kUp), weight(l, kDown)};
}

void Checkpoint::save(const std::string &out_dir, const std::set<std::string> &skip_files) {
  // Staged (realigned) weights go back into their file images first.
  for (const Weight &w : weights_)
    if (!w.staging.empty())
      std::memcpy(mutable_bytes(w.shard, *w.info), w.staging.data(), static_cast<size_t>(w.info->end - w.info->begin));
  if (headers_only_) die("internal: the tensor data of " + dir_ + " was not read");
  try {
    std::set<std::string> written;
    Progress progress("writing " + out_dir, static_cast<int>(shards_.size()));
    for (const Shard &s : shards_) {
      progress.step(static_cast<int>(written.size() + 1));
      io::write_file_atomic(join(out_dir, s.file), s.image.data(), s.image.size());
      written.insert(s.file);
    }
    io::write_file_atomic(join(out_dir, kConfigFile), config_text_.data(), config_text_.size());
    written.insert(kConfigFile);
    if (sharded_) {
      io::write_file_atomic(join(out_dir, kIndexFile), index_text_.data(), index_text_.size());
      written.insert(kIndexFile);
    }
    for (const fs::directory_entry &e : fs::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || written.count(name) != 0 || skip_files.count(name) != 0) continue;
      if (name.find(".tmp.") != std::string::npos) continue;  // someone's half-written file
      io::copy_file_atomic(e.path().string(), join(out_dir, name));  // refused if it became a FIFO
    }
  } catch (const s2ft::Error &e) {
    die(e.what());
  } catch (const fs::filesystem_error &e) {
    die(std::string("cannot list ") + dir_ + ": " + e.code().message());
  }
}

}  // namespace cli
}  // namespace s2ft
