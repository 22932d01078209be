// s2ft_adapter_export_peft: adapters of random shapes (GQA or not, k = 1,
// k = all lines and in between, column and row targets, lines given in
// shuffled order, fused adapters, scales 1 and not 1) written as PEFT LoRA
// folders and read back with the library's safetensors reader. B A,
// multiplied in float64, must equal the adapter's delta placed on its
// lines exactly (f32(scale * delta) when the scale is not 1); the config
// must list exactly the modules with an entry, with rank = alpha = k each.
// The rank_pattern keys are checked against PEFT's two matching rules on a
// 23-layer model (layer 1's key must not match layers 11 or 21), and every
// error path names its argument.
#include <regex.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "support/target_geometry.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;
namespace fs = std::filesystem;

namespace {

const char *const kStem[S2FT_NUM_TARGETS] = {"self_attn.o_proj", "self_attn.v_proj", "mlp.down_proj", "mlp.up_proj"};

std::string module_name(int32_t layer, int32_t t) { return "model.layers." + std::to_string(layer) + "." + kStem[t]; }

// A fresh folder path (not created) under the test temporary folder.
std::string fresh_path(const std::string &name) {
  static int n = 0;
  const std::string p = ::testing::TempDir() + "s2ft_peft_" + std::to_string(getpid()) + "_" + std::to_string(n++) +
                        "_" + name;
  fs::remove_all(p);
  return p;
}

std::string read_text(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What an adapter holds for one (layer, target), through the public API.
struct Entry {
  std::vector<int64_t> lines;
  std::vector<float> delta;  // [out, k] (columns) or [k, in] (rows), row-major
};
Entry read_entry(const s2ft_adapter *a, const s2ft_model_shape &s, int32_t layer, int32_t t) {
  Entry e;
  int64_t n = 0;
  EXPECT_EQ(s2ft_adapter_lines(a, layer, t, nullptr, nullptr, 0, &n), S2FT_OK) << s2ft_last_error();
  if (n == 0) return e;
  e.lines.resize(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_adapter_lines(a, layer, t, e.lines.data(), nullptr, n, &n), S2FT_OK) << s2ft_last_error();
  const int64_t len = line_length(s, t);
  HostMatrix d = by_columns(t) ? HostMatrix(S2FT_F32, len, n) : HostMatrix(S2FT_F32, n, len);
  EXPECT_EQ(s2ft_adapter_delta(a, layer, t, &d.t), S2FT_OK) << s2ft_last_error();
  for (int64_t i = 0; i < d.rows; ++i)
    for (int64_t j = 0; j < d.cols; ++j) e.delta.push_back(d.get(i, j));
  return e;
}

std::vector<double> tensor_f64(const s2ft::io::SafetensorsFile &f, const std::string &name, int64_t rows, int64_t cols) {
  const s2ft::io::TensorInfo *t = f.find(name);
  EXPECT_NE(t, nullptr) << "missing tensor " << name;
  if (t == nullptr) return {};
  EXPECT_EQ(t->dtype, "F32") << name;
  EXPECT_EQ(t->shape, (std::vector<int64_t>{rows, cols})) << name;
  if (t->dtype != "F32" || t->shape != std::vector<int64_t>{rows, cols}) return {};
  std::vector<float> v(static_cast<size_t>(rows * cols));
  std::memcpy(v.data(), f.data(*t), v.size() * sizeof(float));
  return std::vector<double>(v.begin(), v.end());
}

// Checks the folder `dir` against the adapter at `scale`: every tensor, B A
// against the placed delta (exact), and the config. Returns the number of
// modules checked.
int check_export(const s2ft_adapter *a, const std::string &dir, double scale, const nlohmann::json &base_name) {
  s2ft_model_shape s{};
  EXPECT_EQ(s2ft_adapter_info(a, &s, nullptr, nullptr), S2FT_OK);
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(dir + "/adapter_model.safetensors");
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  const nlohmann::json cfg = nlohmann::json::parse(read_text(dir + "/adapter_config.json"));

  std::vector<std::string> modules;
  nlohmann::json ranks = nlohmann::json::object();
  int64_t max_k = 0;
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t t : kTargets) {
      const Entry e = read_entry(a, s, l, t);
      if (e.lines.empty()) continue;
      const int64_t k = static_cast<int64_t>(e.lines.size()), len = line_length(s, t);
      int64_t out = 0, in = 0;
      weight_shape(s, t, &out, &in);
      const std::string m = module_name(l, t), stem = "base_model.model." + m;
      modules.push_back(m);
      ranks[m.substr(6)] = k;
      max_k = std::max(max_k, k);
      const std::vector<double> A = tensor_f64(f, stem + ".lora_A.weight", k, in);
      const std::vector<double> B = tensor_f64(f, stem + ".lora_B.weight", out, k);
      if (A.empty() || B.empty()) continue;
      // The expected Delta W: f32(scale * delta) on the lines, 0 elsewhere.
      std::vector<double> want(static_cast<size_t>(out * in), 0.0);
      for (int64_t i = 0; i < k; ++i)
        for (int64_t x = 0; x < len; ++x) {
          const float d = by_columns(t) ? e.delta[static_cast<size_t>(x * k + i)] : e.delta[static_cast<size_t>(i * len + x)];
          const double v = static_cast<float>(scale * static_cast<double>(d));
          const int64_t line = e.lines[static_cast<size_t>(i)];
          want[static_cast<size_t>(by_columns(t) ? x * in + line : line * in + x)] = v;
        }
      const std::vector<double> got = ref_matmul(B, out, k, false, A, k, in, false);
      int64_t differ = 0;
      for (size_t i = 0; i < want.size(); ++i)
        if (!(got[i] == want[i])) ++differ;
      EXPECT_EQ(differ, 0) << m << ": B A differs from the placed delta in " << differ << " elements";
      if (scale == 1.0) {
        // The delta factor is the delta itself, bit for bit.
        const std::vector<double> &factor = by_columns(t) ? B : A;
        size_t same = 0;
        for (size_t i = 0; i < factor.size(); ++i) same += factor[i] == static_cast<double>(e.delta[i]) ? 1 : 0;
        EXPECT_EQ(same, factor.size()) << m << ": the delta factor is not the delta";
      }
    }

  EXPECT_EQ(f.tensors().size(), 2 * modules.size());
  EXPECT_EQ(cfg.at("peft_type"), "LORA");
  EXPECT_EQ(cfg.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(cfg.at("r"), max_k);
  EXPECT_EQ(cfg.at("lora_alpha"), max_k);
  EXPECT_EQ(cfg.at("rank_pattern"), ranks);
  EXPECT_EQ(cfg.at("alpha_pattern"), ranks);
  EXPECT_EQ(cfg.at("target_modules"), nlohmann::json(modules));
  EXPECT_EQ(cfg.at("lora_dropout"), 0.0);
  EXPECT_EQ(cfg.at("bias"), "none");
  EXPECT_EQ(cfg.at("fan_in_fan_out"), false);
  EXPECT_EQ(cfg.at("use_rslora"), false);
  EXPECT_EQ(cfg.at("use_dora"), false);
  EXPECT_EQ(cfg.at("init_lora_weights"), true);
  EXPECT_EQ(cfg.at("modules_to_save"), nullptr);
  EXPECT_EQ(cfg.at("base_model_name_or_path"), base_name);
  return static_cast<int>(modules.size());
}

// A POSIX extended regular expression (anchored with ^...$ by the caller,
// as Python's re.match with a final $ is).
class Regex {
 public:
  explicit Regex(const std::string &pattern) : ok_(regcomp(&re_, pattern.c_str(), REG_EXTENDED | REG_NOSUB) == 0) {
    EXPECT_TRUE(ok_) << "bad regular expression " << pattern;
  }
  ~Regex() {
    if (ok_) regfree(&re_);
  }
  Regex(const Regex &) = delete;
  Regex &operator=(const Regex &) = delete;
  bool matches(const std::string &s) const { return ok_ && regexec(&re_, s.c_str(), 0, nullptr, 0) == 0; }

 private:
  regex_t re_;
  bool ok_;
};

// A random shape: GQA groups of 1 to 3, small odd sizes.
s2ft_model_shape random_shape(Random &rng) {
  s2ft_model_shape s{};
  s.n_layers = 1 + static_cast<int32_t>(rng.below(3));
  s.n_kv_heads = 1 + static_cast<int32_t>(rng.below(3));
  s.n_heads = s.n_kv_heads * (1 + static_cast<int32_t>(rng.below(3)));
  s.head_dim = 1 + static_cast<int32_t>(rng.below(4));
  s.d_model = 1 + static_cast<int32_t>(rng.below(9));
  s.d_ff = 1 + static_cast<int32_t>(rng.below(13));
  return s;
}

// Sets (layer, t) of `a` to k shuffled lines with a random delta.
void set_random_entry(s2ft_adapter *a, const s2ft_model_shape &s, int32_t layer, int32_t t, int64_t k, Random &rng) {
  const std::vector<int64_t> lines = shuffled_lines(rng, line_count(s, t), k);
  const int64_t len = line_length(s, t);
  HostMatrix d = by_columns(t) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
  d.fill_random(rng, 0.1);
  ASSERT_EQ(s2ft_adapter_set(a, layer, t, lines.data(), k, &d.t, nullptr), S2FT_OK) << s2ft_last_error();
}

// An adapter over `s` with, per (layer, target), no entry, k = 1, k = all
// lines or a k in between, chosen at random; at least one entry.
void fill_random_adapter(s2ft_adapter *a, const s2ft_model_shape &s, Random &rng) {
  bool any = false;
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t t : kTargets) {
      const int64_t n = line_count(s, t), pick = rng.below(4);
      if (pick == 0) continue;
      const int64_t k = pick == 1 ? 1 : pick == 2 ? n : 1 + rng.below(n);
      set_random_entry(a, s, l, t, k, rng);
      any = true;
    }
  if (!any) set_random_entry(a, s, 0, kTargets[rng.below(4)], 1, rng);
}

TEST(ExportPeft, OptionsInit) {
  s2ft_peft_export_options o;
  std::memset(&o, 0x5a, sizeof o);
  ASSERT_EQ(s2ft_peft_export_options_init(&o, S2FT_PEFT_EXPORT_OPTIONS_VERSION), S2FT_OK);
  EXPECT_EQ(o.version, static_cast<uint32_t>(S2FT_PEFT_EXPORT_OPTIONS_VERSION));
  EXPECT_EQ(o.base_model_name_or_path, nullptr);
  EXPECT_TRUE(std::isnan(o.scale));
  EXPECT_S2FT_ERROR(s2ft_peft_export_options_init(nullptr, S2FT_PEFT_EXPORT_OPTIONS_VERSION),
                    S2FT_ERR_INVALID_ARGUMENT, "opts is NULL");
  EXPECT_S2FT_ERROR(s2ft_peft_export_options_init(&o, 2), S2FT_ERR_INVALID_ARGUMENT, "unknown options version 2");
}

// Random shapes and entries at the adapter's default scale (opts NULL),
// which is 1 for half the seeds.
TEST(ExportPeft, RandomAdaptersAreExact) {
  int modules = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Random rng(seed);
    const s2ft_model_shape s = random_shape(rng);
    const double scales[4] = {1.0, 1.0, 0.37, -2.5};
    const double scale = scales[seed % 4];
    AdapterOwner a;
    ASSERT_EQ(s2ft_adapter_create(&s, "random", scale, &a.a), S2FT_OK) << s2ft_last_error();
    fill_random_adapter(a.a, s, rng);
    const std::string dir = fresh_path("random");
    ASSERT_EQ(s2ft_adapter_export_peft(a.a, dir.c_str(), nullptr), S2FT_OK) << s2ft_last_error();
    modules += check_export(a.a, dir, scale, nullptr);
    fs::remove_all(dir);
  }
  EXPECT_GT(modules, 100);
}

// Every target at k = 1 and at k = all lines, on a GQA shape.
TEST(ExportPeft, OneLineAndAllLines) {
  const s2ft_model_shape s{2, 6, 6, 2, 3, 10};
  Random rng(11);
  AdapterOwner a;
  ASSERT_EQ(s2ft_adapter_create(&s, "edges", 1.0, &a.a), S2FT_OK);
  for (int32_t t : kTargets) {
    set_random_entry(a.a, s, 0, t, 1, rng);
    set_random_entry(a.a, s, 1, t, line_count(s, t), rng);
  }
  const std::string dir = fresh_path("edges");
  ASSERT_EQ(s2ft_adapter_export_peft(a.a, dir.c_str(), nullptr), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(check_export(a.a, dir, 1.0, nullptr), 8);
  fs::remove_all(dir);
}

// A fused adapter is an adapter: its summed deltas export the same way.
TEST(ExportPeft, FusedAdapter) {
  const s2ft_model_shape s{3, 7, 4, 2, 2, 9};
  Random rng(5);
  AdapterOwner a, b, fused;
  ASSERT_EQ(s2ft_adapter_create(&s, "a", 1.0, &a.a), S2FT_OK);
  ASSERT_EQ(s2ft_adapter_create(&s, "b", 1.0, &b.a), S2FT_OK);
  fill_random_adapter(a.a, s, rng);
  fill_random_adapter(b.a, s, rng);
  const s2ft_adapter *list[2] = {a.a, b.a};
  const double weights[2] = {1.0, -0.5};
  ASSERT_EQ(s2ft_adapter_fuse(list, weights, 2, &fused.a), S2FT_OK) << s2ft_last_error();
  const std::string dir = fresh_path("fused");
  ASSERT_EQ(s2ft_adapter_export_peft(fused.a, dir.c_str(), nullptr), S2FT_OK) << s2ft_last_error();
  EXPECT_GT(check_export(fused.a, dir, 1.0, nullptr), 0);
  fs::remove_all(dir);
}

// opts->scale overrides the default scale; the base name is written as
// given, "" and NULL as null.
TEST(ExportPeft, Options) {
  const s2ft_model_shape s{2, 5, 4, 4, 2, 6};
  Random rng(3);
  AdapterOwner a;
  ASSERT_EQ(s2ft_adapter_create(&s, "opts", 4.0, &a.a), S2FT_OK);
  fill_random_adapter(a.a, s, rng);
  s2ft_peft_export_options o;
  ASSERT_EQ(s2ft_peft_export_options_init(&o, S2FT_PEFT_EXPORT_OPTIONS_VERSION), S2FT_OK);
  o.scale = 0.3;
  o.base_model_name_or_path = "org/base-model \xc3\xa9";
  const std::string dir = fresh_path("opts");
  ASSERT_EQ(s2ft_adapter_export_peft(a.a, dir.c_str(), &o), S2FT_OK) << s2ft_last_error();
  check_export(a.a, dir, 0.3, "org/base-model \xc3\xa9");
  o.scale = std::nan("");
  o.base_model_name_or_path = "";
  ASSERT_EQ(s2ft_adapter_export_peft(a.a, dir.c_str(), &o), S2FT_OK) << s2ft_last_error();
  check_export(a.a, dir, 4.0, nullptr);
  fs::remove_all(dir);
}

// An existing folder is written into: other files stay, the two files are
// replaced; a trailing '/' names the same folder.
TEST(ExportPeft, ExistingFolder) {
  const s2ft_model_shape s{1, 4, 2, 1, 2, 5};
  Random rng(8);
  AdapterOwner a, b;
  ASSERT_EQ(s2ft_adapter_create(&s, "a", 1.0, &a.a), S2FT_OK);
  ASSERT_EQ(s2ft_adapter_create(&s, "b", 1.0, &b.a), S2FT_OK);
  fill_random_adapter(a.a, s, rng);
  set_random_entry(b.a, s, 0, S2FT_TARGET_UP, 2, rng);
  const std::string dir = fresh_path("existing");
  fs::create_directory(dir);
  { std::ofstream(dir + "/README.md") << "kept\n"; }
  ASSERT_EQ(s2ft_adapter_export_peft(a.a, (dir + "/").c_str(), nullptr), S2FT_OK) << s2ft_last_error();
  check_export(a.a, dir, 1.0, nullptr);
  ASSERT_EQ(s2ft_adapter_export_peft(b.a, dir.c_str(), nullptr), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(check_export(b.a, dir, 1.0, nullptr), 1);
  EXPECT_EQ(read_text(dir + "/README.md"), "kept\n");
  int files = 0;
  for (const auto &e : fs::directory_iterator(dir)) (void)e, ++files;
  EXPECT_EQ(files, 3);  // no temporaries left
  fs::remove_all(dir);
}

// PEFT finds a module's rank and alpha with the first key k of
// rank_pattern/alpha_pattern for which the module's full name matches
// ".*\.k$" (peft 0.13) or "(.*\.)?(k)$" (later peft, vLLM), re.match
// anchoring at the start. On a 23-layer model every key must match its own
// module only (layer 1 against 11 and 21, o_proj against v_proj, ...).
TEST(ExportPeft, PatternKeysMatchOnlyTheirModule) {
  const s2ft_model_shape s{23, 4, 2, 1, 2, 3};
  Random rng(1);
  AdapterOwner a;
  ASSERT_EQ(s2ft_adapter_create(&s, "deep", 1.0, &a.a), S2FT_OK);
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t t : kTargets) set_random_entry(a.a, s, l, t, 1 + (l + t) % 2, rng);
  const std::string dir = fresh_path("deep");
  ASSERT_EQ(s2ft_adapter_export_peft(a.a, dir.c_str(), nullptr), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(check_export(a.a, dir, 1.0, nullptr), 23 * 4);
  const nlohmann::json cfg = nlohmann::json::parse(read_text(dir + "/adapter_config.json"));
  std::vector<std::string> names;  // every projection module, trained or not
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (const char *p : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      names.push_back("model.layers." + std::to_string(l) + "." + p);
  int checked = 0;
  for (const auto &kv : cfg.at("rank_pattern").items()) {
    const std::string key = kv.key();
    const Regex old_rule("^.*\\." + key + "$"), new_rule("^(.*\\.)?(" + key + ")$");
    for (const std::string &name : names) {
      const bool own = name == "model." + key;
      EXPECT_EQ(old_rule.matches(name), own) << key << " vs " << name;
      EXPECT_EQ(new_rule.matches(name), own) << key << " vs " << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 23 * 4 * 23 * 7);
  fs::remove_all(dir);
}

TEST(ExportPeft, Errors) {
  const s2ft_model_shape s{2, 4, 2, 1, 2, 5};
  Random rng(2);
  AdapterOwner a, empty;
  ASSERT_EQ(s2ft_adapter_create(&s, "a", 1.0, &a.a), S2FT_OK);
  ASSERT_EQ(s2ft_adapter_create(&s, "empty", 1.0, &empty.a), S2FT_OK);
  set_random_entry(a.a, s, 1, S2FT_TARGET_DOWN, 2, rng);
  const std::string dir = fresh_path("errors");
  s2ft_peft_export_options o;
  ASSERT_EQ(s2ft_peft_export_options_init(&o, S2FT_PEFT_EXPORT_OPTIONS_VERSION), S2FT_OK);

  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(nullptr, dir.c_str(), nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "adapter is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out_dir is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, "", nullptr), S2FT_ERR_INVALID_ARGUMENT, "out_dir is empty");
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(empty.a, dir.c_str(), nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "has no entries");
  s2ft_peft_export_options bad = o;
  bad.version = 0;
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), &bad), S2FT_ERR_INVALID_ARGUMENT,
                    "s2ft_peft_export_options_init");
  bad = o;
  bad.scale = INFINITY;
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), &bad), S2FT_ERR_INVALID_ARGUMENT, "not finite");
  bad.scale = 1e300;
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), &bad), S2FT_ERR_INVALID_ARGUMENT, "overflows f32");
  bad = o;
  bad.base_model_name_or_path = "bad \xff utf-8";
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), &bad), S2FT_ERR_INVALID_ARGUMENT, "not valid UTF-8");
  EXPECT_FALSE(fs::exists(dir)) << "a refused export made its folder";

  // Folders that cannot be made or written.
  const std::string missing_parent = dir + "/no/such";
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, missing_parent.c_str(), nullptr), S2FT_ERR_IO,
                    "parent folder does not exist");
  const std::string file = fresh_path("a_file");
  { std::ofstream(file) << "x"; }
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, file.c_str(), nullptr), S2FT_ERR_IO, "is not a folder");
  const std::string under_file = file + "/sub";
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, under_file.c_str(), nullptr), S2FT_ERR_IO, "cannot make out_dir");
  fs::create_directories(dir + "/adapter_config.json");  // a folder where the config goes
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), nullptr), S2FT_ERR_IO, "adapter_config.json");
  fs::remove_all(dir);
  fs::remove(file);
}

}  // namespace
