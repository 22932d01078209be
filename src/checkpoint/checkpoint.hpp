// The object behind s2ft_checkpoint: a Hugging Face checkpoint's files
// memory-mapped privately, their validated headers, and where each tensor
// is. A folder holds config.json and model.safetensors, or the shards
// model.safetensors.index.json lists ("weight_map": tensor -> shard file);
// a single .safetensors file may be opened alone (no configuration).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/live_handles.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace checkpoint {

inline const char *const kConfigFile = "config.json";
inline const char *const kSingleFile = "model.safetensors";
inline const char *const kIndexFile = "model.safetensors.index.json";

// The seven projections of a LLaMA block, in s2ft_layer_weights order.
enum Projection { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kNumProjections };

// "model.layers.{layer}.self_attn.q_proj.weight" etc.
std::string projection_name(int32_t layer, int projection);
// The projection a target trains (o, v, down, up).
int target_projection(int32_t target);

// One safetensors file. Its header is read and validated at open; the file
// is mapped when tensor data is first used, and the mapped file's header must
// then be the one that was validated.
struct Shard {
  std::string file;  // name inside the folder
  std::string path;
  io::SafetensorsHeader header;
  mutable std::unique_ptr<io::MappedFile> map;  // null until first used
  // The whole file image, mapped (and checked) on first use.
  uint8_t *image() const;
};

// One tensor: where it is, and an aligned working copy when its bytes in the
// file are not aligned to its element size (the library reads elements in
// place, and a misaligned float load is undefined behaviour).
struct Entry {
  size_t shard = 0, tensor = 0;
  mutable std::vector<uint64_t> staging;  // empty when the tensor is used in place (mutable: views write it)
};

}  // namespace checkpoint
}  // namespace s2ft

struct s2ft_checkpoint {
  s2ft::LiveHandle<s2ft::HandleKind::checkpoint> live;  // first: counted, and tagged while alive
  std::string dir;          // the folder holding the files
  bool single_file = false;  // opened as one .safetensors file
  bool has_config = false;
  std::string config_text;  // config.json, byte for byte
  bool sharded = false;
  std::string index_text;   // the index, byte for byte
  std::vector<s2ft::checkpoint::Shard> shards;  // index order
  std::vector<s2ft::checkpoint::Entry> entries;  // shards in order, file order inside each
  std::map<std::string, size_t> by_name;         // tensor name -> entries index

  const s2ft::io::TensorInfo &info(size_t entry) const {
    const s2ft::checkpoint::Entry &e = entries[entry];
    return shards[e.shard].header.tensors[e.tensor];
  }
  // The tensor's current bytes (its working copy, or the mapping).
  uint8_t *bytes(size_t entry) const;
  // The entries index of `name`, or -1.
  int64_t find(const std::string &name) const;
};

namespace s2ft {
namespace checkpoint {

// Opens and validates a checkpoint. Throws s2ft::Error (S2FT_ERR_IO,
// S2FT_ERR_FORMAT) naming the file and what is wrong with it.
std::unique_ptr<s2ft_checkpoint> open(const std::string &path);

// The LLaMA-family model shape from config.json, checked against the
// tensors (see s2ft_checkpoint_shape).
s2ft_model_shape model_shape(const s2ft_checkpoint &c);

// A tensor's data replaced on writing: its new bytes in the stored dtype.
struct Replacement {
  size_t entry;
  std::vector<uint8_t> bytes;
};

struct WriteOptions {
  uint64_t max_shard_bytes = 0;
  bool copy_other_files = true;
  std::vector<std::string> exclude;
  void (*progress)(void *user, uint64_t done_bytes, uint64_t total_bytes) = nullptr;
  void *progress_user = nullptr;
};

// s2ft_checkpoint_write after argument checks.
void write(const s2ft_checkpoint &c, const std::string &out_dir, const std::vector<Replacement> &replacements,
           const WriteOptions &options);

}  // namespace checkpoint
}  // namespace s2ft
