// Helpers for the tests of the s2ft command-line tool: running the binary
// (path from the S2FT_CLI compile definition) with captured stdout/stderr,
// temporary folders, and writing small Hugging Face checkpoint folders.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.hpp"
#include "support/checkpoint_folder.hpp"

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

// Runs `s2ft <args>` with stderr on a pseudo-terminal (stdout and stdin
// on /dev/null) and returns everything written to that terminal.
inline std::string run_cli_on_terminal(const std::string &args) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) throw std::runtime_error("no pseudo-terminal");
  const std::string slave_name = ptsname(master);
  const pid_t pid = fork();
  if (pid == 0) {
    const int slave = open(slave_name.c_str(), O_RDWR | O_NOCTTY);
    const int null = open("/dev/null", O_RDWR);
    if (slave < 0 || null < 0) _exit(127);
    dup2(null, 0);
    dup2(null, 1);
    dup2(slave, 2);
    close(master);
    const std::string cmd = quote(S2FT_CLI) + " " + args;
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  // Read until the child's side closes (read fails with EIO), then reap it.
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(master, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  int status = 0;
  waitpid(pid, &status, 0);
  close(master);
  return text;
}

// Asserts a failure: non-zero status and exactly one stderr line
// "s2ft <cmd>: error: ..." that contains `needle` and speaks the tool's
// language, not the C API's (no option-struct fields, argument arrays or
// flag macros).
inline void expect_one_line_error(const RunResult &r, const std::string &cmd, const std::string &needle) {
  EXPECT_NE(r.rc, 0) << "stdout: " << r.out;
  const std::vector<std::string> lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << "stderr: " << r.err;
  const std::string prefix = "s2ft " + cmd + ": error: ";
  EXPECT_EQ(lines[0].rfind(prefix, 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << "expected '" << needle << "' in: " << lines[0];
  for (const char *c_name : {"opts->", "adapters[", "weights[", "S2FT_APPLY", "S2FT_ERR"})
    EXPECT_EQ(lines[0].find(c_name), std::string::npos) << "C API name '" << c_name << "' in: " << lines[0];
}

// Every regular file of a folder: name -> bytes.
// All tensors of a checkpoint folder (every *.safetensors in it), name -> raw bytes.
inline std::map<std::string, std::string> folder_tensors(const std::string &dir) {
  std::map<std::string, std::string> out;
  for (const std::filesystem::directory_entry &e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(e.path().string());
    for (const s2ft::io::TensorInfo &t : f.tensors())
      out[t.name] = std::string(reinterpret_cast<const char *>(f.data(t)), static_cast<size_t>(t.end - t.begin));
  }
  return out;
}

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

using s2ft_test::RawTensor;
using s2ft_test::write_checkpoint;

// The integer after "<label>: " in a command's report (-1 when absent).
inline int64_t report_value(const std::string &out, const std::string &label) {
  const size_t at = out.find(label + ": ");
  if (at == std::string::npos) return -1;
  return std::stoll(out.substr(at + label.size() + 2));
}

inline float f32_at(const std::string &bytes, size_t i) {
  float v;
  std::memcpy(&v, bytes.data() + i * 4, 4);
  return v;
}

// Representable f32 steps from a to b (0 for equal values, +0 and -0 included).
inline uint64_t f32_ulps(float a, float b) {
  auto ordered = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return (u & 0x80000000u) != 0 ? -static_cast<int64_t>(u & 0x7fffffffu) : static_cast<int64_t>(u);
  };
  const int64_t x = ordered(a), y = ordered(b);
  return static_cast<uint64_t>(x > y ? x - y : y - x);
}

// Elements of merged F32 weights that differ from the tuned ones.
struct RoundingCount {
  int64_t not_exact = 0, beyond_one_ulp = 0;
};

// Counts how merged weights (`merge` of a `diff` adapter at its default
// `scale`) differ from the tuned ones, and checks each element against
// docs/cli.md (F32 weights): bit-exact wherever (TUNED - BASE) / scale is an
// f32 number or |TUNED - BASE| <= |TUNED| / 2, at most one unit in the last
// place off wherever |TUNED - BASE| <= |TUNED|. All maps are tensor name ->
// bytes of F32 checkpoints.
inline RoundingCount count_rounding(const std::map<std::string, std::string> &base,
                                    const std::map<std::string, std::string> &tuned,
                                    const std::map<std::string, std::string> &merged, double scale) {
  RoundingCount c;
  for (const auto &kv : tuned) {
    const std::string &b = base.at(kv.first), &m = merged.at(kv.first), &t = kv.second;
    for (size_t i = 0; i < t.size() / 4; ++i) {
      const float tv = f32_at(t, i), bv = f32_at(b, i), mv = f32_at(m, i);
      if (std::memcmp(&tv, &mv, 4) == 0) continue;
      ++c.not_exact;
      const double d = static_cast<double>(tv) - static_cast<double>(bv), at = std::fabs(static_cast<double>(tv));
      const std::string where = kv.first + " element " + std::to_string(i);
      EXPECT_NE(static_cast<double>(static_cast<float>(d / scale)), d / scale) << where << " should be bit-exact";
      EXPECT_GT(std::fabs(d), at / 2) << where << " should be bit-exact";
      if (f32_ulps(tv, mv) <= 1) continue;
      ++c.beyond_one_ulp;
      EXPECT_GT(std::fabs(d), at) << where << " should be at most one unit in the last place off";
    }
  }
  return c;
}

}  // namespace cli_test
