// Helpers for the tests of the s2ft command-line tool: running the binary
// (path from the S2FT_CLI compile definition) with captured stdout/stderr,
// temporary folders, and writing small Hugging Face checkpoint folders.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "io/safetensors.hpp"

namespace cli_test {

namespace fs = std::filesystem;

inline std::string read_text(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A fresh folder under the system's temporary folder, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "s2ft-cli-test-XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string &name) const { return (fs::path(path_) / name).string(); }
  const std::string &path() const { return path_; }

 private:
  std::string path_;
};

inline std::string quote(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RunResult {
  int rc = -1;
  std::string out, err;
  // The stderr lines (without the trailing newline).
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::stringstream ss(err);
    std::string l;
    while (std::getline(ss, l)) lines.push_back(l);
    return lines;
  }
};

// Runs `s2ft <args>` (args already shell-quoted where needed).
inline RunResult run_cli(const std::string &args) {
  static int counter = 0;
  const std::string base = (fs::temp_directory_path() / ("s2ft-cli-run-" + std::to_string(getpid()) + "-" +
                                                         std::to_string(counter++)))
                               .string();
  const std::string cmd = quote(S2FT_CLI) + " " + args + " >" + quote(base + ".out") + " 2>" + quote(base + ".err") +
                          " </dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(base + ".out");
  r.err = read_text(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

// Asserts a failure: non-zero status and exactly one stderr line
// "s2ft <cmd>: error: ..." that contains `needle`.
inline void expect_one_line_error(const RunResult &r, const std::string &cmd, const std::string &needle) {
  EXPECT_NE(r.rc, 0) << "stdout: " << r.out;
  const std::vector<std::string> lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << "stderr: " << r.err;
  const std::string prefix = "s2ft " + cmd + ": error: ";
  EXPECT_EQ(lines[0].rfind(prefix, 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << "expected '" << needle << "' in: " << lines[0];
}

// Every regular file of a folder: name -> bytes.
inline std::map<std::string, std::string> folder_files(const std::string &dir) {
  std::map<std::string, std::string> out;
  for (const fs::directory_entry &e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().filename().string()] = read_text(e.path().string());
  return out;
}

// "" when two name -> bytes maps are equal, else the names that differ
// (so a failure does not print megabytes of binary data).
inline std::string map_diff(const std::map<std::string, std::string> &a, const std::map<std::string, std::string> &b) {
  std::string out;
  for (const auto &kv : a) {
    auto it = b.find(kv.first);
    if (it == b.end()) out += " only-left:" + kv.first;
    else if (it->second != kv.second) out += " differs:" + kv.first;
  }
  for (const auto &kv : b)
    if (a.count(kv.first) == 0) out += " only-right:" + kv.first;
  return out;
}

// A tensor to write: name, safetensors dtype, shape, raw bytes.
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Writes config.json and the tensors as model.safetensors, or (n_shards > 1)
// as model-0000i-of-0000n.safetensors with an index; tensors are split into
// n_shards consecutive runs.
inline void write_checkpoint(const std::string &dir, const nlohmann::json &config, const std::vector<RawTensor> &tensors,
                             int n_shards) {
  fs::create_directories(dir);
  write_text((fs::path(dir) / "config.json").string(), config.dump(2));
  if (n_shards <= 1) {
    s2ft::io::SafetensorsWriter w;
    for (const RawTensor &t : tensors) w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    w.write((fs::path(dir) / "model.safetensors").string());
    return;
  }
  nlohmann::json index;
  uint64_t total = 0;
  const size_t per = (tensors.size() + static_cast<size_t>(n_shards) - 1) / static_cast<size_t>(n_shards);
  for (int s = 0; s < n_shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
    s2ft::io::SafetensorsWriter w;
    for (size_t i = static_cast<size_t>(s) * per; i < std::min(tensors.size(), (static_cast<size_t>(s) + 1) * per); ++i) {
      const RawTensor &t = tensors[i];
      w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
      index["weight_map"][t.name] = name;
      total += t.bytes.size();
    }
    w.write((fs::path(dir) / name).string());
  }
  index["metadata"]["total_size"] = total;
  write_text((fs::path(dir) / "model.safetensors.index.json").string(), index.dump(2));
}

}  // namespace cli_test
