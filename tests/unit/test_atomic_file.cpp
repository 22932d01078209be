// io::write_file_atomic and io::copy_file_atomic: the destination is the old
// file or the complete new one, a failure leaves no temporary behind, and a
// source or destination that is not a regular file is refused.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "io/atomic_file.hpp"

namespace fs = std::filesystem;
using s2ft::io::copy_file_atomic;
using s2ft::io::write_file_atomic;

namespace {

class AtomicFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("s2ft-atomic-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string &name) const { return (dir_ / name).string(); }

  static std::string slurp(const std::string &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  static void put(const std::string &p, const std::string &bytes) {
    std::ofstream(p, std::ios::binary) << bytes;
  }
  // Names in the folder, to check that nothing but the expected files is there.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto &e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
};

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char &c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

// Larger than one 4 MiB piece and not a multiple of it.
TEST_F(AtomicFile, CopyIsByteExactAcrossPieces) {
  const std::string content = random_bytes((size_t{9} << 20) + 13, 7);
  put(path("src.bin"), content);
  copy_file_atomic(path("src.bin"), path("dst.bin"));
  EXPECT_EQ(slurp(path("dst.bin")), content);
  EXPECT_EQ(names(), (std::vector<std::string>{"dst.bin", "src.bin"}));
}

TEST_F(AtomicFile, CopyOfAnEmptyFileIsEmpty) {
  put(path("src.bin"), "");
  put(path("dst.bin"), "old content");
  copy_file_atomic(path("src.bin"), path("dst.bin"));
  EXPECT_EQ(slurp(path("dst.bin")), "");
}

TEST_F(AtomicFile, CopyReplacesAnExistingFile) {
  put(path("src.bin"), "new");
  put(path("dst.bin"), "old content, longer than the new one");
  copy_file_atomic(path("src.bin"), path("dst.bin"));
  EXPECT_EQ(slurp(path("dst.bin")), "new");
}

TEST_F(AtomicFile, CopyRefusesAFifoWithoutBlockingOrWriting) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  try {
    copy_file_atomic(path("fifo"), path("dst.bin"));
    FAIL() << "a FIFO was copied";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("is a FIFO, not a regular file"), std::string::npos) << e.what();
  }
  EXPECT_EQ(names(), (std::vector<std::string>{"fifo"}));
}

TEST_F(AtomicFile, CopyOfAMissingFileNamesItAndWritesNothing) {
  put(path("dst.bin"), "kept");
  try {
    copy_file_atomic(path("absent.bin"), path("dst.bin"));
    FAIL() << "a missing file was copied";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("absent.bin"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(path("dst.bin")), "kept");
  EXPECT_EQ(names(), (std::vector<std::string>{"dst.bin"}));
}

TEST_F(AtomicFile, ADestinationThatIsNotARegularFileIsNeverReplaced) {
  put(path("src.bin"), "data");
  fs::create_directory(path("folder"));
  EXPECT_THROW(copy_file_atomic(path("src.bin"), path("folder")), s2ft::Error);
  EXPECT_THROW(write_file_atomic(path("folder"), "x", 1), s2ft::Error);
  EXPECT_TRUE(fs::is_directory(path("folder")));
  EXPECT_EQ(names(), (std::vector<std::string>{"folder", "src.bin"}));
}

// A writer killed mid-way leaves "<path>.tmp.<pid>.<n>"; the next writer of
// the same path removes it when that pid is gone, and keeps those of live
// processes and of other paths.
TEST_F(AtomicFile, StaleTemporariesOfDeadWritersAreRemoved) {
  const pid_t dead = [] {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
    return child;  // reaped: no process has this pid now (barring reuse)
  }();
  put(path("out.bin.tmp." + std::to_string(dead) + ".1"), "remains");
  put(path("out.bin.tmp." + std::to_string(getpid()) + ".2"), "a live writer's");
  put(path("other.bin.tmp." + std::to_string(dead) + ".3"), "another output's");
  write_file_atomic(path("out.bin"), "done", 4);
  EXPECT_EQ(slurp(path("out.bin")), "done");
  EXPECT_EQ(names(), (std::vector<std::string>{"other.bin.tmp." + std::to_string(dead) + ".3", "out.bin",
                                               "out.bin.tmp." + std::to_string(getpid()) + ".2"}));
}
