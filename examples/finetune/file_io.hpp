// Reading whole small files (the llama2.c tokenizer), refusing anything that
// is not a regular file or is larger than the caller allows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ft {

// The bytes of a regular file, refusing files larger than `max_bytes`.
// Throws std::runtime_error("<path>: <problem>").
std::vector<uint8_t> read_file_bytes(const std::string &path, uint64_t max_bytes);

}  // namespace ft
