// Adapter arguments of `s2ft merge` and `s2ft fuse`: "PATH" or "PATH:SCALE".
#pragma once

#include <string>
#include <vector>

#include "handles.hpp"

namespace s2ft {
namespace cli {

struct AdapterArg {
  std::string path;
  double scale = 0.0;
  bool has_scale = false;
};

// "a.safetensors:0.5" -> (a.safetensors, 0.5). A path that exists as given
// is taken whole, so a file name containing ':' still works.
AdapterArg parse_adapter_arg(const std::string &text);

struct LoadedAdapters {
  std::vector<std::string> paths;
  std::vector<AdapterPtr> adapters;
  std::vector<double> scales;  // the given scale, or the adapter's default scale
};

LoadedAdapters load_adapters(const std::vector<std::string> &texts);

// One adapter holding sum_i scales[i] * delta_i (s2ft_adapter_fuse); its
// default scale is 1.
AdapterPtr fuse_adapters(const LoadedAdapters &loaded);

// Renames an adapter / sets its default scale (not in the C API: the tool
// links the library statically and edits the object).
void set_adapter_name(s2ft_adapter *adapter, const std::string &name);
void set_adapter_default_scale(s2ft_adapter *adapter, double scale);

}  // namespace cli
}  // namespace s2ft
