/*
 * libs2ft: Structured Sparse Fine-Tuning (S2FT) as an embeddable engine.
 *
 * This is the one public header. It is plain C99: no C++, no CUDA types.
 *
 * Conventions (see docs/api.md for the long form):
 *  - Every fallible function returns an s2ft_status: 0 (S2FT_OK) on success,
 *    a negative S2FT_ERR_* value on failure. After a failure,
 *    s2ft_last_error() says what was wrong with which argument.
 *  - Handles are opaque. Each s2ft_x_create() has an s2ft_x_destroy() that
 *    accepts NULL. The caller owns every handle it creates and destroys it
 *    exactly once; objects made from a context are destroyed before it. A
 *    handle used after destroy, destroyed twice or of the wrong kind is a
 *    caller's bug that the library detects on a best-effort basis
 *    (S2FT_ERR_INVALID_ARGUMENT "... is not a live s2ft_x"; a second destroy
 *    does nothing): a better failure, never something to rely on.
 *  - Option structs carry a `version` field and have an ..._init() function;
 *    always call it before setting fields, so that fields added later get
 *    their defaults.
 *  - Tensors cross the ABI as s2ft_tensor descriptors that map field by field
 *    onto DLPack's DLTensor. The library never takes ownership of tensor
 *    memory; a descriptor only borrows it for the duration of the call, except
 *    where a function says it keeps the pointer (s2ft_optimizer_add_param,
 *    s2ft_model_create).
 *  - Thread safety: functions that take no handle are safe from any thread.
 *    Handles are not internally locked: use one context (and the objects made
 *    from it) per host thread, or lock around them.
 *  - Weights use the PyTorch nn.Linear layout: W is [out, in], row-major,
 *    and a linear layer computes y = x W^T for activations x of shape [T, in].
 */
#ifndef S2FT_S2FT_H
#define S2FT_S2FT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Export macro and version                                                 */
/* ------------------------------------------------------------------------ */

#if defined(_WIN32)
#  if defined(S2FT_BUILDING_LIBRARY)
#    define S2FT_API __declspec(dllexport)
#  else
#    define S2FT_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define S2FT_API __attribute__((visibility("default")))
#else
#  define S2FT_API
#endif

#define S2FT_VERSION_MAJOR 0
#define S2FT_VERSION_MINOR 1
#define S2FT_VERSION_PATCH 0
/** The version as one number: major * 10000 + minor * 100 + patch. */
#define S2FT_VERSION_NUMBER \
  (S2FT_VERSION_MAJOR * 10000 + S2FT_VERSION_MINOR * 100 + S2FT_VERSION_PATCH)

/** Version number of the loaded library (compare with S2FT_VERSION_NUMBER). */
S2FT_API uint32_t s2ft_version(void);

/** Version of the loaded library as a static string, e.g. "0.1.0". */
S2FT_API const char *s2ft_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                  */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call: S2FT_OK or a negative S2FT_ERR_* code. */
typedef int32_t s2ft_status;

#define S2FT_OK                   0
#define S2FT_ERR_INVALID_ARGUMENT (-1)  /* NULL where not allowed, bad value  */
#define S2FT_ERR_SHAPE            (-2)  /* tensor shapes do not fit together   */
#define S2FT_ERR_DTYPE            (-3)  /* unsupported or mismatched dtype     */
#define S2FT_ERR_DEVICE           (-4)  /* mixed devices, or wrong device      */
#define S2FT_ERR_OUT_OF_MEMORY    (-5)  /* an allocation failed                */
#define S2FT_ERR_IO               (-6)  /* a file could not be read or written */
#define S2FT_ERR_FORMAT           (-7)  /* a file is malformed or unsupported  */
#define S2FT_ERR_UNSUPPORTED      (-8)  /* not available in this build/backend */
#define S2FT_ERR_STATE            (-9)  /* call not valid in the object's state*/
#define S2FT_ERR_BACKEND          (-10) /* BLAS, CUDA, cuBLAS error            */
#define S2FT_ERR_INTERNAL         (-11) /* a bug in libs2ft: please report     */

/** A short static name for a status, e.g. "invalid argument". Never NULL;
 *  unknown values give "unknown status". Thread-safe. */
S2FT_API const char *s2ft_status_string(s2ft_status status);

/** The message of the last failed call on this thread, naming the argument
 *  and what was wrong with it. Never NULL ("" when nothing has failed yet).
 *  The string belongs to the library and stays valid until the next failing
 *  call on the same thread. Successful calls do not clear it. */
S2FT_API const char *s2ft_last_error(void);

/** Clears this thread's last error message (s2ft_last_error() returns ""). */
S2FT_API void s2ft_clear_error(void);

/** The number of library objects (contexts, statistics, selections,
 *  optimizers, adapters, models, sparse deltas, sparse sets, checkpoints)
 *  created and not yet
 *  destroyed in this process, for leak checks in tests and bindings.
 *  Thread-safe. */
S2FT_API int64_t s2ft_live_handles(void);

/* ------------------------------------------------------------------------ */
/* Tensors (DLPack-compatible descriptors)                                  */
/* ------------------------------------------------------------------------ */

/* Device kinds; the values are DLPack's DLDeviceType values. */
#define S2FT_DEVICE_CPU  1
#define S2FT_DEVICE_CUDA 2

/* Element types accepted by the library (values are this library's own;
 * s2ft_tensor_init() turns them into DLPack (code, bits, lanes)). */
#define S2FT_F32  0
#define S2FT_F16  1
#define S2FT_BF16 2

/* DLPack type codes, as stored in s2ft_dtype.code. */
#define S2FT_DLPACK_FLOAT  2
#define S2FT_DLPACK_BFLOAT 4

/** Maximum rank of a tensor passed to libs2ft. */
#define S2FT_MAX_DIMS 4

/** DLPack's DLDevice. */
typedef struct s2ft_device {
  int32_t type; /* S2FT_DEVICE_CPU or S2FT_DEVICE_CUDA */
  int32_t id;   /* device ordinal; 0 for the CPU */
} s2ft_device;

/** DLPack's DLDataType. libs2ft accepts float32 (2,32,1), float16 (2,16,1)
 *  and bfloat16 (4,16,1). */
typedef struct s2ft_dtype {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} s2ft_dtype;

/**
 * A borrowed view of a strided array. Field for field it is DLPack's
 * DLTensor, except that shape and strides are stored inline (at most
 * S2FT_MAX_DIMS) so the descriptor owns no pointers but `data`:
 * DLTensor.shape[i] == shape[i] and DLTensor.strides[i] == strides[i]
 * for i < ndim. Strides are in elements, not bytes; negative strides are
 * rejected. The element at index (i, j) of a rank-2 tensor is at
 * (char *)data + byte_offset + (i * strides[0] + j * strides[1]) * size.
 */
typedef struct s2ft_tensor {
  void *data;
  s2ft_device device;
  int32_t ndim;
  s2ft_dtype dtype;
  int64_t shape[S2FT_MAX_DIMS];
  int64_t strides[S2FT_MAX_DIMS];
  uint64_t byte_offset;
} s2ft_tensor;

/**
 * Fills `t` to describe a compact row-major array of rank `ndim` with the
 * given shape at `data`, of element type `dtype` (S2FT_F32, S2FT_F16,
 * S2FT_BF16) on device (device_type, device_id).
 * Errors: S2FT_ERR_INVALID_ARGUMENT (t, shape NULL; ndim outside
 * 1..S2FT_MAX_DIMS; a negative extent; unknown device type),
 * S2FT_ERR_DTYPE (unknown dtype). `data` may be NULL only when the tensor
 * is empty. Thread-safe.
 */
S2FT_API s2ft_status s2ft_tensor_init(s2ft_tensor *t, void *data, int32_t dtype,
                                      int32_t device_type, int32_t device_id,
                                      int32_t ndim, const int64_t *shape);

/** Shorthand for a compact row-major [rows, cols] float32 CPU tensor. */
S2FT_API s2ft_status s2ft_tensor_cpu_f32_2d(s2ft_tensor *t, float *data,
                                            int64_t rows, int64_t cols);

/* ------------------------------------------------------------------------ */
/* Context                                                                  */
/* ------------------------------------------------------------------------ */

/** A context binds the library to one backend and device. It owns the
 *  backend's workspace: grow-only scratch memory reused across calls. On
 *  the CPU it holds f16/bf16 or strided operands converted to f32 for
 *  GEMMs (so a context that has run a bf16 backward over a weight keeps
 *  about that weight's size in f32 until it is destroyed); on CUDA it
 *  holds per-call temporaries and may be the caller's memory
 *  (s2ft_context_set_workspace). */
typedef struct s2ft_context s2ft_context;

#define S2FT_CONTEXT_OPTIONS_VERSION 1

typedef struct s2ft_context_options {
  uint32_t version;    /* S2FT_CONTEXT_OPTIONS_VERSION */
  int32_t device_type; /* default S2FT_DEVICE_CPU */
  int32_t device_id;   /* default 0 */
  int32_t num_threads; /* CPU threads for BLAS; 0 = leave BLAS's default */
} s2ft_context_options;

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_CONTEXT_OPTIONS_VERSION). Errors: S2FT_ERR_INVALID_ARGUMENT (NULL,
 *  or a version this library does not know). */
S2FT_API s2ft_status s2ft_context_options_init(s2ft_context_options *opts,
                                               uint32_t version);

/**
 * Creates a context. `opts` may be NULL for a CPU context with defaults.
 * On success *out receives a handle the caller frees with
 * s2ft_context_destroy(); on failure *out is set to NULL.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (out NULL, bad options),
 * S2FT_ERR_UNSUPPORTED (a CUDA context in a build or on a machine without
 * the CUDA backend), S2FT_ERR_OUT_OF_MEMORY.
 */
S2FT_API s2ft_status s2ft_context_create(const s2ft_context_options *opts,
                                         s2ft_context **out);

/** Destroys a context; NULL is a no-op. Objects created from the context
 *  must be destroyed first. */
S2FT_API void s2ft_context_destroy(s2ft_context *ctx);

/** The device a context is bound to. Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_context_device(const s2ft_context *ctx,
                                         s2ft_device *out);

/**
 * The number of devices of `device_type` this build of libs2ft can use:
 * 1 for S2FT_DEVICE_CPU; for S2FT_DEVICE_CUDA the CUDA devices present, or
 * 0 when the build has no CUDA backend or no driver is installed (never an
 * error: s2ft_last_error() then says why). Errors:
 * S2FT_ERR_INVALID_ARGUMENT (out NULL, unknown device type).
 */
S2FT_API s2ft_status s2ft_device_count(int32_t device_type, int32_t *out);

/* ---- CUDA contexts ------------------------------------------------------
 * A CUDA context is bound to one device at creation and queues all its work
 * on one stream, in call order. Calls return as soon as the work is queued:
 * the library never synchronises the device or the stream except in the
 * calls whose documentation says so (s2ft_context_synchronize, object
 * creation and destruction, calls that return device results to the host).
 * Tensors passed to a CUDA context must be device (or managed) memory of
 * its device; the caller keeps them alive until the queued work has run.
 */

/**
 * Sets the stream a CUDA context queues its work on: a cudaStream_t passed
 * as `void *` (NULL: the legacy default stream). The new stream is made to
 * wait, on the device, for the work the context queued on the old one.
 * The stream must outlive its use by the context. Does not synchronise.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (ctx NULL), S2FT_ERR_UNSUPPORTED (a CPU
 * context), S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_context_set_stream(s2ft_context *ctx, void *stream);

/** The stream of a CUDA context (NULL on a CPU context and for the default
 *  stream). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_context_stream(const s2ft_context *ctx, void **out);

/**
 * Gives a CUDA context `bytes` of caller-owned device memory at
 * `workspace` for per-call scratch (packed operands, gathered slices,
 * uploaded indices), so that calls allocate nothing. NULL (with any size)
 * returns to the context's own workspace, which grows on demand with
 * stream-ordered allocations. The memory must stay valid, and must not be
 * used by the caller while work queued by the context may still read it. A call needing
 * more scratch than given fails with S2FT_ERR_OUT_OF_MEMORY and states the
 * size needed; s2ft_context_workspace_needed() reports the most any call
 * has needed. Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_UNSUPPORTED (a
 * CPU context), S2FT_ERR_DEVICE (not memory of the context's device).
 */
S2FT_API s2ft_status s2ft_context_set_workspace(s2ft_context *ctx, void *workspace,
                                                size_t bytes);

/** The most per-call scratch, in bytes, any call on this CUDA context has
 *  used so far (0 on a CPU context). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_context_workspace_needed(const s2ft_context *ctx,
                                                   size_t *out);

/**
 * Blocks until all work the context has queued is done, and reports a
 * fault that happened in it (S2FT_ERR_BACKEND with CUDA's message). A no-op
 * on a CPU context, whose calls finish before they return. Errors:
 * S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_context_synchronize(s2ft_context *ctx);

/* ------------------------------------------------------------------------ */
/* Model shape and targets                                                  */
/* ------------------------------------------------------------------------ */

/**
 * The shape of a LLaMA-architecture decoder. n_heads must be a multiple of
 * n_kv_heads (grouped-query attention when n_kv_heads < n_heads). Weight
 * shapes per layer: q [n_heads*head_dim, d_model], k and v
 * [n_kv_heads*head_dim, d_model], o [d_model, n_heads*head_dim],
 * gate and up [d_ff, d_model], down [d_model, d_ff].
 */
typedef struct s2ft_model_shape {
  int32_t n_layers;
  int32_t d_model;
  int32_t n_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  int32_t d_ff;
} s2ft_model_shape;

/* Trainable targets. O and DOWN are column-trained (their inputs are
 * selected), V and UP are row-trained (their outputs are selected). */
#define S2FT_TARGET_O     0 /* o_proj columns of selected query heads    */
#define S2FT_TARGET_V     1 /* v_proj rows of selected KV heads          */
#define S2FT_TARGET_DOWN  2 /* down_proj columns of selected FFN channels */
#define S2FT_TARGET_UP    3 /* up_proj rows of selected FFN channels     */
#define S2FT_NUM_TARGETS  4

/** Bit for a target in a target mask, e.g. S2FT_TARGET_BIT(S2FT_TARGET_O). */
#define S2FT_TARGET_BIT(t) (1u << (t))

/* The seven projection weights of a layer, in one id space with the
 * targets (the four targets keep their ids). Unstructured sparse entries of
 * an adapter (s2ft_adapter_set_sparse) and the mixed forward
 * (s2ft_adapter_forward_mixed) name weights by these ids; shapes as in
 * s2ft_model_shape. */
#define S2FT_WEIGHT_O    S2FT_TARGET_O    /* o_proj    [d_model, n_heads*head_dim]    */
#define S2FT_WEIGHT_V    S2FT_TARGET_V    /* v_proj    [n_kv_heads*head_dim, d_model] */
#define S2FT_WEIGHT_DOWN S2FT_TARGET_DOWN /* down_proj [d_model, d_ff]                */
#define S2FT_WEIGHT_UP   S2FT_TARGET_UP   /* up_proj   [d_ff, d_model]                */
#define S2FT_WEIGHT_Q    4                /* q_proj    [n_heads*head_dim, d_model]    */
#define S2FT_WEIGHT_K    5                /* k_proj    [n_kv_heads*head_dim, d_model] */
#define S2FT_WEIGHT_GATE 6                /* gate_proj [d_ff, d_model]                */
#define S2FT_NUM_WEIGHTS 7

/** Bit for a weight in a weight mask, e.g. S2FT_WEIGHT_BIT(S2FT_WEIGHT_Q). */
#define S2FT_WEIGHT_BIT(w) (1u << (w))

/** Checks a model shape (all fields positive, n_heads % n_kv_heads == 0).
 *  Errors: S2FT_ERR_INVALID_ARGUMENT naming the field. Thread-safe. */
S2FT_API s2ft_status s2ft_model_shape_check(const s2ft_model_shape *shape);

/* ------------------------------------------------------------------------ */
/* Calibration statistics                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Per-unit sums of squares that score units for selection: weight norms,
 * activation norms (inputs of o_proj and down_proj over calibration
 * tokens) and weight-gradient norms (over calibration batches). A unit is a
 * query head for O, a KV head for V, an FFN channel for DOWN and UP.
 */
typedef struct s2ft_statistics s2ft_statistics;

/** Creates empty statistics for a model shape. Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL, bad shape), S2FT_ERR_OUT_OF_MEMORY.
 * The statistics keep `ctx`, which must outlive them. The sums live in the
 * context's device memory, allocated here: (3 n_heads + 2 n_kv_heads +
 * 5 d_ff) doubles per layer.
 */
S2FT_API s2ft_status s2ft_statistics_create(s2ft_context *ctx,
                                            const s2ft_model_shape *shape,
                                            s2ft_statistics **out);

/** Destroys statistics; NULL is a no-op. */
S2FT_API void s2ft_statistics_destroy(s2ft_statistics *stats);

/**
 * Records the weight of `target` in `layer` (o_proj for O, v_proj for V,
 * down_proj for DOWN, up_proj for UP), in the model's base (unpermuted)
 * order: each unit's score is the norm of its trained slice. Replaces an
 * earlier record for the same (layer, target).
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, layer or target out of range),
 * S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE.
 * On a CUDA context the sums are computed on the context's stream; the
 * call does not synchronise, and the tensors must stay valid until that
 * work has run.
 */
S2FT_API s2ft_status s2ft_statistics_add_weight(s2ft_statistics *stats,
                                                int32_t layer, int32_t target,
                                                const s2ft_tensor *weight);

/**
 * Accumulates the input activation x [T, in] of o_proj (target O) or
 * down_proj (target DOWN) in `layer`: adds sum_t x[t, c]^2 to each input
 * column c. V units use the O columns of their query heads; UP channels use
 * the DOWN columns. Errors as s2ft_statistics_add_weight(); V and UP are
 * rejected (pass their coupled O/DOWN input instead).
 * On a CUDA context the sums are computed on the context's stream; the
 * call does not synchronise, and the tensors must stay valid until that
 * work has run.
 */
S2FT_API s2ft_status s2ft_statistics_add_activation(s2ft_statistics *stats,
                                                    int32_t layer,
                                                    int32_t target,
                                                    const s2ft_tensor *x);

/**
 * Accumulates the squared norm of each unit's weight-gradient slice for one
 * calibration batch, from the layer's input x [T, in] and output gradient
 * dy [T, out] (dW = dy^T x; the full dW is formed in scratch memory).
 * Errors as s2ft_statistics_add_weight().
 * On a CUDA context dW is formed in device scratch in tiles of at most
 * 2^24 elements, on the context's stream; the call does not synchronise.
 */
S2FT_API s2ft_status s2ft_statistics_add_gradient(s2ft_statistics *stats,
                                                  int32_t layer, int32_t target,
                                                  const s2ft_tensor *x,
                                                  const s2ft_tensor *dy);

/**
 * Records LIFT's principal-weight score of `target` in `layer` for the
 * S2FT_STRATEGY_PRINCIPAL strategy: the weight w (as for
 * s2ft_statistics_add_weight, base order) is approximated by its rank-r
 * truncated SVD W_r (computed in double, LAPACK gesdd), and each unit's
 * sum is the sum of squares of its lines of W_r (O and DOWN: columns, V
 * and UP: rows), so its score is the Frobenius norm of its slice of W_r.
 * The sums come from the SVD alone (a row of W_r has the squared norm
 * sum_k (U[i, k] s_k)^2, a column sum_k (V[j, k] s_k)^2): W_r is not formed.
 * rank is in [1, min(rows, cols)] of the weight. Replaces an earlier
 * principal record for the same (layer, target); the sums are kept on the
 * host (not in the context's device memory). Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL, layer, target or rank out of range, a
 * non-finite value in w), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE,
 * S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_UNSUPPORTED (a build without LAPACK),
 * S2FT_ERR_BACKEND (the SVD did not converge). On statistics of a CUDA
 * context the SVD is cuSOLVER's in double on the device (synchronises).
 */
S2FT_API s2ft_status s2ft_statistics_add_principal(s2ft_statistics *stats,
                                                   int32_t layer, int32_t target,
                                                   const s2ft_tensor *weight,
                                                   int32_t rank);

/* Statistic kinds for s2ft_statistics_get. */
#define S2FT_STAT_WEIGHT     0
#define S2FT_STAT_ACTIVATION 1
#define S2FT_STAT_GRADIENT   2
#define S2FT_STAT_PRINCIPAL  3 /* s2ft_statistics_add_principal */

/**
 * Copies the per-unit sums of squares of one statistic for (layer, target)
 * into out[0..n_units). Call with out NULL to learn *n_units. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (bad layer/target/kind, capacity too small),
 * S2FT_ERR_STATE (nothing recorded yet for that statistic).
 * On CUDA statistics, the first read after statistics were added copies
 * the device sums to the host (synchronises).
 */
S2FT_API s2ft_status s2ft_statistics_get(const s2ft_statistics *stats,
                                         int32_t layer, int32_t target,
                                         int32_t kind, double *out,
                                         int64_t capacity, int64_t *n_units);

/* ------------------------------------------------------------------------ */
/* Selection                                                                */
/* ------------------------------------------------------------------------ */

/** Which units of each layer are trained, and the co-permutation that brings
 *  them to the front. Immutable once created. */
typedef struct s2ft_selection s2ft_selection;

/* Strategies (the paper's S2FT-R/W/A/S/G, and LIFT's principal weights). */
#define S2FT_STRATEGY_RANDOM     0 /* uniform random from `seed`            */
#define S2FT_STRATEGY_WEIGHT     1 /* norm of the unit's trained weight     */
#define S2FT_STRATEGY_ACTIVATION 2 /* norm of the unit's input activation   */
#define S2FT_STRATEGY_WEIGHT_ACT 3 /* weight norm x activation norm         */
#define S2FT_STRATEGY_GRADIENT   4 /* norm of the unit's weight gradient    */
#define S2FT_STRATEGY_PRINCIPAL  5 /* norm of the unit's lines in the rank-r
                                      SVD approximation W_r (LIFT's principal
                                      weights; s2ft_statistics_add_principal) */

#define S2FT_ORDER_LARGEST  0 /* pick the highest scores */
#define S2FT_ORDER_SMALLEST 1 /* pick the lowest scores  */

#define S2FT_ALLOCATE_PER_LAYER 0 /* every layer gets the same budget      */
#define S2FT_ALLOCATE_GLOBAL    1 /* one budget ranked across all layers   */

/* Head granularity for O (and the head permutation). */
#define S2FT_HEADS_BY_GROUP  0 /* whole KV groups: contiguous after permute */
#define S2FT_HEADS_SINGLE    1 /* single query heads: index path under GQA  */

#define S2FT_SELECT_OPTIONS_VERSION 1

typedef struct s2ft_select_options {
  uint32_t version;         /* S2FT_SELECT_OPTIONS_VERSION                   */
  uint32_t targets;         /* mask of S2FT_TARGET_BIT(); default O | DOWN   */
  int32_t strategy;         /* default S2FT_STRATEGY_RANDOM                  */
  int32_t order;            /* default S2FT_ORDER_LARGEST                    */
  int32_t allocation;       /* default S2FT_ALLOCATE_PER_LAYER               */
  int32_t head_granularity; /* default S2FT_HEADS_BY_GROUP                   */
  uint64_t seed;            /* random strategy and tie-breaking; default 0   */
  /* Budget per target: exactly one of ratio (0, 1] or count >= 1 is set for
   * every target in `targets`. ratio * units is rounded to nearest (at least
   * 1). Units: query heads for O (KV groups under S2FT_HEADS_BY_GROUP), KV
   * heads for V, channels for DOWN and UP. Per layer, or in total across
   * layers under S2FT_ALLOCATE_GLOBAL. Defaults: O ratio 0.05, DOWN 0.02
   * (so to give O or DOWN a count, also set its ratio to 0). */
  double ratio[S2FT_NUM_TARGETS];
  int64_t count[S2FT_NUM_TARGETS];
} s2ft_select_options;

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_SELECT_OPTIONS_VERSION). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_select_options_init(s2ft_select_options *opts,
                                              uint32_t version);

/**
 * Chooses the units to train in every layer. `stats` may be NULL for the
 * random strategy; the others need the statistics they score by (weight,
 * activation, both, gradient, or principal) for every targeted (layer,
 * target).
 * Ties are broken by a seeded random key, then by index, so the result is
 * the same on every platform for the same inputs and seed.
 * On success *out receives a selection to free with s2ft_selection_destroy().
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, bad shape or options, ratio
 * outside (0, 1], count above the units available, missing statistics),
 * S2FT_ERR_OUT_OF_MEMORY.
 * CUDA statistics are read as by s2ft_statistics_get() (synchronising
 * once if statistics were added since the last read).
 */
S2FT_API s2ft_status s2ft_select(s2ft_context *ctx,
                                 const s2ft_model_shape *shape,
                                 const s2ft_select_options *opts,
                                 const s2ft_statistics *stats,
                                 s2ft_selection **out);

/**
 * Creates a selection from explicit unit indices (base order), e.g. to
 * reproduce one made elsewhere. units[t] lists n_units[t] indices for every
 * layer (n_layers * n_units[t] values, layer-major); a target with
 * n_units[t] == 0 is not trained. Indices are per unit as in
 * s2ft_select_options; under S2FT_HEADS_BY_GROUP the O units are KV groups.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, out-of-range or duplicate index).
 */
S2FT_API s2ft_status s2ft_selection_create(const s2ft_model_shape *shape,
                                           int32_t head_granularity,
                                           const int64_t *const units[S2FT_NUM_TARGETS],
                                           const int64_t n_units[S2FT_NUM_TARGETS],
                                           s2ft_selection **out);

/** Destroys a selection; NULL is a no-op. */
S2FT_API void s2ft_selection_destroy(s2ft_selection *sel);

/** Copies the model shape a selection was made for. */
S2FT_API s2ft_status s2ft_selection_shape(const s2ft_selection *sel,
                                          s2ft_model_shape *out);

/** The mask of targets a selection trains (S2FT_TARGET_BIT values). */
S2FT_API s2ft_status s2ft_selection_targets(const s2ft_selection *sel,
                                            uint32_t *out);

/* Flags for s2ft_selection_indices. */
#define S2FT_INDEX_UNITS     0u /* unit indices (heads, channels)           */
#define S2FT_INDEX_LINES     1u /* weight rows/columns (head * head_dim + j) */
#define S2FT_INDEX_BASE      0u /* in the base model's original order       */
#define S2FT_INDEX_PERMUTED  2u /* positions after s2ft_permute()           */

/**
 * Writes the selected indices of (layer, target), ascending, into
 * out[0..*count). `flags` combines S2FT_INDEX_UNITS or S2FT_INDEX_LINES
 * with S2FT_INDEX_BASE or S2FT_INDEX_PERMUTED. For O the units are query
 * heads whatever the granularity. Pass out NULL to learn *count. A target
 * that is not trained gives *count == 0.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL sel/count, bad layer, target or
 * flags, capacity below the count).
 */
S2FT_API s2ft_status s2ft_selection_indices(const s2ft_selection *sel,
                                            int32_t layer, int32_t target,
                                            uint32_t flags, int64_t *out,
                                            int64_t capacity, int64_t *count);

/**
 * For a selection whose (layer, target) lines form one contiguous range
 * after permutation, returns it as [*begin, *begin + *count) in weight
 * lines (columns for O/DOWN, rows for V/UP). Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL, bad layer/target), S2FT_ERR_STATE (the
 * permuted lines are not contiguous, e.g. single heads under GQA: use
 * s2ft_selection_indices() and the index path).
 */
S2FT_API s2ft_status s2ft_selection_range(const s2ft_selection *sel,
                                          int32_t layer, int32_t target,
                                          int64_t *begin, int64_t *count);

/* Permutation kinds. */
#define S2FT_PERM_HEADS    0 /* over query heads (n_heads entries)   */
#define S2FT_PERM_KV_HEADS 1 /* over KV heads (n_kv_heads entries)   */
#define S2FT_PERM_CHANNELS 2 /* over FFN channels (d_ff entries)     */

/**
 * Writes the co-permutation of `layer`: out[p] is the base index of the
 * unit that sits at position p after s2ft_permute(). Pass out NULL to learn
 * *count. Errors: S2FT_ERR_INVALID_ARGUMENT.
 */
S2FT_API s2ft_status s2ft_selection_permutation(const s2ft_selection *sel,
                                                int32_t layer, int32_t kind,
                                                int64_t *out, int64_t capacity,
                                                int64_t *count);

/**
 * Saves a selection (shape, options it was made with, indices and
 * permutations) as versioned JSON (docs/selection-format.md). The file is
 * written under a temporary name and renamed. Errors:
 * S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_IO.
 */
S2FT_API s2ft_status s2ft_selection_save(const s2ft_selection *sel,
                                         const char *path);

/**
 * Loads a selection saved by s2ft_selection_save(). The file is treated as
 * hostile: every field is checked. Errors: S2FT_ERR_INVALID_ARGUMENT,
 * S2FT_ERR_IO, S2FT_ERR_FORMAT (malformed, unknown version, indices out of
 * range or duplicated, permutation inconsistent with the indices).
 */
S2FT_API s2ft_status s2ft_selection_load(const char *path,
                                         s2ft_selection **out);

/* ------------------------------------------------------------------------ */
/* Co-permutation                                                           */
/* ------------------------------------------------------------------------ */

/** One layer's weights; any pointer may be NULL to leave that weight alone. */
typedef struct s2ft_layer_weights {
  s2ft_tensor *q;    /* [n_heads*head_dim, d_model]    rows by query head */
  s2ft_tensor *k;    /* [n_kv_heads*head_dim, d_model] rows by KV head    */
  s2ft_tensor *v;    /* [n_kv_heads*head_dim, d_model] rows by KV head    */
  s2ft_tensor *o;    /* [d_model, n_heads*head_dim]    columns by head    */
  s2ft_tensor *gate; /* [d_ff, d_model]                rows by channel    */
  s2ft_tensor *up;   /* [d_ff, d_model]                rows by channel    */
  s2ft_tensor *down; /* [d_model, d_ff]                columns by channel */
} s2ft_layer_weights;

#define S2FT_PERMUTE_FORWARD 0 /* base order -> selected units first */
#define S2FT_PERMUTE_INVERSE 1 /* permuted order -> base order       */

/**
 * Co-permutes one layer's weights in place so that the selected units come
 * first (FORWARD), or undoes it (INVERSE). The block's function is
 * unchanged when all coupled weights are permuted together (q, k, v, o for
 * heads; gate, up, down for channels). Permuting only some of them changes
 * the model: that is the caller's choice. Data is moved, never recomputed,
 * so INVERSE after FORWARD restores the weights bit-exactly.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, bad layer or direction),
 * S2FT_ERR_SHAPE (a weight's shape does not match the selection's model
 * shape), S2FT_ERR_DTYPE, S2FT_ERR_DEVICE.
 * On a CUDA context the work is queued on the context's stream and the
 * call does not synchronise; it needs workspace as large as the largest
 * weight passed (S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND).
 */
S2FT_API s2ft_status s2ft_permute(s2ft_context *ctx, const s2ft_selection *sel,
                                  int32_t layer,
                                  const s2ft_layer_weights *weights,
                                  int32_t direction);

/* ------------------------------------------------------------------------ */
/* Partial forward and backward                                             */
/* ------------------------------------------------------------------------ */

/* Slice axes. */
#define S2FT_AXIS_COLUMNS 0 /* trained columns of W (O, DOWN): inputs  */
#define S2FT_AXIS_ROWS    1 /* trained rows of W (V, UP): outputs      */

/**
 * The trained lines of one weight: either the contiguous range
 * [begin, begin + count) (indices NULL; permuted mode) or the `count`
 * distinct lines indices[0..count) (any order; unpermuted mode). The slice
 * tensors (saved inputs, weight gradients) list lines in that order.
 */
typedef struct s2ft_slice {
  int32_t axis;           /* S2FT_AXIS_COLUMNS or S2FT_AXIS_ROWS */
  int64_t begin;          /* first line in contiguous mode       */
  int64_t count;          /* number of lines, >= 1               */
  const int64_t *indices; /* NULL, or `count` distinct lines     */
} s2ft_slice;

/**
 * Forward of a linear layer that keeps only what S2FT's backward needs:
 * y = x W^T, and for a column slice x_saved = x[:, S] ([T, k]).
 * x [T, in], w [out, in], y [T, out]; x_saved may be NULL (nothing saved;
 * also the usual choice for row slices, whose backward needs the full x).
 * All tensors share the context's device and one dtype (f32, f16, bf16;
 * products accumulate in f32). y and x_saved must not overlap the inputs.
 * Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context the work is queued on the context's stream and the
 * call returns without waiting for the device (also S2FT_ERR_BACKEND);
 * x_saved holds the exact bytes of x's elements.
 */
S2FT_API s2ft_status s2ft_forward_partial(s2ft_context *ctx,
                                          const s2ft_slice *slice,
                                          const s2ft_tensor *x,
                                          const s2ft_tensor *w, s2ft_tensor *y,
                                          s2ft_tensor *x_saved);

/* Flags for s2ft_backward_partial. */
#define S2FT_ACCUMULATE_DW 1u /* dw_slice += new gradient (else overwrite) */
#define S2FT_ACCUMULATE_DX 2u /* dx += new gradient (else overwrite)       */

/**
 * Partial back-propagation through y = x W^T for a trained slice S:
 *  - dx = dy W   ([T, in], through the full frozen weight; skipped if dx NULL)
 *  - columns: dw_slice = dy^T x_S        ([out, k]; x_in is x_S, [T, k])
 *  - rows:    dw_slice = dy[:, S]^T x    ([k, in];  x_in is the full x)
 * w is [out, in], dy [T, out]. The full dW is never formed. x_in, w, dy
 * and dx share one dtype (f32, f16, bf16); dw_slice is f32 or that dtype;
 * arithmetic accumulates in f32. Outputs must not overlap inputs.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, bad flags or slice, index out
 * of range or duplicated), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE,
 * S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context the GEMMs run in cuBLAS (GemmEx, f32 accumulation)
 * straight on strided sub-matrices, queued on the context's stream; the
 * call does not wait for the device. An indexed row slice gathers dy[:,
 * S] (T * k elements) into the workspace, and views without a unit
 * stride are packed there; a caller workspace that is too small gives
 * S2FT_ERR_OUT_OF_MEMORY. Also S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_backward_partial(s2ft_context *ctx,
                                           const s2ft_slice *slice,
                                           const s2ft_tensor *w,
                                           const s2ft_tensor *x_in,
                                           const s2ft_tensor *dy,
                                           s2ft_tensor *dx,
                                           s2ft_tensor *dw_slice,
                                           uint32_t flags);

/* ------------------------------------------------------------------------ */
/* Optimizer on slices                                                      */
/* ------------------------------------------------------------------------ */

typedef struct s2ft_optimizer s2ft_optimizer;

#define S2FT_OPTIMIZER_ADAMW 0 /* Adam with decoupled weight decay       */
#define S2FT_OPTIMIZER_SGD   1 /* SGD with (optional) momentum           */
#define S2FT_OPTIMIZER_SM3   2 /* SM3-II: row and column accumulators    */

/* Version 2 added `age_bias_correction` and S2FT_OPTIMIZER_SM3. A struct
 * initialised for version 1 (by a caller built against the version-1
 * header) ends before the fields added later: the library reads no field
 * beyond its version's and uses the defaults for the others. */
#define S2FT_OPTIMIZER_OPTIONS_VERSION 2

typedef struct s2ft_optimizer_options {
  uint32_t version;     /* S2FT_OPTIMIZER_OPTIONS_VERSION (1 still accepted) */
  int32_t kind;         /* default S2FT_OPTIMIZER_ADAMW                  */
  double beta1;         /* AdamW; default 0.9                            */
  double beta2;         /* AdamW; default 0.999                          */
  double eps;           /* AdamW, SM3; default 1e-8                      */
  double weight_decay;  /* all; decoupled for AdamW and SM3; default 0   */
  double momentum;      /* SGD, SM3; default 0 (none)                    */
  int32_t nesterov;     /* SGD; nonzero for Nesterov momentum; default 0 */
  double max_grad_norm; /* clip by global norm over all slices; 0 = off  */
  /* ---- version 2 ---- */
  int32_t age_bias_correction; /* AdamW on sparse parameters: nonzero for
                                  per-entry bias correction; default 0   */
} s2ft_optimizer_options;

/*
 * The rules, per trained element p with gradient g (after clipping):
 *  - AdamW (PyTorch's torch.optim.AdamW), step t:
 *      p = p * (1 - lr * weight_decay)
 *      m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
 *      p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *    t is the optimizer's step count (1 on the first step), or with
 *    age_bias_correction, for the entries of sparse parameters (SpIEL),
 *    the entry's own age a + 1, where a counts the steps applied since the
 *    entry joined (0 for the entries given to s2ft_optimizer_add_sparse and
 *    for the new entries of s2ft_optimizer_sparse_reindex); a = t after the
 *    step. Slices are unaffected (their entries all joined at step 0).
 *  - SGD (torch.optim.SGD, dampening 0): g = g + weight_decay * p;
 *    buf = g on the first step, else momentum * buf + g (momentum > 0);
 *    g = nesterov ? g + momentum * buf : buf;  p = p - lr * g.
 *  - SM3 (SM3-II of Anil et al., 2019, "Memory-Efficient Adaptive
 *    Optimization"): a parameter is a matrix with one accumulator per row,
 *    R, and per column, C, all starting at 0. A slice [rows, cols] has its
 *    own; a sparse parameter has one per row and column of the whole
 *    weight, updated by its entries only. For entry (r, c):
 *      nu = min(R[r], C[c]) + g^2
 *      u  = g / (sqrt(nu) + eps)
 *      u  = buf = momentum * buf + (1 - momentum) * u    (momentum > 0 only;
 *                                                         buf starts at 0)
 *      p  = p * (1 - lr * weight_decay) - lr * u
 *    then R[r] = the largest nu of the parameter's entries in row r, and
 *    C[c] the largest in column c (a row or column without entries keeps
 *    its value). beta1, beta2 and nesterov are not used; the state is
 *    rows + cols floats (and the momentum buffer when momentum > 0).
 * Moments, momentum buffers, accumulators and ages are f32; the arithmetic
 * is double, rounded once into the state.
 */

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_OPTIMIZER_OPTIONS_VERSION; 1 initialises only the fields of the
 *  version-1 struct). Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, a version
 *  this library does not know). */
S2FT_API s2ft_status s2ft_optimizer_options_init(s2ft_optimizer_options *opts,
                                                 uint32_t version);

/** Creates an optimizer with no parameters. Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL; an unknown kind or version; betas
 *  outside [0, 1); eps, decay or momentum negative or not finite; SM3 with
 *  momentum >= 1), S2FT_ERR_OUT_OF_MEMORY.
 * The optimizer keeps `ctx`, which must outlive it (its steps run on the
 * context's backend); on a CUDA context its state lives in device memory.
 */
S2FT_API s2ft_status s2ft_optimizer_create(s2ft_context *ctx,
                                           const s2ft_optimizer_options *opts,
                                           s2ft_optimizer **out);

/** Destroys an optimizer; NULL is a no-op. */
S2FT_API void s2ft_optimizer_destroy(s2ft_optimizer *opt);

/**
 * Registers the trained slice of `weight` as parameter number *index
 * (0, 1, ... in call order). The optimizer keeps the weight's data pointer
 * (the caller keeps the memory alive and in place until the optimizer is
 * destroyed) and allocates state for the slice only: AdamW's two moments
 * or SGD's momentum, and an f32 master copy of the slice when the weight
 * is f16/bf16 (initialised from the weight now). Indices in the slice are
 * copied. Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE, S2FT_ERR_STATE (after the first step),
 * S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context the state is allocated in device memory (this call
 * may synchronise) and the master is initialised by work queued on the
 * context's stream.
 */
S2FT_API s2ft_status s2ft_optimizer_add_param(s2ft_optimizer *opt,
                                              s2ft_tensor *weight,
                                              const s2ft_slice *slice,
                                              int64_t *index);

/**
 * One optimizer step with learning rate `lr` over all parameters.
 * grads[i] is parameter i's gradient slice ([out, k] or [k, in], f32 or the
 * weight's dtype; for a sparse parameter [count] or [1, count] in entry
 * order, as s2ft_backward_sparse writes it), n_grads the number of
 * parameters. When max_grad_norm > 0
 * all gradients are scaled by min(1, max_grad_norm / global_norm) first.
 * *grad_norm (may be NULL) receives the global norm before clipping.
 * The gradients are not modified.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, lr negative or not finite,
 * n_grads != number of parameters, a non-finite gradient norm),
 * S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE.
 * On a CUDA context the step is fused kernels queued on the context's
 * stream. It synchronises only when max_grad_norm > 0 or grad_norm is
 * not NULL: the global norm is then copied to the host, and a non-finite
 * norm fails the call as on the CPU (nothing changed, the step not
 * counted). Otherwise it does not synchronise, and a step whose gradient
 * norm is not finite is skipped on the device: nothing changes and the
 * step is not counted (see s2ft_optimizer_step_count()).
 */
S2FT_API s2ft_status s2ft_optimizer_step(s2ft_optimizer *opt, double lr,
                                         const s2ft_tensor *grads,
                                         int64_t n_grads, double *grad_norm);

/** The number of steps taken (restored by s2ft_optimizer_load()).
 * On a CUDA context, after steps that did not synchronise, this call
 * waits for the context's stream to read the device's count.
 */
S2FT_API s2ft_status s2ft_optimizer_step_count(const s2ft_optimizer *opt,
                                               int64_t *out);

/**
 * Saves the optimizer state (options, step count, per-parameter moments,
 * momentum buffers, SM3 accumulators, entry ages, f32 master slices, and
 * the flat indices of sparse parameters) to a safetensors file
 * (docs/optimizer-state-format.md), written under a temporary name and
 * renamed. Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_IO.
 * On a CUDA context the state is copied from the device (synchronises).
 */
S2FT_API s2ft_status s2ft_optimizer_save(const s2ft_optimizer *opt,
                                         const char *path);

/**
 * Restores state saved by s2ft_optimizer_save() into an optimizer with
 * the same kind and the same parameters (count, slice shapes; for sparse
 * parameters the same current set, after any reindex) registered,
 * so that training resumes exactly; master copies are written back to the
 * weights. The file is treated as hostile. Errors:
 * S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_IO, S2FT_ERR_FORMAT (malformed, or
 * not matching this optimizer's parameters).
 * On a CUDA context the state is copied to the device and the masters
 * written to the weights; the call waits for this work (synchronises).
 */
S2FT_API s2ft_status s2ft_optimizer_load(s2ft_optimizer *opt,
                                         const char *path);

/* ------------------------------------------------------------------------ */
/* Unstructured sparse training (LIFT, SpIEL)                               */
/* ------------------------------------------------------------------------ */

/**
 * A sparse set: the `count` trained entries of one [rows, cols] row-major
 * weight, as strictly ascending flat indices n = r * cols + c. Entry j of
 * the set is element j of every tensor made for it (gradients, optimizer
 * state). Immutable. The context's backend keeps its own copy (device
 * memory on CUDA); the set records the context's device and is used only
 * with contexts on it, and the context must outlive it.
 */
typedef struct s2ft_sparse_set s2ft_sparse_set;

/**
 * Creates a sparse set from `count` host flat indices (copied): strictly
 * ascending, each in [0, rows * cols); rows, cols >= 1 and
 * 1 <= count <= rows * cols. On a CUDA context the indices are copied to
 * the device (may synchronise). On failure *out is NULL. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL; a bad size; an index out of range,
 * repeated or below the one before it: the message names the first),
 * S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_sparse_set_create(s2ft_context *ctx, int64_t rows, int64_t cols,
                                            const int64_t *indices, int64_t count,
                                            s2ft_sparse_set **out);

/** Destroys a sparse set; NULL is a no-op. May synchronise. Optimizer
 *  parameters made from it keep their own copy of the indices. */
S2FT_API void s2ft_sparse_set_destroy(s2ft_sparse_set *set);

/** The number of entries. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL). */
S2FT_API s2ft_status s2ft_sparse_set_count(const s2ft_sparse_set *set, int64_t *count);

/** The shape [rows, cols] of the weight the set was made for; either out
 *  pointer may be NULL. Errors: S2FT_ERR_INVALID_ARGUMENT (set NULL). */
S2FT_API s2ft_status s2ft_sparse_set_shape(const s2ft_sparse_set *set, int64_t *rows,
                                           int64_t *cols);

/** Copies the flat indices, ascending, into out[0..count) (host memory;
 *  no device work). Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, capacity
 *  below the count). */
S2FT_API s2ft_status s2ft_sparse_set_indices(const s2ft_sparse_set *set, int64_t *out,
                                             int64_t capacity);

/**
 * Backward of y = x W^T for a weight trained at the entries of `set`
 * (made for W's shape [out, in] on the context's device), without the
 * dense weight gradient:
 *  - grad[j] = sum_t dy[t, r_j] * x[t, c_j] for entry j at r_j * in + c_j
 *    (SDDMM: dW = dy^T x, sampled at the set; the [out, in] dW is never
 *    formed, the work is count * T multiply-adds)
 *  - dx = dy W ([T, in], through the full weight; skipped if dx is NULL).
 * x [T, in], dy [T, out], w [out, in] (may be NULL when dx is NULL);
 * x, dy, w and dx share one dtype (f32, f16, bf16). grad is f32, [count]
 * or [1, count], any stride. Flags: S2FT_ACCUMULATE_DW adds the new
 * gradient to grad, S2FT_ACCUMULATE_DX adds into dx (else both are
 * overwritten). Products accumulate in f32 (the CPU sums blocks of 512
 * tokens in f32 and the blocks in double). Outputs must not overlap
 * inputs or each other.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, unknown flags, dx without w,
 * overlapping tensors), S2FT_ERR_SHAPE (also: a set made for another
 * weight shape), S2FT_ERR_DTYPE, S2FT_ERR_DEVICE (also: a set made on
 * another device), S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context the work (dx by cuBLAS, the gradient by a kernel over
 * f32 transposed copies of x and dy in the workspace: T * (in + out)
 * floats) is queued on the context's stream; the call does not wait for
 * the device. Also S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_backward_sparse(s2ft_context *ctx, const s2ft_sparse_set *set,
                                          const s2ft_tensor *x, const s2ft_tensor *dy,
                                          const s2ft_tensor *w, s2ft_tensor *dx,
                                          s2ft_tensor *grad, uint32_t flags);

/**
 * Registers the entries of `weight` at `set`'s indices as parameter
 * number *index of the optimizer (sparse parameters and slices may be
 * mixed). Its gradient in s2ft_optimizer_step is [count] or [1, count]
 * (s2ft_backward_sparse's grad). State is kept per entry (AdamW's
 * moments, SM3's momentum, an f32 master for f16/bf16 weights,
 * initialised from the weight now, and with age_bias_correction the
 * entries' ages, at 0) and, for SM3, per row and column of the weight.
 * The optimizer keeps the weight's data pointer (as
 * s2ft_optimizer_add_param) and a copy of the indices, not the set.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL; an entry already trained by
 * another parameter of the same weight), S2FT_ERR_SHAPE (the set was made
 * for another shape), S2FT_ERR_DTYPE, S2FT_ERR_DEVICE (weight or set not
 * on the optimizer's device), S2FT_ERR_STATE (after the first step),
 * S2FT_ERR_OUT_OF_MEMORY. On a CUDA context: as s2ft_optimizer_add_param.
 */
S2FT_API s2ft_status s2ft_optimizer_add_sparse(s2ft_optimizer *opt, s2ft_tensor *weight,
                                               const s2ft_sparse_set *set, int64_t *index);

/**
 * Moves sparse parameter `index` to the entries of `new_set` (made for the
 * same weight shape), e.g. LIFT's mask refresh or SpIEL's drop and
 * regrow; allowed at any step. Entries in both sets keep their state
 * exactly (moments, momentum, age, master); new entries start at zero
 * (age 0, the master from the weight); SM3's row and column accumulators
 * are kept. The weight is not changed: dropped entries keep their current
 * values. Later gradients follow new_set's order and count.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, index out of range or not a
 * sparse parameter, an entry trained by another parameter of the same
 * weight), S2FT_ERR_SHAPE, S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context the new state is allocated and filled on the device
 * (may synchronise).
 */
S2FT_API s2ft_status s2ft_optimizer_sparse_reindex(s2ft_optimizer *opt, int64_t index,
                                                   const s2ft_sparse_set *new_set);

/* LIFT's low-rank approximation methods. */
#define S2FT_LIFT_EXACT      0 /* a full SVD (LAPACK gesdd, in double)          */
#define S2FT_LIFT_RANDOMIZED 1 /* a randomized SVD (Halko, Martinsson, Tropp)   */

#define S2FT_LIFT_OPTIONS_VERSION 1

typedef struct s2ft_lift_options {
  uint32_t version;         /* S2FT_LIFT_OPTIONS_VERSION                      */
  int32_t rank;             /* r of W_r, in [1, min(rows, cols)]; default 0:
                               must be set                                    */
  int64_t count;            /* k entries; exactly one of count >= 1 and       */
  double density;           /* density in (0, 1] is set (k = density * rows *
                               cols rounded to nearest, at least 1); both
                               default to 0                                   */
  int32_t order;            /* S2FT_ORDER_LARGEST (default) or _SMALLEST      */
  int32_t method;           /* S2FT_LIFT_EXACT (default) or _RANDOMIZED       */
  int32_t oversampling;     /* randomized: p >= 0, default 10                 */
  int32_t power_iterations; /* randomized: q >= 0, default 2                  */
  uint64_t seed;            /* randomized: the sketch's seed, default 0       */
} s2ft_lift_options;

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_LIFT_OPTIONS_VERSION). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_lift_options_init(s2ft_lift_options *opts, uint32_t version);

/**
 * LIFT's principal weights (Liu et al., ICML 2025): the rank-r
 * approximation W_r = U_r diag(s_r) V_r^T of the weight w [rows, cols]
 * (f32, f16 or bf16, computed in double), then the k entries of largest
 * |W_r| (S2FT_ORDER_SMALLEST: smallest), ties to the lower flat index.
 * Writes their flat indices r * cols + c, ascending (ready for
 * s2ft_sparse_set_create), into indices[0..k) and k into *count; with
 * indices NULL only *count is set (nothing is computed). The randomized
 * method sketches W with a Gaussian [cols, r + p] matrix from `seed` (the
 * library's own generator: the same on every platform), takes q power
 * iterations with re-orthonormalisation, and the exact SVD of the
 * projected [r + p, cols] matrix (the sketch is capped at min(rows,
 * cols)); with a clear gap after the r-th singular value it selects what
 * the exact method does.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL w, opts or count; bad version;
 * rank out of range; count and density both set or neither; density
 * outside (0, 1]; count above rows * cols; order, method, oversampling
 * or power_iterations out of range; capacity below k), S2FT_ERR_SHAPE,
 * S2FT_ERR_DTYPE, S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY,
 * S2FT_ERR_UNSUPPORTED (a CPU build without LAPACK), S2FT_ERR_BACKEND
 * (the SVD did not converge). On a CUDA context the SVD (or the
 * randomized method, with the same sketch) runs in double on the device
 * through cuSOLVER and cuBLAS, and W_r is ranked on the host by the CPU's
 * code: the same ties and order, and the same entries wherever the SVD is
 * well defined (synchronises; device memory as on the CPU, in scratch, plus
 * W_r's rows * cols doubles on the host).
 */
S2FT_API s2ft_status s2ft_lift_select(s2ft_context *ctx, const s2ft_tensor *w,
                                      const s2ft_lift_options *opts, int64_t *indices,
                                      int64_t capacity, int64_t *count);

/** The entry count of LIFT parameter-matched to LoRA of rank lora_rank on
 *  a [rows, cols] weight: (rows + cols) * lora_rank, at most rows * cols;
 *  0 when an argument is below 1 or the product overflows. Thread-safe. */
S2FT_API int64_t s2ft_lift_count_for_lora_rank(int64_t rows, int64_t cols, int64_t lora_rank);

/* ------------------------------------------------------------------------ */
/* SORSA: trained singular vectors and values                               */
/* ------------------------------------------------------------------------ */

/*
 * SORSA (Cao, 2024, arXiv 2409.00055) splits a frozen weight W [out, in]
 * by its thin SVD W = U diag(S) V^T into a trained principal part and a
 * frozen residual:
 *     W = W_res + U_p diag(S_p) V_p^T
 * with the top-r singular triplets as factors, all f32: u = U_p [out, r],
 * s = S_p [r] (or [1, r]), vt = V_p^T [r, in]; W_res = W - U_p diag(S_p)
 * V_p^T is kept in W's dtype. A linear layer computes
 *     y = x W_res^T + ((x V_p) * S_p) U_p^T
 * and the [out, in] product U_p diag(S_p) V_p^T is never formed. Train u,
 * s (as [1, r]) and vt with an s2ft_optimizer (each added with
 * s2ft_optimizer_add_param and a slice over all its columns), and keep U_p
 * and V_p orthonormal with the regularizer
 *     R = ||U_p^T U_p - I||_F^2 + ||V_p^T V_p - I||_F^2
 * (s2ft_sorsa_regularizer or s2ft_sorsa_regularizer_step). docs/api.md
 * shows a training step and how this matches the released code.
 */

/**
 * Splits w [out, in] (f32, f16 or bf16) for SORSA: the thin SVD of w in
 * double (LAPACK gesdd), its top `rank` triplets written as u [out, rank],
 * s [rank] or [1, rank] and vt [rank, in] (all f32, any strides), and w
 * overwritten in place by the residual w - u diag(s) vt, computed in double
 * from the f32-rounded factors and rounded once to w's dtype (so residual
 * + factors reproduce w up to that one rounding). Singular values come in
 * descending order. Signs are fixed: in every column of u the entry of
 * largest magnitude (the first such, on ties) is positive, the matching row
 * of vt flipped with it. rank is in [1, min(out, in)]. The outputs must not
 * overlap each other or w. Memory: w in double plus the SVD's factors
 * (about (out + in) * min(out, in) doubles) and LAPACK's workspace.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, rank out of range, a non-finite
 * value in w, overlapping tensors), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE (u, s,
 * vt not f32), S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY,
 * S2FT_ERR_UNSUPPORTED (a build without LAPACK), S2FT_ERR_BACKEND (the
 * SVD did not converge). On failure w is unchanged. On a CUDA context the
 * SVD is cuSOLVER's in double on the device, the signs are fixed on the
 * host by the same rule and the residual is formed on the device
 * (synchronises).
 */
S2FT_API s2ft_status s2ft_sorsa_init(s2ft_context *ctx, s2ft_tensor *w, int32_t rank,
                                     s2ft_tensor *u, s2ft_tensor *s, s2ft_tensor *vt);

/**
 * Forward of a SORSA linear layer: y = x w_res^T + ((x vt^T) * s) u^T for
 * x [T, in], w_res [out, in], y [T, out] (one dtype: f32, f16 or bf16) and
 * the f32 factors u [out, r], s [r] or [1, r], vt [r, in]. Products
 * accumulate in f32 and y is rounded once. h_saved (may be NULL): an f32
 * [T, r] tensor that receives h = x vt^T, which s2ft_sorsa_backward can
 * reuse. The [out, in] factor product is never formed: the factor work is
 * 2 T r (in + out) flops beside the residual's GEMM. Outputs must not
 * overlap the inputs or each other.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, overlapping tensors),
 * S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context the work is cuBLAS GEMMs (f32 accumulation) and small
 * kernels queued on the context's stream; the call does not wait for the
 * device (also S2FT_ERR_BACKEND). Workspace: 2 T r floats, plus T (in + out)
 * for 16-bit tensors (f32 copies of x and of y before its rounding).
 */
S2FT_API s2ft_status s2ft_sorsa_forward(s2ft_context *ctx, const s2ft_tensor *x,
                                        const s2ft_tensor *w_res, const s2ft_tensor *u,
                                        const s2ft_tensor *s, const s2ft_tensor *vt,
                                        s2ft_tensor *y, s2ft_tensor *h_saved);

/**
 * Backward of s2ft_sorsa_forward for the output gradient dy [T, out], with
 * g = dy u ([T, r]) and h = x vt^T (h_saved from the forward, f32 [T, r],
 * or NULL to recompute it from x):
 *  - du  = dy^T (h * s)              [out, r]
 *  - ds  = sum over t of g * h       [r] or [1, r]
 *  - dvt = (g * s)^T x               [r, in]
 *  - dx  = dy w_res + (g * s) vt     [T, in] (skipped when dx is NULL)
 * (* scales column j by s[j], or multiplies elementwise). du, ds, dvt are
 * f32 (any strides); x, w_res, dy and dx share one dtype (f32, f16, bf16);
 * f32 accumulation, dx rounded once. Flags: S2FT_ACCUMULATE_DW adds to du,
 * ds and dvt, S2FT_ACCUMULATE_DX adds into dx (else they are overwritten).
 * Outputs must not overlap the inputs or each other.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, unknown flags, overlapping
 * tensors), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE,
 * S2FT_ERR_OUT_OF_MEMORY. On a CUDA context: as s2ft_sorsa_forward
 * (workspace 4 T r floats, plus T (2 in + out) for 16-bit tensors).
 */
S2FT_API s2ft_status s2ft_sorsa_backward(s2ft_context *ctx, const s2ft_tensor *x,
                                         const s2ft_tensor *w_res, const s2ft_tensor *u,
                                         const s2ft_tensor *s, const s2ft_tensor *vt,
                                         const s2ft_tensor *h_saved, const s2ft_tensor *dy,
                                         s2ft_tensor *dx, s2ft_tensor *du, s2ft_tensor *ds,
                                         s2ft_tensor *dvt, uint32_t flags);

/* Flag for s2ft_sorsa_regularizer and s2ft_sorsa_regularizer_step (with
 * S2FT_ACCUMULATE_DW for the former): use the plain Frobenius norms,
 * R = ||U_p^T U_p - I||_F + ||V_p^T V_p - I||_F, as the released SORSA code
 * does, instead of the paper's squares. A term whose norm is 0 adds no
 * gradient. */
#define S2FT_SORSA_UNSQUARED 4u

/**
 * SORSA's orthonormal regularizer on u [out, r] and vt [r, in] (f32):
 * with E_U = u^T u - I and E_V = vt vt^T - I ([r, r]),
 *   value = gamma * (||E_U||_F^2 + ||E_V||_F^2)
 *   du  = gamma * 4 u E_U       dvt = gamma * 4 E_V vt
 * (S2FT_SORSA_UNSQUARED: value = gamma * (||E_U||_F + ||E_V||_F),
 * du = gamma * 2 u E_U / ||E_U||_F, dvt = gamma * 2 E_V vt / ||E_V||_F).
 * *value (may be NULL) receives the value; du and dvt (f32, either may be
 * NULL) receive the gradients, added to them with S2FT_ACCUMULATE_DW
 * (e.g. onto s2ft_sorsa_backward's), else overwritten. gamma is finite and
 * >= 0. The released code applies the regularizer through the gradient:
 * gamma = its gamma / its (base) learning rate, added after gradient
 * clipping, before the optimizer step (docs/api.md).
 * The CPU computes in double; CUDA in f32 (cuBLAS) and then synchronises
 * only when value is not NULL.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL u or vt, gamma negative or not
 * finite, unknown flags, du or dvt overlapping u, vt or each other),
 * S2FT_ERR_SHAPE (u and vt of different ranks, du or dvt not shaped as
 * u or vt), S2FT_ERR_DTYPE, S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY,
 * S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_sorsa_regularizer(s2ft_context *ctx, const s2ft_tensor *u,
                                            const s2ft_tensor *vt, double gamma, double *value,
                                            s2ft_tensor *du, s2ft_tensor *dvt, uint32_t flags);

/**
 * The regularizer as the paper's separate, decoupled update with its own
 * rate: u -= rate * dR/du and vt -= rate * dR/dvt in place, both gradients
 * taken at the factors before the step (R as in s2ft_sorsa_regularizer,
 * with S2FT_SORSA_UNSQUARED the only flag). Call it after the backward and
 * before s2ft_optimizer_step, so that with SGD the two give exactly the
 * paper's W_p <- W_p - lr * grad(L) - rate * grad(R). *value (may be NULL)
 * receives rate * R before the step. rate is finite and >= 0. Errors,
 * precision and synchronisation: as s2ft_sorsa_regularizer.
 */
S2FT_API s2ft_status s2ft_sorsa_regularizer_step(s2ft_context *ctx, s2ft_tensor *u,
                                                 s2ft_tensor *vt, double rate, double *value,
                                                 uint32_t flags);

/**
 * LIFT's mask refresh (the reference refreshes every `update_interval`
 * steps, e.g. 400; the caller calls this after every N-th optimizer step):
 * selects the principal weights of the current `weight` as
 * s2ft_lift_select() does with `opts`, and moves sparse parameter
 * `param_index` of `opt` to them as s2ft_optimizer_sparse_reindex() does:
 * entries in both sets keep their state exactly (moments, momentum, age,
 * master; AdamW's step count goes on), new entries start at zero, and the
 * weight is not changed (entries that leave keep their trained values, as
 * in LIFT, which fine-tunes the full weight through a moving mask).
 * `weight` must be the weight the parameter was registered with (the same
 * memory, dtype, shape and strides). *new_set receives a new sparse set of
 * the selected entries on ctx's device, owned by the caller (rebuild the
 * s2ft_backward_sparse calls with it); *kept (may be NULL) the number of
 * entries that were in the parameter before. On failure nothing changes
 * and *new_set is NULL. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL; opt not
 * live; param_index out of range or a slice; weight not the parameter's
 * weight; the options, as s2ft_lift_select; an entry trained by another
 * parameter of the same weight), S2FT_ERR_DEVICE (ctx not on the
 * optimizer's device), S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_UNSUPPORTED (as
 * s2ft_lift_select: builds without LAPACK), S2FT_ERR_BACKEND. Works on
 * CUDA contexts as s2ft_lift_select does (synchronises).
 */
S2FT_API s2ft_status s2ft_lift_refresh(s2ft_context *ctx, s2ft_optimizer *opt, int64_t param_index,
                                       const s2ft_tensor *weight, const s2ft_lift_options *opts,
                                       s2ft_sparse_set **new_set, int64_t *kept);

/*
 * SpIEL (Ansell et al., 2024, "Scaling Sparse Fine-Tuning to Large
 * Language Models"): the trained entries of a weight move during training.
 * An s2ft_spiel schedule owns the moves of ONE sparse parameter of an
 * optimizer. Steps t = 1, 2, ... are counted by s2ft_spiel_step(), called
 * once after every optimizer step. Reselection happens after steps
 * t = M + j * N (j = 0, 1, ...; t <= total_steps), N = reselect_interval,
 * M = accumulation_steps; the accumulation window of the reselection at
 * t is steps t - M + 1 .. t (the s2ft_spiel_observe() calls made during
 * them). At a reselection with rate p(t):
 *  - n = floor(p(t) * k) entries of the k trained ones are to be dropped:
 *    those of smallest |W - W_base| (W from the optimizer's f32 master for
 *    f16/bf16 weights, else the weight; ties to the lower flat index);
 *  - as many are regrown among the entries that are not trained, by
 *      AG: at the window's first observe call the dense gradient
 *          dW = dy^T x is formed (the only place the library forms one)
 *          and its `candidates` entries of largest |dW| become the
 *          window's candidates (ties to the lower flat index); every
 *          observe call of the window adds their gradient g (SDDMM, as
 *          s2ft_backward_sparse) into S1 = sum g and S2 = sum g^2; the
 *          candidates not among the surviving entries are ranked by |S1|
 *          (ties to the lower flat index) and the best n regrow. An entry
 *          both dropped and regrown stays (its value and state too), and
 *          the drop list (smallest |delta| first) is cut to the number of
 *          entries actually regrown;
 *      MA: no gradient: entry (r, c) is scored R[r] * C[c], where R and C
 *          are per row and column accumulators (S2FT_SPIEL_MA_OPTIMIZER:
 *          the SM3 optimizer's own, as the reference; _ACTIVATIONS:
 *          R[r] = sum of dy[t, r]^2 and C[c] = sum of x[t, c]^2 over the
 *          window's observe calls, O(T * (in + out)) per call); the n best
 *          entries outside the current set regrow (ties to the lower flat
 *          index);
 *    and entries of other sparse parameters of the same weight never regrow;
 *  - dropped entries get their base bytes back in the weight (exactly),
 *    the parameter is reindexed (surviving entries keep their optimizer
 *    state exactly; regrown ones start at zero with their master and base
 *    taken from the weight), and with seed_moments (AG and AdamW) the
 *    regrown entries' moments are seeded from the window:
 *      m = (S1 / s) * (1 - beta1^a),  v = (S2 / s) * (1 - beta2^a)
 *    with s the window's observe calls and a = max(1, floor(s /
 *    observations_per_step)) written as the entries' age under
 *    age_bias_correction, else a = the optimizer's step count (so that
 *    AdamW's bias correction turns them into the window's means).
 * p(t), with p0 = initial_rate and T = total_steps (the reference's
 * "linear" and "cosine" policies):
 *    S2FT_SPIEL_DECAY_LINEAR: p0 * (1 - t / T)
 *    S2FT_SPIEL_DECAY_COSINE: p0 * (1 + cos(pi * t / T)) / 2
 * and 1 at the first reselection (t = M) when first_full is set (the
 * reference does this with its linear policy: the random initial set is
 * replaced as a whole).
 */
typedef struct s2ft_spiel s2ft_spiel;

#define S2FT_SPIEL_AG 0 /* regrow by accumulated gradient ("rigl")    */
#define S2FT_SPIEL_MA 1 /* regrow by the SM3-style row x column score */

#define S2FT_SPIEL_DECAY_LINEAR 0
#define S2FT_SPIEL_DECAY_COSINE 1

#define S2FT_SPIEL_MA_OPTIMIZER   0 /* the SM3 optimizer's row/column accumulators */
#define S2FT_SPIEL_MA_ACTIVATIONS 1 /* sums of dy^2 per row and x^2 per column     */

#define S2FT_SPIEL_OPTIONS_VERSION 1

typedef struct s2ft_spiel_options {
  uint32_t version;              /* S2FT_SPIEL_OPTIONS_VERSION                   */
  int32_t regrow;                /* S2FT_SPIEL_AG (default) or S2FT_SPIEL_MA     */
  int64_t reselect_interval;     /* N >= 1; default 20                           */
  int64_t accumulation_steps;    /* M in [1, N]; default 5                       */
  int64_t total_steps;           /* T >= 1; default 0: must be set               */
  double initial_rate;           /* p0 in [0, 1]; default 0.2                    */
  int32_t decay;                 /* S2FT_SPIEL_DECAY_LINEAR (default) or _COSINE */
  int32_t first_full;            /* nonzero: p = 1 at t = M; default 1           */
  int64_t candidates;            /* AG: candidates per window, 0 (default): the
                                    parameter's entry count k (the reference);
                                    at most rows * cols                          */
  int32_t seed_moments;          /* AG with AdamW: seed regrown moments; default 1 */
  int32_t ma_source;             /* MA: S2FT_SPIEL_MA_OPTIMIZER (default: needs
                                    an S2FT_OPTIMIZER_SM3 optimizer) or
                                    S2FT_SPIEL_MA_ACTIVATIONS                    */
  int64_t observations_per_step; /* observe calls per optimizer step (gradient
                                    accumulation micro-batches); default 1       */
} s2ft_spiel_options;

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_SPIEL_OPTIONS_VERSION). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_spiel_options_init(s2ft_spiel_options *opts, uint32_t version);

/** The replacement rate p(step) of `opts` (the formula above, whether or
 *  not `step` is a reselection step) into *rate. Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL, invalid options, step < 1). */
S2FT_API s2ft_status s2ft_spiel_rate(const s2ft_spiel_options *opts, int64_t step, double *rate);

/**
 * Creates a SpIEL schedule for sparse parameter `param_index` of `opt`
 * (made by s2ft_optimizer_add_sparse, normally from random entries), whose
 * weight is `weight` (the same memory, dtype, shape and strides). The
 * current values of the weight at the parameter's entries are kept as
 * their base values: create it before the first training step. The
 * schedule keeps `opt` (which must outlive it) and copies the options.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL; opt not live; param_index out
 * of range or a slice; weight not the parameter's weight; a slice of the
 * same weight in the optimizer; a bad option: the message names it;
 * MA_OPTIMIZER without an SM3 optimizer), S2FT_ERR_DEVICE (ctx not on the
 * optimizer's device), S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND. On a CUDA
 * context the base values are copied to the host (synchronises).
 */
S2FT_API s2ft_status s2ft_spiel_create(s2ft_context *ctx, s2ft_optimizer *opt, int64_t param_index,
                                       const s2ft_tensor *weight, const s2ft_spiel_options *opts,
                                       s2ft_spiel **out);

/** Destroys a schedule; NULL is a no-op. */
S2FT_API void s2ft_spiel_destroy(s2ft_spiel *spiel);

/**
 * Shows the schedule one micro-batch of the coming step: x [T, in] and
 * dy [T, out] as given to s2ft_backward_sparse (one dtype: f32, f16 or
 * bf16). Call it for every backward of the weight, before s2ft_spiel_step()
 * of that step; it does nothing outside accumulation windows and for
 * MA_OPTIMIZER. AG forms the dense gradient on the window's first call
 * only. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, spiel not live),
 * S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY,
 * S2FT_ERR_BACKEND. On a CUDA context the work is queued on ctx's stream,
 * except the window's first AG call, which copies the dense gradient to
 * the host (synchronises).
 */
S2FT_API s2ft_status s2ft_spiel_observe(s2ft_spiel *spiel, s2ft_context *ctx, const s2ft_tensor *x,
                                        const s2ft_tensor *dy);

/**
 * Counts one step (call it after the optimizer step) and, at a
 * reselection step, drops and regrows entries as described above,
 * changing `weight` (the parameter's weight) at the dropped entries and
 * reindexing the optimizer parameter. *reselected (may be NULL) is 1 when
 * the set changed (get it with s2ft_spiel_current_set()), else 0. On
 * failure nothing changes and the step is not counted. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL; spiel or its optimizer not live;
 * weight not the parameter's weight), S2FT_ERR_STATE (the parameter was
 * reindexed by someone else; AG or MA_ACTIVATIONS with no observe call in
 * the window), S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND.
 * On a CUDA context a reselection step synchronises.
 */
S2FT_API s2ft_status s2ft_spiel_step(s2ft_spiel *spiel, s2ft_context *ctx, s2ft_tensor *weight,
                                     int32_t *reselected);

/** A new sparse set of the schedule's current entries on ctx's device,
 *  owned by the caller (for s2ft_backward_sparse). Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL, spiel not live), S2FT_ERR_DEVICE,
 *  S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND. */
S2FT_API s2ft_status s2ft_spiel_current_set(const s2ft_spiel *spiel, s2ft_context *ctx,
                                            s2ft_sparse_set **out);

#define S2FT_SPIEL_STATS_VERSION 1

/** What a schedule has done; the caller sets `version` (the library
 *  fills the fields of that version). */
typedef struct s2ft_spiel_stats {
  uint32_t version;        /* set by the caller: S2FT_SPIEL_STATS_VERSION   */
  int64_t steps;           /* steps counted by s2ft_spiel_step               */
  int64_t count;           /* trained entries k (constant)                   */
  int64_t reselections;    /* reselection steps run                          */
  int64_t observations;    /* observe calls used (inside windows)            */
  int64_t dense_gradients; /* dense [out, in] gradients formed (AG: one per
                              window, on its first observe call)             */
  int64_t next_reselection;/* the next reselection step, 0 when none is left */
  int64_t last_step;       /* the last reselection's step (0: none yet)      */
  double last_rate;        /* its p                                          */
  int64_t last_target;     /* its n = floor(p * k)                           */
  int64_t last_dropped;    /* entries it dropped (reset to base)             */
  int64_t last_regrown;    /* entries it regrew (equal to last_dropped)      */
} s2ft_spiel_stats;

/** Fills *out (its `version` set by the caller). Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL, spiel not live, unknown version). */
S2FT_API s2ft_status s2ft_spiel_stats_get(const s2ft_spiel *spiel, s2ft_spiel_stats *out);

/* ------------------------------------------------------------------------ */
/* Adapters                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * An adapter is what fine-tuning changed: for each (layer, target) the
 * trained weight lines in the base model's original order (columns of o_proj
 * and down_proj, rows of v_proj and up_proj) and their delta, [out, k] for
 * column targets and [k, in] for row targets, held in f32. Each line also
 * carries a fingerprint of the base line it was made against (64-bit FNV-1a
 * over the line's values rounded to bf16, 0 when unknown: an f32 base and
 * its bf16 copy give the same), so applying an adapter to another base is
 * a clear error. See docs/adapter-format.md for the definition and the
 * file format.
 *
 * An adapter may also hold unstructured sparse entries (for sparse methods
 * such as LIFT and SpIEL, s2ft_adapter_set_sparse): per (layer, weight) of
 * any of the seven weights (S2FT_WEIGHT_*), strictly ascending flat indices
 * n = r * cols + c into the base-order weight, an f32 delta per index and
 * one fingerprint of the whole base weight. No sparse entry lies on a
 * structured line of the same (layer, weight): the set calls refuse that,
 * and s2ft_adapter_fuse folds such entries into the line's delta.
 *
 * And it may hold low-rank entries (for SORSA and other factored methods,
 * s2ft_adapter_set_low_rank, s2ft_adapter_set_sorsa): per (layer, weight)
 * the delta b a of the whole base-order weight as f32 factors b [rows, k]
 * and a [k, cols], with one fingerprint of the whole base weight. A
 * (layer, weight) with a low-rank entry has no structured or sparse entry.
 */
typedef struct s2ft_adapter s2ft_adapter;

/**
 * Creates an empty adapter for a model shape (fill it with
 * s2ft_adapter_set()). `name` (UTF-8, at most 255 bytes, may be "") is
 * copied; `default_scale` is the scale used when a caller passes NaN as
 * the scale to apply functions. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL
 * out/shape/name, bad shape, name too long, default_scale not finite),
 * S2FT_ERR_OUT_OF_MEMORY.
 */
S2FT_API s2ft_status s2ft_adapter_create(const s2ft_model_shape *shape, const char *name,
                                         double default_scale, s2ft_adapter **out);

/** Destroys an adapter; NULL is a no-op. */
S2FT_API void s2ft_adapter_destroy(s2ft_adapter *adapter);

/**
 * Sets the entry of (layer, target): `n_lines` distinct base-order line
 * indices and their delta ([out, n_lines] for O/DOWN, [n_lines, in] for
 * V/UP; f32, f16 or bf16 on the CPU; copied to f32). `base` is the full
 * base weight of that target in base order, used to fingerprint the lines,
 * or NULL (fingerprints 0: never checked). n_lines == 0 removes the entry.
 * Do not change an adapter while it is applied to a model. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, bad layer/target,
 * index out of range or duplicated, a line that holds a sparse entry of
 * the same (layer, weight): see s2ft_adapter_set_sparse), S2FT_ERR_SHAPE,
 * S2FT_ERR_DTYPE, S2FT_ERR_DEVICE. A failed call changes nothing.
 */
S2FT_API s2ft_status s2ft_adapter_set(s2ft_adapter *adapter, int32_t layer, int32_t target,
                                      const int64_t *lines, int64_t n_lines,
                                      const s2ft_tensor *delta, const s2ft_tensor *base);

/**
 * Builds an adapter from a training run: for every (layer, target) the
 * selection trains, delta = trained slice - base slice (computed in double,
 * rounded to f32). `base` and `trained` are arrays of n_layers layer
 * weights; only o, v, down and up are read (those of trained targets must
 * be set). With `permuted` nonzero both are in the selection's permuted
 * order (as after s2ft_permute FORWARD) and the lines are mapped back to
 * base order; fingerprints are always taken in base order. Weights are
 * read on the CPU; base and trained may differ in dtype (e.g. an f32
 * master against a bf16 base).
 * Errors: S2FT_ERR_INVALID_ARGUMENT (also: a delta that overflows f32, a
 * name that is not UTF-8), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY.
 */
S2FT_API s2ft_status s2ft_adapter_from_training(s2ft_context *ctx, const s2ft_selection *sel,
                                                const s2ft_layer_weights *base,
                                                const s2ft_layer_weights *trained,
                                                int32_t permuted, const char *name,
                                                s2ft_adapter **out);

/** Renames an adapter and sets its default scale. `name` follows the rules
 *  of s2ft_adapter_create() and is copied. Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL, name too long or not UTF-8,
 *  default_scale not finite). */
S2FT_API s2ft_status s2ft_adapter_set_info(s2ft_adapter *adapter, const char *name,
                                           double default_scale);

/** The adapter's name (owned by the adapter, valid until it is destroyed or
 *  renamed; "" for NULL). */
S2FT_API const char *s2ft_adapter_name(const s2ft_adapter *adapter);

/* Adapter metadata: free key/value strings for provenance (base model,
 * selection, tool versions; docs/adapter-format.md lists the keys the s2ft
 * tool records). Saved with the adapter and loaded back; fusion keeps each
 * input's under "input.<i>." (s2ft_adapter_fuse), and adds no keys
 * otherwise: nor does any other call (no time stamps). Keys: 1 to 255
 * bytes of [A-Za-z0-9._-]. Values: valid UTF-8, at most 65536 bytes (may
 * be ""). At most 256 keys per adapter. */

/** Sets `key` to a copy of `value`, or removes it when value is NULL
 *  (removing an absent key is not an error). Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL adapter/key, key empty, too long or
 *  with a character outside [A-Za-z0-9._-], value too long or not UTF-8,
 *  a new key beyond 256); a failed call changes nothing. */
S2FT_API s2ft_status s2ft_adapter_set_meta(s2ft_adapter *adapter, const char *key,
                                           const char *value);

/** Sets *value to the value of `key` (owned by the adapter, valid until the
 *  next s2ft_adapter_set_meta on it or its destruction), or to NULL when
 *  the adapter has no such key. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL
 *  adapter/key/value). */
S2FT_API s2ft_status s2ft_adapter_meta(const s2ft_adapter *adapter, const char *key,
                                       const char **value);

/** Sets *count to the number of metadata keys. Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL adapter/count). */
S2FT_API s2ft_status s2ft_adapter_meta_count(const s2ft_adapter *adapter, int64_t *count);

/** The index-th metadata entry, keys in ascending byte order; `key` or
 *  `value` may be NULL (on failure they are set to NULL). The strings are
 *  owned as in s2ft_adapter_meta(). Errors: S2FT_ERR_INVALID_ARGUMENT
 *  (NULL adapter, index out of [0, count)). */
S2FT_API s2ft_status s2ft_adapter_meta_at(const s2ft_adapter *adapter, int64_t index,
                                          const char **key, const char **value);

/** Copies the model shape, default scale and target mask (S2FT_TARGET_BIT
 *  of targets with a structured entry in some layer; sparse entries do not
 *  count: see s2ft_adapter_sparse_info); any out pointer may be NULL.
 *  Errors: S2FT_ERR_INVALID_ARGUMENT (NULL adapter). */
S2FT_API s2ft_status s2ft_adapter_info(const s2ft_adapter *adapter, s2ft_model_shape *shape,
                                       double *default_scale, uint32_t *targets);

/**
 * Writes the base-order lines of (layer, target), ascending, into
 * lines[0..*count) and, when `fingerprints` is not NULL, their base
 * fingerprints. Pass lines NULL to learn *count (0: no entry).
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL adapter/count, bad layer or
 * target, capacity below the count).
 */
S2FT_API s2ft_status s2ft_adapter_lines(const s2ft_adapter *adapter, int32_t layer,
                                        int32_t target, int64_t *lines,
                                        uint64_t *fingerprints, int64_t capacity,
                                        int64_t *count);

/** Copies the delta of (layer, target) into `out` ([out, k] or [k, in] in
 *  the order of s2ft_adapter_lines; any dtype, rounded). Errors:
 *  S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_STATE (no entry), S2FT_ERR_SHAPE,
 *  S2FT_ERR_DTYPE, S2FT_ERR_DEVICE. */
S2FT_API s2ft_status s2ft_adapter_delta(const s2ft_adapter *adapter, int32_t layer,
                                        int32_t target, s2ft_tensor *out);

/**
 * Sets the unstructured sparse entries of (layer, weight), weight one of
 * S2FT_WEIGHT_*: `count` flat indices n = r * cols + c into the base-order
 * weight [rows, cols], strictly ascending and in [0, rows * cols), and
 * their delta (a tensor of `count` elements, [count] or [1, count]; f32,
 * f16 or bf16 on the CPU; copied to f32, every value finite). `base` is the
 * full base weight in base order, used for the entries' base fingerprint
 * (64-bit FNV-1a over the little-endian bytes of the weight's row
 * fingerprints, rows in order: docs/adapter-format.md), or NULL
 * (fingerprint 0: never checked). count == 0 removes the entries (indices,
 * delta and base may then be NULL). No index may lie on a line of the
 * structured entry of the same (layer, weight) (a column of O or DOWN, a
 * row of V or UP that s2ft_adapter_set gave it). Do not change an adapter
 * while it is applied to a model. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL,
 * bad layer or weight, count negative or above rows * cols, an index out of
 * range, not above the one before it, or on a structured line, a delta
 * value not finite), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE, S2FT_ERR_DEVICE. A
 * failed call changes nothing.
 */
S2FT_API s2ft_status s2ft_adapter_set_sparse(s2ft_adapter *adapter, int32_t layer, int32_t weight,
                                             const int64_t *indices, int64_t count,
                                             const s2ft_tensor *delta, const s2ft_tensor *base);

/**
 * The sparse entries of (layer, weight): sets *count to their number (0:
 * none) and, when not NULL, copies the ascending base-order flat indices to
 * indices[0..count), their f32 deltas to deltas[0..count) and the base
 * fingerprint to *fingerprint (0: unknown, or no entries). Pass indices and
 * deltas NULL to learn the count; either may be NULL. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL adapter or count, bad layer or weight,
 * capacity below the count where indices or deltas is not NULL).
 */
S2FT_API s2ft_status s2ft_adapter_sparse(const s2ft_adapter *adapter, int32_t layer,
                                         int32_t weight, int64_t *indices, float *deltas,
                                         int64_t capacity, int64_t *count,
                                         uint64_t *fingerprint);

/** The weights with sparse entries in some layer (a mask of
 *  S2FT_WEIGHT_BIT) and the number of sparse entries in all; either out
 *  pointer may be NULL. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL adapter). */
S2FT_API s2ft_status s2ft_adapter_sparse_info(const s2ft_adapter *adapter, uint32_t *weights,
                                              int64_t *entries);

/**
 * Sets the low-rank entry of (layer, weight), weight one of S2FT_WEIGHT_*:
 * the delta b a of the base-order weight [rows, cols], kept as its factors
 * b [rows, k] and a [k, cols] (f32, f16 or bf16 on the CPU, any strides;
 * copied to f32, every value finite; k >= 1). A low-rank entry changes the
 * whole weight, so (layer, weight) may hold no structured entry and no
 * sparse entries beside it (and the set calls for those refuse while it
 * is there). `base` is the full base weight in base order, for the base
 * fingerprint (as s2ft_adapter_set_sparse), or NULL (0: never checked).
 * b and a both NULL remove the entry. Do not change an adapter while it is
 * applied to a model. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL adapter or
 * one factor NULL, bad layer or weight, a value not finite, a structured
 * or sparse entry on the same (layer, weight)), S2FT_ERR_SHAPE (b not
 * [rows, k], a not [k, cols], base not [rows, cols]), S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY. A failed call changes nothing.
 */
S2FT_API s2ft_status s2ft_adapter_set_low_rank(s2ft_adapter *adapter, int32_t layer,
                                               int32_t weight, const s2ft_tensor *b,
                                               const s2ft_tensor *a, const s2ft_tensor *base);

/**
 * Sets the low-rank entry of (layer, weight) to what SORSA training changed
 * (s2ft_sorsa_init split the weight into a residual and u0, s0, vt0; training
 * made them u, s, vt, all of rank r):
 *     delta = u diag(s) vt - u0 diag(s0) vt0
 * stored as b = [u diag(s) | -u0 diag(s0)] ([rows, 2r], each product
 * rounded once to f32) and a = [vt ; vt0] ([2r, cols]), so the entry is
 * exact up to that rounding and exports to PEFT as LoRA of rank 2r. u, u0
 * are [rows, r], s, s0 [r] or [1, r], vt, vt0 [r, cols], f32 on the CPU.
 * `base` (may be NULL) is the weight as it was before s2ft_sorsa_init (the
 * base the adapter applies to), for the fingerprint. Errors: as
 * s2ft_adapter_set_low_rank (S2FT_ERR_SHAPE also for factors of different
 * ranks, S2FT_ERR_DTYPE for factors that are not f32).
 */
S2FT_API s2ft_status s2ft_adapter_set_sorsa(s2ft_adapter *adapter, int32_t layer, int32_t weight,
                                            const s2ft_tensor *u0, const s2ft_tensor *s0,
                                            const s2ft_tensor *vt0, const s2ft_tensor *u,
                                            const s2ft_tensor *s, const s2ft_tensor *vt,
                                            const s2ft_tensor *base);

/**
 * The low-rank entry of (layer, weight): sets *rank to its k (0: none) and,
 * when not NULL, copies b to `b` ([rows, k]) and a to `a` ([k, cols]) (CPU
 * tensors of any dtype, rounded) and the base fingerprint to *fingerprint.
 * Pass b and a NULL to learn the rank. Errors: S2FT_ERR_INVALID_ARGUMENT
 * (NULL adapter or rank, bad layer or weight), S2FT_ERR_STATE (b or a given
 * for an entry that does not exist), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE.
 */
S2FT_API s2ft_status s2ft_adapter_low_rank(const s2ft_adapter *adapter, int32_t layer,
                                           int32_t weight, int64_t *rank, s2ft_tensor *b,
                                           s2ft_tensor *a, uint64_t *fingerprint);

/** The weights with a low-rank entry in some layer (a mask of
 *  S2FT_WEIGHT_BIT) and the number of low-rank entries (layer, weight) in
 *  all; either out pointer may be NULL. Errors: S2FT_ERR_INVALID_ARGUMENT
 *  (NULL adapter). */
S2FT_API s2ft_status s2ft_adapter_low_rank_info(const s2ft_adapter *adapter, uint32_t *weights,
                                                int64_t *entries);

/**
 * Saves an adapter as safetensors (docs/adapter-format.md), named after
 * the base model's tensors, written under a temporary name and renamed.
 * Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_IO.
 */
S2FT_API s2ft_status s2ft_adapter_save(const s2ft_adapter *adapter, const char *path);

/**
 * Loads an adapter saved by s2ft_adapter_save(). The file is treated as
 * hostile: every offset, size, dtype, name and index is checked before use.
 * Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_IO, S2FT_ERR_FORMAT.
 */
S2FT_API s2ft_status s2ft_adapter_load(const char *path, s2ft_adapter **out);

/**
 * Fuses n adapters into one: per (layer, target) the union of their lines,
 * delta = sum_i weights[i] * delta_i (in double, rounded once to f32) where
 * lines overlap. weights NULL means each adapter's default scale. The
 * result's default scale is 1 and its name joins the inputs' names with
 * '+' (cut to 255 bytes at a character boundary). Applying the result equals applying the inputs one after another
 * with those scales (up to the f32 rounding of the sum).
 * The result's metadata keeps each input's provenance: for input i,
 * "input.<i>.name" (its name), "input.<i>.weight" (the weight used,
 * %.17g) and "input.<i>.<key>" for each of its keys. These take at most
 * 240 of the 256 keys (16 stay free for the caller's own): names and
 * weights first, then the inputs' keys in input order; a key that would
 * pass 255 bytes, or one beyond that budget, is left out, and then
 * "input.omitted" holds how many were. Metadata never makes a fuse fail.
 * Sparse entries fuse the same way per (layer, weight): the union of the
 * inputs' indices, delta = sum_i weights[i] * delta_i (in double, rounded
 * once), with the base fingerprint the inputs agree on. A sparse entry on
 * a line the result has a structured entry for (one input's line, another
 * input's sparse entry) is folded into that line's delta, the sum taken in
 * double with the line's and rounded once.
 * Low-rank entries fuse by concatenating their factors per (layer, weight):
 * b = [w_1 b_1 | w_2 b_2 | ...] (each product rounded once to f32), a =
 * [a_1 ; a_2 ; ...]; the result's structured lines on such a weight are
 * folded into the factors as exact one-hot products (rank + 1 per line).
 * Sparse entries beside a low-rank entry on one weight are refused
 * (S2FT_ERR_UNSUPPORTED).
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, n < 1, a weight not finite,
 * different model shapes, the same base line or weight with different
 * nonzero fingerprints, a fused delta that overflows f32),
 * S2FT_ERR_OUT_OF_MEMORY.
 */
S2FT_API s2ft_status s2ft_adapter_fuse(const s2ft_adapter *const *adapters,
                                       const double *weights, int64_t n,
                                       s2ft_adapter **out);

/* ---- Export as a PEFT LoRA adapter ---------------------------------------- */

#define S2FT_PEFT_EXPORT_OPTIONS_VERSION 1

typedef struct s2ft_peft_export_options {
  uint32_t version;                    /* S2FT_PEFT_EXPORT_OPTIONS_VERSION        */
  const char *base_model_name_or_path; /* NULL or "": written as null           */
  double scale;                        /* NaN (default): the adapter's default scale */
} s2ft_peft_export_options;

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_PEFT_EXPORT_OPTIONS_VERSION). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_peft_export_options_init(s2ft_peft_export_options *opts,
                                                   uint32_t version);

/**
 * Writes the adapter as a Hugging Face PEFT LoRA adapter into the folder
 * out_dir (made when missing; its parent must exist): adapter_config.json
 * and adapter_model.safetensors, each under a temporary name and renamed.
 * opts NULL means the defaults. Every (layer, target) entry with k lines
 * becomes one LoRA module of rank k whose B*A is exactly scale * delta
 * placed on its lines (a one-hot product is exact): for O and DOWN
 * B = lora_B [out, k] holds the delta and A = lora_A [k, in] the one-hot
 * rows A[j, lines[j]] = 1; for V and UP A = lora_A [k, in] holds the delta
 * and B = lora_B [out, k] the one-hot columns B[lines[j], j] = 1. Tensors
 * are F32; the delta factor is f32(scale * delta), rounded once (the
 * delta itself when scale is 1). The config lists exactly the modules
 * with an entry and gives each its own rank and lora_alpha = rank through
 * rank_pattern and alpha_pattern, so every module's LoRA scale is 1; "r" is
 * the largest rank. A low-rank entry (any of the seven weights) becomes a
 * module of its rank k with lora_B = f32(scale * b) and lora_A = a (a
 * SORSA entry: rank 2r), after the layer's structured modules. docs/lora-serving.md says which servers load it.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL adapter or out_dir, out_dir "",
 * a bad opts->version, a scale not finite or one that overflows f32,
 * base_model_name_or_path not UTF-8, an adapter with no entries),
 * S2FT_ERR_UNSUPPORTED (an adapter with sparse entries: an unstructured
 * delta has no exact low-rank form of small rank, so it is not exported;
 * nothing is written), S2FT_ERR_IO (out_dir cannot be made or written, or
 * is not a folder), S2FT_ERR_OUT_OF_MEMORY.
 */
S2FT_API s2ft_status s2ft_adapter_export_peft(const s2ft_adapter *adapter, const char *out_dir,
                                              const s2ft_peft_export_options *opts);

/* ---- Applying adapters to a model --------------------------------------- */

/**
 * A model: the caller's base weights (borrowed, edited in place) that
 * adapters are applied to, removed from and switched on. At most one
 * adapter is applied at a time (fuse several to apply them together).
 */
typedef struct s2ft_model s2ft_model;

/**
 * Creates a model over `layers` (n_layers entries; any of the seven
 * weights may be set, and every weight an adapter will touch must be: o,
 * v, down and up for structured entries, any weight for sparse and low-rank
 * entries;
 * the pointers and the memory they describe must stay valid until the
 * model is destroyed). `perm` is the selection whose permutation the
 * weights are in (after s2ft_permute FORWARD: q, k and v rows by head, o
 * columns by head, gate and up rows and down columns by channel), or NULL
 * for base order; it is copied. The model keeps `ctx`, which must outlive
 * it. Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE (weights checked now), S2FT_ERR_OUT_OF_MEMORY.
 * Apply and switch check adapters against the base fingerprints of the
 * weights as given here (line fingerprints for structured entries, the
 * whole-weight fingerprint for sparse entries), so the weights must not
 * change other than through the model while it lives. On the CPU they are
 * computed when a transition needs them: a line's from its base values at
 * each apply or switch, a weight's whole-weight fingerprint (and its rows'
 * largest values, for the overflow bound) once, the first time sparse
 * entries with a fingerprint (or a merge near the dtype's range) need it,
 * which reads the whole weight. On a
 * CUDA context the weights are device tensors: create hashes every line
 * and every row of every given weight on the device and waits for it
 * (synchronises).
 */
S2FT_API s2ft_status s2ft_model_create(s2ft_context *ctx, const s2ft_model_shape *shape,
                                       const s2ft_layer_weights *layers,
                                       const s2ft_selection *perm, s2ft_model **out);

/** Destroys a model; NULL is a no-op. An applied adapter stays merged in
 *  the weights (call s2ft_adapter_remove first to restore them).
 * On a CUDA context it waits for the context's stream before releasing
 * device memory (synchronises).
 */
S2FT_API void s2ft_model_destroy(s2ft_model *model);

/* Flags for s2ft_adapter_apply and s2ft_adapter_switch. */
#define S2FT_APPLY_FORCE 1u /* apply even where base fingerprints differ */

/**
 * Merges `adapter` into the model's weights: W[line] = W[line] + scale *
 * delta (computed in double, rounded once to the weight's dtype), after
 * saving the lines it displaces so s2ft_adapter_remove() restores them
 * bit-exactly. scale NaN means the adapter's default scale. The adapter
 * must not be destroyed or changed while it is applied. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL, unknown flags, scale infinite, model
 * shape differs, a needed weight missing from the model, or a scale at
 * which merging could overflow the weight's dtype: when |scale| * max|delta|
 * exceeds half the dtype's range, every line is bounded by max|W| +
 * |scale| * max|delta|; refused with or without S2FT_APPLY_FORCE),
 * S2FT_ERR_STATE (an adapter is already applied: remove it or switch),
 * S2FT_ERR_FORMAT (base fingerprint mismatch without S2FT_APPLY_FORCE;
 * nothing is changed), S2FT_ERR_OUT_OF_MEMORY.
 * Sparse entries are merged the same way, element by element: W[e] =
 * round(double(W0[e]) + scale * double(delta)), the displaced base values
 * saved, their whole-weight fingerprint checked (unless forced), and the
 * overflow bound taken per entry as max|W0| over its row plus
 * |scale * delta|. On a permuted model (perm given at create) the
 * base-order indices are mapped through the permutation of the weight's
 * rows and columns.
 * A low-rank entry (delta = b a) is merged over its whole weight:
 * W[r, c] = round(double(W0[r, c]) + scale * sum_k double(b[r, k]) *
 * double(a[k, c])) with the whole base weight saved (memory: one copy of
 * the weight while applied), the whole-weight fingerprint checked (unless
 * forced) and the overflow bound taken per row as max|W0| over the row
 * plus |scale| * max|delta| over the row. The CPU computes it on the
 * context's threads; CUDA one thread per element (the same sums, so the
 * same bytes), the factors uploaded with the call and the saved base kept
 * on the device until the model is destroyed.
 * On a CUDA context the work (one pass over the lines) is queued on the
 * context's stream and the call returns without waiting, except that the
 * first use of an adapter on a device uploads it (synchronises; see
 * s2ft_adapter_upload) and a call displacing more lines of a weight than
 * any earlier call on the model first waits for the stream to grow the
 * saved-line memory (kept until the model is destroyed). Also
 * S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_adapter_apply(s2ft_model *model, const s2ft_adapter *adapter,
                                        double scale, uint32_t flags);

/** Restores the lines the applied adapter displaced, bit-exactly, and
 *  forgets it. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL), S2FT_ERR_STATE (no
 *  adapter applied).
 * On a CUDA context the restore is queued on the context's stream; the
 * call does not synchronise.
 */
S2FT_API s2ft_status s2ft_adapter_remove(s2ft_model *model);

/**
 * Replaces the applied adapter (if any) by `adapter`, touching only the
 * union of their lines and sparse entries (elements only the old adapter
 * changed get their base values back); the result is bit-identical to
 * remove then apply.
 * Errors as s2ft_adapter_apply(), except that an applied adapter is not
 * an error; on error the model is unchanged.
 * On a CUDA context: as s2ft_adapter_apply(), in one pass over the union
 * of the two adapters' lines.
 */
S2FT_API s2ft_status s2ft_adapter_switch(s2ft_model *model, const s2ft_adapter *adapter,
                                         double scale, uint32_t flags);

/** The adapter currently applied to the model (NULL when none) and its
 *  scale (may be NULL). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_model_applied(const s2ft_model *model, const s2ft_adapter **adapter,
                                        double *scale);

/* ---- Serving several adapters at once ----------------------------------- */

/**
 * Forward of one linear layer for a batch whose rows belong to different
 * requests, each with its own adapter, without merging anything:
 *   Y = X W^T, then for each segment j (rows [offsets[j], offsets[j+1]))
 *   with a = segment_adapter[j] >= 0, column targets (O, DOWN):
 *     Y_j += scales[a] * X_j[:, S_a] delta_a^T
 *   row targets (V, UP):  Y_j[:, S_a] += scales[a] * X_j delta_a^T,
 *   and for the adapter's sparse entries D_a on (layer, target) (any
 *   weight):  Y_j += scales[a] * X_j D_a^T.
 * `target` is any weight id (S2FT_WEIGHT_*; the four targets keep their
 * ids): q, k and gate have only sparse entries.
 * `w` is the base weight of `target` in `layer`, in base order, or in the
 * permuted order of `perm` when perm is not NULL. x [T, in], y [T, out],
 * one dtype (f32, f16, bf16), f32 arithmetic. offsets has n_segments + 1
 * ascending entries from 0 to T; segment_adapter[j] is an index into
 * adapters (n_adapters entries) or -1 for none; scales NULL (or a NaN
 * entry) means the adapters' default scales. An adapter without an entry for (layer, target) adds nothing;
 * one with a low-rank entry there is refused (S2FT_ERR_UNSUPPORTED: apply
 * it, or serve its PEFT export).
 * Every non-NULL adapter must be made for one model shape, and for perm's
 * when perm is not NULL (S2FT_ERR_INVALID_ARGUMENT otherwise); w must have
 * the shape that model shape gives `target` (S2FT_ERR_SHAPE).
 * Errors: S2FT_ERR_INVALID_ARGUMENT, S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY.
 * On a CUDA context, runs of at most 8 rows with one adapter (decode
 * tokens) are computed for the whole batch by one gathered batched-GEMV
 * launch with no intermediate buffer; longer runs (prefill) by one
 * grouped GEMM over the gathered inputs (S2FT_DELTA_PATH_DENSE) or by
 * cuSPARSE SpMM on a CSR copy of the delta cached by the context per
 * (adapter, layer, target, perm) (S2FT_DELTA_PATH_SPARSE), as
 * s2ft_context_set_delta_path() chooses. The work is queued on the
 * context's stream; the call synchronises only on an adapter's first use
 * on the device, when it builds or drops a cached CSR, and when AUTO
 * times the two paths for a new shape. Sparse entries are added by
 * cuSPARSE SpMM on a CSR copy cached the same way (the CPU: a loop over the
 * entries, f32 sums). Also S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_adapter_forward_mixed(s2ft_context *ctx, int32_t layer, int32_t target,
                                                const s2ft_tensor *x, const s2ft_tensor *w,
                                                const s2ft_selection *perm,
                                                const s2ft_adapter *const *adapters,
                                                const double *scales, int64_t n_adapters,
                                                const int64_t *offsets,
                                                const int32_t *segment_adapter,
                                                int64_t n_segments, s2ft_tensor *y);

/**
 * Copies an adapter's lines and deltas (and its sparse entries' deltas) to
 * the device of a CUDA context now, so that later
 * s2ft_adapter_apply/switch/remove and s2ft_adapter_forward_mixed calls on
 * that device copy no adapter data from the host (they upload on first use
 * otherwise). The adapter keeps the device copy until it is changed
 * (s2ft_adapter_set, s2ft_adapter_set_sparse) or destroyed; the copy is
 * queued on the context's stream. May synchronise (it allocates device
 * memory). A no-op on a CPU context. Errors: S2FT_ERR_INVALID_ARGUMENT,
 * S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_adapter_upload(s2ft_context *ctx, const s2ft_adapter *adapter);

/* ---- Unstructured sparse deltas ----------------------------------------- */

/**
 * A weight delta D [rows, cols] in CSR form, held on a context's device:
 * the path for deltas that are not whole rows or columns (unstructured
 * sparse methods), computed with cuSPARSE SpMM on a CUDA context and with
 * a plain loop on the CPU.
 */
typedef struct s2ft_sparse_delta s2ft_sparse_delta;

/**
 * Creates a sparse delta on the context's device from host CSR arrays:
 * row_offsets (rows + 1 entries, non-decreasing, from 0 to nnz),
 * col_indices (nnz entries, strictly ascending within each row, each in
 * [0, cols)) and values (nnz finite f32 values). The arrays are copied.
 * May synchronise (it allocates device memory). Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL, negative sizes, bad offsets or indices,
 * a value not finite), S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND.
 */
S2FT_API s2ft_status s2ft_sparse_delta_create(s2ft_context *ctx, int64_t rows, int64_t cols,
                                              const int64_t *row_offsets,
                                              const int64_t *col_indices, const float *values,
                                              int64_t nnz, s2ft_sparse_delta **out);

/**
 * The delta of an adapter on (layer, target) as a sparse delta over the
 * full weight shape: its structured entry and its sparse entries there
 * (`target` is any weight id, S2FT_WEIGHT_*), in base order or, when
 * `perm` is not NULL, in that selection's permuted order. An adapter
 * without entries there gives an empty delta (nnz 0). Errors: as
 * s2ft_sparse_delta_create(), S2FT_ERR_INVALID_ARGUMENT for a bad
 * layer or weight or a permutation of another model shape, and
 * S2FT_ERR_UNSUPPORTED for a low-rank entry there (it has no sparse form).
 */
S2FT_API s2ft_status s2ft_sparse_delta_from_adapter(s2ft_context *ctx, const s2ft_adapter *adapter,
                                                    int32_t layer, int32_t target,
                                                    const s2ft_selection *perm,
                                                    s2ft_sparse_delta **out);

/** Destroys a sparse delta; NULL is a no-op. May synchronise. */
S2FT_API void s2ft_sparse_delta_destroy(s2ft_sparse_delta *delta);

/** The delta's shape and number of stored entries; any out pointer may be
 *  NULL. Errors: S2FT_ERR_INVALID_ARGUMENT (delta NULL). */
S2FT_API s2ft_status s2ft_sparse_delta_info(const s2ft_sparse_delta *delta, int64_t *rows,
                                            int64_t *cols, int64_t *nnz);

/**
 * y += scale * x D^T for x [T, cols] and y [T, rows] on the context's
 * device (the delta must have been created on it); one dtype (f32, f16,
 * bf16), f32 arithmetic. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, scale
 * not finite, y overlapping x), S2FT_ERR_SHAPE, S2FT_ERR_DTYPE,
 * S2FT_ERR_DEVICE, S2FT_ERR_OUT_OF_MEMORY, S2FT_ERR_BACKEND.
 * On a CUDA context the product is queued on the context's stream and
 * the call does not synchronise.
 */
S2FT_API s2ft_status s2ft_sparse_delta_forward(s2ft_context *ctx, const s2ft_sparse_delta *delta,
                                               double scale, const s2ft_tensor *x,
                                               s2ft_tensor *y);

/* How s2ft_adapter_forward_mixed adds a column/row adapter's delta. */
#define S2FT_DELTA_PATH_AUTO   0 /* CUDA: time both once per shape, keep the faster */
#define S2FT_DELTA_PATH_DENSE  1 /* gather the lines, then a dense GEMM            */
#define S2FT_DELTA_PATH_SPARSE 2 /* the delta as CSR through cuSPARSE SpMM         */

/**
 * Chooses the delta path of a context's mixed-adapter forward (default
 * AUTO). On a CPU context only DENSE exists: AUTO means DENSE and SPARSE is
 * S2FT_ERR_UNSUPPORTED. AUTO on CUDA times both paths the first time it
 * meets a shape (that call synchronises) and remembers the faster.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, unknown path),
 * S2FT_ERR_UNSUPPORTED.
 * The path applies to runs of more than 8 rows with one adapter, for
 * column and row targets; shorter runs always take the batched GEMV.
 * AUTO keys shapes by (rows rounded up to a power of two, out, in, k,
 * dtype, target axis) and keeps its choice for the context's lifetime.
 */
S2FT_API s2ft_status s2ft_context_set_delta_path(s2ft_context *ctx, int32_t path);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */
/* ------------------------------------------------------------------------ */

/**
 * A Hugging Face checkpoint opened for reading: a folder with config.json
 * and model.safetensors, or config.json and the shards that
 * model.safetensors.index.json lists, or one .safetensors file (then there
 * is no configuration). Every safetensors file is memory-mapped privately
 * (copy-on-write): tensor views point into the mapping, nothing is read
 * until it is used, and a write through a view changes this process's
 * copy only, never the file. Every file is treated as hostile: headers,
 * offsets, dtypes, names and the shard index are checked at open, as
 * s2ft_adapter_load() checks adapters. A file that another process
 * truncates while it is mapped can still end the process with SIGBUS on a
 * later read, as with any memory-mapped file. See docs/checkpoints.md.
 */
typedef struct s2ft_checkpoint s2ft_checkpoint;

/**
 * Opens the checkpoint at `path` (a folder or one .safetensors file).
 * On failure *out is NULL. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL or
 * empty path), S2FT_ERR_IO (missing, unreadable, not a regular file or
 * folder), S2FT_ERR_FORMAT (a malformed config.json, index or safetensors
 * file, a tensor stored twice or in another shard than the index says).
 */
S2FT_API s2ft_status s2ft_checkpoint_open(const char *path, s2ft_checkpoint **out);

/** Closes a checkpoint and unmaps its files; NULL is a no-op. Models made
 *  from it must be destroyed first. */
S2FT_API void s2ft_checkpoint_destroy(s2ft_checkpoint *ckpt);

/**
 * The model shape of a LLaMA-family checkpoint, from config.json
 * (hidden_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, intermediate_size, head_dim), checked against the
 * tensors: every layer's seven projection weights
 * (model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
 * model.layers.{i}.mlp.{gate,up,down}_proj.weight) must exist, in F32, F16
 * or BF16, with the shapes the configuration implies. model_type "llama",
 * "mistral" and "qwen2" are the family (a config without model_type is
 * read the same way); any other model_type is S2FT_ERR_UNSUPPORTED.
 * Biases (Qwen2's q/k/v, attention_bias, mlp_bias) and tied or separate
 * embeddings do not change the shape; adapters never change them.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL), S2FT_ERR_STATE (no
 * config.json: a checkpoint opened as one file), S2FT_ERR_UNSUPPORTED,
 * S2FT_ERR_FORMAT (a missing or invalid field, a missing tensor, a wrong
 * shape or dtype).
 */
S2FT_API s2ft_status s2ft_checkpoint_shape(const s2ft_checkpoint *ckpt, s2ft_model_shape *out);

/** The text of config.json (NUL-terminated, owned by the checkpoint), or
 *  NULL when the checkpoint has none. Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_checkpoint_config(const s2ft_checkpoint *ckpt, const char **json);

/** The number of tensors in the checkpoint (all shards). Errors:
 *  S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_checkpoint_tensor_count(const s2ft_checkpoint *ckpt, int64_t *count);

/** The number of safetensors files the checkpoint consists of (1 unless
 *  sharded). Errors: S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_checkpoint_file_count(const s2ft_checkpoint *ckpt, int64_t *count);

/** The name of file `index` inside the checkpoint's folder, in the index's
 *  order (owned by the checkpoint). Errors: S2FT_ERR_INVALID_ARGUMENT
 *  (NULL, index out of range). */
S2FT_API s2ft_status s2ft_checkpoint_file(const s2ft_checkpoint *ckpt, int64_t index,
                                          const char **name);

/**
 * Describes tensor `index` (shards in index order, file order within a
 * shard): its name and safetensors dtype name ("F32", "BF16", "I64", ...;
 * both owned by the checkpoint), its rank, its extents written to
 * shape[0..ndim) when shape_capacity >= ndim, and its size in bytes. Any
 * out pointer may be NULL; shape may be NULL to learn the rank.
 * Errors: S2FT_ERR_INVALID_ARGUMENT (NULL ckpt, index out of range, a
 * non-NULL shape with capacity below the rank).
 */
S2FT_API s2ft_status s2ft_checkpoint_tensor_info(const s2ft_checkpoint *ckpt, int64_t index,
                                                 const char **name, const char **dtype,
                                                 int32_t *ndim, int64_t *shape,
                                                 int32_t shape_capacity, uint64_t *nbytes);

/**
 * A borrowed view of the F32, F16 or BF16 tensor `name` on the CPU, valid
 * until the checkpoint is destroyed: zero-copy into the mapped file when
 * its data is aligned to its element size (as every common writer makes
 * it), else into an aligned copy the checkpoint made at open. Writes
 * through the view change the checkpoint's contents in this process (what
 * s2ft_checkpoint_write() writes), never the file. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL, no such tensor), S2FT_ERR_DTYPE (another
 * dtype: use s2ft_checkpoint_tensor_data), S2FT_ERR_SHAPE (rank 0 or above
 * S2FT_MAX_DIMS).
 */
S2FT_API s2ft_status s2ft_checkpoint_tensor(s2ft_checkpoint *ckpt, const char *name,
                                            s2ft_tensor *out);

/** The raw little-endian bytes of tensor `name`, of any dtype, and their
 *  count; valid until the checkpoint is destroyed. Errors:
 *  S2FT_ERR_INVALID_ARGUMENT (NULL, no such tensor). */
S2FT_API s2ft_status s2ft_checkpoint_tensor_data(const s2ft_checkpoint *ckpt, const char *name,
                                                 const void **data, uint64_t *nbytes);

#define S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION 1

typedef struct s2ft_checkpoint_write_options {
  uint32_t version;          /* S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION */
  uint64_t max_shard_bytes;  /* 0 (default): the source's files and split;
                                else shards of at most this many data bytes
                                (a larger tensor gets a shard of its own) */
  int32_t copy_other_files;  /* default 1: copy the folder's other regular
                                files (tokenizer, generation config, ...) */
  const char *const *exclude; /* names of files not to copy (may be NULL) */
  int64_t n_exclude;
  /* Called (when not NULL) after each tensor is written, with the tensor
     bytes written so far and their total, e.g. to draw a progress bar. */
  void (*progress)(void *user, uint64_t done_bytes, uint64_t total_bytes);
  void *progress_user;
} s2ft_checkpoint_write_options;

/** Sets `opts` to the defaults for `version` (pass
 *  S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION). Errors:
 *  S2FT_ERR_INVALID_ARGUMENT. */
S2FT_API s2ft_status s2ft_checkpoint_write_options_init(s2ft_checkpoint_write_options *opts,
                                                        uint32_t version);

/**
 * Writes a copy of the checkpoint into the folder `out_dir` (created if
 * missing; it must not be the checkpoint's own folder): every tensor with
 * its name, dtype and shape, and the current contents (what writes through
 * views changed), except the n_replace tensors names[i], whose data is
 * replaced by replacements[i] (CPU, the tensor's shape, F32/F16/BF16 of any
 * strides, converted to the stored dtype by rounding to nearest even).
 * With max_shard_bytes 0 the files keep their names, headers and tensor
 * order, config.json and the index are copied byte for byte, and every
 * byte not replaced is unchanged. Otherwise the tensors, in the source's
 * order, are split into model-0000i-of-0000n.safetensors files and an
 * index (its metadata kept, total_size updated), or one model.safetensors
 * when they fit in one shard. Each file is written to a temporary name and
 * renamed; a filesystem without room for the tensors is refused before
 * anything is written. Errors: S2FT_ERR_INVALID_ARGUMENT (NULL, a name that is not a
 * tensor or is given twice, out_dir the source folder), S2FT_ERR_SHAPE,
 * S2FT_ERR_DTYPE (a replaced tensor or a replacement not F32/F16/BF16),
 * S2FT_ERR_DEVICE, S2FT_ERR_IO.
 */
S2FT_API s2ft_status s2ft_checkpoint_write(const s2ft_checkpoint *ckpt, const char *out_dir,
                                           const char *const *names,
                                           const s2ft_tensor *replacements, int64_t n_replace,
                                           const s2ft_checkpoint_write_options *opts);

/**
 * A model (see s2ft_model_create) over a checkpoint's weights: the seven
 * projection weights of every layer, as views into the checkpoint (see
 * s2ft_checkpoint_tensor): applying an adapter changes the checkpoint's
 * contents in this process, copy-on-write, never the files, and
 * s2ft_checkpoint_write() then writes the merged model. `shape` NULL means
 * s2ft_checkpoint_shape()'s; `perm` as in s2ft_model_create. The model
 * keeps `ckpt` and `ctx`, which must outlive it. The context must be a CPU
 * context (a checkpoint's weights are host memory: for a CUDA model copy
 * them to the device and use s2ft_model_create). Errors: as
 * s2ft_checkpoint_shape() and s2ft_model_create(), and
 * S2FT_ERR_UNSUPPORTED (a CUDA context).
 */
S2FT_API s2ft_status s2ft_model_from_checkpoint(s2ft_context *ctx, s2ft_checkpoint *ckpt,
                                                const s2ft_model_shape *shape,
                                                const s2ft_selection *perm, s2ft_model **out);

/**
 * The descriptors of a layer's weights as the model holds them (NULL for
 * a weight the model was created without), valid while the model lives;
 * through them a caller runs the model's forward pass. Errors:
 * S2FT_ERR_INVALID_ARGUMENT (NULL, layer out of range).
 */
S2FT_API s2ft_status s2ft_model_layer(s2ft_model *model, int32_t layer,
                                      s2ft_layer_weights *out);

/**
 * Loads the n adapter files at `paths`, fuses them when n > 1 (weights as
 * s2ft_adapter_fuse: NULL means each adapter's default scale) and applies
 * the result, replacing the applied adapter if any (as
 * s2ft_adapter_switch). The model owns the loaded adapter until it is
 * replaced, removed or the model is destroyed; s2ft_model_applied()
 * returns it. A single adapter is applied at weights[0] (NaN or NULL: its
 * default scale). Errors: as s2ft_adapter_load(), s2ft_adapter_fuse() and
 * s2ft_adapter_switch(); on error the model is unchanged.
 */
S2FT_API s2ft_status s2ft_model_apply_files(s2ft_model *model, const char *const *paths,
                                            const double *weights, int64_t n, uint32_t flags);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* S2FT_S2FT_H */
