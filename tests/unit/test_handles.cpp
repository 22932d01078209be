// Handles used after destroy, destroyed twice, or of the wrong kind: the
// library refuses them (S2FT_ERR_INVALID_ARGUMENT naming the handle) and a
// second destroy does nothing, instead of using freed memory. Best effort
// by design (freed memory may be reused), and it reads freed memory to
// tell, so this suite is not built under AddressSanitizer, which would
// (rightly) report exactly that read.
#include <gtest/gtest.h>

#include <cstdint>

#include "s2ft/s2ft.h"
#include "support/test_util.hpp"

namespace {

const s2ft_model_shape kShape{1, 4, 2, 1, 2, 3};

TEST(Handles, UseAfterDestroyAndDoubleDestroyAreRefused) {
  const int64_t before = s2ft_live_handles();
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  s2ft_adapter *adapter = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 1.0, &adapter));
  s2ft_statistics *stats = nullptr;
  ASSERT_S2FT_OK(s2ft_statistics_create(ctx, &kShape, &stats));
  s2ft_optimizer_options oo;
  ASSERT_S2FT_OK(s2ft_optimizer_options_init(&oo, S2FT_OPTIMIZER_OPTIONS_VERSION));
  s2ft_optimizer *opt = nullptr;
  ASSERT_S2FT_OK(s2ft_optimizer_create(ctx, &oo, &opt));
  const int64_t offsets[2] = {0, 1}, indices[1] = {2};
  const float values[1] = {0.5f};
  s2ft_sparse_delta *delta = nullptr;
  ASSERT_S2FT_OK(s2ft_sparse_delta_create(ctx, 1, 3, offsets, indices, values, 1, &delta));
  EXPECT_EQ(s2ft_live_handles(), before + 5);

  s2ft_model_shape shape{};
  int64_t n = 0;
  s2ft_adapter_destroy(adapter);
  EXPECT_S2FT_ERROR(s2ft_adapter_info(adapter, &shape, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "adapter is not a live s2ft_adapter");
  s2ft_adapter_destroy(adapter);  // again: nothing happens
  s2ft_optimizer_destroy(opt);
  EXPECT_S2FT_ERROR(s2ft_optimizer_step_count(opt, &n), S2FT_ERR_INVALID_ARGUMENT, "opt is not a live s2ft_optimizer");
  s2ft_optimizer_destroy(opt);
  s2ft_statistics_destroy(stats);
  double sums[4];
  EXPECT_S2FT_ERROR(s2ft_statistics_get(stats, 0, S2FT_TARGET_O, S2FT_STAT_WEIGHT, sums, 4, &n),
                    S2FT_ERR_INVALID_ARGUMENT, "stats is not a live s2ft_statistics");
  s2ft_statistics_destroy(stats);
  s2ft_sparse_delta_destroy(delta);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_info(delta, &n, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "delta is not a live s2ft_sparse_delta");
  s2ft_sparse_delta_destroy(delta);
  s2ft_context_destroy(ctx);
  void *stream = nullptr;
  EXPECT_S2FT_ERROR(s2ft_context_stream(ctx, &stream), S2FT_ERR_INVALID_ARGUMENT, "ctx is not a live s2ft_context");
  s2ft_context_destroy(ctx);
  EXPECT_EQ(s2ft_live_handles(), before);  // each object was destroyed exactly once
}

TEST(Handles, AHandleOfAnotherKindIsRefused) {
  s2ft_adapter *adapter = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 1.0, &adapter));
  // A caller's type confusion: an adapter passed where a selection belongs.
  const s2ft_selection *not_a_selection = reinterpret_cast<const s2ft_selection *>(adapter);
  s2ft_model_shape shape{};
  EXPECT_S2FT_ERROR(s2ft_selection_shape(not_a_selection, &shape), S2FT_ERR_INVALID_ARGUMENT,
                    "is not a live s2ft_selection");
  s2ft_selection_destroy(const_cast<s2ft_selection *>(not_a_selection));  // refused too: nothing happens
  ASSERT_S2FT_OK(s2ft_adapter_info(adapter, &shape, nullptr, nullptr));  // the adapter is intact
  EXPECT_EQ(shape.d_ff, kShape.d_ff);
  s2ft_adapter_destroy(adapter);
}

}  // namespace
