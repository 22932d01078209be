// Writing small Hugging Face checkpoint folders for tests: config.json and
// the tensors in one safetensors file or in shards with an index, through
// the library's own safetensors writer (INTERNAL tests only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"

namespace s2ft_test {

inline void write_text_file(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// A tensor to write: name, safetensors dtype, shape, raw bytes.
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Writes config.json and the tensors as model.safetensors, or (n_shards > 1)
// as model-0000i-of-0000n.safetensors with an index; tensors are split into
// n_shards consecutive runs.
inline void write_checkpoint(const std::string &dir, const nlohmann::json &config, const std::vector<RawTensor> &tensors,
                             int n_shards) {
  std::filesystem::create_directories(dir);
  write_text_file((std::filesystem::path(dir) / "config.json").string(), config.dump(2));
  if (n_shards <= 1) {
    s2ft::io::SafetensorsWriter w;
    for (const RawTensor &t : tensors) w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    w.write((std::filesystem::path(dir) / "model.safetensors").string());
    return;
  }
  nlohmann::json index;
  uint64_t total = 0;
  const size_t per = (tensors.size() + static_cast<size_t>(n_shards) - 1) / static_cast<size_t>(n_shards);
  for (int s = 0; s < n_shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
    s2ft::io::SafetensorsWriter w;
    for (size_t i = static_cast<size_t>(s) * per; i < std::min(tensors.size(), (static_cast<size_t>(s) + 1) * per); ++i) {
      const RawTensor &t = tensors[i];
      w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
      index["weight_map"][t.name] = name;
      total += t.bytes.size();
    }
    w.write((std::filesystem::path(dir) / name).string());
  }
  index["metadata"]["total_size"] = total;
  write_text_file((std::filesystem::path(dir) / "model.safetensors.index.json").string(), index.dump(2));
}

}  // namespace s2ft_test
