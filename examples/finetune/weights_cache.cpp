#include "weights_cache.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "file_io.hpp"

namespace ft {

namespace {

constexpr char kMagic[8] = {'S', '2', 'F', 'T', 'W', 'C', '0', '1'};

// Every tensor in one fixed order (the order of the file).
template <typename F>
void for_each_tensor(LlamaWeights<float> &w, F &&f) {
  f(w.embed);
  for (auto &layer : w.layers) layer.for_each([&](const char *, std::vector<float> &t) { f(t); });
  f(w.final_norm);
  f(w.lm_head);
}

}  // namespace

uint64_t cache_key(const std::string &text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

bool load_cached_weights(const std::string &path, uint64_t key, const LlamaConfig &c, LlamaWeights<float> &out) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  LlamaWeights<float> w = empty_weights<float>(c);
  uint64_t count = 0;
  for_each_tensor(w, [&](std::vector<float> &t) { count += t.size(); });
  const uint64_t expected = sizeof kMagic + 2 * sizeof(uint64_t) + count * sizeof(float);
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(path, expected);
  } catch (const std::exception &) {
    return false;  // unreadable or larger than these weights: not ours
  }
  uint64_t file_key = 0, file_count = 0;
  if (bytes.size() != expected || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return false;
  std::memcpy(&file_key, bytes.data() + sizeof kMagic, sizeof file_key);
  std::memcpy(&file_count, bytes.data() + sizeof kMagic + sizeof file_key, sizeof file_count);
  if (file_key != key || file_count != count) return false;
  const uint8_t *p = bytes.data() + sizeof kMagic + 2 * sizeof(uint64_t);
  for_each_tensor(w, [&](std::vector<float> &t) {
    if (!t.empty()) std::memcpy(t.data(), p, t.size() * sizeof(float));
    p += t.size() * sizeof(float);
  });
  out = std::move(w);
  return true;
}

void save_cached_weights(const std::string &path, uint64_t key, LlamaWeights<float> &w) {
  uint64_t count = 0;
  for_each_tensor(w, [&](std::vector<float> &t) { count += t.size(); });
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(kMagic, sizeof kMagic);
    f.write(reinterpret_cast<const char *>(&key), sizeof key);
    f.write(reinterpret_cast<const char *>(&count), sizeof count);
    for_each_tensor(w, [&](std::vector<float> &t) {
      f.write(reinterpret_cast<const char *>(t.data()), static_cast<std::streamsize>(t.size() * sizeof(float)));
    });
    if (!f.flush()) throw std::runtime_error(tmp + ": cannot write the weights cache");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error(path + ": cannot write the weights cache: " + ec.message());
}

}  // namespace ft
