// The backend module loader (white box: backend::load_module on searches
// the test sets up). Every way a module can be missing or wrong gives a
// message that says what was looked for where; none aborts.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "backend/loader.hpp"
#include "s2ft/s2ft.h"

namespace {

using s2ft::backend::LoadResult;
using s2ft::backend::ModuleSearch;

ModuleSearch search_in(const std::string &dir, const std::string &file) {
  ModuleSearch s;
  s.backend = "cuda";
  s.label = "CUDA";
  s.library_dir = dir;
  s.file_name = file;
  return s;
}

ModuleSearch override_with(const std::string &path) {
  ModuleSearch s = search_in("/nonexistent-s2ft-dir", "libs2ft_cuda.so.0");
  s.override_path = path;
  return s;
}

void expect_refused(const LoadResult &r, std::initializer_list<std::string> needles) {
  EXPECT_EQ(r.ops, nullptr);
  for (const std::string &n : needles) EXPECT_NE(r.error.find(n), std::string::npos) << "'" << n << "' not in: " << r.error;
}

std::string temp_path(const char *name) { return ::testing::TempDir() + name; }

TEST(BackendLoader, AbsentModuleNamesEveryPlaceLookedAt) {
  const LoadResult r = s2ft::backend::load_module(search_in(::testing::TempDir(), "libs2ft_absent_module.so.0"));
  std::string dir = ::testing::TempDir();
  if (dir.back() == '/') dir.pop_back();
  expect_refused(r, {"CUDA backend module libs2ft_absent_module.so.0 could not be loaded", "next to libs2ft",
                     dir + "/libs2ft_absent_module.so.0", "dynamic loader's path", "S2FT_CUDA_BACKEND"});
}

TEST(BackendLoader, AbsentModuleWithoutALibraryFolderLooksOnTheLoaderPathOnly) {
  const LoadResult r = s2ft::backend::load_module(search_in("", "libs2ft_absent_module.so.0"));
  expect_refused(r, {"dynamic loader's path"});
  EXPECT_EQ(r.error.find("next to libs2ft"), std::string::npos) << r.error;
}

TEST(BackendLoader, OverrideToAMissingFile) {
  const LoadResult r = s2ft::backend::load_module(override_with("/nonexistent-s2ft-dir/libs2ft_cuda.so.0"));
  expect_refused(r, {"S2FT_CUDA_BACKEND names '/nonexistent-s2ft-dir/libs2ft_cuda.so.0'", "could not be loaded"});
}

TEST(BackendLoader, OverrideToAFileThatIsNotALibrary) {
  const std::string path = temp_path("s2ft-not-a-library.so");
  std::ofstream(path) << "this is text, not an ELF shared object\n";
  const LoadResult r = s2ft::backend::load_module(override_with(path));
  expect_refused(r, {"S2FT_CUDA_BACKEND names '" + path + "'", "could not be loaded"});
  std::remove(path.c_str());
}

TEST(BackendLoader, OverrideToALibraryWithoutTheEntryPoint) {
  const LoadResult r = s2ft::backend::load_module(override_with(S2FT_STANDIN_NO_ENTRY));
  expect_refused(r, {std::string("'") + S2FT_STANDIN_NO_ENTRY + "' is not a libs2ft backend module",
                     "s2ft_backend_module_v1"});
}

TEST(BackendLoader, ModuleOfAnotherAbiVersion) {
  const LoadResult r = s2ft::backend::load_module(override_with(S2FT_STANDIN_ABI));
  expect_refused(r, {"ABI version 999",
                     "needs ABI version " + std::to_string(s2ft::backend::kAbiVersion)});
}

TEST(BackendLoader, ModuleOfAnotherLibraryVersion) {
  const LoadResult r = s2ft::backend::load_module(override_with(S2FT_STANDIN_VERSION));
  expect_refused(r, {"built with libs2ft 9.9.9", std::string("this is libs2ft ") + s2ft_version_string()});
}

TEST(BackendLoader, ModuleOfAnotherBackend) {
  const LoadResult r = s2ft::backend::load_module(override_with(S2FT_STANDIN_NAME));
  expect_refused(r, {"is the 'rocm' backend, not the 'cuda' backend"});
}

TEST(BackendLoader, ModuleNextToTheLibraryIsFoundByItsFileName) {
  // The ABI stand-in, found by folder and name as libs2ft_cuda.so.0 would
  // be: it is loaded (then refused for its ABI), so the folder was searched.
  const std::string path = S2FT_STANDIN_ABI;
  const size_t slash = path.rfind('/');
  const LoadResult r = s2ft::backend::load_module(search_in(path.substr(0, slash), path.substr(slash + 1)));
  expect_refused(r, {"'" + path + "' is a libs2ft backend module of ABI version"});
}

TEST(BackendLoader, CudaSearchUsesTheEnvironmentAndTheLibraryFolder) {
  const ModuleSearch s = s2ft::backend::cuda_module_search();
  EXPECT_EQ(s.backend, "cuda");
  EXPECT_EQ(s.label, "CUDA");
  EXPECT_EQ(s.file_name, "libs2ft_cuda.so." + std::to_string(S2FT_VERSION_MAJOR));
  EXPECT_FALSE(s.library_dir.empty());  // dladdr found the code's own file
  const char *env = std::getenv("S2FT_CUDA_BACKEND");
  EXPECT_EQ(s.override_path, env != nullptr ? env : "");
}

}  // namespace

#ifdef S2FT_CUDA_MODULE_PATH
namespace {
// The real module, found where the build put it: it loads; without a GPU
// driver (the machines CI runs on) it reports no devices and makes no
// context, with the runtime's reason.
TEST(BackendLoader, RealModuleLoadsAndReportsAMissingDriver) {
  const LoadResult r = s2ft::backend::load_module(override_with(S2FT_CUDA_MODULE_PATH));
  ASSERT_NE(r.ops, nullptr) << r.error;
  EXPECT_STREQ(r.ops->name, "cuda");
  EXPECT_EQ(r.path, S2FT_CUDA_MODULE_PATH);
  int32_t n = -1;
  const s2ft_status st = r.ops->device_count(&n);
  if (st == S2FT_OK) {  // a machine with a GPU and a driver
    EXPECT_GE(n, 0);
    return;
  }
  EXPECT_EQ(st, S2FT_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(r.ops->last_error()).find("no usable CUDA runtime or driver"), std::string::npos)
      << r.ops->last_error();
  s2ft::backend::Instance *inst = nullptr;
  EXPECT_EQ(r.ops->create(0, 0, &inst), S2FT_ERR_UNSUPPORTED);
  EXPECT_EQ(inst, nullptr);
  EXPECT_NE(std::string(r.ops->last_error()).find("no usable CUDA runtime or driver"), std::string::npos)
      << r.ops->last_error();
}
}  // namespace
#endif
