// Owning wrappers for the library's opaque handles (destroyed on scope exit,
// also when a command fails half-way).
#pragma once

#include <memory>

#include "errors.hpp"
#include "file_kind.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

struct HandleDeleter {
  void operator()(s2ft_context *p) const { s2ft_context_destroy(p); }
  void operator()(s2ft_statistics *p) const { s2ft_statistics_destroy(p); }
  void operator()(s2ft_selection *p) const { s2ft_selection_destroy(p); }
  void operator()(s2ft_adapter *p) const { s2ft_adapter_destroy(p); }
  void operator()(s2ft_model *p) const { s2ft_model_destroy(p); }
};

using ContextPtr = std::unique_ptr<s2ft_context, HandleDeleter>;
using StatisticsPtr = std::unique_ptr<s2ft_statistics, HandleDeleter>;
using SelectionPtr = std::unique_ptr<s2ft_selection, HandleDeleter>;
using AdapterPtr = std::unique_ptr<s2ft_adapter, HandleDeleter>;
using ModelPtr = std::unique_ptr<s2ft_model, HandleDeleter>;

// A CPU context with the library's defaults.
inline ContextPtr make_cpu_context() {
  s2ft_context *ctx = nullptr;
  check(s2ft_context_create(nullptr, &ctx));
  return ContextPtr(ctx);
}

// Loaders that first check the file is of the kind asked for, so a mix-up
// reads "X is an adapter, not a selection file".
inline SelectionPtr load_selection(const std::string &path) {
  require_kind(path, FileKind::kSelection);
  s2ft_selection *sel = nullptr;
  check(s2ft_selection_load(path.c_str(), &sel));
  return SelectionPtr(sel);
}

inline AdapterPtr load_adapter(const std::string &path) {
  require_kind(path, FileKind::kAdapter);
  s2ft_adapter *a = nullptr;
  check(s2ft_adapter_load(path.c_str(), &a));
  return AdapterPtr(a);
}

}  // namespace cli
}  // namespace s2ft
