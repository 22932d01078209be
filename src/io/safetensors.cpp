// The safetensors reader and writer. The reader checks the whole header
// (sizes, JSON, names, dtypes, shapes, offsets) before it hands out any
// pointer into the data buffer, so a hostile file gives S2FT_ERR_FORMAT and
// never an out-of-bounds read.
#include "io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "io/atomic_file.hpp"
#include "io/input_file.hpp"
#include "io/strict_json.hpp"

// Tensor bytes are copied as they lie in memory, and safetensors is
// little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libs2ft's safetensors I/O assumes a little-endian host"
#endif

namespace s2ft {
namespace io {

namespace {

using ordered_json = nlohmann::ordered_json;

// Limits that keep a hostile file from making the reader allocate or loop
// without bound. Real headers are a few KiB to a few MiB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr size_t kMaxJsonDepth = 16;
constexpr size_t kMaxRank = 64;
constexpr size_t kMaxFileBytes = 64ull << 30;

const char *const kMetadataKey = "__metadata__";

// Builds "<what>: <message>" for a malformed file and throws it.
[[noreturn]] void bad_file(const std::string &what, const std::string &message) {
  fail(S2FT_ERR_FORMAT, "'" + what + "' is not a valid safetensors file: " + message);
}

[[noreturn]] void bad_tensor(const std::string &what, const std::string &name, const std::string &message) {
  bad_file(what, "tensor " + json_quoted(name) + ": " + message);
}

uint64_t read_le_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON value as a non-negative integer that fits in int64, or false.
bool as_count(const ordered_json &v, uint64_t *out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    const int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// Parses the header JSON (keys in file order; duplicate keys and deep
// nesting refused).
ordered_json parse_header_json(const uint8_t *begin, const uint8_t *end, const std::string &what) {
  return parse_strict_json(reinterpret_cast<const char *>(begin), reinterpret_cast<const char *>(end), kMaxJsonDepth,
                           [&](const std::string &m) { bad_file(what, "the header: " + m); });
}

std::map<std::string, std::string> parse_metadata(const ordered_json &m, const std::string &what) {
  if (!m.is_object()) bad_file(what, "__metadata__ must be an object of strings, got " + std::string(m.type_name()));
  std::map<std::string, std::string> out;
  for (const auto &item : m.items()) {
    if (!item.value().is_string())
      bad_file(what, "__metadata__ entry " + json_quoted(item.key()) + " must be a string, got " +
                         std::string(item.value().type_name()));
    out.emplace(item.key(), item.value().get<std::string>());
  }
  return out;
}

TensorInfo parse_tensor(const std::string &name, const ordered_json &entry, uint64_t data_size,
                        const std::string &what) {
  if (name.empty()) bad_file(what, "a tensor has an empty name");
  if (!entry.is_object()) bad_tensor(what, name, "entry must be an object, got " + std::string(entry.type_name()));
  TensorInfo t;
  t.name = name;

  auto dtype = entry.find("dtype");
  if (dtype == entry.end()) bad_tensor(what, name, "missing \"dtype\"");
  if (!dtype->is_string()) bad_tensor(what, name, "\"dtype\" must be a string");
  t.dtype = dtype->get<std::string>();
  const size_t esize = safetensors_dtype_size(t.dtype);
  if (esize == 0) bad_tensor(what, name, "unknown dtype " + json_quoted(t.dtype));

  auto shape = entry.find("shape");
  if (shape == entry.end()) bad_tensor(what, name, "missing \"shape\"");
  if (!shape->is_array()) bad_tensor(what, name, "\"shape\" must be an array of integers");
  if (shape->size() > kMaxRank) bad_tensor(what, name, "rank " + std::to_string(shape->size()) + " is absurd");
  // The element count is bounded by the data buffer, so every partial
  // product is checked against it; that also rules out overflow.
  uint64_t elements = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape->size(); ++i) {
    uint64_t extent = 0;
    if (!as_count((*shape)[i], &extent))
      bad_tensor(what, name, "shape[" + std::to_string(i) + "] must be a non-negative integer");
    t.shape.push_back(static_cast<int64_t>(extent));
    if (extent == 0) {
      elements = 0;
    } else if (elements != 0) {
      if (elements > data_size / extent) overflow = true;
      else elements *= extent;
    }
  }
  if (overflow && elements != 0) bad_tensor(what, name, "shape has more elements than the data buffer holds");

  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end()) bad_tensor(what, name, "missing \"data_offsets\"");
  if (!offsets->is_array() || offsets->size() != 2)
    bad_tensor(what, name, "\"data_offsets\" must be an array [begin, end]");
  if (!as_count((*offsets)[0], &t.begin) || !as_count((*offsets)[1], &t.end))
    bad_tensor(what, name, "\"data_offsets\" must be non-negative integers");
  if (t.begin > t.end)
    bad_tensor(what, name, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                               "] has begin after end");
  if (t.end > data_size)
    bad_tensor(what, name, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                               "] run past the data buffer of " + std::to_string(data_size) + " bytes");
  // elements <= data_size, so elements * esize cannot overflow 64 bits.
  if (t.end - t.begin != elements * esize)
    bad_tensor(what, name, "holds " + std::to_string(t.end - t.begin) + " bytes but its shape and dtype need " +
                               std::to_string(elements * esize));
  return t;
}

// Tensors may come in any order, with gaps, but no two may share a byte.
void require_no_overlap(const std::vector<TensorInfo> &tensors, const std::string &what) {
  std::vector<const TensorInfo *> by_offset;
  for (const auto &t : tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo *a, const TensorInfo *b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      bad_file(what, "tensors " + json_quoted(by_offset[i - 1]->name) + " and " + json_quoted(by_offset[i]->name) +
                         " overlap in the data buffer");
}

}  // namespace

size_t safetensors_dtype_size(const std::string &dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I64", 8}, {"I32", 4},
      {"I16", 2}, {"I8", 1},  {"U64", 8}, {"U32", 4},  {"U16", 2},     {"U8", 1},      {"BOOL", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsFile SafetensorsFile::read(const std::string &path) {
  return parse(read_file_bytes(path, kMaxFileBytes), path);
}

namespace {

// The header length from the first 8 bytes of a file of `file_size` bytes,
// checked against the file and the limit.
uint64_t checked_header_length(const uint8_t *first8, uint64_t file_size, const std::string &what) {
  if (file_size < 8)
    bad_file(what, "it is " + std::to_string(file_size) + " bytes long, shorter than the 8-byte header length");
  const uint64_t header_len = read_le_u64(first8);
  if (header_len > kMaxHeaderBytes)
    bad_file(what, "the header length " + std::to_string(header_len) + " is above the " +
                       std::to_string(kMaxHeaderBytes) + "-byte limit");
  if (header_len > file_size - 8)
    bad_file(what, "the header length " + std::to_string(header_len) + " runs past the end of the file (" +
                       std::to_string(file_size) + " bytes)");
  if (header_len == 0) bad_file(what, "the header is empty");
  return header_len;
}

// Parses and checks the header JSON of a file of `file_size` bytes.
SafetensorsHeader parse_header(const uint8_t *json_begin, uint64_t header_len, uint64_t file_size,
                               const std::string &what) {
  const ordered_json header = parse_header_json(json_begin, json_begin + header_len, what);
  if (!header.is_object()) bad_file(what, "the header must be a JSON object, got " + std::string(header.type_name()));
  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  h.file_size = file_size;
  const uint64_t data_size = file_size - h.data_start;
  for (const auto &item : header.items()) {
    if (item.key() == kMetadataKey) {
      h.metadata = parse_metadata(item.value(), what);
    } else {
      h.tensors.push_back(parse_tensor(item.key(), item.value(), data_size, what));
    }
  }
  require_no_overlap(h.tensors, what);
  return h;
}

}  // namespace

SafetensorsHeader read_safetensors_header(const std::string &path) {
  const InputFile f(path);
  uint8_t first8[8] = {};
  if (f.size() >= 8) f.read_at(0, first8, 8);
  const uint64_t header_len = checked_header_length(first8, f.size(), path);
  std::vector<uint8_t> json(static_cast<size_t>(header_len));
  f.read_at(8, json.data(), json.size());
  return parse_header(json.data(), header_len, f.size(), path);
}

SafetensorsHeader parse_safetensors_header(const uint8_t *bytes, uint64_t size, const std::string &what) {
  const uint64_t header_len = checked_header_length(bytes, size, what);
  return parse_header(bytes + 8, header_len, size, what);
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, const std::string &what) {
  // Layout: [u64 little-endian N][N bytes of JSON][data buffer].
  const uint64_t header_len = checked_header_length(bytes.data(), bytes.size(), what);
  SafetensorsHeader h = parse_header(bytes.data() + 8, header_len, bytes.size(), what);
  SafetensorsFile f;
  f.data_start_ = static_cast<size_t>(h.data_start);
  f.metadata_ = std::move(h.metadata);
  f.tensors_ = std::move(h.tensors);
  f.bytes_ = std::move(bytes);
  return f;
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  for (const auto &t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void SafetensorsWriter::set_metadata(const std::string &key, const std::string &value) { metadata_[key] = value; }

void SafetensorsWriter::add(const std::string &name, const std::string &dtype, const std::vector<int64_t> &shape,
                            const void *data, size_t bytes) {
  if (name.empty()) fail_arg("tensor name is empty");
  if (name == kMetadataKey) fail_arg("tensor name " + json_quoted(name) + " is reserved");
  for (const auto &e : entries_)
    if (e.name == name) fail_arg("tensor " + json_quoted(name) + " was already added");
  const size_t esize = safetensors_dtype_size(dtype);
  if (esize == 0) fail(S2FT_ERR_DTYPE, "tensor " + json_quoted(name) + ": unknown safetensors dtype " + json_quoted(dtype));
  uint64_t elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) fail_shape("tensor " + json_quoted(name) + ": shape[" + std::to_string(i) + "] is negative");
    const uint64_t extent = static_cast<uint64_t>(shape[i]);
    if (extent != 0 && elements > std::numeric_limits<uint64_t>::max() / esize / extent)
      fail_shape("tensor " + json_quoted(name) + ": shape overflows");
    elements *= extent;
  }
  if (elements * esize != bytes)
    fail_shape("tensor " + json_quoted(name) + ": " + std::to_string(bytes) + " bytes given but its shape and dtype need " +
               std::to_string(elements * esize));
  if (bytes != 0 && data == nullptr) fail_arg("tensor " + json_quoted(name) + ": data is NULL");
  Entry e;
  e.name = name;
  e.dtype = dtype;
  e.shape = shape;
  const uint8_t *p = static_cast<const uint8_t *>(data);
  if (bytes != 0) e.data.assign(p, p + bytes);
  entries_.push_back(std::move(e));
}

std::vector<uint8_t> SafetensorsWriter::serialize() const {
  // Header: __metadata__ first (as Hugging Face writes it), then tensors in
  // insertion order with contiguous offsets.
  ordered_json header = ordered_json::object();
  if (!metadata_.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto &kv : metadata_) m[kv.first] = kv.second;
    header[kMetadataKey] = std::move(m);
  }
  uint64_t offset = 0;
  for (const auto &e : entries_) {
    ordered_json t = ordered_json::object();
    t["dtype"] = e.dtype;
    t["shape"] = e.shape;
    t["data_offsets"] = {offset, offset + e.data.size()};
    offset += e.data.size();
    header[e.name] = std::move(t);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const ordered_json::exception &) {
    fail_arg("a tensor name or metadata string is not valid UTF-8");
  }
  // Pad with spaces (JSON whitespace) so the data buffer starts 8-aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const auto &e : entries_) out.insert(out.end(), e.data.begin(), e.data.end());
  return out;
}

void SafetensorsWriter::write(const std::string &path) const {
  const std::vector<uint8_t> bytes = serialize();
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace io
}  // namespace s2ft
