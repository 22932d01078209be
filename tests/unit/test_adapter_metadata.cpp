// Adapter metadata through the public API: set, read, overwrite and remove
// keys; keys come back in ascending order; every rule on keys and values and
// the entry limit is enforced with a message naming the problem, and a failed
// call changes nothing; metadata survives save -> load (and files without it
// load with none); fusion keeps each input's metadata under "input.<i>."
// within its documented budget. Hostile files with bad metadata entries are
// in test_adapter_file.cpp.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

const s2ft_model_shape kShape{2, 5, 4, 2, 3, 7};

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_adapter_meta_" + std::to_string(getpid()) + "_" + name;
}

std::string file_bytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Adapter {
  s2ft_adapter *a = nullptr;
  explicit Adapter(const char *name = "a", double scale = 1.0) {
    EXPECT_EQ(s2ft_adapter_create(&kShape, name, scale, &a), S2FT_OK) << s2ft_last_error();
  }
  Adapter(const Adapter &) = delete;
  Adapter &operator=(const Adapter &) = delete;
  ~Adapter() { s2ft_adapter_destroy(a); }
};

// Every entry, read with meta_count and meta_at (in their order).
std::vector<std::pair<std::string, std::string>> entries(const s2ft_adapter *a) {
  std::vector<std::pair<std::string, std::string>> out;
  int64_t n = -1;
  EXPECT_EQ(s2ft_adapter_meta_count(a, &n), S2FT_OK) << s2ft_last_error();
  for (int64_t i = 0; i < n; ++i) {
    const char *k = nullptr, *v = nullptr;
    EXPECT_EQ(s2ft_adapter_meta_at(a, i, &k, &v), S2FT_OK) << s2ft_last_error();
    if (k == nullptr || v == nullptr) {
      ADD_FAILURE() << "entry " << i << " has a NULL key or value";
      continue;
    }
    out.emplace_back(k, v);
  }
  return out;
}

std::map<std::string, std::string> as_map(const s2ft_adapter *a) {
  std::map<std::string, std::string> m;
  for (const auto &kv : entries(a)) m.insert(kv);
  return m;
}

// The value of key, or "<absent>".
std::string value_of(const s2ft_adapter *a, const char *key) {
  const char *v = reinterpret_cast<const char *>(0x1);
  EXPECT_EQ(s2ft_adapter_meta(a, key, &v), S2FT_OK) << s2ft_last_error();
  return v == nullptr ? "<absent>" : std::string(v);
}

int64_t count_of(const s2ft_adapter *a) {
  int64_t n = -1;
  EXPECT_EQ(s2ft_adapter_meta_count(a, &n), S2FT_OK) << s2ft_last_error();
  return n;
}

// ---- set / get / remove / count / at -------------------------------------------

TEST(AdapterMeta, ANewAdapterHasNone) {
  Adapter a;
  EXPECT_EQ(count_of(a.a), 0);
  EXPECT_EQ(value_of(a.a, "base_model"), "<absent>");
}

TEST(AdapterMeta, SetReadOverwriteRemove) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "selection_seed", "7"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "base_model", "meta-llama/Llama-3-8B"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "Z-upper.case_1", "caf\xc3\xa9 \xe2\x9c\x93\n\ttabs"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "empty", ""));
  EXPECT_EQ(count_of(a.a), 4);
  // Ascending byte order: upper case before lower case.
  const std::vector<std::pair<std::string, std::string>> want = {{"Z-upper.case_1", "caf\xc3\xa9 \xe2\x9c\x93\n\ttabs"},
                                                                 {"base_model", "meta-llama/Llama-3-8B"},
                                                                 {"empty", ""},
                                                                 {"selection_seed", "7"}};
  EXPECT_EQ(entries(a.a), want);
  EXPECT_EQ(value_of(a.a, "base_model"), "meta-llama/Llama-3-8B");
  EXPECT_EQ(value_of(a.a, "empty"), "");
  EXPECT_EQ(value_of(a.a, "base"), "<absent>");

  // A stored value stays put while other keys change.
  const char *kept = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_meta(a.a, "base_model", &kept));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "zz", "later"));
  EXPECT_STREQ(kept, "meta-llama/Llama-3-8B");

  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "selection_seed", "8"));  // overwrite
  EXPECT_EQ(value_of(a.a, "selection_seed"), "8");
  EXPECT_EQ(count_of(a.a), 5);
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "zz", nullptr));  // remove
  EXPECT_EQ(value_of(a.a, "zz"), "<absent>");
  EXPECT_EQ(count_of(a.a), 4);
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "zz", nullptr));  // removing an absent key is fine
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "never-set", nullptr));
  EXPECT_EQ(count_of(a.a), 4);

  // meta_at's outputs are optional.
  const char *k = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_meta_at(a.a, 1, &k, nullptr));
  EXPECT_STREQ(k, "base_model");
  const char *v = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_meta_at(a.a, 3, nullptr, &v));
  EXPECT_STREQ(v, "8");
  ASSERT_S2FT_OK(s2ft_adapter_meta_at(a.a, 0, nullptr, nullptr));
}

TEST(AdapterMeta, EntriesAndRenamingLeaveMetadataAlone) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "k", "v"));
  HostMatrix d(S2FT_F32, kShape.d_model, 1);
  const int64_t line = 2;
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, S2FT_TARGET_DOWN, &line, 1, &d.t, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set_info(a.a, "renamed", 2.0));
  EXPECT_EQ(value_of(a.a, "k"), "v");
  EXPECT_EQ(count_of(a.a), 1);
}

// ---- the rules ------------------------------------------------------------------

TEST(AdapterMeta, KeyRules) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "keep", "1"));
  const std::string k255(255, 'k');
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, k255.c_str(), "at the limit"));
  EXPECT_EQ(value_of(a.a, k255.c_str()), "at the limit");
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "aZ09._-", "every kind of character"));

  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "", "x"), S2FT_ERR_INVALID_ARGUMENT, "key is empty");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, std::string(256, 'k').c_str(), "x"), S2FT_ERR_INVALID_ARGUMENT,
                    "key is longer than 255 bytes");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, std::string(100000, 'k').c_str(), "x"), S2FT_ERR_INVALID_ARGUMENT,
                    "longer than 255");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "has space", "x"), S2FT_ERR_INVALID_ARGUMENT, "' ' at byte 3");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "a/b", "x"), S2FT_ERR_INVALID_ARGUMENT, "'/' at byte 1");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "a=b", "x"), S2FT_ERR_INVALID_ARGUMENT, "'='");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "a:b", "x"), S2FT_ERR_INVALID_ARGUMENT, "':'");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "quote\"", "x"), S2FT_ERR_INVALID_ARGUMENT, "byte 0x22");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "tab\t", "x"), S2FT_ERR_INVALID_ARGUMENT, "byte 0x09");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "caf\xc3\xa9", "x"), S2FT_ERR_INVALID_ARGUMENT, "byte 0xc3 at byte 3");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "\xff", "x"), S2FT_ERR_INVALID_ARGUMENT, "byte 0xff");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "bad key", nullptr), S2FT_ERR_INVALID_ARGUMENT, "' '");
  // The message says which characters are allowed.
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "a b", "x"), S2FT_ERR_INVALID_ARGUMENT, "A-Z, a-z, 0-9");
  EXPECT_EQ(count_of(a.a), 3);
  EXPECT_EQ(value_of(a.a, "keep"), "1");
}

TEST(AdapterMeta, ValueRules) {
  Adapter a;
  const std::string v64k(65536, 'v');
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "big", v64k.c_str()));
  EXPECT_EQ(value_of(a.a, "big"), v64k);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "big", std::string(65537, 'v').c_str()), S2FT_ERR_INVALID_ARGUMENT,
                    "the value of key \"big\" is longer than 65536 bytes");
  EXPECT_EQ(value_of(a.a, "big"), v64k);  // unchanged
  for (const char *bad : {"\xff", "ok\x80", "\xc0\xaf" /* overlong '/' */, "\xed\xa0\x80" /* surrogate */,
                          "\xe2\x82" /* truncated */, "\xf4\x90\x80\x80" /* above U+10FFFF */}) {
    SCOPED_TRACE(bad);
    EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "utf", bad), S2FT_ERR_INVALID_ARGUMENT,
                      "the value of key \"utf\" is not valid UTF-8");
  }
  EXPECT_EQ(value_of(a.a, "utf"), "<absent>");
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "utf", "\xf0\x9f\x98\x80 \xe4\xb8\xad"));
  EXPECT_EQ(count_of(a.a), 2);
}

TEST(AdapterMeta, AtMost256Keys) {
  Adapter a;
  for (int i = 0; i < 256; ++i) ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, ("k" + std::to_string(i)).c_str(), "v"));
  EXPECT_EQ(count_of(a.a), 256);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "one_more", "v"), S2FT_ERR_INVALID_ARGUMENT, "already has 256");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, "one_more", "v"), S2FT_ERR_INVALID_ARGUMENT, "\"one_more\"");
  EXPECT_EQ(count_of(a.a), 256);
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "k7", "overwriting is fine at the limit"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "k8", nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "one_more", "v"));  // room again
  EXPECT_EQ(count_of(a.a), 256);
}

TEST(AdapterMeta, NullArgumentsAndBadIndex) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "k", "v"));
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(nullptr, "k", "v"), S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(a.a, nullptr, "v"), S2FT_ERR_INVALID_ARGUMENT, "key is NULL");
  const char *v = reinterpret_cast<const char *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_meta(nullptr, "k", &v), S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
  EXPECT_EQ(v, nullptr);
  v = reinterpret_cast<const char *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_meta(a.a, nullptr, &v), S2FT_ERR_INVALID_ARGUMENT, "key is NULL");
  EXPECT_EQ(v, nullptr);
  EXPECT_S2FT_ERROR(s2ft_adapter_meta(a.a, "k", nullptr), S2FT_ERR_INVALID_ARGUMENT, "value is NULL");
  int64_t n = -1;
  EXPECT_S2FT_ERROR(s2ft_adapter_meta_count(nullptr, &n), S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_meta_count(a.a, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count is NULL");
  const char *k = reinterpret_cast<const char *>(0x1);
  v = reinterpret_cast<const char *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_meta_at(nullptr, 0, &k, &v), S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
  EXPECT_EQ(k, nullptr);
  EXPECT_EQ(v, nullptr);
  EXPECT_S2FT_ERROR(s2ft_adapter_meta_at(a.a, 1, &k, &v), S2FT_ERR_INVALID_ARGUMENT, "index 1 is out of range [0, 1)");
  EXPECT_S2FT_ERROR(s2ft_adapter_meta_at(a.a, -1, &k, &v), S2FT_ERR_INVALID_ARGUMENT, "index -1");
  Adapter empty;
  EXPECT_S2FT_ERROR(s2ft_adapter_meta_at(empty.a, 0, &k, &v), S2FT_ERR_INVALID_ARGUMENT, "[0, 0)");
}

TEST(AdapterMeta, LookingUpAKeyNoAdapterCanHoldIsAbsent) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, std::string(255, 'k').c_str(), "v"));
  EXPECT_EQ(value_of(a.a, std::string(256, 'k').c_str()), "<absent>");
  EXPECT_EQ(value_of(a.a, "not a key"), "<absent>");
  EXPECT_EQ(value_of(a.a, ""), "<absent>");
}

// ---- files ----------------------------------------------------------------------

TEST(AdapterMetaFile, SaveThenLoadKeepsEveryEntry) {
  Adapter a("with-meta", 0.5);
  std::map<std::string, std::string> want = {{"base_model", "org/model"},
                                             {"created", "2024-05-01T12:00:00Z"},
                                             {"empty", ""},
                                             {"utf8", "caf\xc3\xa9 \"quoted\" \\ \n"},
                                             {"big", std::string(65536, 'b')},
                                             {std::string(255, 'k'), "long key"}};
  for (int i = 0; i < 250; ++i) want["n" + std::to_string(i)] = std::to_string(i);  // 256 in all
  ASSERT_EQ(want.size(), 256u);
  for (const auto &kv : want) ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, kv.first.c_str(), kv.second.c_str()));
  const std::string path = temp_path("meta.safetensors"), again = temp_path("meta-again.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(a.a, path.c_str()));

  // In the file: each key under "meta.", beside the format's own keys.
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  for (const auto &kv : want) EXPECT_EQ(f.metadata().at("meta." + kv.first), kv.second) << kv.first;
  EXPECT_EQ(f.metadata().at("format_version"), "2");
  EXPECT_EQ(f.metadata().at("name"), "with-meta");

  s2ft_adapter *b = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &b));
  EXPECT_EQ(as_map(b), want);
  EXPECT_STREQ(s2ft_adapter_name(b), "with-meta");
  // Saving the loaded adapter writes the same bytes.
  ASSERT_S2FT_OK(s2ft_adapter_save(b, again.c_str()));
  s2ft_adapter_destroy(b);
  EXPECT_EQ(file_bytes(path), file_bytes(again));
  std::remove(path.c_str());
  std::remove(again.c_str());
}

TEST(AdapterMetaFile, WithoutMetadataTheFileHasNoMetaKeysAndLoadsWithNone) {
  Adapter a;
  const std::string path = temp_path("no-meta.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(a.a, path.c_str()));
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  for (const auto &kv : f.metadata()) EXPECT_NE(kv.first.rfind("meta.", 0), 0u) << kv.first;
  s2ft_adapter *b = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &b));
  EXPECT_EQ(count_of(b), 0);
  s2ft_adapter_destroy(b);
  std::remove(path.c_str());
}

// ---- fusion ---------------------------------------------------------------------

TEST(AdapterMetaFuse, KeepsEachInputsMetadataWithNameAndWeight) {
  Adapter a("first", 0.5), b("second", 2.0), plain("plain", 1.0);
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "base_model", "org/model"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "created", "2024-05-01T12:00:00Z"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(b.a, "base_model", "org/model"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(b.a, "selection_seed", "7"));
  const s2ft_adapter *in[] = {a.a, b.a, plain.a};

  Adapter f("unused");
  s2ft_adapter_destroy(f.a);
  f.a = nullptr;
  const double w[] = {0.25, -1.5, 0.1};
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, w, 3, &f.a));
  const std::map<std::string, std::string> want = {{"input.0.base_model", "org/model"},
                                                   {"input.0.created", "2024-05-01T12:00:00Z"},
                                                   {"input.0.name", "first"},
                                                   {"input.0.weight", "0.25"},
                                                   {"input.1.base_model", "org/model"},
                                                   {"input.1.name", "second"},
                                                   {"input.1.selection_seed", "7"},
                                                   {"input.1.weight", "-1.5"},
                                                   {"input.2.name", "plain"},
                                                   {"input.2.weight", "0.10000000000000001"}};  // %.17g: reads back exactly
  EXPECT_EQ(as_map(f.a), want);

  // weights NULL: each adapter's default scale.
  Adapter g("unused");
  s2ft_adapter_destroy(g.a);
  g.a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, nullptr, 2, &g.a));
  EXPECT_EQ(value_of(g.a, "input.0.weight"), "0.5");
  EXPECT_EQ(value_of(g.a, "input.1.weight"), "2");
  EXPECT_EQ(value_of(g.a, "input.2.name"), "<absent>");
  EXPECT_EQ(count_of(g.a), 8);

  // Fusing a fused adapter nests its keys, and the metadata survives a file.
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(g.a, "library_version", "0.1.0"));
  const s2ft_adapter *outer_in[] = {plain.a, g.a};
  Adapter h("unused");
  s2ft_adapter_destroy(h.a);
  h.a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(outer_in, nullptr, 2, &h.a));
  EXPECT_EQ(value_of(h.a, "input.1.input.1.selection_seed"), "7");
  EXPECT_EQ(value_of(h.a, "input.1.input.0.name"), "first");
  EXPECT_EQ(value_of(h.a, "input.1.library_version"), "0.1.0");
  EXPECT_EQ(value_of(h.a, "input.1.name"), "first+second");
  EXPECT_EQ(value_of(h.a, "input.1.weight"), "1");
  EXPECT_EQ(value_of(h.a, "input.omitted"), "<absent>");
  const std::string path = temp_path("fused.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(h.a, path.c_str()));
  s2ft_adapter *loaded = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &loaded));
  EXPECT_EQ(as_map(loaded), as_map(h.a));
  s2ft_adapter_destroy(loaded);
  std::remove(path.c_str());
}

TEST(AdapterMetaFuse, InputsWithoutMetadataGetNameAndWeightOnly) {
  Adapter a("x"), b("");
  const s2ft_adapter *in[] = {a.a, b.a};
  Adapter f("unused");
  s2ft_adapter_destroy(f.a);
  f.a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, nullptr, 2, &f.a));
  const std::map<std::string, std::string> want = {
      {"input.0.name", "x"}, {"input.0.weight", "1"}, {"input.1.name", ""}, {"input.1.weight", "1"}};
  EXPECT_EQ(as_map(f.a), want);
}

// A fused adapter made of `n` metadata-free inputs (the caller destroys it).
s2ft_adapter *fuse_plain(int n) {
  std::vector<s2ft_adapter *> owned(static_cast<size_t>(n), nullptr);
  for (auto &p : owned) EXPECT_EQ(s2ft_adapter_create(&kShape, "p", 1.0, &p), S2FT_OK);
  std::vector<const s2ft_adapter *> in(owned.begin(), owned.end());
  s2ft_adapter *f = nullptr;
  EXPECT_EQ(s2ft_adapter_fuse(in.data(), nullptr, n, &f), S2FT_OK) << s2ft_last_error();
  for (auto *p : owned) s2ft_adapter_destroy(p);
  return f;
}

TEST(AdapterMetaFuse, ManyInputsStayWithinTheBudgetAndNeverFail) {
  // 120 inputs: 240 names and weights, exactly the budget: all kept.
  s2ft_adapter *f = fuse_plain(120);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(count_of(f), 240);
  EXPECT_EQ(value_of(f, "input.119.weight"), "1");
  EXPECT_EQ(value_of(f, "input.omitted"), "<absent>");
  // 16 keys stay free for the caller.
  for (int i = 0; i < 16; ++i) ASSERT_S2FT_OK(s2ft_adapter_set_meta(f, ("own" + std::to_string(i)).c_str(), "v"));
  EXPECT_S2FT_ERROR(s2ft_adapter_set_meta(f, "one_more", "v"), S2FT_ERR_INVALID_ARGUMENT, "256");
  s2ft_adapter_destroy(f);

  // 121 inputs: 242 wanted; the first 239 are kept and the count takes the last place.
  f = fuse_plain(121);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(count_of(f), 240);
  EXPECT_EQ(value_of(f, "input.omitted"), "3");
  EXPECT_EQ(value_of(f, "input.119.name"), "p");  // entries 238 and 239 of 0..241 ...
  EXPECT_EQ(value_of(f, "input.119.weight"), "<absent>");  // ... are name 119 and weight 119: the latter is left out
  EXPECT_EQ(value_of(f, "input.120.name"), "<absent>");
  s2ft_adapter_destroy(f);

  // Far more inputs than keys: still a fuse, still 240 keys.
  f = fuse_plain(1000);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(count_of(f), 240);
  EXPECT_EQ(value_of(f, "input.omitted"), std::to_string(2000 - 239));
  s2ft_adapter_destroy(f);
}

TEST(AdapterMetaFuse, NamesAndWeightsComeBeforeTheInputsKeys) {
  Adapter a("a"), b("b");
  for (int i = 0; i < 256; ++i) ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, ("k" + std::to_string(1000 + i)).c_str(), "v"));
  const s2ft_adapter *in[] = {a.a, b.a};
  Adapter f("unused");
  s2ft_adapter_destroy(f.a);
  f.a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, nullptr, 2, &f.a));
  EXPECT_EQ(count_of(f.a), 240);
  EXPECT_EQ(value_of(f.a, "input.1.name"), "b");  // the second input is still named
  EXPECT_EQ(value_of(f.a, "input.1.weight"), "1");
  EXPECT_EQ(value_of(f.a, "input.0.k1000"), "v");  // the first keys in order are kept
  EXPECT_EQ(value_of(f.a, "input.0.k1234"), "v");  // 4 + 235 = 239
  EXPECT_EQ(value_of(f.a, "input.0.k1235"), "<absent>");
  EXPECT_EQ(value_of(f.a, "input.omitted"), std::to_string(256 - 235));
}

TEST(AdapterMetaFuse, KeysThatWouldBeTooLongAreLeftOutAndCounted) {
  Adapter a("a");
  const std::string fits(255 - 8, 'f'), too_long(255 - 7, 't');  // "input.0." is 8 bytes
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, fits.c_str(), "kept"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, too_long.c_str(), "left out"));
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(a.a, "short", "kept"));
  const s2ft_adapter *in[] = {a.a};
  Adapter f("unused");
  s2ft_adapter_destroy(f.a);
  f.a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, nullptr, 1, &f.a));
  EXPECT_EQ(value_of(f.a, ("input.0." + fits).c_str()), "kept");
  EXPECT_EQ(value_of(f.a, "input.0.short"), "kept");
  EXPECT_EQ(value_of(f.a, "input.omitted"), "1");
  EXPECT_EQ(count_of(f.a), 5);  // name, weight, two keys, the count

  // Fusing again and again nests until the keys no longer fit; fusion never fails.
  s2ft_adapter *cur = f.a;
  f.a = nullptr;
  for (int depth = 0; depth < 40; ++depth) {
    const s2ft_adapter *one[] = {cur};
    s2ft_adapter *next = nullptr;
    ASSERT_S2FT_OK(s2ft_adapter_fuse(one, nullptr, 1, &next));
    s2ft_adapter_destroy(cur);
    cur = next;
  }
  // The deepest levels are gone (each level adds 8 bytes to a key), the
  // rest is kept, and each level counts what it left out.
  const auto all = entries(cur);
  EXPECT_LE(all.size(), 240u);
  for (const auto &kv : all) EXPECT_LE(kv.first.size(), 255u) << kv.first;
  EXPECT_EQ(value_of(cur, "input.0.name"), "a");
  EXPECT_EQ(value_of(cur, "input.omitted"), "2");  // the deepest name and weight that no longer fit
  EXPECT_EQ(value_of(cur, "input.0.input.omitted"), "2");
  s2ft_adapter_destroy(cur);
}

}  // namespace
