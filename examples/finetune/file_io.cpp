#include "file_io.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ft {

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

}  // namespace ft
