// Version, status strings, the thread-local last error, tensor descriptors,
// contexts and model shapes, through the public API only.
#include <thread>

#include "support/test_util.hpp"

namespace {

TEST(Version, MatchesHeader) {
  EXPECT_EQ(s2ft_version(), static_cast<uint32_t>(S2FT_VERSION_NUMBER));
  const std::string want = std::to_string(S2FT_VERSION_MAJOR) + "." + std::to_string(S2FT_VERSION_MINOR) + "." +
                           std::to_string(S2FT_VERSION_PATCH);
  EXPECT_EQ(std::string(s2ft_version_string()), want);
}

TEST(Status, EveryCodeHasADistinctString) {
  std::vector<std::string> seen;
  for (s2ft_status s = S2FT_OK; s >= S2FT_ERR_INTERNAL; --s) {
    const std::string str = s2ft_status_string(s);
    EXPECT_NE(str, "unknown status") << s;
    EXPECT_EQ(std::count(seen.begin(), seen.end(), str), 0) << str;
    seen.push_back(str);
  }
  EXPECT_STREQ(s2ft_status_string(-999), "unknown status");
  EXPECT_STREQ(s2ft_status_string(5), "unknown status");
}

TEST(LastError, NeverNullAndThreadLocal) {
  s2ft_clear_error();
  ASSERT_NE(s2ft_last_error(), nullptr);
  EXPECT_STREQ(s2ft_last_error(), "");
  EXPECT_EQ(s2ft_context_create(nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT);
  const std::string main_msg = s2ft_last_error();
  EXPECT_NE(main_msg.find("out is NULL"), std::string::npos) << main_msg;
  std::string other;
  std::thread t([&] {
    other = s2ft_last_error();  // a fresh thread has no error
    s2ft_tensor tt;
    s2ft_tensor_init(&tt, nullptr, 99, S2FT_DEVICE_CPU, 0, 1, nullptr);
  });
  t.join();
  EXPECT_EQ(other, "");
  EXPECT_EQ(std::string(s2ft_last_error()), main_msg);  // not overwritten by the other thread
  // Success does not clear it.
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  EXPECT_EQ(std::string(s2ft_last_error()), main_msg);
  s2ft_context_destroy(ctx);
}

TEST(Tensor, InitDescribesCompactRowMajorDlpack) {
  float buf[24];
  const int64_t shape[3] = {2, 3, 4};
  s2ft_tensor t;
  ASSERT_S2FT_OK(s2ft_tensor_init(&t, buf, S2FT_F32, S2FT_DEVICE_CPU, 0, 3, shape));
  EXPECT_EQ(t.data, buf);
  EXPECT_EQ(t.ndim, 3);
  EXPECT_EQ(t.device.type, 1);  // kDLCPU
  EXPECT_EQ(t.dtype.code, 2);   // kDLFloat
  EXPECT_EQ(t.dtype.bits, 32);
  EXPECT_EQ(t.dtype.lanes, 1);
  EXPECT_EQ(t.strides[0], 12);
  EXPECT_EQ(t.strides[1], 4);
  EXPECT_EQ(t.strides[2], 1);
  EXPECT_EQ(t.byte_offset, 0u);
  uint16_t h[6];
  const int64_t s2[2] = {2, 3};
  ASSERT_S2FT_OK(s2ft_tensor_init(&t, h, S2FT_BF16, S2FT_DEVICE_CUDA, 3, 2, s2));
  EXPECT_EQ(t.dtype.code, 4);  // kDLBfloat
  EXPECT_EQ(t.dtype.bits, 16);
  EXPECT_EQ(t.device.type, 2);  // kDLCUDA
  EXPECT_EQ(t.device.id, 3);
  ASSERT_S2FT_OK(s2ft_tensor_init(&t, h, S2FT_F16, S2FT_DEVICE_CPU, 0, 2, s2));
  EXPECT_EQ(t.dtype.code, 2);
  EXPECT_EQ(t.dtype.bits, 16);
  ASSERT_S2FT_OK(s2ft_tensor_cpu_f32_2d(&t, buf, 4, 6));
  EXPECT_EQ(t.shape[0], 4);
  EXPECT_EQ(t.strides[0], 6);
  const int64_t empty[2] = {0, 5};
  ASSERT_S2FT_OK(s2ft_tensor_init(&t, nullptr, S2FT_F32, S2FT_DEVICE_CPU, 0, 2, empty));
}

// Extents whose product (in bytes) does not fit in 64 bits are refused, not wrapped.
TEST(Tensor, InitSizeOverflow) {
  s2ft_tensor t;
  float f;
  const int64_t huge[2] = {INT64_C(1) << 32, INT64_C(1) << 31};  // 2^63 elements
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 2, huge), S2FT_ERR_INVALID_ARGUMENT,
                    "overflows 64 bits");
  const int64_t bytes[1] = {INT64_MAX / 2 + 1};  // fits as a count, not in bytes of f32
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 1, bytes), S2FT_ERR_INVALID_ARGUMENT,
                    "shape[0]");
  // Empty, but its strides would still overflow.
  const int64_t empty_but_huge[3] = {INT64_MAX, 0, INT64_MAX};
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, nullptr, S2FT_F32, S2FT_DEVICE_CPU, 0, 3, empty_but_huge),
                    S2FT_ERR_INVALID_ARGUMENT, "overflows 64 bits");
  const int64_t empty_and_large[3] = {INT64_C(1) << 20, 0, INT64_C(1) << 20};
  ASSERT_S2FT_OK(s2ft_tensor_init(&t, nullptr, S2FT_F32, S2FT_DEVICE_CPU, 0, 3, empty_and_large));
  EXPECT_EQ(t.strides[0], INT64_C(1) << 20);
}
TEST(Tensor, InitNullTensor) {
  const int64_t s[1] = {1};
  float f;
  EXPECT_S2FT_ERROR(s2ft_tensor_init(nullptr, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 1, s), S2FT_ERR_INVALID_ARGUMENT, "t is NULL");
}
TEST(Tensor, InitNullShape) {
  s2ft_tensor t;
  float f;
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "shape is NULL");
}
TEST(Tensor, InitBadRank) {
  s2ft_tensor t;
  const int64_t s[5] = {1, 1, 1, 1, 1};
  float f;
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 5, s), S2FT_ERR_INVALID_ARGUMENT, "ndim must be in 1..4");
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 0, s), S2FT_ERR_INVALID_ARGUMENT, "ndim");
}
TEST(Tensor, InitNegativeExtent) {
  s2ft_tensor t;
  const int64_t s[2] = {2, -1};
  float f;
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, 0, 2, s), S2FT_ERR_INVALID_ARGUMENT, "shape[1] is negative");
}
TEST(Tensor, InitUnknownDtype) {
  s2ft_tensor t;
  const int64_t s[1] = {1};
  float f;
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, 7, S2FT_DEVICE_CPU, 0, 1, s), S2FT_ERR_DTYPE, "unknown dtype 7");
}
TEST(Tensor, InitUnknownDevice) {
  s2ft_tensor t;
  const int64_t s[1] = {1};
  float f;
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, 9, 0, 1, s), S2FT_ERR_INVALID_ARGUMENT, "device_type");
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, &f, S2FT_F32, S2FT_DEVICE_CPU, -1, 1, s), S2FT_ERR_INVALID_ARGUMENT, "device_id");
}
TEST(Tensor, InitNullDataForNonEmpty) {
  s2ft_tensor t;
  const int64_t s[1] = {3};
  EXPECT_S2FT_ERROR(s2ft_tensor_init(&t, nullptr, S2FT_F32, S2FT_DEVICE_CPU, 0, 1, s), S2FT_ERR_INVALID_ARGUMENT, "data is NULL");
}

TEST(Context, CreateDefaultsToCpu) {
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  s2ft_device d{-1, -1};
  ASSERT_S2FT_OK(s2ft_context_device(ctx, &d));
  EXPECT_EQ(d.type, S2FT_DEVICE_CPU);
  EXPECT_EQ(d.id, 0);
  s2ft_context_destroy(ctx);
  s2ft_context_destroy(nullptr);  // no-op
  s2ft_context_options o;
  ASSERT_S2FT_OK(s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION));
  o.num_threads = 1;
  ASSERT_S2FT_OK(s2ft_context_create(&o, &ctx));
  s2ft_context_destroy(ctx);
}
TEST(Context, OptionsInitNull) {
  EXPECT_S2FT_ERROR(s2ft_context_options_init(nullptr, S2FT_CONTEXT_OPTIONS_VERSION), S2FT_ERR_INVALID_ARGUMENT, "opts is NULL");
}
TEST(Context, OptionsInitUnknownVersion) {
  s2ft_context_options o;
  EXPECT_S2FT_ERROR(s2ft_context_options_init(&o, 99), S2FT_ERR_INVALID_ARGUMENT, "unknown options version 99");
}
TEST(Context, CreateNullOut) {
  EXPECT_S2FT_ERROR(s2ft_context_create(nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
}
TEST(Context, CreateUninitialisedOptions) {
  s2ft_context_options o{};
  s2ft_context *ctx = reinterpret_cast<s2ft_context *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_INVALID_ARGUMENT, "opts->version");
  EXPECT_EQ(ctx, nullptr);  // out is cleared on failure
}
TEST(Context, CreateBadDevice) {
  s2ft_context_options o;
  s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION);
  s2ft_context *ctx = nullptr;
  o.device_type = 42;
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_INVALID_ARGUMENT, "opts->device_type");
  o.device_type = S2FT_DEVICE_CPU;
  o.device_id = 1;
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_INVALID_ARGUMENT, "opts->device_id must be 0 for the CPU");
  o.device_id = -3;
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_INVALID_ARGUMENT, "opts->device_id must be >= 0");
  o.device_id = 0;
  o.num_threads = -1;
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_INVALID_ARGUMENT, "opts->num_threads");
}
TEST(Context, CudaContextNeedsADevice) {
  int32_t n = -1;
  ASSERT_S2FT_OK(s2ft_device_count(S2FT_DEVICE_CUDA, &n));
  ASSERT_GE(n, 0);
  s2ft_context_options o;
  s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION);
  o.device_type = S2FT_DEVICE_CUDA;
  s2ft_context *ctx = nullptr;
  const s2ft_status st = s2ft_context_create(&o, &ctx);
  if (n == 0) {  // a build without CUDA, or a machine without a driver or device
    EXPECT_EQ(ctx, nullptr);
    EXPECT_EQ(st, S2FT_ERR_UNSUPPORTED) << s2ft_last_error();
    EXPECT_NE(std::string(s2ft_last_error()).find("CUDA"), std::string::npos);
  } else {
    EXPECT_EQ(st, S2FT_OK) << s2ft_last_error();
    s2ft_device d{};
    ASSERT_S2FT_OK(s2ft_context_device(ctx, &d));
    EXPECT_EQ(d.type, S2FT_DEVICE_CUDA);
    s2ft_context_destroy(ctx);
  }
  o.device_id = n;  // one past the last device
  EXPECT_NE(s2ft_context_create(&o, &ctx), S2FT_OK);
  EXPECT_EQ(ctx, nullptr);
}
TEST(Context, DeviceCount) {
  int32_t n = -1;
  ASSERT_S2FT_OK(s2ft_device_count(S2FT_DEVICE_CPU, &n));
  EXPECT_EQ(n, 1);
  EXPECT_S2FT_ERROR(s2ft_device_count(S2FT_DEVICE_CPU, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_S2FT_ERROR(s2ft_device_count(7, &n), S2FT_ERR_INVALID_ARGUMENT, "device_type");
}
TEST(Context, StreamAndWorkspaceNeedACudaContext) {
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  int dummy = 0;
  EXPECT_S2FT_ERROR(s2ft_context_set_stream(ctx, &dummy), S2FT_ERR_UNSUPPORTED, "needs a CUDA context");
  EXPECT_S2FT_ERROR(s2ft_context_set_workspace(ctx, &dummy, 4), S2FT_ERR_UNSUPPORTED, "needs a CUDA context");
  void *stream = &dummy;
  ASSERT_S2FT_OK(s2ft_context_stream(ctx, &stream));
  EXPECT_EQ(stream, nullptr);
  size_t need = 99;
  ASSERT_S2FT_OK(s2ft_context_workspace_needed(ctx, &need));
  EXPECT_EQ(need, 0u);
  ASSERT_S2FT_OK(s2ft_context_synchronize(ctx));
  s2ft_context_destroy(ctx);
  EXPECT_S2FT_ERROR(s2ft_context_set_stream(nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_S2FT_ERROR(s2ft_context_stream(nullptr, &stream), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_S2FT_ERROR(s2ft_context_set_workspace(nullptr, nullptr, 0), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_S2FT_ERROR(s2ft_context_workspace_needed(nullptr, &need), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_S2FT_ERROR(s2ft_context_synchronize(nullptr), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
}
TEST(Context, DeviceNullArguments) {
  s2ft_device d;
  EXPECT_S2FT_ERROR(s2ft_context_device(nullptr, &d), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  EXPECT_S2FT_ERROR(s2ft_context_device(ctx, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  s2ft_context_destroy(ctx);
}

TEST(ModelShape, AcceptsGqa) {
  s2ft_model_shape s{5, 64, 8, 4, 8, 172};
  EXPECT_EQ(s2ft_model_shape_check(&s), S2FT_OK);
}
TEST(ModelShape, RejectsNull) {
  EXPECT_S2FT_ERROR(s2ft_model_shape_check(nullptr), S2FT_ERR_INVALID_ARGUMENT, "shape is NULL");
}
TEST(ModelShape, RejectsNonPositiveFields) {
  const char *names[] = {"n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff"};
  for (int i = 0; i < 6; ++i) {
    s2ft_model_shape s{5, 64, 8, 4, 8, 172};
    (&s.n_layers)[i] = i % 2 ? 0 : -4;
    EXPECT_S2FT_ERROR(s2ft_model_shape_check(&s), S2FT_ERR_INVALID_ARGUMENT, std::string("shape->") + names[i]);
  }
}
TEST(ModelShape, RejectsHeadsNotMultipleOfKvHeads) {
  s2ft_model_shape s{5, 64, 6, 4, 8, 172};
  EXPECT_S2FT_ERROR(s2ft_model_shape_check(&s), S2FT_ERR_INVALID_ARGUMENT, "must be a multiple of n_kv_heads");
}

}  // namespace

namespace {

TEST(LiveHandles, CountsEveryHandleUntilDestroyed) {
  const int64_t before = s2ft_live_handles();
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  const s2ft_model_shape shape{2, 8, 4, 2, 2, 6};
  s2ft_selection *sel = nullptr;
  s2ft_select_options opts;
  ASSERT_S2FT_OK(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION));
  ASSERT_S2FT_OK(s2ft_select(ctx, &shape, &opts, nullptr, &sel));
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&shape, "a", 1.0, &a));
  EXPECT_EQ(s2ft_live_handles(), before + 3);
  s2ft_adapter *fail = nullptr;
  EXPECT_NE(s2ft_adapter_create(&shape, nullptr, 1.0, &fail), S2FT_OK);  // a failed create leaves nothing behind
  EXPECT_EQ(s2ft_live_handles(), before + 3);
  s2ft_adapter_destroy(a);
  s2ft_selection_destroy(sel);
  s2ft_context_destroy(ctx);
  EXPECT_EQ(s2ft_live_handles(), before);
}

}  // namespace
