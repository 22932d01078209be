// Making broken inputs for the hostile tests: safetensors files taken apart
// into their JSON header and data buffer and put back together with any
// header length, JSON files edited member by member, special files (FIFOs,
// folders, links to devices) where a regular file belongs, and sparse
// files of any size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "hostile/hostile_run.hpp"

namespace hostile {

using Json = nlohmann::ordered_json;

inline void write_bytes(const std::string &path, const std::string &bytes) {
  fs::remove(path);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A safetensors file as its parts.
struct Safetensors {
  Json header;
  std::string data;
};

inline Safetensors read_safetensors(const std::string &path) {
  const std::string bytes = slurp(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  Safetensors st;
  st.header = Json::parse(bytes.substr(8, n));
  st.data = bytes.substr(8 + n);
  return st;
}

inline std::string length_prefix(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// Writes the parts back; `header_text` replaces the serialized header when
// given (for JSON that Json cannot hold, such as duplicate keys).
inline void write_safetensors(const std::string &path, const Safetensors &st, const std::string &header_text = "") {
  const std::string text = header_text.empty() ? st.header.dump() : header_text;
  write_bytes(path, length_prefix(text.size()) + text + st.data);
}

// The file with its 8-byte header length replaced by `n` (the rest as it was).
inline void set_header_length(const std::string &path, uint64_t n) {
  const std::string bytes = slurp(path);
  write_bytes(path, length_prefix(n) + bytes.substr(8));
}

inline void truncate_to(const std::string &path, uint64_t size) { fs::resize_file(path, size); }

inline Json read_json(const std::string &path) { return Json::parse(slurp(path)); }
inline void write_json(const std::string &path, const Json &j) { write_bytes(path, j.dump()); }

// Copies a folder's regular files (the inputs are flat folders).
inline void copy_folder(const std::string &from, const std::string &to) {
  fs::create_directories(to);
  for (const fs::directory_entry &e : fs::directory_iterator(from))
    if (e.is_regular_file()) {
      fs::copy_file(e.path(), fs::path(to) / e.path().filename());
      fs::permissions(fs::path(to) / e.path().filename(), fs::perms::owner_read | fs::perms::owner_write,
                      fs::perm_options::add);
    }
}

// What a special file at `path` (which is removed first) is made as.
enum class Special { kFifo, kFolder, kDeviceLink };

inline const char *special_name(Special s) {
  switch (s) {
    case Special::kFifo: return "FIFO";
    case Special::kFolder: return "folder";
    default: return "link to /dev/zero";
  }
}

// The word the tool's message uses for it.
inline const char *special_word(Special s) {
  switch (s) {
    case Special::kFifo: return "FIFO";
    case Special::kFolder: return "directory";
    default: return "device";
  }
}

inline void make_special(const std::string &path, Special s) {
  fs::remove_all(path);
  switch (s) {
    case Special::kFifo: ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0) << path; break;
    case Special::kFolder: fs::create_directories(path); break;
    case Special::kDeviceLink: fs::create_symlink("/dev/zero", path); break;
  }
}

// A sparse file of `size` bytes that starts with `head`.
inline void write_sparse(const std::string &path, const std::string &head, uint64_t size) {
  write_bytes(path, head);
  fs::resize_file(path, size);
}

}  // namespace hostile
