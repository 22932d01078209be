#include "file_kind.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint.hpp"
#include "common/error.hpp"
#include "errors.hpp"
#include "io/input_file.hpp"
#include "io/safetensors.hpp"
#include "io/strict_json.hpp"

namespace fs = std::filesystem;

namespace s2ft {
namespace cli {

namespace {

// Selections grow with the model (a permutation per layer) but stay far below this.
const size_t kMaxJsonBytes = size_t(256) << 20;

bool has_prefix(const std::string &s, const char *prefix) { return s.rfind(prefix, 0) == 0; }

// Whether the first 9 bytes of a file of `file_size` bytes look like a
// safetensors header (a plausible length followed by '{'); no validation.
bool looks_like_safetensors(const std::string &first9, uint64_t file_size) {
  if (first9.size() < 9 || file_size < 9) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(first9[static_cast<size_t>(i)]);
  return n >= 2 && n <= file_size - 8 && first9[8] == '{';
}

FileKind safetensors_kind(const std::string &path) {
  io::SafetensorsHeader h;
  try {
    h = io::read_safetensors_header(path);
  } catch (const std::exception &) {  // damaged: the loader of the expected kind says how
    return FileKind::kBadSafetensors;
  }
  auto format = h.metadata.find("format");
  if (format != h.metadata.end() && format->second == "s2ft-adapter") return FileKind::kAdapter;
  if (format != h.metadata.end() && format->second == "s2ft-optimizer") return FileKind::kOptimizerState;
  for (const io::TensorInfo &t : h.tensors)
    if (has_prefix(t.name, "model.") || has_prefix(t.name, "lm_head.")) return FileKind::kModelWeights;
  return FileKind::kSafetensors;
}

FileKind json_kind(const std::string &path) {
  nlohmann::ordered_json j;
  try {
    const std::string text = io::read_file(path, kMaxJsonBytes);
    j = io::parse_strict_json(text.data(), text.data() + text.size(), 64, [](const std::string &m) { die(m); });
  } catch (const std::exception &) {  // not JSON, too large or unreadable: the loader says which
    return FileKind::kBadJson;
  }
  if (!j.is_object()) return FileKind::kJson;
  if (j.contains("format") && j["format"] == "s2ft-selection") return FileKind::kSelection;
  if (j.contains("weight_map")) return FileKind::kShardIndex;
  if (j.contains("hidden_size") || j.contains("model_type")) return FileKind::kConfig;
  return FileKind::kJson;
}

// The first 9 bytes (fewer for a shorter file) and the file's size. A
// FIFO, device or anything but a regular file is refused (never read).
std::string first_bytes(const std::string &path, uint64_t *size) {
  const io::InputFile f(path);
  *size = f.size();
  std::string head(static_cast<size_t>(std::min<uint64_t>(9, f.size())), '\0');
  if (!head.empty()) f.read_at(0, &head[0], head.size());
  return head;
}

bool starts_like_json(const std::string &head) {
  for (char c : head)
    if (!std::isspace(static_cast<unsigned char>(c))) return c == '{' || c == '[';
  return false;
}

FileKind regular_file_kind(const std::string &path) {
  uint64_t size = 0;
  const std::string head = first_bytes(path, &size);
  const std::string ext = fs::path(path).extension().string();
  if (looks_like_safetensors(head, size))
    return safetensors_kind(path);
  if (starts_like_json(head)) return json_kind(path);
  if (ext == ".safetensors") return FileKind::kBadSafetensors;
  if (ext == ".json") return FileKind::kBadJson;
  return FileKind::kOther;
}

// Whether a file of kind `found` may be handed to the loader of `expected`
// (the same format, only damaged).
bool same_format(FileKind found, FileKind expected) {
  if (found == FileKind::kBadSafetensors) return expected == FileKind::kAdapter || expected == FileKind::kOptimizerState;
  if (found == FileKind::kBadJson) return expected == FileKind::kSelection;
  return false;
}

}  // namespace

FileKind file_kind(const std::string &path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return FileKind::kMissing;
  if (fs::is_directory(path, ec)) return is_checkpoint_dir(path) ? FileKind::kCheckpoint : FileKind::kFolder;
  return regular_file_kind(path);
}

const char *kind_phrase(FileKind kind) {
  switch (kind) {
    case FileKind::kMissing: return "missing";
    case FileKind::kCheckpoint: return "a checkpoint folder";
    case FileKind::kFolder: return "a folder without config.json";
    case FileKind::kAdapter: return "an adapter";
    case FileKind::kOptimizerState: return "an optimizer state file";
    case FileKind::kModelWeights: return "a file of model weights (a checkpoint's safetensors file)";
    case FileKind::kSafetensors: return "a safetensors file without s2ft metadata";
    case FileKind::kBadSafetensors: return "a damaged safetensors file";
    case FileKind::kSelection: return "a selection file";
    case FileKind::kConfig: return "a checkpoint's config.json";
    case FileKind::kShardIndex: return "a checkpoint's shard index";
    case FileKind::kJson: return "a JSON file of another kind";
    case FileKind::kBadJson: return "a file that is not valid JSON";
    case FileKind::kOther: return "neither a safetensors nor a JSON file";
  }
  return "a file of unknown kind";
}

void require_kind(const std::string &path, FileKind expected) {
  const FileKind found = file_kind(path);
  if (found == expected || same_format(found, expected)) return;
  if (found == FileKind::kMissing) die(path + " does not exist");
  die(path + " is " + kind_phrase(found) + ", not " + kind_phrase(expected));
}

}  // namespace cli
}  // namespace s2ft
