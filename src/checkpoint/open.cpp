// Opening a checkpoint: config.json and the index are read whole (they are
// small, and are kept byte for byte for writing) and every safetensors
// header is read and validated; no tensor data is touched. A file is mapped
// when its data is first used, and its header is validated again from the
// mapping, so the offsets used are those of the header that was checked.
#include <algorithm>
#include <filesystem>
#include <sys/stat.h>

#include "checkpoint/checkpoint.hpp"
#include "common/error.hpp"
#include "io/input_file.hpp"
#include "io/strict_json.hpp"

namespace fs = std::filesystem;

namespace s2ft {
namespace checkpoint {
namespace {

// config.json and the index are small; refuse anything absurd before parsing.
const size_t kMaxJsonBytes = size_t(64) << 20;

std::string join(const std::string &dir, const std::string &name) { return (fs::path(dir) / name).string(); }

[[noreturn]] void bad(const std::string &m) { fail(S2FT_ERR_FORMAT, m); }

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Parses config.json or the index with the strict parser: a key twice in one
// object (a lenient parser keeps the last, hiding e.g. a tensor listed
// twice) or nesting deeper than any configuration needs is refused.
nlohmann::ordered_json parse_json(const std::string &text, const std::string &path) {
  constexpr size_t kMaxDepth = 64;
  return io::parse_strict_json(text.data(), text.data() + text.size(), kMaxDepth,
                               [&](const std::string &why) { bad(path + ": " + why); });
}

// A shard name from the index must name a file directly inside the folder.
void check_shard_name(const std::string &name, const std::string &index_path) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name.find("..") != std::string::npos || name.find('\0') != std::string::npos)
    bad(index_path + ": shard name " + io::json_quoted(name) + " is not a plain file name inside the folder");
}

// The shard files in index order, and which shard each tensor is in.
std::vector<std::string> read_index(s2ft_checkpoint &c, std::map<std::string, std::string> *weight_map) {
  const std::string index_path = join(c.dir, kIndexFile);
  c.index_text = io::read_file(index_path, kMaxJsonBytes);
  const nlohmann::ordered_json index = parse_json(c.index_text, index_path);
  if (!index.is_object()) bad(index_path + " is not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object() || wm->empty())
    bad(index_path + " has no \"weight_map\" object listing the tensors");
  std::vector<std::string> files;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) bad(index_path + ": weight_map entry " + io::json_quoted(it.key()) + " is not a file name");
    const std::string file = it.value().get<std::string>();
    check_shard_name(file, index_path);
    (*weight_map)[it.key()] = file;
    if (std::find(files.begin(), files.end(), file) == files.end()) files.push_back(file);
  }
  for (const std::string &f : files)  // a shard that is not a regular file is refused when mapped
    if (!exists(join(c.dir, f))) bad(index_path + " names shard " + io::json_quoted(f) + ", which does not exist in " + c.dir);
  return files;
}

// One file's header, validated against the file's size; no data is read.
Shard read_shard(const std::string &dir, const std::string &file) {
  Shard s;
  s.file = file;
  s.path = join(dir, file);
  s.header = io::read_safetensors_header(s.path);
  return s;
}

bool same_tensors(const io::SafetensorsHeader &a, const io::SafetensorsHeader &b) {
  if (a.tensors.size() != b.tensors.size() || a.data_start != b.data_start || a.file_size != b.file_size) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const io::TensorInfo &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin || x.end != y.end)
      return false;
  }
  return true;
}

}  // namespace

size_t float_size(const std::string &dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

namespace {

// Records where each of a shard's tensors is, refusing a tensor stored
// twice or in another shard than the index says.
void add_shard(s2ft_checkpoint &c, Shard shard, const std::map<std::string, std::string> &weight_map) {
  const size_t s = c.shards.size();
  for (size_t i = 0; i < shard.header.tensors.size(); ++i) {
    const io::TensorInfo &t = shard.header.tensors[i];
    auto seen = c.by_name.find(t.name);
    if (seen != c.by_name.end())
      bad("tensor " + t.name + " is stored twice (in " + c.shards[c.entries[seen->second].shard].file + " and " +
          shard.file + ")");
    if (c.sharded) {
      auto w = weight_map.find(t.name);
      if (w == weight_map.end())
        bad(join(c.dir, shard.file) + " holds tensor " + t.name + ", which " + kIndexFile + " does not list");
      if (w->second != shard.file)
        bad(std::string(kIndexFile) + " puts " + t.name + " in " + w->second + ", but it is in " + shard.file);
    }
    Entry e;
    e.shard = s;
    e.tensor = i;
    c.by_name[t.name] = c.entries.size();
    c.entries.push_back(std::move(e));
  }
  c.shards.push_back(std::move(shard));
}

void open_folder(s2ft_checkpoint &c) {
  const std::string config_path = join(c.dir, kConfigFile);
  if (!exists(config_path)) fail(S2FT_ERR_IO, c.dir + " has no config.json (not a Hugging Face checkpoint folder)");
  c.config_text = io::read_file(config_path, kMaxJsonBytes);  // refuses a FIFO, device or folder by name
  if (!parse_json(c.config_text, config_path).is_object()) bad(config_path + " is not a JSON object");
  c.has_config = true;
  std::map<std::string, std::string> weight_map;  // tensor -> shard file (sharded only)
  std::vector<std::string> files;
  if (exists(join(c.dir, kIndexFile))) {
    c.sharded = true;
    files = read_index(c, &weight_map);
  } else {
    if (!exists(join(c.dir, kSingleFile)))
      fail(S2FT_ERR_IO, c.dir + " has neither model.safetensors nor model.safetensors.index.json");
    files = {kSingleFile};
  }
  for (const std::string &file : files) add_shard(c, read_shard(c.dir, file), weight_map);
  for (const auto &kv : weight_map)
    if (c.by_name.count(kv.first) == 0)
      bad(std::string(kIndexFile) + " lists tensor " + kv.first + " in " + kv.second + ", which does not hold it");
}

}  // namespace

std::string projection_name(int32_t layer, int projection) {
  static const char *const kNames[kNumProjections] = {
      "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return "model.layers." + std::to_string(layer) + "." + kNames[projection] + ".weight";
}

int target_projection(int32_t target) {
  switch (target) {
    case S2FT_TARGET_O: return kO;
    case S2FT_TARGET_V: return kV;
    case S2FT_TARGET_DOWN: return kDown;
    default: return kUp;
  }
}

std::unique_ptr<s2ft_checkpoint> open(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail(S2FT_ERR_IO, path + " does not exist");
  auto c = std::make_unique<s2ft_checkpoint>();
  if (S_ISDIR(st.st_mode)) {
    c->dir = path;
    open_folder(*c);
  } else {
    // One file: any kind but a regular file is refused when it is mapped.
    const fs::path p(path);
    c->dir = p.has_parent_path() ? p.parent_path().string() : ".";
    c->single_file = true;
    add_shard(*c, read_shard(c->dir, p.filename().string()), {});
  }
  return c;
}

}  // namespace checkpoint
}  // namespace s2ft

uint8_t *s2ft::checkpoint::Shard::image() const {
  if (map) return map->data();
  auto m = std::make_unique<io::MappedFile>(path);
  if (m->size() != header.file_size || !same_tensors(io::parse_safetensors_header(m->data(), m->size(), path), header))
    fail(S2FT_ERR_IO, path + " changed since the checkpoint was opened");
  map = std::move(m);
  return map->data();
}

// A float tensor whose bytes are misaligned in the file is used through an
// aligned working copy, made on first use.
uint8_t *s2ft_checkpoint::bytes(size_t entry) const {
  const s2ft::checkpoint::Entry &e = entries[entry];
  if (!e.staging.empty()) return reinterpret_cast<uint8_t *>(e.staging.data());
  const s2ft::checkpoint::Shard &s = shards[e.shard];
  const s2ft::io::TensorInfo &t = s.header.tensors[e.tensor];
  uint8_t *data = s.image() + s.header.data_start + t.begin;
  const size_t elem = s2ft::checkpoint::float_size(t.dtype);
  if (elem == 0 || reinterpret_cast<uintptr_t>(data) % elem == 0) return data;
  const size_t n = static_cast<size_t>(t.end - t.begin);
  e.staging.assign((n + 7) / 8, 0);
  std::copy(data, data + n, reinterpret_cast<uint8_t *>(e.staging.data()));
  return reinterpret_cast<uint8_t *>(e.staging.data());
}

int64_t s2ft_checkpoint::find(const std::string &name) const {
  auto it = by_name.find(name);
  return it == by_name.end() ? -1 : static_cast<int64_t>(it->second);
}
