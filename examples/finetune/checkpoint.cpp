#include "checkpoint.hpp"

#include <filesystem>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ft {

Checkpoint load_checkpoint(const std::string &path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_hf_checkpoint(path);
  if (fs::is_regular_file(path, ec)) return load_llama2c_checkpoint(path);
  throw std::runtime_error(path + ": no such checkpoint (expected a Hugging Face folder or a llama2.c .bin file)");
}

}  // namespace ft
