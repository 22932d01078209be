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
// default scale is 1. Inputs for different model shapes or made against
// different base weights are refused naming both files.
AdapterPtr fuse_adapters(const LoadedAdapters &loaded);

// Refuses an adapter (`what` names it) made for another model shape than
// the checkpoint folder's.
void require_adapter_fits(const s2ft_adapter *adapter, const std::string &what, const s2ft_model_shape &shape,
                          const std::string &ckpt_dir);

// Renames an adapter, keeping its default scale.
void set_adapter_name(s2ft_adapter *adapter, const std::string &name);

}  // namespace cli
}  // namespace s2ft
