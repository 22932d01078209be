// Crash-safe file output: the content goes to "<path>.tmp.<random>" in the
// same folder, is flushed, and is renamed over `path`, so `path` is either
// the old file or the complete new one, never half-written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace s2ft {
namespace io {

// Throws s2ft::Error(S2FT_ERR_IO) naming the path on any failure; the
// temporary file is removed on failure.
void write_file_atomic(const std::string &path, const void *data, size_t size);

// Reads a whole file, refusing files larger than max_bytes. Throws S2FT_ERR_IO.
std::string read_file(const std::string &path, size_t max_bytes);
std::vector<uint8_t> read_file_bytes(const std::string &path, size_t max_bytes);

}  // namespace io
}  // namespace s2ft
