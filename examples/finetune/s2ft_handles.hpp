// Owning handles for the libs2ft objects the example creates.
#pragma once

#include <memory>

#include <s2ft/s2ft.h>

namespace ft {

struct S2ftDeleter {
  void operator()(s2ft_context *p) const { s2ft_context_destroy(p); }
  void operator()(s2ft_statistics *p) const { s2ft_statistics_destroy(p); }
  void operator()(s2ft_selection *p) const { s2ft_selection_destroy(p); }
  void operator()(s2ft_optimizer *p) const { s2ft_optimizer_destroy(p); }
  void operator()(s2ft_adapter *p) const { s2ft_adapter_destroy(p); }
  void operator()(s2ft_model *p) const { s2ft_model_destroy(p); }
  void operator()(s2ft_checkpoint *p) const { s2ft_checkpoint_destroy(p); }
};
using ContextPtr = std::unique_ptr<s2ft_context, S2ftDeleter>;
using StatisticsPtr = std::unique_ptr<s2ft_statistics, S2ftDeleter>;
using SelectionPtr = std::unique_ptr<s2ft_selection, S2ftDeleter>;
using OptimizerPtr = std::unique_ptr<s2ft_optimizer, S2ftDeleter>;
using AdapterPtr = std::unique_ptr<s2ft_adapter, S2ftDeleter>;
using ModelPtr = std::unique_ptr<s2ft_model, S2ftDeleter>;
using CheckpointPtr = std::unique_ptr<s2ft_checkpoint, S2ftDeleter>;  // destroy its models first

}  // namespace ft
