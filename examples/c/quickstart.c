/* Train 3 of 16 input columns of one linear layer toward a target with S2FT. */
#include <stdio.h>
#include <s2ft/s2ft.h>

#define CHECK(call) do { s2ft_status st_ = (call); if (st_ != S2FT_OK) { \
  fprintf(stderr, "%s: %s\n", #call, s2ft_last_error()); return 1; } } while (0)

int main(void) {
  enum { T = 8, IN = 16, OUT = 4, K = 3 };
  float w[OUT * IN], x[T * IN], y[T * OUT], dy[T * OUT], xs[T * K], dw[OUT * K];
  for (int i = 0; i < OUT * IN; ++i) w[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
  for (int i = 0; i < T * IN; ++i) x[i] = (float)((i * 53) % 13) / 13.0f - 0.5f;
  const int64_t cols[K] = {2, 7, 11};  /* the trained columns, e.g. from s2ft_select */
  s2ft_slice slice = {S2FT_AXIS_COLUMNS, 0, K, cols};
  s2ft_tensor W, X, Y, DY, XS, DW;
  s2ft_context *ctx; s2ft_optimizer *opt; s2ft_optimizer_options oo; int64_t id;
  CHECK(s2ft_context_create(NULL, &ctx));
  s2ft_tensor_cpu_f32_2d(&W, w, OUT, IN); s2ft_tensor_cpu_f32_2d(&X, x, T, IN);
  s2ft_tensor_cpu_f32_2d(&Y, y, T, OUT); s2ft_tensor_cpu_f32_2d(&DY, dy, T, OUT);
  s2ft_tensor_cpu_f32_2d(&XS, xs, T, K); s2ft_tensor_cpu_f32_2d(&DW, dw, OUT, K);
  CHECK(s2ft_optimizer_options_init(&oo, S2FT_OPTIMIZER_OPTIONS_VERSION));
  CHECK(s2ft_optimizer_create(ctx, &oo, &opt));
  CHECK(s2ft_optimizer_add_param(opt, &W, &slice, &id));
  for (int step = 0; step < 50; ++step) {
    float loss = 0; /* target: y = 1 everywhere; loss = mean (y - 1)^2 / 2 */
    CHECK(s2ft_forward_partial(ctx, &slice, &X, &W, &Y, &XS));  /* keeps x[:, S] only */
    for (int i = 0; i < T * OUT; ++i) { dy[i] = (y[i] - 1.0f) / (T * OUT); loss += 0.5f * (y[i] - 1) * (y[i] - 1) / (T * OUT); }
    CHECK(s2ft_backward_partial(ctx, &slice, &W, &XS, &DY, NULL, &DW, 0));
    CHECK(s2ft_optimizer_step(opt, 0.05, &DW, 1, NULL));
    if (step % 10 == 0 || step == 49) printf("step %2d  loss %.5f\n", step, loss);
  }
  s2ft_optimizer_destroy(opt);
  s2ft_context_destroy(ctx);
  return 0;
}
