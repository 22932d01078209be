// Hostile adapter files: a corpus of broken files, each built here from a
// valid one by changing one thing (in the container, the metadata or the
// tensors), must give S2FT_ERR_FORMAT (S2FT_ERR_IO when unreadable) with a
// message naming the problem, and never read out of bounds (run under the
// sanitizer build too).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "support/adapter_meta.hpp"
#include "support/adapter_file_spec.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

const s2ft_model_shape kShape{2, 5, 4, 2, 3, 7};

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_adapter_file_" + std::to_string(getpid()) + "_" + name;
}

void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

const std::string kDown0 = "model.layers.0.mlp.down_proj";  // DOWN of layer 0: lines {1, 4, 6}
const std::string kV1 = "model.layers.1.self_attn.v_proj";  // V of layer 1: lines {3, 4, 5}

// Saves an adapter with DOWN in layer 0 and V in layer 1 (fingerprinted)
// through the library and reads the file back as parts.
Spec valid_spec() {
  s2ft_adapter *a = nullptr;
  EXPECT_EQ(s2ft_adapter_create(&kShape, "valid", 0.5, &a), S2FT_OK);
  Random rng(1);
  HostMatrix down_base(S2FT_BF16, kShape.d_model, kShape.d_ff), v_base(S2FT_BF16, 6, kShape.d_model);
  down_base.fill_random(rng);
  v_base.fill_random(rng);
  HostMatrix dd(S2FT_F32, kShape.d_model, 3), dv(S2FT_F32, 3, kShape.d_model);
  dd.fill_random(rng);
  dv.fill_random(rng);
  const int64_t down_lines[] = {6, 1, 4}, v_lines[] = {3, 4, 5};
  EXPECT_EQ(s2ft_adapter_set(a, 0, S2FT_TARGET_DOWN, down_lines, 3, &dd.t, &down_base.t), S2FT_OK);
  EXPECT_EQ(s2ft_adapter_set(a, 1, S2FT_TARGET_V, v_lines, 3, &dv.t, &v_base.t), S2FT_OK);
  Spec s = saved_spec(a, temp_path("valid.safetensors"));
  s2ft_adapter_destroy(a);
  return s;
}

// Loads `bytes` as an adapter file and expects `status` with `needle` in the message.
void expect_rejected(const std::vector<uint8_t> &bytes, const std::string &case_name, const std::string &needle,
                     s2ft_status status = S2FT_ERR_FORMAT) {
  SCOPED_TRACE(case_name);
  const std::string path = temp_path(case_name + ".safetensors");
  write_bytes(path, bytes);
  s2ft_adapter *a = reinterpret_cast<s2ft_adapter *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_load(path.c_str(), &a), status, needle);
  EXPECT_EQ(a, nullptr);
  s2ft_adapter_destroy(a == reinterpret_cast<s2ft_adapter *>(0x1) ? nullptr : a);
  std::remove(path.c_str());
}

void expect_rejected(const Spec &s, const std::string &case_name, const std::string &needle) {
  expect_rejected(s.serialize(), case_name, needle);
}

// [u64 N][header JSON padded to N][data]
std::vector<uint8_t> raw_file(const std::string &header, const std::vector<uint8_t> &data, uint64_t n_override = 0) {
  std::vector<uint8_t> out;
  const uint64_t n = n_override ? n_override : header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

template <typename T>
void put(std::vector<uint8_t> &bytes, size_t index, T v) {
  std::memcpy(bytes.data() + index * sizeof(T), &v, sizeof(T));
}

TEST(AdapterFileCorpus, TheValidFileLoads) {
  const Spec s = valid_spec();
  const std::string path = temp_path("ok.safetensors");
  write_bytes(path, s.serialize());
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &a));
  int64_t n = 0;
  int64_t lines[3];
  ASSERT_S2FT_OK(s2ft_adapter_lines(a, 0, S2FT_TARGET_DOWN, lines, nullptr, 3, &n));
  EXPECT_EQ(std::vector<int64_t>(lines, lines + n), (std::vector<int64_t>{1, 4, 6}));
  s2ft_adapter_destroy(a);
  std::remove(path.c_str());
  // The metadata the format documents.
  EXPECT_EQ(s.meta.at("format"), "s2ft-adapter");
  EXPECT_EQ(s.meta.at("format_version"), "2");
  EXPECT_EQ(s.meta.at("targets"), "V,DOWN");
  EXPECT_EQ(s.meta.at("n_kv_heads"), "2");
  EXPECT_EQ(s.meta.at("default_scale"), "0.5");
  const auto slices = nlohmann::json::parse(s.meta.at("slices"));
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[0]["tensor"], kDown0);
  EXPECT_EQ(slices[0]["axis"], "columns");
  EXPECT_EQ(slices[0]["k"], 3);
  EXPECT_EQ(slices[0]["fingerprint"].get<std::string>().size(), 16u);
}

// Metadata keys outside the format's table and outside the adapter's own
// "meta." keys (a tool's own) are accepted and not kept: the adapter object
// has no place for them, so a file saved from the loaded adapter has exactly
// the documented keys.
TEST(AdapterFileCorpus, OtherMetadataKeysAreAcceptedAndNotKept) {
  Spec s = valid_spec();
  const std::set<std::string> documented = [&] {
    std::set<std::string> keys;
    for (const auto &kv : s.meta) keys.insert(kv.first);
    return keys;
  }();
  s.meta["trained_by"] = "a tool of its own";
  s.meta["base_model"] = "stories260K";
  const std::string path = temp_path("extra-keys.safetensors");
  write_bytes(path, s.serialize());
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &a));
  const std::string resaved = temp_path("extra-keys-resaved.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(a, resaved.c_str()));
  s2ft_adapter_destroy(a);
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(resaved);
  std::set<std::string> keys;
  for (const auto &kv : f.metadata()) keys.insert(kv.first);
  EXPECT_EQ(keys, documented);
  std::remove(path.c_str());
  std::remove(resaved.c_str());
}

// ---- the container (checked by the safetensors layer) ---------------------------------

TEST(AdapterFileCorpus, Container) {
  const std::vector<uint8_t> good = valid_spec().serialize();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | good[static_cast<size_t>(i)];

  std::vector<uint8_t> b = good;
  put<uint64_t>(b, 0, good.size());  // header length past the end
  expect_rejected(b, "header_past_end", "runs past the end");
  b = good;
  put<uint64_t>(b, 0, uint64_t{1} << 40);
  expect_rejected(b, "absurd_header", "limit");
  for (size_t cut : {size_t{0}, size_t{5}, size_t{8}, static_cast<size_t>(8 + n / 2), static_cast<size_t>(8 + n),
                     good.size() - 1}) {
    std::vector<uint8_t> t(good.begin(), good.begin() + static_cast<long>(cut));
    expect_rejected(t, "truncated_at_" + std::to_string(cut), "not a valid safetensors file");
  }

  const std::string meta = R"("__metadata__":{"format":"s2ft-adapter"})";
  const std::vector<uint8_t> data(64, 0);
  expect_rejected(raw_file("{" + meta + R"(,"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)" +
                               R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                           data),
                  "overlapping_offsets", "overlap");
  expect_rejected(raw_file("{" + meta + R"(,"a":{"dtype":"F32","shape":[4],"data_offsets":[60,76]}})", data),
                  "offsets_out_of_range", "past the data buffer");
  expect_rejected(raw_file("{" + meta + R"(,"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})", data),
                  "unknown_dtype", "unknown dtype");
  expect_rejected(raw_file("{" + meta + R"(,"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})", data),
                  "shape_byte_mismatch", "bytes");
  expect_rejected(raw_file("{" + meta + R"(,"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)" +
                               R"("a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})",
                           data),
                  "duplicate_tensor_names", "more than once");
  expect_rejected(raw_file("{not json", data), "bad_json", "JSON");
}

TEST(AdapterFileCorpus, UnreadableIsAnIoError) {
  s2ft_adapter *a = nullptr;
  EXPECT_S2FT_ERROR(s2ft_adapter_load(temp_path("does_not_exist").c_str(), &a), S2FT_ERR_IO, "does_not_exist");
}

// ---- metadata ------------------------------------------------------------------------

TEST(AdapterFileCorpus, Metadata) {
  const Spec good = valid_spec();
  auto with = [&](const std::string &key, const std::string &value) {
    Spec s = good;
    s.meta[key] = value;
    return s;
  };
  auto without = [&](const std::string &key) {
    Spec s = good;
    s.meta.erase(key);
    return s;
  };
  expect_rejected(with("format", "s2ft-selection"), "wrong_format", "\"format\"");
  expect_rejected(with("format_version", "5"), "wrong_version", "\"format_version\"");
  // Version 1 hashed dtype and bytes: its fingerprints cannot be checked, and the message says what to do.
  expect_rejected(with("format_version", "1"), "version_1", "format version 1, whose base fingerprints");
  expect_rejected(with("format_version", "1"), "version_1_remedy", "make the adapter again");
  for (const char *key : {"format", "format_version", "name", "default_scale", "targets", "slices", "axes", "n_layers",
                          "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff"})
    expect_rejected(without(key), std::string("missing_") + key, std::string("no \"") + key + "\"");
  expect_rejected(with("n_kv_heads", "3"), "shape_not_divisible", "n_kv_heads");
  expect_rejected(with("d_model", "0"), "shape_zero", "\"d_model\"");
  expect_rejected(with("d_model", "-5"), "shape_negative", "\"d_model\"");
  expect_rejected(with("d_model", "5x"), "shape_trailing", "\"d_model\"");
  expect_rejected(with("d_model", " 5"), "shape_space", "\"d_model\"");
  expect_rejected(with("d_model", "05"), "shape_leading_zero", "\"d_model\"");
  expect_rejected(with("d_model", "4294967301"), "shape_overflow", "\"d_model\"");
  expect_rejected(with("n_layers", "2000000000"), "absurd_layers", "\"n_layers\"");
  expect_rejected(with("default_scale", "nan"), "scale_nan", "\"default_scale\"");
  expect_rejected(with("default_scale", "1e999"), "scale_inf", "\"default_scale\"");
  expect_rejected(with("default_scale", "0.5 "), "scale_trailing", "\"default_scale\"");
  expect_rejected(with("targets", "V,DOWN,UP"), "targets_extra", "\"targets\"");
  expect_rejected(with("targets", "DOWN"), "targets_missing", "\"targets\"");
  expect_rejected(with("targets", "V,Q"), "targets_unknown", "unknown target");
  expect_rejected(with("targets", "V,V,DOWN"), "targets_twice", "twice");
  expect_rejected(with("axes", "O:rows,V:rows,DOWN:columns,UP:rows"), "wrong_axes", "\"axes\"");
  expect_rejected(with("name", std::string(256, 'n')), "name_too_long", "\"name\"");
  expect_rejected(with("name", std::string("a\0b", 3)), "name_nul", "\"name\"");
}

TEST(AdapterFileCorpus, SlicesMetadata) {
  const Spec good = valid_spec();
  const nlohmann::json slices = nlohmann::json::parse(good.meta.at("slices"));
  auto with_slices = [&](const nlohmann::json &j) {
    Spec s = good;
    s.meta["slices"] = j.dump();
    return s;
  };
  nlohmann::json j = slices;
  j[0]["fingerprint"] = "0123456789abcdef";
  expect_rejected(with_slices(j), "slices_fingerprint", "fingerprint");
  j = slices;
  j[1]["k"] = 2;
  expect_rejected(with_slices(j), "slices_k", "k = 2");
  j = slices;
  j[0]["axis"] = "rows";
  expect_rejected(with_slices(j), "slices_axis", "axis");
  j = slices;
  j[0]["target"] = "UP";
  expect_rejected(with_slices(j), "slices_target", "target");
  j = slices;
  j.erase(1);
  expect_rejected(with_slices(j), "slices_missing", "lists 1 slices");
  j = slices;
  j[1] = slices[0];
  expect_rejected(with_slices(j), "slices_duplicate", "second time");
  j = slices;
  j[0]["tensor"] = "model.layers.1.mlp.up_proj";
  expect_rejected(with_slices(j), "slices_unknown_tensor", "not a stored slice");
  j = slices;
  j[0].erase("k");
  expect_rejected(with_slices(j), "slices_no_k", "\"slices\"[0]");
  j = slices;
  j[0]["k"] = "3";
  expect_rejected(with_slices(j), "slices_k_string", "integer \"k\"");
  expect_rejected(with_slices(nlohmann::json::object()), "slices_not_array", "array");
  Spec s = good;
  s.meta["slices"] = "[{";
  expect_rejected(s, "slices_bad_json", "malformed JSON");
  s.meta["slices"] = "[[[[[[[[1]]]]]]]]";
  expect_rejected(s, "slices_deep", "nesting is deeper");
  // A duplicate key would make an object of six members pass as five.
  std::string dup = good.meta.at("slices");
  const size_t at = dup.find("\"axis\"");
  ASSERT_NE(at, std::string::npos);
  dup.insert(at, "\"axis\":\"rows\",");
  s.meta["slices"] = dup;
  expect_rejected(s, "slices_duplicate_key", "JSON has the key \"axis\" more than once");
}

// ---- the adapter's own metadata ("meta.<key>") ---------------------------------------

// Loads the spec's file and returns the adapter's metadata (key -> value).
std::map<std::string, std::string> loaded_meta(const Spec &s, const std::string &case_name) {
  const std::string path = temp_path(case_name + ".safetensors");
  write_bytes(path, s.serialize());
  std::map<std::string, std::string> out = s2ft_test::adapter_file_meta(path);
  std::remove(path.c_str());
  return out;
}

TEST(AdapterFileCorpus, MetaEntriesLoadAsTheAdaptersMetadata) {
  Spec s = valid_spec();
  EXPECT_TRUE(loaded_meta(s, "meta_none").empty());  // a file without any: no metadata
  s.meta["meta.base_model"] = "org/model";
  s.meta["meta.empty"] = "";
  s.meta["meta." + std::string(255, 'k')] = "longest key";
  s.meta["meta.big"] = std::string(65536, 'v');
  s.meta["metadata"] = "not prefixed: ignored";
  s.meta["meta"] = "not prefixed either";
  s.meta["base_model"] = "ignored too";
  const std::map<std::string, std::string> want = {{"base_model", "org/model"},
                                                   {"big", std::string(65536, 'v')},
                                                   {"empty", ""},
                                                   {std::string(255, 'k'), "longest key"}};
  EXPECT_EQ(loaded_meta(s, "meta_some"), want);
  // 256 entries are the most an adapter holds, and load.
  Spec full = valid_spec();
  for (int i = 0; i < 256; ++i) full.meta["meta.k" + std::to_string(i)] = "v";
  EXPECT_EQ(loaded_meta(full, "meta_256").size(), 256u);
}

TEST(AdapterFileCorpus, BadMetaEntries) {
  const Spec good = valid_spec();
  auto with = [&](const std::string &key, const std::string &value) {
    Spec s = good;
    s.meta[key] = value;
    return s;
  };
  expect_rejected(with("meta.", "x"), "meta_empty_key", "metadata \"meta.\": the key after \"meta.\" is empty");
  expect_rejected(with("meta." + std::string(256, 'k'), "x"), "meta_long_key", "is longer than 255 bytes");
  expect_rejected(with("meta.has space", "x"), "meta_space", "the key after \"meta.\" holds ' ' at byte 3");
  expect_rejected(with("meta.a/b", "x"), "meta_slash", "'/'");
  expect_rejected(with("meta.caf\xc3\xa9", "x"), "meta_non_ascii_key", "byte 0xc3");
  expect_rejected(with("meta.nl\n", "x"), "meta_newline_key", "byte 0x0a");
  expect_rejected(with("meta.k", std::string(65537, 'v')), "meta_long_value",
                  "metadata \"meta.k\": the value is longer than 65536 bytes");
  expect_rejected(with("meta.k", std::string("a\0b", 3)), "meta_nul_value", "the value holds a NUL character");
  Spec many = good;
  for (int i = 0; i < 257; ++i) many.meta["meta.k" + std::to_string(i)] = "v";
  expect_rejected(many, "meta_257", "more than 256 \"meta.\" keys");
  // Invalid UTF-8 is refused by the container's JSON reader before anything else.
  std::vector<uint8_t> bytes = with("meta.k", "XXXX").serialize();
  const std::string marker = "\"XXXX\"";
  auto it = std::search(bytes.begin(), bytes.end(), marker.begin(), marker.end());
  ASSERT_NE(it, bytes.end());
  *(it + 1) = 0xff;
  expect_rejected(bytes, "meta_bad_utf8", "invalid UTF-8");
}

// ---- tensors -------------------------------------------------------------------------

TEST(AdapterFileCorpus, TensorNamesAndParts) {
  const Spec good = valid_spec();
  for (const char *suffix : {".s2ft_lines", ".s2ft_delta", ".s2ft_base_fingerprint"}) {
    Spec s = good;
    s.erase(kDown0 + suffix);
    expect_rejected(s, std::string("missing") + suffix, kDown0 + suffix + "\" is missing");
  }
  for (const std::string &name :
       {std::string("model.layers.0.mlp.gate_proj.s2ft_delta"), std::string("model.layers.2.mlp.down_proj.s2ft_lines"),
        std::string("model.layers.00.mlp.down_proj.s2ft_lines"), std::string("model.layers.0.mlp.down_proj.weight"),
        std::string("lm_head.s2ft_lines"), std::string("model.layers.99999999999.mlp.down_proj.s2ft_lines")}) {
    Spec s = good;
    s.tensors.push_back(Tensor{name, "I64", {1}, std::vector<uint8_t>(8, 0)});
    expect_rejected(s, "unknown_name_" + std::to_string(name.size()), "is not an adapter tensor");
  }
}

TEST(AdapterFileCorpus, TensorDtypesAndShapes) {
  const Spec good = valid_spec();
  {
    Spec s = good;
    Tensor &t = s.find(kDown0 + ".s2ft_lines");
    t.dtype = "I32";
    t.shape = {6};
    expect_rejected(s, "lines_dtype", "expected I64");
  }
  {
    Spec s = good;
    Tensor &t = s.find(kDown0 + ".s2ft_delta");
    t.dtype = "F16";
    t.shape = {kShape.d_model, 6};  // the same 60 bytes
    expect_rejected(s, "delta_dtype", "expected F32");
  }
  {
    Spec s = good;
    s.find(kDown0 + ".s2ft_base_fingerprint").dtype = "I64";
    expect_rejected(s, "fingerprint_dtype", "expected U64");
  }
  {
    Spec s = good;  // k mismatch: 2 lines and fingerprints, delta still [d_model, 3]
    for (const char *suffix : {".s2ft_lines", ".s2ft_base_fingerprint"}) {
      Tensor &t = s.find(kDown0 + suffix);
      t.shape = {2};
      t.bytes.resize(16);
    }
    expect_rejected(s, "k_mismatch_lines_delta", "expected [5, 2]");
  }
  {
    Spec s = good;
    Tensor &t = s.find(kDown0 + ".s2ft_base_fingerprint");
    t.shape = {2};
    t.bytes.resize(16);
    expect_rejected(s, "k_mismatch_fingerprint", "must have shape [3]");
  }
  {
    Spec s = good;  // row layout for a column target
    s.find(kDown0 + ".s2ft_delta").shape = {3, kShape.d_model};
    expect_rejected(s, "delta_transposed", "expected [5, 3]");
  }
  {
    Spec s = good;
    s.find(kV1 + ".s2ft_delta").shape = {15};
    expect_rejected(s, "delta_rank", "expected [3, 5]");
  }
  {
    Spec s = good;
    s.find(kDown0 + ".s2ft_lines").shape = {3, 1};
    expect_rejected(s, "lines_rank", "rank 1");
  }
  {
    Spec s = good;  // an empty slice
    for (const char *suffix : {".s2ft_lines", ".s2ft_delta", ".s2ft_base_fingerprint"}) {
      Tensor &t = s.find(kDown0 + suffix);
      t.bytes.clear();
      t.shape = std::string(suffix) == ".s2ft_delta" ? std::vector<int64_t>{kShape.d_model, 0} : std::vector<int64_t>{0};
    }
    expect_rejected(s, "empty_slice", "is empty");
  }
  {
    Spec s = good;  // d_model in the metadata disagrees with the tensors
    s.meta["d_model"] = "6";
    expect_rejected(s, "model_shape_mismatch", "expected [6, 3]");
  }
}

TEST(AdapterFileCorpus, TensorValues) {
  const Spec good = valid_spec();
  const std::string lines = kDown0 + ".s2ft_lines";
  {
    Spec s = good;
    put<int64_t>(s.find(lines).bytes, 2, 7);  // d_ff = 7
    expect_rejected(s, "index_out_of_range", "= 7 is out of range [0, 7)");
  }
  {
    Spec s = good;
    put<int64_t>(s.find(lines).bytes, 0, -1);
    expect_rejected(s, "index_negative", "= -1 is out of range");
  }
  {
    Spec s = good;
    put<int64_t>(s.find(lines).bytes, 1, std::numeric_limits<int64_t>::min());
    expect_rejected(s, "index_min", "out of range");
  }
  {
    Spec s = good;
    put<int64_t>(s.find(lines).bytes, 1, 1);  // {1, 1, 6}
    expect_rejected(s, "duplicate_index", "twice");
  }
  {
    Spec s = good;
    put<int64_t>(s.find(lines).bytes, 0, 5);  // {5, 4, 6}
    expect_rejected(s, "unsorted_index", "not ascending");
  }
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Spec s = good;
    put<float>(s.find(kV1 + ".s2ft_delta").bytes, 7, bad);
    expect_rejected(s, "nonfinite_delta_" + std::to_string(std::isnan(bad) ? 0 : (bad > 0 ? 1 : 2)),
                    "non-finite value (NaN or Inf) at element 7");
  }
  {
    // A changed fingerprint makes the slices summary inconsistent.
    Spec s = good;
    put<uint64_t>(s.find(kV1 + ".s2ft_base_fingerprint").bytes, 0, 12345);
    expect_rejected(s, "fingerprint_changed", "inconsistent slices");
  }
}

// Every single-byte corruption of the header and truncation of a valid file
// is rejected cleanly or loads; never crashes (the sanitizer build checks reads).
TEST(AdapterFileCorpus, ByteFlipsNeverCrash) {
  const std::vector<uint8_t> good = valid_spec().serialize();
  const std::string path = temp_path("flip.safetensors");
  Random rng(77);
  for (int round = 0; round < 300; ++round) {
    std::vector<uint8_t> b = good;
    const size_t at = static_cast<size_t>(rng.below(static_cast<int64_t>(b.size())));
    b[at] = static_cast<uint8_t>(rng.next());
    if (round % 5 == 0) b.resize(static_cast<size_t>(rng.below(static_cast<int64_t>(b.size()))));
    write_bytes(path, b);
    s2ft_adapter *a = nullptr;
    const s2ft_status st = s2ft_adapter_load(path.c_str(), &a);
    if (st == S2FT_OK) {
      ASSERT_NE(a, nullptr);
      s2ft_adapter_destroy(a);
    } else {
      EXPECT_EQ(st, S2FT_ERR_FORMAT) << s2ft_last_error();
      EXPECT_EQ(a, nullptr);
      EXPECT_NE(std::string(s2ft_last_error()), "");
    }
  }
  std::remove(path.c_str());
}

}  // namespace
