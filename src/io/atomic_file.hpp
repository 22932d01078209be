// Crash-safe file output: the content goes to "<path>.tmp.<random>" in the
// same folder, is flushed, and is renamed over `path`, so `path` is either
// the old file or the complete new one, never half-written.
#pragma once

#include <cstddef>
#include <string>

namespace s2ft {
namespace io {

// Throws s2ft::Error(S2FT_ERR_IO) naming the path on any failure; the
// temporary file is removed on failure.
void write_file_atomic(const std::string &path, const void *data, size_t size);

}  // namespace io
}  // namespace s2ft
