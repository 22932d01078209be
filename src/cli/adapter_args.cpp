#include "adapter_args.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "args.hpp"
#include "checkpoint.hpp"

namespace s2ft {
namespace cli {

namespace {

const int32_t kTargets[S2FT_NUM_TARGETS] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

s2ft_model_shape adapter_shape(const s2ft_adapter *a) {
  s2ft_model_shape s{};
  check(s2ft_adapter_info(a, &s, nullptr, nullptr));
  return s;
}

struct Fingerprinted {
  std::vector<int64_t> lines;
  std::vector<uint64_t> fingerprints;
};

Fingerprinted adapter_lines(const s2ft_adapter *a, int32_t layer, int32_t target) {
  Fingerprinted f;
  int64_t n = 0;
  check(s2ft_adapter_lines(a, layer, target, nullptr, nullptr, 0, &n));
  f.lines.resize(static_cast<size_t>(n));
  f.fingerprints.resize(static_cast<size_t>(n));
  check(s2ft_adapter_lines(a, layer, target, f.lines.data(), f.fingerprints.data(), n, &n));
  return f;
}

void require_same_shapes(const LoadedAdapters &loaded) {
  const s2ft_model_shape first = adapter_shape(loaded.adapters[0].get());
  for (size_t i = 1; i < loaded.adapters.size(); ++i) {
    const s2ft_model_shape s = adapter_shape(loaded.adapters[i].get());
    if (std::memcmp(&s, &first, sizeof s) != 0)
      die(loaded.paths[i] + " is for another model shape (" + shape_text(s) + ") than " + loaded.paths[0] + " (" +
          shape_text(first) + ")");
  }
}

// Two adapters that touch the same base line with different (known)
// fingerprints were made against different base weights; fusing them
// would mix two models.
void require_same_base(const LoadedAdapters &loaded) {
  const int32_t n_layers = adapter_shape(loaded.adapters[0].get()).n_layers;
  for (int32_t l = 0; l < n_layers; ++l)
    for (int32_t t : kTargets) {
      std::map<int64_t, std::pair<uint64_t, size_t>> seen;  // line -> (fingerprint, adapter)
      for (size_t i = 0; i < loaded.adapters.size(); ++i) {
        const Fingerprinted f = adapter_lines(loaded.adapters[i].get(), l, t);
        for (size_t j = 0; j < f.lines.size(); ++j) {
          if (f.fingerprints[j] == 0) continue;  // unknown: never checked
          auto it = seen.emplace(f.lines[j], std::make_pair(f.fingerprints[j], i)).first;
          if (it->second.first != f.fingerprints[j])
            die(loaded.paths[it->second.second] + " and " + loaded.paths[i] +
                " were made against different base weights (they differ at " + line_text(l, t, f.lines[j]) +
                "); they cannot be fused");
        }
      }
    }
}

// The library names fuse's inputs by position ("adapters[1]", "weights[1]");
// the tool's user knows them by file and scale.
std::string with_file_names(std::string message, const LoadedAdapters &loaded) {
  std::string inputs;
  for (size_t i = 0; i < loaded.paths.size(); ++i) {
    const std::string n = std::to_string(i);
    message = replace_all(message, "adapters[" + n + "]", loaded.paths[i]);
    message = replace_all(message, "weights[" + n + "]", "the scale of " + loaded.paths[i]);
    std::ostringstream scale;
    scale << loaded.scales[i];
    inputs += (i ? ", " : "") + loaded.paths[i] + " at scale " + scale.str();
  }
  return "fusing " + inputs + ": " + replace_all(message, "smaller weights", "smaller scales");
}

}  // namespace

AdapterArg parse_adapter_arg(const std::string &text) {
  AdapterArg a;
  a.path = text;
  std::error_code ec;
  if (std::filesystem::exists(text, ec)) return a;
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return a;
  a.path = text.substr(0, colon);
  a.scale = parse_double("the scale of adapter " + a.path, text.substr(colon + 1));
  a.has_scale = true;
  return a;
}

LoadedAdapters load_adapters(const std::vector<std::string> &texts) {
  LoadedAdapters out;
  for (const std::string &t : texts) {
    const AdapterArg arg = parse_adapter_arg(t);
    AdapterPtr a = load_adapter(arg.path);
    double scale = arg.scale;
    if (!arg.has_scale) check(s2ft_adapter_info(a.get(), nullptr, &scale, nullptr));
    out.paths.push_back(arg.path);
    out.adapters.push_back(std::move(a));
    out.scales.push_back(scale);
  }
  return out;
}

AdapterPtr fuse_adapters(const LoadedAdapters &loaded) {
  require_same_shapes(loaded);
  require_same_base(loaded);
  std::vector<const s2ft_adapter *> list;
  for (const AdapterPtr &a : loaded.adapters) list.push_back(a.get());
  s2ft_adapter *fused = nullptr;
  if (s2ft_adapter_fuse(list.data(), loaded.scales.data(), static_cast<int64_t>(list.size()), &fused) != S2FT_OK)
    die(with_file_names(s2ft_last_error(), loaded));
  return AdapterPtr(fused);
}

void require_adapter_fits(const s2ft_adapter *adapter, const std::string &what, const s2ft_model_shape &shape,
                          const std::string &ckpt_dir) {
  const s2ft_model_shape s = adapter_shape(adapter);
  if (std::memcmp(&s, &shape, sizeof s) != 0)
    die(what + " is for another model shape (" + shape_text(s) + ") than " + ckpt_dir + " (" + shape_text(shape) + ")");
}

void set_adapter_name(s2ft_adapter *adapter, const std::string &name) {
  double scale = 1.0;
  check(s2ft_adapter_info(adapter, nullptr, &scale, nullptr));
  check(s2ft_adapter_set_info(adapter, name.c_str(), scale));
}

}  // namespace cli
}  // namespace s2ft
