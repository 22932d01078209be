// Selection files: versioned JSON (docs/selection-format.md).
//
// The reader treats the file as hostile: size limit, nesting limit, every
// field's type and range, duplicate indices, and the permutations must be
// exactly the ones the indices induce (so a file cannot smuggle in a
// permutation that breaks the model, e.g. one that splits a KV group).
// Every allocation is bounded by the file's own content: arrays are
// compared with the shape before anything of the shape's size is built.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "io/atomic_file.hpp"
#include "io/input_file.hpp"
#include "io/strict_json.hpp"
#include "select/selection.hpp"

namespace s2ft {
namespace {

constexpr const char *kFormat = "s2ft-selection";
constexpr int64_t kVersion = 1;
constexpr size_t kMaxFileBytes = size_t{256} << 20;  // 256 MiB
constexpr size_t kMaxDepth = 16;                        // real files nest 4 deep

using ojson = nlohmann::ordered_json;
// Reading keeps member order too, so an "options" object is saved back unchanged.
using json = nlohmann::ordered_json;

const char *const kUnitKeys[S2FT_NUM_TARGETS] = {"O", "V", "DOWN", "UP"};

// ---- writing -----------------------------------------------------------------

std::string serialize(const s2ft_selection &sel) {
  const s2ft_model_shape &s = sel.shape;
  ojson shape = {{"n_layers", s.n_layers}, {"d_model", s.d_model},       {"n_heads", s.n_heads},
                 {"n_kv_heads", s.n_kv_heads}, {"head_dim", s.head_dim}, {"d_ff", s.d_ff}};
  // One layer per line keeps big files readable and diffable.
  std::string out = "{\n";
  out += "  \"format\": " + ojson(kFormat).dump() + ",\n";
  out += "  \"version\": " + std::to_string(kVersion) + ",\n";
  out += "  \"shape\": " + shape.dump() + ",\n";
  out += "  \"head_granularity\": " + ojson(head_granularity_name(sel.head_granularity)).dump() + ",\n";
  if (!sel.options_json.empty()) out += "  \"options\": " + sel.options_json + ",\n";
  out += "  \"layers\": [";
  for (size_t l = 0; l < sel.layers.size(); ++l) {
    ojson layer;
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) layer[kUnitKeys[t]] = sel.layers[l].units[static_cast<size_t>(t)];
    layer["perm_heads"] = sel.perms[l].heads.order;
    layer["perm_channels"] = sel.perms[l].channels.order;
    out += (l == 0 ? "\n    " : ",\n    ") + layer.dump();
  }
  out += "\n  ]\n}\n";
  return out;
}

// ---- reading -------------------------------------------------------------------

[[noreturn]] void bad(const std::string &path, const std::string &what) {
  fail(S2FT_ERR_FORMAT, "'" + path + "' is not a valid selection file: " + what);
}


class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  const json &member(const json &obj, const char *key, const std::string &where) const {
    auto it = obj.find(key);
    if (it == obj.end()) bad(path_, where + " has no \"" + key + "\"");
    return *it;
  }

  int64_t integer(const json &v, const std::string &what, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) bad(path_, what + " must be an integer, got " + std::string(v.type_name()));
    int64_t x;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) bad(path_, what + " " + std::to_string(u) + " is out of range");
      x = static_cast<int64_t>(u);
    } else {
      x = v.get<int64_t>();
    }
    if (x < lo || x > hi)
      bad(path_, what + " " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
    return x;
  }

  // An array of integers in [0, hi), at most max_len long (checked before
  // anything is allocated).
  std::vector<int64_t> index_array(const json &v, const std::string &what, size_t max_len, int64_t hi) const {
    if (!v.is_array()) bad(path_, what + " must be an array, got " + std::string(v.type_name()));
    if (v.size() > max_len)
      bad(path_, what + " has " + std::to_string(v.size()) + " entries, more than the " + std::to_string(max_len) +
                     " that exist");
    std::vector<int64_t> out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(integer(v[i], what + "[" + std::to_string(i) + "]", 0, hi - 1));
    return out;
  }

  s2ft_model_shape shape(const json &root) const {
    const json &js = member(root, "shape", "the file");
    if (!js.is_object()) bad(path_, "\"shape\" must be an object");
    s2ft_model_shape s{};
    const int64_t imax = std::numeric_limits<int32_t>::max();
    s.n_layers = static_cast<int32_t>(integer(member(js, "n_layers", "shape"), "shape.n_layers", 1, imax));
    s.d_model = static_cast<int32_t>(integer(member(js, "d_model", "shape"), "shape.d_model", 1, imax));
    s.n_heads = static_cast<int32_t>(integer(member(js, "n_heads", "shape"), "shape.n_heads", 1, imax));
    s.n_kv_heads = static_cast<int32_t>(integer(member(js, "n_kv_heads", "shape"), "shape.n_kv_heads", 1, imax));
    s.head_dim = static_cast<int32_t>(integer(member(js, "head_dim", "shape"), "shape.head_dim", 1, imax));
    s.d_ff = static_cast<int32_t>(integer(member(js, "d_ff", "shape"), "shape.d_ff", 1, imax));
    if (s.n_heads % s.n_kv_heads != 0) bad(path_, "shape.n_heads is not a multiple of shape.n_kv_heads");
    return s;
  }

  int32_t granularity(const json &root) const {
    const json &g = member(root, "head_granularity", "the file");
    if (g == "by_group") return S2FT_HEADS_BY_GROUP;
    if (g == "single") return S2FT_HEADS_SINGLE;
    bad(path_, "\"head_granularity\" must be \"by_group\" or \"single\"");
  }

  // A layer's array `key` must be an array of exactly n entries.
  void require_length(const json &layer, const char *key, int64_t n, const std::string &where) const {
    const json &a = member(layer, key, where);
    if (!a.is_array()) bad(path_, where + "." + key + " must be an array");
    if (static_cast<int64_t>(a.size()) != n)
      bad(path_, where + "." + key + " has " + std::to_string(a.size()) + " entries but the shape needs " +
                     std::to_string(n));
  }

  // The permutation array `key` of a layer must be a permutation of [0, n)
  // and equal `expected` (the one the indices induce).
  void check_permutation(const json &layer, const char *key, const std::vector<int64_t> &expected,
                         const std::string &where) const {
    const std::string what = where + "." + key;
    const std::vector<int64_t> p = index_array(member(layer, key, where), what, expected.size(),
                                               static_cast<int64_t>(expected.size()));
    if (p.size() != expected.size())
      bad(path_, what + " has " + std::to_string(p.size()) + " entries but must have " +
                     std::to_string(expected.size()));
    std::vector<char> seen(p.size(), 0);
    for (int64_t v : p) {
      if (seen[static_cast<size_t>(v)]) bad(path_, what + " is not a permutation: " + std::to_string(v) + " repeats");
      seen[static_cast<size_t>(v)] = 1;
    }
    if (p != expected) bad(path_, what + " is not the permutation the layer's indices induce (see the format docs)");
  }

  std::unique_ptr<s2ft_selection> read(const std::string &text) const {
    // Duplicate keys and deep nesting are refused, as in every reader.
    const json root = io::parse_strict_json(text.data(), text.data() + text.size(), kMaxDepth,
                                            [&](const std::string &m) { bad(path_, m); });
    if (!root.is_object()) bad(path_, "the top level must be a JSON object");
    const json &format = member(root, "format", "the file");
    if (format != kFormat) bad(path_, "\"format\" must be \"" + std::string(kFormat) + "\"");
    const json &version = member(root, "version", "the file");
    if (!version.is_number_integer() || version != kVersion)
      bad(path_, "unsupported \"version\" " + version.dump() + " (this library reads version " +
                     std::to_string(kVersion) + ")");
    const s2ft_model_shape s = shape(root);
    const int32_t gran = granularity(root);
    std::string options;
    if (auto it = root.find("options"); it != root.end()) {
      if (!it->is_object()) bad(path_, "\"options\" must be an object");
      options = it->dump();
    }
    const json &jl = member(root, "layers", "the file");
    if (!jl.is_array()) bad(path_, "\"layers\" must be an array");
    if (jl.size() != static_cast<size_t>(s.n_layers))
      bad(path_, "\"layers\" has " + std::to_string(jl.size()) + " entries but shape.n_layers is " +
                     std::to_string(s.n_layers));

    std::vector<LayerUnits> layers(jl.size());
    for (size_t l = 0; l < jl.size(); ++l) {
      const std::string where = "layers[" + std::to_string(l) + "]";
      if (!jl[l].is_object()) bad(path_, where + " must be an object");
      // The shape is a claim: nothing sized by it (unit tables, the derived
      // permutation) is allocated before the file's own arrays back it.
      require_length(jl[l], "perm_heads", s.n_heads, where);
      require_length(jl[l], "perm_channels", s.d_ff, where);
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        const int64_t n = selection_units(s, t, gran);
        const std::string what = where + "." + kUnitKeys[t];
        std::vector<int64_t> &u = layers[l].units[static_cast<size_t>(t)];
        u = index_array(member(jl[l], kUnitKeys[t], where), what, static_cast<size_t>(n), n);
        check_and_sort_units(s, gran, t, u, S2FT_ERR_FORMAT, "'" + path_ + "': " + what);
      }
      const LayerPermutation expected = derive_permutation(s, gran, layers[l]);
      check_permutation(jl[l], "perm_heads", expected.heads.order, where);
      check_permutation(jl[l], "perm_channels", expected.channels.order, where);
    }
    return make_selection(s, gran, std::move(layers), std::move(options));
  }

 private:
  std::string path_;
};

}  // namespace

std::unique_ptr<s2ft_selection> selection_from_text(const std::string &text, const std::string &what) {
  const Reader reader(what);
  try {
    return reader.read(text);
  } catch (const nlohmann::json::exception &e) {
    // Validation checks types before reading values, so this is a guard
    // against a missed case: still the file's fault, not a crash.
    bad(what, e.what());
  }
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_selection_save(const s2ft_selection *sel, const char *path) {
  return s2ft::guard("s2ft_selection_save", [&] {
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(path, "path");
    const std::string text = s2ft::serialize(s);
    s2ft::io::write_file_atomic(path, text.data(), text.size());
  });
}

S2FT_API s2ft_status s2ft_selection_load(const char *path, s2ft_selection **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_selection_load", [&] {
    s2ft::require_not_null(out, "out");
    s2ft::require_not_null(path, "path");
    const std::string text = s2ft::io::read_file(path, s2ft::kMaxFileBytes);
    *out = s2ft::selection_from_text(text, path).release();
  });
}

}  // extern "C"
