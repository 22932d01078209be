#include "adapter_args.hpp"

#include <cmath>
#include <filesystem>

#include "args.hpp"

namespace s2ft {
namespace cli {

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
  std::vector<const s2ft_adapter *> list;
  for (const AdapterPtr &a : loaded.adapters) list.push_back(a.get());
  s2ft_adapter *fused = nullptr;
  check(s2ft_adapter_fuse(list.data(), loaded.scales.data(), static_cast<int64_t>(list.size()), &fused));
  return AdapterPtr(fused);
}

void set_adapter_name(s2ft_adapter *adapter, const std::string &name) {
  double scale = 1.0;
  check(s2ft_adapter_info(adapter, nullptr, &scale, nullptr));
  check(s2ft_adapter_set_info(adapter, name.c_str(), scale));
}

void set_adapter_default_scale(s2ft_adapter *adapter, double scale) {
  if (!std::isfinite(scale)) die("--scale must be finite");
  check(s2ft_adapter_set_info(adapter, s2ft_adapter_name(adapter), scale));
}

}  // namespace cli
}  // namespace s2ft
