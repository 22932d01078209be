// The hostile-input suite of the s2ft tool (label `hostile`; built a second
// time on stories260K as `realdata;hostile`). From a valid model it makes
// broken checkpoints, adapters, selections and output paths, gives each to
// every command that reads it, and checks every run: no hang (a timeout), a
// normal exit with a non-zero status, exactly one line "s2ft <cmd>: error:"
// that names what is wrong, no sanitizer report, bounded memory, the inputs
// unchanged and nothing left behind. Writers are also killed at chosen
// moments (an LD_PRELOAD shim) to check that an output appears whole or not
// at all and that the next run clears the remains.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <sys/file.h>
#include <sys/mount.h>

#include "cli/cli_test_util.hpp"
#include "cli/tiny_model.hpp"
#include "hostile/hostile_files.hpp"
#include "hostile/hostile_run.hpp"
#include "support/realdata.hpp"

namespace {

using namespace hostile;
using cli_test::TempDir;

// The commands a broken checkpoint is given to.
enum : unsigned { kInspect = 1, kSelect = 2, kPermute = 4, kMerge = 8, kDiff = 16, kAll = 31 };

std::string command_line(const std::vector<std::string> &args) {
  std::string out = "s2ft";
  for (const std::string &a : args) out += " " + a;
  return out;
}

// The same tensors as `from`'s model.safetensors, in two shards with an
// index; config.json and the other files copied.
void write_sharded_copy(const std::string &from, const std::string &to) {
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(from + "/model.safetensors");
  std::vector<cli_test::RawTensor> tensors;
  for (const s2ft::io::TensorInfo &t : f.tensors())
    tensors.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(f.data(t), f.data(t) + (t.end - t.begin))});
  cli_test::write_checkpoint(to, nlohmann::json::parse(slurp(from + "/config.json")), tensors, 2);
  for (const fs::directory_entry &e : fs::directory_iterator(from))
    if (e.path().filename() != "model.safetensors")
      fs::copy_file(e.path(), fs::path(to) / e.path().filename(), fs::copy_options::overwrite_existing);
}

// The model the cases are made from: stories260K when this program is the
// realdata variant, else the tool tests' small made-up model.
bool write_base(const std::string &dir, std::string *why) {
#if HOSTILE_REALDATA
  const std::string from = s2ft_test::model_dir();
  if (!fs::exists(from + "/model.safetensors") || !fs::exists(from + "/config.json")) {
    *why = "stories260K-hf not found under " + s2ft_test::data_dir() + " (set S2FT_TEST_DATA)";
    return false;
  }
  copy_folder(from, dir);
#else
  (void)why;
  cli_test::write_tiny(dir, cli_test::Layout{"F32", 1, false});
#endif
  return true;
}

class Hostile : public ::testing::Test {
 protected:
  // The valid inputs the cases break copies of: a checkpoint in one file and
  // in two shards, a selection and an adapter made from it by the tool.
  static void SetUpTestSuite() {
    shared_ = new TempDir();
    base_ = *shared_ / "base";
    sharded_ = *shared_ / "sharded";
    sel_ = *shared_ / "sel.json";
    adapter_ = *shared_ / "adapter.safetensors";
    if (!write_base(base_, &skip_)) return;
    write_sharded_copy(base_, sharded_);
    const Outcome s = run_tool({"select", base_, "-o", sel_, "--count-o", "1", "--count-down", "2"});
    const Outcome a = run_tool({"diff", base_, base_, "--selection", sel_, "-o", adapter_});
    if (s.exit_code != 0 || a.exit_code != 0) skip_ = "cannot make the valid inputs: " + s.err + a.err;
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) {
      std::printf("SKIP: %s\n", skip_.c_str());
      GTEST_SKIP() << skip_;
    }
  }

  // A fresh, empty folder for one case (the previous case's is removed, so
  // that every snapshot stays small).
  std::string new_case() {
    if (!case_.empty()) fs::remove_all(case_);
    case_ = tmp_ / ("case" + std::to_string(cases_++));
    fs::create_directories(case_);
    return case_;
  }

  // A copy of the one-file or the sharded checkpoint in a new case.
  std::string broken_copy(bool sharded = false) {
    const std::string dir = new_case() + "/ckpt";
    copy_folder(sharded ? sharded_ : base_, dir);
    return dir;
  }

  // Runs a command that must refuse its input, and checks all the suite promises.
  void refuse(const std::vector<std::string> &args, const std::string &needle, const Limits &limits = {}) {
    SCOPED_TRACE(command_line(args));
    const Snapshot case_before = snapshot(case_), shared_before = snapshot(shared_->path());
    const Outcome o = run_tool(args, limits);
    expect_refusal(o, args[0], needle);
    EXPECT_EQ(snapshot_diff(case_before, snapshot(case_)), "");
    EXPECT_EQ(snapshot_diff(shared_before, snapshot(shared_->path())), "");
  }

  static void expect_refusal(const Outcome &o, const std::string &command, const std::string &needle) {
    ASSERT_FALSE(o.timed_out) << "hung: killed after " << kTimeoutSeconds << " s";
    EXPECT_EQ(o.signal, 0) << "killed by signal " << o.signal << "; stderr: " << o.err;
    EXPECT_NE(o.exit_code, 0) << "stdout: " << o.out;
    EXPECT_EQ(o.err.find("Sanitizer"), std::string::npos) << o.err;
    EXPECT_EQ(o.err.find("runtime error"), std::string::npos) << o.err;
    EXPECT_LE(static_cast<uint64_t>(o.max_rss_kb) * 1024, kMemoryLimit) << "peak resident memory " << o.max_rss_kb
                                                                         << " KiB";
    const std::vector<std::string> lines = o.err_lines();
    ASSERT_EQ(lines.size(), 1u) << "stderr: " << o.err;
    EXPECT_EQ(lines[0].rfind("s2ft " + command + ": error: ", 0), 0u) << lines[0];
    EXPECT_NE(lines[0].find(needle), std::string::npos) << "expected '" << needle << "' in: " << lines[0];
  }

  // Gives a broken checkpoint folder to the chosen commands.
  void refuse_checkpoint(const std::string &ckpt, const std::string &needle, unsigned commands = kAll) {
    if (commands & kInspect) refuse({"inspect", ckpt}, needle);
    if (commands & kSelect) refuse({"select", ckpt, "-o", case_ + "/sel.json"}, needle);
    if (commands & kPermute) refuse({"permute", ckpt, "--selection", sel_, "-o", case_ + "/out"}, needle);
    if (commands & kMerge) refuse({"merge", ckpt, adapter_, "-o", case_ + "/out"}, needle);
    if (commands & kDiff) refuse({"diff", base_, ckpt, "--selection", sel_, "-o", case_ + "/a.safetensors"}, needle);
  }

  // Gives a broken adapter to every command that reads adapters.
  void refuse_adapter(const std::string &adapter, const std::string &needle) {
    refuse({"inspect", adapter}, needle);
    refuse({"merge", base_, adapter, "-o", case_ + "/out"}, needle);
    refuse({"fuse", adapter_, adapter, "-o", case_ + "/f.safetensors"}, needle);
  }

  // Gives a broken selection to every command that reads selections.
  void refuse_selection(const std::string &sel, const std::string &needle) {
    refuse({"inspect", sel}, needle);
    refuse({"permute", base_, "--selection", sel, "-o", case_ + "/out"}, needle);
    refuse({"merge", base_, adapter_, "--selection", sel, "-o", case_ + "/out"}, needle);
    refuse({"diff", base_, base_, "--selection", sel, "-o", case_ + "/a.safetensors"}, needle);
  }

  static TempDir *shared_;
  static std::string base_, sharded_, sel_, adapter_, skip_;
  TempDir tmp_;
  std::string case_;
  int cases_ = 0;
};

TempDir *Hostile::shared_ = nullptr;
std::string Hostile::base_, Hostile::sharded_, Hostile::sel_, Hostile::adapter_, Hostile::skip_;

// ---- broken safetensors files in a checkpoint -------------------------------

TEST_F(Hostile, TruncatedSafetensors) {
  const Safetensors st = read_safetensors(base_ + "/model.safetensors");
  const uint64_t header = st.header.dump().size(), data_start = 8 + header, size = data_start + st.data.size();
  for (uint64_t cut : {uint64_t(0), uint64_t(5), uint64_t(8), 8 + header / 2, data_start, data_start + st.data.size() / 2,
                       size - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::string ckpt = broken_copy();
    write_safetensors(ckpt + "/model.safetensors", st);
    truncate_to(ckpt + "/model.safetensors", cut);
    refuse_checkpoint(ckpt, "model.safetensors");
  }
  const std::string ckpt = broken_copy(true);
  const std::string shard = ckpt + "/model-00002-of-00002.safetensors";
  truncate_to(shard, fs::file_size(shard) - 1);
  refuse_checkpoint(ckpt, "model-00002-of-00002.safetensors");
}

TEST_F(Hostile, HeaderLengthsPastTheEndAndNear2To64) {
  const uint64_t size = fs::file_size(base_ + "/model.safetensors");
  for (uint64_t n : {size - 7, uint64_t(1) << 32, uint64_t(1) << 63, std::numeric_limits<uint64_t>::max() - 7,
                     std::numeric_limits<uint64_t>::max()}) {
    SCOPED_TRACE("header length " + std::to_string(n));
    const std::string ckpt = broken_copy();
    set_header_length(ckpt + "/model.safetensors", n);
    refuse_checkpoint(ckpt, "model.safetensors");
  }
}

// The first projection weight of layer 0 and a tensor that is not one.
const char *const kDown = "model.layers.0.mlp.down_proj.weight";
const char *const kOProj = "model.layers.0.self_attn.o_proj.weight";
const char *const kNorm = "model.norm.weight";

TEST_F(Hostile, MalformedTensorEntries) {
  const Safetensors good = read_safetensors(base_ + "/model.safetensors");
  const uint64_t u32 = uint64_t(1) << 32;
  struct Edit {
    const char *what, *needle;
    std::function<void(Json &)> edit;
  };
  const Edit edits[] = {
      {"overlapping offsets", "overlap",
       [](Json &h) {
         const uint64_t begin = h[kDown]["data_offsets"][0].get<uint64_t>(),
                        size = h[kNorm]["data_offsets"][1].get<uint64_t>() - h[kNorm]["data_offsets"][0].get<uint64_t>();
         h[kNorm]["data_offsets"] = {begin, begin + size};
       }},
      {"shape not matching the bytes", "model.safetensors",
       [](Json &h) { h[kDown]["shape"][1] = h[kDown]["shape"][1].get<int64_t>() + 1; }},
      {"dtype not matching the bytes", "model.safetensors", [](Json &h) { h[kDown]["dtype"] = "F16"; }},
      {"unknown dtype", "model.safetensors", [](Json &h) { h[kDown]["dtype"] = "Q7"; }},
      {"shape product past 2^64", "model.safetensors", [u32](Json &h) { h[kNorm]["shape"] = {u32, u32, 256}; }},
      {"negative dimension", "model.safetensors", [](Json &h) { h[kNorm]["shape"] = {-1}; }},
      {"offsets reversed", "model.safetensors",
       [](Json &h) { h[kNorm]["data_offsets"] = {h[kNorm]["data_offsets"][1], h[kNorm]["data_offsets"][0]}; }},
      {"offsets past the data", "model.safetensors",
       [](Json &h) { h[kNorm]["data_offsets"][1] = std::numeric_limits<uint64_t>::max(); }},
      {"offsets not numbers", "model.safetensors", [](Json &h) { h[kNorm]["data_offsets"] = "0-4"; }},
      {"projection of an integer dtype", "I32", [](Json &h) { h[kDown]["dtype"] = "I32"; }},
      {"projection missing", kDown, [](Json &h) { h.erase(kDown); }},
  };
  for (const Edit &e : edits) {
    SCOPED_TRACE(e.what);
    Safetensors st = good;
    e.edit(st.header);
    const std::string ckpt = broken_copy();
    write_safetensors(ckpt + "/model.safetensors", st);
    refuse_checkpoint(ckpt, e.needle);
  }
  // The same name twice in one header, and in both shards of a sharded checkpoint.
  std::string text = good.header.dump();
  const std::string entry = "\"" + std::string(kNorm) + "\":" + good.header[kNorm].dump();
  text.insert(1, entry + ",");
  const std::string ckpt = broken_copy();
  write_safetensors(ckpt + "/model.safetensors", good, text);
  refuse_checkpoint(ckpt, "more than once");
  const std::string sh = broken_copy(true);
  Safetensors first = read_safetensors(sh + "/model-00001-of-00002.safetensors");
  const Safetensors second = read_safetensors(sh + "/model-00002-of-00002.safetensors");
  const std::string moved = second.header.items().begin().key() == "__metadata__"
                                ? std::next(second.header.items().begin()).key()
                                : second.header.items().begin().key();
  Json entry2 = second.header[moved];
  const uint64_t at = first.data.size(), n = entry2["data_offsets"][1].get<uint64_t>() -
                                             entry2["data_offsets"][0].get<uint64_t>();
  first.data += second.data.substr(entry2["data_offsets"][0].get<size_t>(), n);
  entry2["data_offsets"] = {at, at + n};
  first.header[moved] = entry2;
  write_safetensors(sh + "/model-00001-of-00002.safetensors", first);
  refuse_checkpoint(sh, moved);
}

// Weights holding NaN or Inf: a weight score over them is undefined, and an
// adapter made against finite weights does not fit them.
TEST_F(Hostile, NonFiniteWeights) {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE(std::isnan(bad) ? "NaN" : "Inf");
    Safetensors st = read_safetensors(base_ + "/model.safetensors");
    const Json &t = st.header[kDown];
    std::memcpy(&st.data[t["data_offsets"][0].get<size_t>() + 4], &bad, 4);
    const std::string ckpt = broken_copy();
    write_safetensors(ckpt + "/model.safetensors", st);
    refuse({"select", ckpt, "-o", case_ + "/sel.json"}, kDown);
    refuse({"permute", ckpt, "-o", case_ + "/out"}, kDown);
  }
}

// ---- special files where a regular file belongs -----------------------------

TEST_F(Hostile, SpecialFilesInACheckpoint) {
  for (const Special s : {Special::kFifo, Special::kFolder, Special::kDeviceLink}) {
    SCOPED_TRACE(special_name(s));
    std::string ckpt = broken_copy();
    make_special(ckpt + "/model.safetensors", s);
    refuse_checkpoint(ckpt, special_word(s));
    ckpt = broken_copy();
    make_special(ckpt + "/config.json", s);
    refuse_checkpoint(ckpt, "config.json' is a");
    ckpt = broken_copy(true);
    make_special(ckpt + "/model.safetensors.index.json", s);
    refuse_checkpoint(ckpt, special_word(s));
    ckpt = broken_copy(true);
    make_special(ckpt + "/model-00002-of-00002.safetensors", s);
    refuse_checkpoint(ckpt, special_word(s));
  }
  // The checkpoint argument itself a FIFO, or a link to a device.
  for (const Special s : {Special::kFifo, Special::kDeviceLink}) {
    const std::string path = new_case() + "/ckpt";
    make_special(path, s);
    refuse_checkpoint(path, special_word(s));
  }
}

TEST_F(Hostile, SpecialFilesAsAdaptersAndSelections) {
  for (const Special s : {Special::kFifo, Special::kFolder, Special::kDeviceLink}) {
    SCOPED_TRACE(special_name(s));
    const std::string bad = new_case() + "/bad";
    make_special(bad, s);
    const std::string word = s == Special::kFolder ? "folder" : special_word(s);
    refuse({"merge", base_, bad, "-o", case_ + "/out"}, word);
    refuse({"fuse", adapter_, bad, "-o", case_ + "/f.safetensors"}, word);
    refuse({"permute", base_, "--selection", bad, "-o", case_ + "/out"}, word);
    refuse({"diff", base_, base_, "--selection", bad, "-o", case_ + "/a.safetensors"}, word);
    refuse({"merge", base_, adapter_, "--selection", bad, "-o", case_ + "/out"}, word);
    refuse({"inspect", bad}, word);
  }
}

// ---- shard indexes ----------------------------------------------------------

TEST_F(Hostile, ShardIndexes) {
  const std::string index_name = "model.safetensors.index.json";
  const Json index = read_json(sharded_ + "/" + index_name);
  const std::string shard2 = "model-00002-of-00002.safetensors";
  struct Edit {
    const char *what, *needle;
    std::function<void(Json &)> edit;
  };
  const Edit edits[] = {
      {"..", "not a plain file name", [&](Json &j) { j["weight_map"][kNorm] = "../" + shard2; }},
      {"absolute path", "not a plain file name", [](Json &j) { j["weight_map"][kNorm] = "/etc/passwd"; }},
      {"a sub-folder", "not a plain file name", [&](Json &j) { j["weight_map"][kNorm] = "sub/" + shard2; }},
      {"empty name", "not a plain file name", [](Json &j) { j["weight_map"][kNorm] = ""; }},
      {"NUL in the name", "not a plain file name",
       [&](Json &j) { j["weight_map"][kNorm] = shard2 + std::string(1, '\0') + "x"; }},
      {"missing shard", "does not exist", [](Json &j) { j["weight_map"][kNorm] = "model-00009-of-00009.safetensors"; }},
      {"wrong shard", kNorm, [](Json &j) { j["weight_map"][kNorm] = "model-00001-of-00002.safetensors"; }},
      {"a tensor no shard holds", "model.extra", [&](Json &j) { j["weight_map"]["model.extra"] = shard2; }},
      {"a tensor left out", "does not list", [](Json &j) { j["weight_map"].erase(kNorm); }},
      {"weight_map empty", "weight_map", [](Json &j) { j["weight_map"] = Json::object(); }},
      {"weight_map a list", "weight_map", [](Json &j) { j["weight_map"] = Json::array({1, 2}); }},
      {"shard name a number", "not a file name", [](Json &j) { j["weight_map"][kNorm] = 7; }},
      {"not an object", "not a JSON object", [](Json &j) { j = Json::array(); }},
  };
  for (const Edit &e : edits) {
    SCOPED_TRACE(e.what);
    Json j = index;
    e.edit(j);
    const std::string ckpt = broken_copy(true);
    write_json(ckpt + "/" + index_name, j);
    refuse_checkpoint(ckpt, e.needle);
  }
  for (const char *text : {"", "{", "{\"weight_map\": {\"a\": \"b\", \"a\": \"b\"}}"}) {
    SCOPED_TRACE(text);
    const std::string ckpt = broken_copy(true);
    write_bytes(ckpt + "/" + index_name, text);
    refuse_checkpoint(ckpt, index_name);
  }
}

// ---- config.json ------------------------------------------------------------

TEST_F(Hostile, ConfigsWithImpossibleShapes) {
  const Json good = read_json(base_ + "/config.json");
  const int64_t i32max = std::numeric_limits<int32_t>::max();
  struct Edit {
    const char *key;
    Json value;
    const char *needle;
  };
  const Edit edits[] = {
      {"hidden_size", 0, "hidden_size"},
      {"hidden_size", -1, "hidden_size"},
      {"hidden_size", i32max, "config.json implies"},
      {"hidden_size", i32max + 1, "hidden_size"},
      {"hidden_size", 12.5, "hidden_size"},
      {"hidden_size", "64", "hidden_size"},
      {"hidden_size", nullptr, "hidden_size"},
      {"num_hidden_layers", 0, "num_hidden_layers"},
      {"num_hidden_layers", -5, "num_hidden_layers"},
      {"num_hidden_layers", 1000000, "num_hidden_layers"},
      {"num_hidden_layers", 10000000, "num_hidden_layers"},
      {"num_hidden_layers", i32max, "num_hidden_layers"},
      {"num_hidden_layers", 1e18, "num_hidden_layers"},
      {"num_attention_heads", 0, "num_attention_heads"},
      {"num_attention_heads", i32max, "num_attention_heads"},
      {"num_key_value_heads", 3, "not a multiple"},
      {"num_key_value_heads", i32max, "not a multiple"},
      {"head_dim", 0, "head_dim"},
      {"head_dim", i32max, "config.json implies"},
      {"intermediate_size", 0, "intermediate_size"},
      {"intermediate_size", i32max, "config.json implies"},
      {"intermediate_size", 1000000000, "config.json implies"},
      {"tie_word_embeddings", "yes", "tie_word_embeddings"},
  };
  for (const Edit &e : edits) {
    SCOPED_TRACE(std::string(e.key) + " = " + e.value.dump());
    Json cfg = good;
    cfg[e.key] = e.value;
    const std::string ckpt = broken_copy();
    write_json(ckpt + "/config.json", cfg);
    refuse_checkpoint(ckpt, e.needle, kInspect | kSelect | kPermute | kMerge);
  }
  // Heads that do not divide hidden_size, with no head_dim to say otherwise.
  Json cfg = good;
  cfg.erase("head_dim");
  cfg["num_attention_heads"] = cfg["hidden_size"].get<int64_t>() - 1;
  cfg["num_key_value_heads"] = 1;
  std::string ckpt = broken_copy();
  write_json(ckpt + "/config.json", cfg);
  refuse_checkpoint(ckpt, "not a multiple", kInspect | kSelect | kPermute | kMerge);
  // Not an object, not JSON, nested a million deep, and larger than any config.
  for (const std::string &text : {std::string("[]"), std::string("{"), std::string(""),
                                  std::string(1000000, '[') + std::string(1000000, ']')}) {
    ckpt = broken_copy();
    write_bytes(ckpt + "/config.json", text);
    refuse_checkpoint(ckpt, "config.json", kInspect | kSelect | kPermute | kMerge);
  }
  ckpt = broken_copy();
  write_sparse(ckpt + "/config.json", "{", uint64_t(1) << 32);
  refuse_checkpoint(ckpt, "config.json", kInspect | kSelect | kPermute | kMerge);
}

// A checkpoint far larger than memory (and than the disk): a summary reads
// only the headers; the files are memory-mapped, so commands that only read
// the projection weights work and use no more memory than for a small one,
// and commands that write a copy are refused before writing anything, for
// want of disk space. (`diff`
// compares every byte of two checkpoints, so on a real checkpoint of that
// size it runs as long as reading it takes; it is not run here.)
// A copy of the checkpoint whose model.safetensors also holds a 2 TiB tensor
// (a sparse file).
std::string with_huge_tensor(const std::string &ckpt) {
  Safetensors st = read_safetensors(ckpt + "/model.safetensors");
  const uint64_t huge = uint64_t(1) << 41;
  st.header["model.huge_buffer"] = {{"dtype", "U8"}, {"shape", {huge}},
                                    {"data_offsets", {st.data.size(), st.data.size() + huge}}};
  const std::string text = st.header.dump();
  write_sparse(ckpt + "/model.safetensors", length_prefix(text.size()) + text + st.data,
               8 + text.size() + st.data.size() + huge);
  return ckpt;
}

TEST_F(Hostile, CheckpointLargerThanMemoryIsMappedAndItsCopyRefused) {
  const std::string ckpt = with_huge_tensor(broken_copy());
  const Outcome o = run_tool({"inspect", ckpt});  // headers only: nothing is mapped
  EXPECT_EQ(o.exit_code, 0) << o.err;
  if (HOSTILE_UNDER_ASAN) {
    refuse_checkpoint(ckpt, "needs 2.0 TiB of disk space", kPermute | kMerge);
    const Outcome sel = run_tool({"select", ckpt, "-o", case_ + "/huge-sel.json"});
    EXPECT_EQ(sel.exit_code, 0) << sel.err;
  } else {
    // Under the 1 GiB address-space limit these runs get, a 2 TiB file
    // cannot be mapped: the commands that read weights say so, naming it.
    refuse_checkpoint(ckpt, "cannot map", kSelect | kPermute | kMerge);
  }
}

// config.json is checked against the tensors the headers declare before any
// data is read: its error comes first, without reading terabytes.
TEST_F(Hostile, ConfigIsCheckedBeforeAnyDataIsRead) {
  const std::string ckpt = with_huge_tensor(broken_copy());
  Json cfg = read_json(ckpt + "/config.json");
  cfg["num_hidden_layers"] = 1000000;
  write_json(ckpt + "/config.json", cfg);
  refuse_checkpoint(ckpt, "num_hidden_layers is 1000000");
}

// ---- adapters -------------------------------------------------------------------

TEST_F(Hostile, BrokenAdapters) {
  const Safetensors good = read_safetensors(adapter_);
  const uint64_t header = good.header.dump().size(), size = 8 + header + good.data.size();
  const std::string name = "bad.safetensors";
  for (uint64_t cut : {uint64_t(0), uint64_t(4), uint64_t(8), 8 + header / 2, 8 + header, size - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::string bad = new_case() + "/" + name;
    write_safetensors(bad, good);
    truncate_to(bad, cut);
    refuse_adapter(bad, name);
  }
  for (uint64_t n : {size, std::numeric_limits<uint64_t>::max()}) {
    const std::string bad = new_case() + "/" + name;
    write_safetensors(bad, good);
    set_header_length(bad, n);
    refuse_adapter(bad, name);
  }
  // The first lines tensor, its delta, and metadata claims.
  std::string lines, delta;
  for (const auto &kv : good.header.items()) {
    if (lines.empty() && kv.key().find(".s2ft_lines") != std::string::npos) lines = kv.key();
    if (delta.empty() && kv.key().find(".s2ft_delta") != std::string::npos) delta = kv.key();
  }
  struct Edit {
    const char *what, *needle;
    std::function<void(Safetensors &)> edit;
  };
  const auto set_i64 = [](Safetensors &st, const std::string &t, size_t i, int64_t v) {
    std::memcpy(&st.data[st.header[t]["data_offsets"][0].get<size_t>() + 8 * i], &v, 8);
  };
  const Edit edits[] = {
      {"n_layers 10^6", "n_layers", [](Safetensors &st) { st.header["__metadata__"]["n_layers"] = "1000000"; }},
      {"n_layers 2^31-1", "n_layers", [](Safetensors &st) { st.header["__metadata__"]["n_layers"] = "2147483647"; }},
      {"n_layers negative", "n_layers", [](Safetensors &st) { st.header["__metadata__"]["n_layers"] = "-1"; }},
      {"d_ff not a number", "d_ff", [](Safetensors &st) { st.header["__metadata__"]["d_ff"] = "many"; }},
      {"unknown version", "format_version", [](Safetensors &st) { st.header["__metadata__"]["format_version"] = "99"; }},
      {"NaN delta", name.c_str(),
       [&](Safetensors &st) {
         const float nan = std::numeric_limits<float>::quiet_NaN();
         std::memcpy(&st.data[st.header[delta]["data_offsets"][0].get<size_t>()], &nan, 4);
       }},
      {"line out of range", name.c_str(), [&](Safetensors &st) { set_i64(st, lines, 0, int64_t(1) << 40); }},
      {"negative line", name.c_str(), [&](Safetensors &st) { set_i64(st, lines, 0, -1); }},
      {"duplicate line", name.c_str(),
       [&](Safetensors &st) {
         int64_t first;
         std::memcpy(&first, &st.data[st.header[lines]["data_offsets"][0].get<size_t>()], 8);
         set_i64(st, lines, 1, first);
       }},
      {"delta of the wrong shape", name.c_str(),
       [&](Safetensors &st) { st.header[delta]["shape"] = {st.header[delta]["shape"][1], st.header[delta]["shape"][0]}; }},
      {"lines tensor missing", name.c_str(), [&](Safetensors &st) { st.header.erase(lines); }},
  };
  for (const Edit &e : edits) {
    SCOPED_TRACE(e.what);
    Safetensors st = good;
    e.edit(st);
    const std::string bad = new_case() + "/" + name;
    write_safetensors(bad, st);
    refuse_adapter(bad, e.needle);
  }
}

// An adapter's metadata claims d_ff, n_heads and head_dim that no tensor
// backs: it describes another model, which merge refuses and inspect shows.
TEST_F(Hostile, AdaptersClaimingHugeDimensions) {
  for (const char *key : {"d_ff", "n_heads", "head_dim"}) {
    SCOPED_TRACE(key);
    Safetensors st = read_safetensors(adapter_);
    st.header["__metadata__"][key] = "2147483647";
    if (std::string(key) == "n_heads") st.header["__metadata__"]["n_kv_heads"] = "2147483647";
    const std::string bad = new_case() + "/claims.safetensors";
    write_safetensors(bad, st);
    refuse({"merge", base_, bad, "-o", case_ + "/out"}, "another model shape");
    const Outcome summary = run_tool({"inspect", bad});
    EXPECT_EQ(summary.exit_code, 0) << summary.err;
    EXPECT_LE(static_cast<uint64_t>(summary.max_rss_kb) * 1024, kMemoryLimit);
  }
}

// An adapter's metadata may claim a huge shape that nothing in the file
// backs; fusing such adapters must allocate for the lines they hold, not for
// the claim (a 40 KB adapter claiming d_ff = 2^31 - 1 once took 13 GB).
TEST_F(Hostile, FusingAdaptersClaimingHugeDimensions) {
  for (const char *key : {"d_ff", "n_heads", "head_dim"}) {
    SCOPED_TRACE(key);
    Safetensors st = read_safetensors(adapter_);
    st.header["__metadata__"][key] = "2147483647";
    if (std::string(key) == "n_heads") st.header["__metadata__"]["n_kv_heads"] = "2147483647";
    const std::string bad = new_case() + "/claims.safetensors";
    write_safetensors(bad, st);
    const Outcome o = run_tool({"fuse", bad, bad, "-o", case_ + "/f.safetensors"});
    ASSERT_FALSE(o.timed_out);
    EXPECT_LE(static_cast<uint64_t>(o.max_rss_kb) * 1024, kMemoryLimit);
    EXPECT_EQ(o.err.find("out of memory"), std::string::npos) << o.err;
  }
}

// ---- selections -------------------------------------------------------------

TEST_F(Hostile, BrokenSelections) {
  const std::string good_text = slurp(sel_);
  const Json good = Json::parse(good_text);
  const std::string name = "bad.json";
  for (size_t cut : {size_t(0), size_t(1), good_text.size() / 2, good_text.size() - 2}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::string bad = new_case() + "/" + name;
    write_bytes(bad, good_text.substr(0, cut));
    refuse_selection(bad, name);
  }
  struct Edit {
    const char *what;
    std::function<void(Json &)> edit;
  };
  const Edit edits[] = {
      {"n_layers 10^6", [](Json &j) { j["shape"]["n_layers"] = 1000000; }},
      {"n_layers 2^31-1", [](Json &j) { j["shape"]["n_layers"] = 2147483647; }},
      {"d_ff 2^31-1", [](Json &j) { j["shape"]["d_ff"] = 2147483647; }},
      {"n_heads 2^31-1", [](Json &j) { j["shape"]["n_heads"] = 2147483647, j["shape"]["n_kv_heads"] = 1; }},
      {"not a permutation", [](Json &j) { j["layers"][0]["perm_heads"][1] = j["layers"][0]["perm_heads"][0]; }},
      {"unit out of range", [](Json &j) { j["layers"][0]["DOWN"] = {1000000}; }},
      {"negative unit", [](Json &j) { j["layers"][0]["DOWN"] = {-1}; }},
      {"unit not a number", [](Json &j) { j["layers"][0]["DOWN"] = {"x"}; }},
      {"unknown version", [](Json &j) { j["version"] = 99; }},
      {"layers missing", [](Json &j) { j.erase("layers"); }},
  };
  for (const Edit &e : edits) {
    SCOPED_TRACE(e.what);
    Json j = good;
    e.edit(j);
    const std::string bad = new_case() + "/" + name;
    write_json(bad, j);
    refuse_selection(bad, name);
  }
  // head_dim is backed by no array: the file is valid, but not for this checkpoint.
  Json huge_heads = good;
  huge_heads["shape"]["head_dim"] = 2147483647;
  std::string bad = new_case() + "/" + name;
  write_json(bad, huge_heads);
  refuse({"permute", base_, "--selection", bad, "-o", case_ + "/out"}, "another model shape");
  refuse({"diff", base_, base_, "--selection", bad, "-o", case_ + "/a.safetensors"}, "another model shape");
  const Outcome summary = run_tool({"inspect", bad});
  EXPECT_EQ(summary.exit_code, 0) << summary.err;
  EXPECT_LE(static_cast<uint64_t>(summary.max_rss_kb) * 1024, kMemoryLimit);
  bad = new_case() + "/" + name;
  write_bytes(bad, "{\"format\":\"s2ft-selection\",\"options\":" + std::string(1000000, '[') +
                       std::string(1000000, ']') + "}");
  refuse_selection(bad, name);
  bad = new_case() + "/" + name;
  write_sparse(bad, "{\"format\":\"s2ft-selection\",", uint64_t(1) << 32);
  refuse_selection(bad, name);
}

// ---- outputs where writing fails ------------------------------------------------

TEST_F(Hostile, OutputsThatCannotBeWritten) {
  const std::string dir = new_case();
  write_bytes(dir + "/file", "x");
  // A path under a regular file: no one, root included, can make it.
  refuse({"permute", base_, "--selection", sel_, "-o", dir + "/file/out"}, "not a folder");
  refuse({"merge", base_, adapter_, "-o", dir + "/file/out"}, "not a folder");
  refuse({"select", base_, "-o", dir + "/file/s.json"}, "not a folder");
  refuse({"fuse", adapter_, "-o", dir + "/file/f.safetensors"}, "not a folder");
  refuse({"diff", base_, base_, "--selection", sel_, "-o", dir + "/file/a.safetensors"}, "not a folder");
  // /proc takes no new files or folders, not even from root.
  refuse({"permute", base_, "--selection", sel_, "-o", "/proc/s2ft-hostile-out"}, "/proc");
  refuse({"select", base_, "-o", "/proc/s2ft-hostile.json"}, "/proc");
  EXPECT_FALSE(fs::exists("/proc/s2ft-hostile-out"));
  // Devices and FIFOs are not replaced.
  fs::create_symlink("/dev/null", dir + "/null");
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0644), 0);
  refuse({"select", base_, "-o", dir + "/null"}, "a device");
  refuse({"fuse", adapter_, "-o", dir + "/fifo"}, "a FIFO");
  refuse({"permute", base_, "--selection", sel_, "-o", dir + "/fifo"}, "not a folder");
  // A folder that is not empty, a link to nothing, a missing folder for a file.
  fs::create_directories(dir + "/full");
  write_bytes(dir + "/full/x", "x");
  refuse({"merge", base_, adapter_, "-o", dir + "/full"}, "not empty");
  fs::create_symlink(dir + "/nowhere", dir + "/dangling");
  refuse({"permute", base_, "--selection", sel_, "-o", dir + "/dangling"}, "does not exist");
  refuse({"select", base_, "-o", dir + "/missing/s.json"}, "does not exist");
}

// ulimit -f: the writes fail with EFBIG (the tool ignores SIGXFSZ), the
// command says so, and no temporary file or folder stays.
TEST_F(Hostile, FileSizeLimit) {
  const std::string dir = new_case();
  Limits small;
  small.file_size = fs::file_size(base_ + "/model.safetensors") / 2;
  refuse({"permute", base_, "--selection", sel_, "-o", dir + "/a/b/out"}, "File too large", small);
  refuse({"merge", base_, adapter_, "-o", dir + "/out"}, "File too large", small);
  Limits tiny;
  tiny.file_size = 64;
  refuse({"select", base_, "-o", dir + "/s.json"}, "File too large", tiny);
  refuse({"fuse", adapter_, "-o", dir + "/f.safetensors"}, "File too large", tiny);
  refuse({"diff", base_, base_, "--selection", sel_, "-o", dir + "/a.safetensors"}, "File too large", tiny);
  // An existing output is left as it was.
  write_bytes(dir + "/s.json", "old");
  refuse({"select", base_, "-o", dir + "/s.json"}, "File too large", tiny);
  EXPECT_EQ(slurp(dir + "/s.json"), "old");
}

// A command that fails after its output's missing parent folders would
// have been needed leaves none of them; one that succeeds makes them.
TEST_F(Hostile, MissingParentFoldersAreMadeOnlyBySuccess) {
  const std::string dir = new_case();
  const std::string broken = dir + "/broken.json";
  write_bytes(broken, "{");
  refuse({"permute", base_, "--selection", broken, "-o", dir + "/a/b/out"}, "broken.json");
  refuse({"merge", base_, broken, "-o", dir + "/c/d/out"}, "broken.json");
  EXPECT_FALSE(fs::exists(dir + "/a"));
  const Outcome o = run_tool({"permute", base_, "--selection", sel_, "-o", dir + "/a/b/out"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(fs::exists(dir + "/a/b/out/s2ft-selection.json"));
  EXPECT_TRUE(temporaries_under(dir).empty());
}

// An existing empty folder is replaced by the finished output (keeping its
// permissions), except where a rename cannot replace it: the current folder.
TEST_F(Hostile, ExistingEmptyOutputFolders) {
  const std::string dir = new_case();
  fs::create_directories(dir + "/empty");
  fs::permissions(dir + "/empty", fs::perms::owner_all);
  const Outcome o = run_tool({"permute", base_, "--selection", sel_, "-o", dir + "/empty"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(fs::exists(dir + "/empty/s2ft-selection.json"));
  EXPECT_EQ(fs::status(dir + "/empty").permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_TRUE(temporaries_under(dir).empty());
  fs::create_directories(dir + "/here");
  Limits in_here;
  in_here.cwd = dir + "/here";
  const Snapshot before = snapshot(dir);
  const Outcome cwd = run_tool({"merge", base_, adapter_, "-o", "."}, in_here);
  expect_refusal(cwd, "merge", "is the current folder");
  EXPECT_EQ(snapshot_diff(before, snapshot(dir)), "");
}

// An empty mount point cannot be replaced by a rename (and the build folder
// beside it is on another file system): refused before any work.
TEST_F(Hostile, AnEmptyMountPointIsRefusedAsAnOutput) {
  const std::string dir = new_case(), mnt = dir + "/mnt";
  fs::create_directories(mnt);
  if (::mount("none", mnt.c_str(), "tmpfs", 0, nullptr) != 0) {
    std::printf("SKIP: cannot mount a tmpfs here (%s)\n", std::strerror(errno));
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount(path.c_str()); }
  } unmount{mnt};
  refuse({"permute", base_, "--selection", sel_, "-o", mnt}, "is a mount point");
}

// ---- writers killed at chosen moments ---------------------------------------

#ifndef S2FT_KILL_SHIM
#error "S2FT_KILL_SHIM must name the kill shim library"
#endif

// Environment that makes the shim kill the tool at `at` ("rename:2").
Limits killed_at(const std::string &at) {
  Limits l;
  l.env = {{"LD_PRELOAD", S2FT_KILL_SHIM}, {"S2FT_KILL_AT", at}};
  // ASan wants its runtime first among the libraries; the shim goes before it.
  const char *asan = std::getenv("ASAN_OPTIONS");
  l.env.push_back({"ASAN_OPTIONS", std::string(asan ? asan : "") + ":verify_asan_link_order=0"});
  return l;
}

// What a finished output is: a folder's snapshot, or a file's bytes.
Snapshot output_contents(const std::string &output) {
  if (fs::is_directory(output)) return snapshot(output);
  return {{"", slurp(output)}};
}

// `args` with the output path replaced.
std::vector<std::string> writing_to(std::vector<std::string> args, const std::string &from, const std::string &to) {
  for (std::string &a : args)
    if (a == from) a = to;
  return args;
}

// Kills `args` (which writes `output`, a file or folder in `case_dir`) at
// each of its renames and at each of its file writes (torn in half), and
// checks after each kill: no output, the inputs unchanged, nothing new but
// temporaries; then that a run without the shim succeeds, writes what an
// undisturbed run writes, and removes those temporaries.
void kill_at_every_step(const std::vector<std::string> &args, const std::string &output, const std::string &case_dir,
                        const std::string &shared_dir) {
  // fuse and diff record the time they ran in the adapter; a fixed one
  // (inherited by every run below) makes an undisturbed run's bytes the same.
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  const std::string reference = case_dir + "-reference";
  ASSERT_EQ(run_tool(writing_to(args, output, reference)).exit_code, 0);
  const Snapshot expected = output_contents(reference);
  fs::remove_all(reference);
  for (const char *kind : {"rename", "write"}) {
    for (int n = 1; n < 64; ++n) {
      const std::string at = std::string(kind) + ":" + std::to_string(n);
      SCOPED_TRACE(command_line(args) + ", killed at " + at);
      const Snapshot case_before = snapshot(case_dir), shared_before = snapshot(shared_dir);
      const Outcome killed = run_tool(args, killed_at(at));
      ASSERT_FALSE(killed.timed_out);
      if (killed.exit_code == 0) {  // fewer calls than n: every step has been tried
        EXPECT_GT(n, 1) << "the shim never fired";
        fs::remove_all(output);
        break;
      }
      ASSERT_EQ(killed.signal, SIGKILL) << killed.err;
      EXPECT_FALSE(fs::exists(output)) << "a killed run left its output";
      EXPECT_EQ(snapshot_diff(shared_before, snapshot(shared_dir)), "");
      for (const auto &kv : snapshot(case_dir)) {
        if (case_before.count(kv.first) == 0) {
          EXPECT_NE(kv.first.find(".tmp."), std::string::npos) << "left behind, not a temporary: " << kv.first;
        }
      }
      const Outcome rerun = run_tool(args);
      ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
      EXPECT_EQ(snapshot_diff(expected, output_contents(output)), "");
      EXPECT_TRUE(temporaries_under(case_dir).empty()) << "the re-run left the killed run's temporaries";
      fs::remove_all(output);
    }
  }
}

TEST_F(Hostile, KilledPermuteLeavesNoOutputAndTheRerunCleansUp) {
  const std::string dir = new_case();
  kill_at_every_step({"permute", base_, "--selection", sel_, "-o", dir + "/out"}, dir + "/out", dir, shared_->path());
  kill_at_every_step({"permute", sharded_, "--selection", sel_, "-o", dir + "/out"}, dir + "/out", dir,
                     shared_->path());
}

TEST_F(Hostile, KilledMergeLeavesNoOutputAndTheRerunCleansUp) {
  const std::string dir = new_case();
  kill_at_every_step({"merge", base_, adapter_, "-o", dir + "/out"}, dir + "/out", dir, shared_->path());
}

TEST_F(Hostile, KilledFileWritersLeaveTheOldFileAndTheRerunCleansUp) {
  const std::string dir = new_case();
  kill_at_every_step({"fuse", adapter_, "-o", dir + "/f.safetensors"}, dir + "/f.safetensors", dir, shared_->path());
  kill_at_every_step({"select", base_, "-o", dir + "/s.json"}, dir + "/s.json", dir, shared_->path());
  // Killed while replacing an existing file: the old one stays, whole.
  write_bytes(dir + "/s.json", "old");
  const Outcome killed = run_tool({"select", base_, "-o", dir + "/s.json"}, killed_at("write:1"));
  ASSERT_EQ(killed.signal, SIGKILL);
  EXPECT_EQ(slurp(dir + "/s.json"), "old");
  ASSERT_EQ(run_tool({"select", base_, "-o", dir + "/s.json"}).exit_code, 0);
  EXPECT_TRUE(temporaries_under(dir).empty());
}

// A pid that no process has: a child's, after it exited and was reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) _exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

// Temporaries are removed only when their writer is gone: not another live
// process's (by its pid), not one a writer holds locked (a writer in another
// pid namespace, whose pid means nothing here), not another output's.
TEST_F(Hostile, OnlyTheTemporariesOfGoneWritersAreRemoved) {
  const std::string dir = new_case();
  const std::string live = std::to_string(::getpid()), dead = std::to_string(dead_pid());
  const std::vector<std::string> kept = {"out.tmp." + live + ".1", "s.json.tmp." + live + ".1",
                                         "out.tmp." + dead + ".2", "s.json.tmp." + dead + ".2",
                                         "other.tmp." + dead + ".3", "out.tmp.x" + dead + ".4"};
  const std::vector<std::string> removed = {"out.tmp." + dead + ".5", "s.json.tmp." + dead + ".5"};
  for (const std::string &n : kept) write_bytes(dir + "/" + n, "partial");
  for (const std::string &n : removed) fs::create_directories(dir + "/" + n + "/sub");
  // The dead writer's ".2" temporaries are held locked, as by a live writer elsewhere.
  const int lock_a = ::open((dir + "/out.tmp." + dead + ".2").c_str(), O_RDONLY);
  const int lock_b = ::open((dir + "/s.json.tmp." + dead + ".2").c_str(), O_RDONLY);
  ASSERT_EQ(::flock(lock_a, LOCK_EX), 0);
  ASSERT_EQ(::flock(lock_b, LOCK_EX), 0);
  ASSERT_EQ(run_tool({"permute", base_, "--selection", sel_, "-o", dir + "/out"}).exit_code, 0);
  ASSERT_EQ(run_tool({"select", base_, "-o", dir + "/s.json"}).exit_code, 0);
  ::close(lock_a);
  ::close(lock_b);
  for (const std::string &n : kept) EXPECT_TRUE(fs::exists(dir + "/" + n)) << n;
  for (const std::string &n : removed) EXPECT_FALSE(fs::exists(dir + "/" + n)) << n;
}

// ---- what the tool prints -----------------------------------------------------

// Names from files hold newlines and terminal escapes; the tool shows them
// escaped, in one line per line it means to print.
TEST_F(Hostile, ControlCharactersInNamesAreEscaped) {
  const std::string evil = "model.evil\n\x1b]0;owned\x07\x1b[2J\r\xc2\x9b" "31m";
  const std::string dir = new_case();
  Safetensors st = read_safetensors(base_ + "/model.safetensors");
  st.header[evil] = st.header[kNorm];
  st.header.erase(kNorm);
  write_safetensors(dir + "/evil.safetensors", st);
  const Outcome o = run_tool({"inspect", dir + "/evil.safetensors"});
  EXPECT_NE(o.out.find("model.evil\\n\\x1b]0;owned\\x07\\x1b[2J\\r\\xc2\\x9b31m"), std::string::npos) << o.out;
  EXPECT_EQ(o.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(o.out.find('\r'), std::string::npos);
  // In an error message: a shard index naming a tensor no shard holds.
  const std::string ckpt = broken_copy(true);
  Json index = read_json(ckpt + "/model.safetensors.index.json");
  index["weight_map"][evil] = "model-00002-of-00002.safetensors";
  write_json(ckpt + "/model.safetensors.index.json", index);
  refuse_checkpoint(ckpt, "model.evil\\n\\x1b]0;owned", kInspect | kPermute);
  EXPECT_EQ(run_tool({"inspect", ckpt}).err.find('\x1b'), std::string::npos);
}

}  // namespace
