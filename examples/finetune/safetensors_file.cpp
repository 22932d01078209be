#include "safetensors_file.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace ft {

namespace {

// Bounds that keep a hostile file from making the reader allocate or recurse
// without limit. Real headers are a few KiB to a few MiB.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
constexpr uint64_t kMaxFileBytes = uint64_t{64} << 30;
constexpr int kMaxJsonDepth = 16;
constexpr size_t kMaxRank = 8;
const char *const kMetadataKey = "__metadata__";

[[noreturn]] void fail(const std::string &what, const std::string &problem) {
  throw std::runtime_error(what + ": " + problem);
}

[[noreturn]] void fail_tensor(const std::string &what, const std::string &name, const std::string &problem) {
  fail(what, "tensor " + quoted_name(name) + " " + problem);
}

uint64_t load_u64_le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t load_u32_le(const uint8_t *p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

uint16_t load_u16_le(const uint8_t *p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h} >> 15, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return float_from_bits(sign << 31 | 0x7f800000u | mantissa << 13);  // inf / NaN
  return float_from_bits(sign << 31 | (exponent - 15 + 127) << 23 | mantissa << 13);
}

// bfloat16 is the top half of a float.
float bf16_to_float(uint16_t h) { return float_from_bits(uint32_t{h} << 16); }

size_t dtype_size(const std::string &dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

// A JSON value as a non-negative integer, or false.
bool as_count(const nlohmann::json &v, uint64_t *out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// Parses the header, refusing deep nesting and a tensor named twice
// (nlohmann::json would silently keep the last one).
nlohmann::json parse_header(const uint8_t *begin, const uint8_t *end, const std::string &what) {
  int depth = 0;
  std::set<std::string> top_keys;
  auto on_event = [&](int, nlohmann::json::parse_event_t event, nlohmann::json &parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start || event == E::array_start) {
      if (++depth > kMaxJsonDepth)
        fail(what, "the header JSON is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    } else if (event == E::object_end || event == E::array_end) {
      --depth;
    } else if (event == E::key && depth == 1 && parsed.is_string()) {
      if (!top_keys.insert(parsed.get<std::string>()).second)
        fail(what, "the header lists " + quoted_name(parsed.get<std::string>()) + " twice");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(begin, end, on_event);
  } catch (const nlohmann::json::exception &) {
    fail(what, "the header is not valid JSON");
  }
}

struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0, elements = 0;
};

std::string shape_text(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

TensorEntry parse_entry(const std::string &name, const nlohmann::json &entry, uint64_t data_size,
                        const std::string &what) {
  if (name.empty()) fail(what, "a tensor has an empty name");
  if (!entry.is_object()) fail_tensor(what, name, "is not a JSON object");
  TensorEntry t;
  t.name = name;

  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) fail_tensor(what, name, "has no \"dtype\" string");
  t.dtype = dtype->get<std::string>();
  const size_t esize = dtype_size(t.dtype);
  if (esize == 0)
    fail_tensor(what, name, "has the unsupported dtype " + quoted_name(t.dtype) + " (only F32, F16 and BF16 are read)");

  auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) fail_tensor(what, name, "has no \"shape\" array");
  if (shape->size() > kMaxRank)
    fail_tensor(what, name, "has rank " + std::to_string(shape->size()) + ", more than " + std::to_string(kMaxRank));
  // Every partial product is kept <= data_size (else the tensor cannot fit),
  // which also rules out overflow.
  bool too_many = false;
  t.elements = 1;
  for (size_t i = 0; i < shape->size(); ++i) {
    uint64_t extent = 0;
    if (!as_count((*shape)[i], &extent) || extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail_tensor(what, name, "has shape[" + std::to_string(i) + "] that is not a non-negative integer");
    t.shape.push_back(static_cast<int64_t>(extent));
    if (extent == 0) t.elements = 0;
    else if (t.elements > data_size / extent) too_many = true;
    else t.elements *= extent;
  }
  if (too_many && t.elements != 0)
    fail_tensor(what, name, "has shape " + shape_text(t.shape) + ", more elements than the data section (" +
                                std::to_string(data_size) + " bytes) holds");

  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2)
    fail_tensor(what, name, "has no \"data_offsets\" array [begin, end]");
  if (!as_count((*offsets)[0], &t.begin) || !as_count((*offsets)[1], &t.end))
    fail_tensor(what, name, "has data_offsets that are not non-negative integers (they are relative to the data "
                            "section and may not reach into the header)");
  if (t.begin > t.end)
    fail_tensor(what, name, "has data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                "] with begin after end");
  if (t.end > data_size)
    fail_tensor(what, name, "ends at byte " + std::to_string(t.end) + " of the data section, past its end (" +
                                std::to_string(data_size) + " bytes)");
  // elements <= data_size here, so elements * esize cannot overflow.
  if (t.end - t.begin != t.elements * esize)
    fail_tensor(what, name, "has " + std::to_string(t.end - t.begin) + " bytes but its shape " + shape_text(t.shape) +
                                " and dtype " + t.dtype + " need " + std::to_string(t.elements * esize));
  return t;
}

// Tensors may come in any order and with gaps, but no two may share a byte.
void require_no_overlap(std::vector<const TensorEntry *> entries, const std::string &what) {
  entries.erase(std::remove_if(entries.begin(), entries.end(), [](const TensorEntry *e) { return e->end == e->begin; }),
                entries.end());
  std::sort(entries.begin(), entries.end(), [](const TensorEntry *a, const TensorEntry *b) { return a->begin < b->begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i]->begin < entries[i - 1]->end)
      fail(what, "tensors " + quoted_name(entries[i - 1]->name) + " and " + quoted_name(entries[i]->name) +
                     " overlap in the data section");
}

std::vector<float> convert(const uint8_t *p, const TensorEntry &t) {
  std::vector<float> out(static_cast<size_t>(t.elements));
  if (t.dtype == "F32") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = float_from_bits(load_u32_le(p + 4 * i));
  } else if (t.dtype == "F16") {
    for (size_t i = 0; i < out.size(); ++i) out[i] = f16_to_float(load_u16_le(p + 2 * i));
  } else {
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(load_u16_le(p + 2 * i));
  }
  return out;
}

}  // namespace

std::string quoted_name(const std::string &name) {
  const size_t kMaxShown = 120;
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (name.size() > kMaxShown) out += "...";
  return out + "'";
}

SafetensorsContents parse_safetensors(const std::vector<uint8_t> &bytes, const std::string &what) {
  if (bytes.size() < 8)
    fail(what, "the file is " + std::to_string(bytes.size()) +
                   " bytes long, too short for the 8-byte header length (truncated?)");
  const uint64_t header_len = load_u64_le(bytes.data());
  if (header_len > bytes.size() - 8)
    fail(what, "the header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(bytes.size()) + " bytes; truncated?)");
  if (header_len > kMaxHeaderBytes)
    fail(what, "the header length " + std::to_string(header_len) + " is above the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_len == 0) fail(what, "the header is empty");

  const uint8_t *json_begin = bytes.data() + 8;
  const nlohmann::json header = parse_header(json_begin, json_begin + header_len, what);
  if (!header.is_object()) fail(what, "the header is a JSON " + std::string(header.type_name()) + ", not an object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_start;
  SafetensorsContents out;
  std::vector<TensorEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      if (!it.value().is_object()) fail(what, "__metadata__ is not a JSON object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) fail(what, "__metadata__ entry " + quoted_name(m.key()) + " is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), it.value(), data_size, what));
  }
  std::vector<const TensorEntry *> pointers;
  for (const auto &e : entries) pointers.push_back(&e);
  require_no_overlap(pointers, what);

  // Only now, with every range checked, touch the data.
  const uint8_t *data = bytes.data() + data_start;
  for (const auto &e : entries) out.tensors[e.name] = FloatTensor{e.shape, convert(data + e.begin, e)};
  return out;
}

SafetensorsContents read_safetensors(const std::string &path) {
  return parse_safetensors(read_file_bytes(path, kMaxFileBytes), path);
}

std::vector<uint8_t> serialize_safetensors(const std::vector<TensorToWrite> &tensors,
                                           const std::map<std::string, std::string> &metadata) {
  // ordered_json keeps the tensors in the order they are written.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto &t : tensors) {
    if (t.name.empty() || t.name == kMetadataKey || header.contains(t.name))
      throw std::runtime_error("safetensors writer: tensor name " + quoted_name(t.name) +
                               " is empty, reserved or used twice");
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      if (d < 0) throw std::runtime_error("safetensors writer: tensor " + quoted_name(t.name) + " has a negative extent");
      elements *= static_cast<uint64_t>(d);
    }
    if (t.data == nullptr || elements != t.data->size())
      throw std::runtime_error("safetensors writer: tensor " + quoted_name(t.name) + " has shape " + shape_text(t.shape) +
                               " but " + std::to_string(t.data ? t.data->size() : 0) + " values");
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + 4 * elements}}};
    offset += 4 * elements;
  }
  std::string json = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned.
  json.append((8 - json.size() % 8) % 8, ' ');

  std::vector<uint8_t> bytes;
  bytes.reserve(8 + json.size() + offset);
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(uint64_t{json.size()} >> (8 * i)));
  bytes.insert(bytes.end(), json.begin(), json.end());
  for (const auto &t : tensors)
    for (float f : *t.data) {
      uint32_t bits;
      std::memcpy(&bits, &f, sizeof bits);
      for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(bits >> (8 * i)));
    }
  return bytes;
}

void write_safetensors(const std::string &path, const std::vector<TensorToWrite> &tensors,
                       const std::map<std::string, std::string> &metadata) {
  const std::vector<uint8_t> bytes = serialize_safetensors(tensors, metadata);
  write_file_atomically(path, bytes.data(), bytes.size());
}

std::vector<uint8_t> read_file_bytes(const std::string &path, uint64_t max_bytes) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error(path + ": no such file");
  if (!fs::is_regular_file(path, ec)) throw std::runtime_error(path + ": not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw std::runtime_error(path + ": cannot read its size (" + ec.message() + ")");
  if (size > max_bytes)
    throw std::runtime_error(path + ": the file is " + std::to_string(size) + " bytes, above the limit of " +
                             std::to_string(max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char *>(bytes.data()), static_cast<std::streamsize>(size)))
    throw std::runtime_error(path + ": cannot read " + std::to_string(size) + " bytes");
  return bytes;
}

void write_file_atomically(const std::string &path, const void *bytes, size_t size) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot create the temporary file " + temp);
    out.write(static_cast<const char *>(bytes), static_cast<std::streamsize>(size));
    out.close();
    if (!out) {
      std::error_code ignored;
      fs::remove(temp, ignored);
      throw std::runtime_error(path + ": cannot write " + std::to_string(size) + " bytes (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw std::runtime_error(path + ": cannot rename " + temp + " to it (" + ec.message() + ")");
  }
}

}  // namespace ft
