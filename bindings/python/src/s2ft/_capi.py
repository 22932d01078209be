"""The C ABI of include/s2ft/s2ft.h, mirrored in ctypes.

Every #define constant, every public struct (field for field) and the
prototype of every S2FT_API function. Handles are opaque, so they cross as
``c_void_p``. tests/test_header.py parses the header and checks this file
against it (names, field order, types, sizes and offsets from a compiled
probe), so a change to the header that is not made here fails a test.
"""

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)

# ---- version -------------------------------------------------------------------
S2FT_VERSION_MAJOR = 0
S2FT_VERSION_MINOR = 1
S2FT_VERSION_PATCH = 0
S2FT_VERSION_NUMBER = S2FT_VERSION_MAJOR * 10000 + S2FT_VERSION_MINOR * 100 + S2FT_VERSION_PATCH

# ---- status codes -----------------------------------------------------------------
S2FT_OK = 0
S2FT_ERR_INVALID_ARGUMENT = -1
S2FT_ERR_SHAPE = -2
S2FT_ERR_DTYPE = -3
S2FT_ERR_DEVICE = -4
S2FT_ERR_OUT_OF_MEMORY = -5
S2FT_ERR_IO = -6
S2FT_ERR_FORMAT = -7
S2FT_ERR_UNSUPPORTED = -8
S2FT_ERR_STATE = -9
S2FT_ERR_BACKEND = -10
S2FT_ERR_INTERNAL = -11

# ---- tensors -------------------------------------------------------------------------
S2FT_DEVICE_CPU = 1
S2FT_DEVICE_CUDA = 2
S2FT_F32 = 0
S2FT_F16 = 1
S2FT_BF16 = 2
S2FT_DLPACK_FLOAT = 2
S2FT_DLPACK_BFLOAT = 4
S2FT_MAX_DIMS = 4

# ---- options versions ------------------------------------------------------------------
S2FT_CONTEXT_OPTIONS_VERSION = 1
S2FT_SELECT_OPTIONS_VERSION = 1
S2FT_OPTIMIZER_OPTIONS_VERSION = 2
S2FT_PEFT_EXPORT_OPTIONS_VERSION = 1
S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION = 1
S2FT_LIFT_OPTIONS_VERSION = 1
S2FT_SPIEL_OPTIONS_VERSION = 1
S2FT_SPIEL_STATS_VERSION = 1

# ---- targets, selection, permutation ------------------------------------------------------
S2FT_TARGET_O = 0
S2FT_TARGET_V = 1
S2FT_TARGET_DOWN = 2
S2FT_TARGET_UP = 3
S2FT_NUM_TARGETS = 4


def S2FT_TARGET_BIT(t):
    """The bit of target ``t`` in a target mask (the header's macro)."""
    return 1 << t


# Weights of a layer (adapters' sparse entries): the four targets and q, k, gate.
S2FT_WEIGHT_O = S2FT_TARGET_O
S2FT_WEIGHT_V = S2FT_TARGET_V
S2FT_WEIGHT_DOWN = S2FT_TARGET_DOWN
S2FT_WEIGHT_UP = S2FT_TARGET_UP
S2FT_WEIGHT_Q = 4
S2FT_WEIGHT_K = 5
S2FT_WEIGHT_GATE = 6
S2FT_NUM_WEIGHTS = 7


def S2FT_WEIGHT_BIT(w):
    """The bit of weight ``w`` in a weight mask (the header's macro)."""
    return 1 << w


S2FT_STAT_WEIGHT = 0
S2FT_STAT_ACTIVATION = 1
S2FT_STAT_GRADIENT = 2
S2FT_STAT_PRINCIPAL = 3

S2FT_STRATEGY_RANDOM = 0
S2FT_STRATEGY_WEIGHT = 1
S2FT_STRATEGY_ACTIVATION = 2
S2FT_STRATEGY_WEIGHT_ACT = 3
S2FT_STRATEGY_GRADIENT = 4
S2FT_STRATEGY_PRINCIPAL = 5
S2FT_ORDER_LARGEST = 0
S2FT_ORDER_SMALLEST = 1
S2FT_ALLOCATE_PER_LAYER = 0
S2FT_ALLOCATE_GLOBAL = 1
S2FT_HEADS_BY_GROUP = 0
S2FT_HEADS_SINGLE = 1

S2FT_INDEX_UNITS = 0
S2FT_INDEX_LINES = 1
S2FT_INDEX_BASE = 0
S2FT_INDEX_PERMUTED = 2

S2FT_PERM_HEADS = 0
S2FT_PERM_KV_HEADS = 1
S2FT_PERM_CHANNELS = 2
S2FT_PERMUTE_FORWARD = 0
S2FT_PERMUTE_INVERSE = 1

# ---- training -----------------------------------------------------------------------------
S2FT_AXIS_COLUMNS = 0
S2FT_AXIS_ROWS = 1
S2FT_ACCUMULATE_DW = 1
S2FT_ACCUMULATE_DX = 2
S2FT_OPTIMIZER_ADAMW = 0
S2FT_OPTIMIZER_SGD = 1
S2FT_OPTIMIZER_SM3 = 2
S2FT_LIFT_EXACT = 0
S2FT_LIFT_RANDOMIZED = 1
S2FT_SORSA_UNSQUARED = 4
S2FT_SPIEL_AG = 0
S2FT_SPIEL_MA = 1
S2FT_SPIEL_DECAY_LINEAR = 0
S2FT_SPIEL_DECAY_COSINE = 1
S2FT_SPIEL_MA_OPTIMIZER = 0
S2FT_SPIEL_MA_ACTIVATIONS = 1

# ---- adapters and serving --------------------------------------------------------------------
S2FT_APPLY_FORCE = 1
S2FT_DELTA_PATH_AUTO = 0
S2FT_DELTA_PATH_DENSE = 1
S2FT_DELTA_PATH_SPARSE = 2


# ---- structs ------------------------------------------------------------------------------------
class s2ft_device(Structure):
    """DLPack's DLDevice."""

    _fields_ = [("type", c_int32), ("id", c_int32)]


class s2ft_dtype(Structure):
    """DLPack's DLDataType."""

    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class s2ft_tensor(Structure):
    """A borrowed strided view (DLPack's DLTensor with inline shape/strides)."""

    _fields_ = [
        ("data", c_void_p),
        ("device", s2ft_device),
        ("ndim", c_int32),
        ("dtype", s2ft_dtype),
        ("shape", c_int64 * S2FT_MAX_DIMS),
        ("strides", c_int64 * S2FT_MAX_DIMS),
        ("byte_offset", c_uint64),
    ]


class s2ft_context_options(Structure):
    """Options of s2ft_context_create."""

    _fields_ = [
        ("version", c_uint32),
        ("device_type", c_int32),
        ("device_id", c_int32),
        ("num_threads", c_int32),
    ]


class s2ft_model_shape(Structure):
    """The shape of a LLaMA-architecture decoder."""

    _fields_ = [
        ("n_layers", c_int32),
        ("d_model", c_int32),
        ("n_heads", c_int32),
        ("n_kv_heads", c_int32),
        ("head_dim", c_int32),
        ("d_ff", c_int32),
    ]


class s2ft_select_options(Structure):
    """Options of s2ft_select."""

    _fields_ = [
        ("version", c_uint32),
        ("targets", c_uint32),
        ("strategy", c_int32),
        ("order", c_int32),
        ("allocation", c_int32),
        ("head_granularity", c_int32),
        ("seed", c_uint64),
        ("ratio", c_double * S2FT_NUM_TARGETS),
        ("count", c_int64 * S2FT_NUM_TARGETS),
    ]


class s2ft_layer_weights(Structure):
    """One layer's weights; NULL pointers leave a weight out."""

    _fields_ = [
        ("q", POINTER(s2ft_tensor)),
        ("k", POINTER(s2ft_tensor)),
        ("v", POINTER(s2ft_tensor)),
        ("o", POINTER(s2ft_tensor)),
        ("gate", POINTER(s2ft_tensor)),
        ("up", POINTER(s2ft_tensor)),
        ("down", POINTER(s2ft_tensor)),
    ]


class s2ft_slice(Structure):
    """The trained lines of one weight: a range, or an index list."""

    _fields_ = [
        ("axis", c_int32),
        ("begin", c_int64),
        ("count", c_int64),
        ("indices", POINTER(c_int64)),
    ]


class s2ft_optimizer_options(Structure):
    """Options of s2ft_optimizer_create."""

    _fields_ = [
        ("version", c_uint32),
        ("kind", c_int32),
        ("beta1", c_double),
        ("beta2", c_double),
        ("eps", c_double),
        ("weight_decay", c_double),
        ("momentum", c_double),
        ("nesterov", c_int32),
        ("max_grad_norm", c_double),
        ("age_bias_correction", c_int32),  # version 2
    ]


class s2ft_lift_options(Structure):
    """Options of s2ft_lift_select."""

    _fields_ = [
        ("version", c_uint32),
        ("rank", c_int32),
        ("count", c_int64),
        ("density", c_double),
        ("order", c_int32),
        ("method", c_int32),
        ("oversampling", c_int32),
        ("power_iterations", c_int32),
        ("seed", c_uint64),
    ]


class s2ft_spiel_options(Structure):
    """Options of s2ft_spiel_create and s2ft_spiel_rate."""

    _fields_ = [
        ("version", c_uint32),
        ("regrow", c_int32),
        ("reselect_interval", c_int64),
        ("accumulation_steps", c_int64),
        ("total_steps", c_int64),
        ("initial_rate", c_double),
        ("decay", c_int32),
        ("first_full", c_int32),
        ("candidates", c_int64),
        ("seed_moments", c_int32),
        ("ma_source", c_int32),
        ("observations_per_step", c_int64),
    ]


class s2ft_spiel_stats(Structure):
    """What a SpIEL schedule has done (s2ft_spiel_stats_get)."""

    _fields_ = [
        ("version", c_uint32),
        ("steps", c_int64),
        ("count", c_int64),
        ("reselections", c_int64),
        ("observations", c_int64),
        ("dense_gradients", c_int64),
        ("next_reselection", c_int64),
        ("last_step", c_int64),
        ("last_rate", c_double),
        ("last_target", c_int64),
        ("last_dropped", c_int64),
        ("last_regrown", c_int64),
    ]


class s2ft_peft_export_options(Structure):
    """Options of s2ft_adapter_export_peft."""

    _fields_ = [
        ("version", c_uint32),
        ("base_model_name_or_path", c_char_p),
        ("scale", c_double),
    ]


#: The progress callback of s2ft_checkpoint_write_options.
s2ft_progress_fn = CFUNCTYPE(None, c_void_p, c_uint64, c_uint64)


class s2ft_checkpoint_write_options(Structure):
    """Options of s2ft_checkpoint_write."""

    _fields_ = [
        ("version", c_uint32),
        ("max_shard_bytes", c_uint64),
        ("copy_other_files", c_int32),
        ("exclude", POINTER(c_char_p)),
        ("n_exclude", c_int64),
        ("progress", s2ft_progress_fn),
        ("progress_user", c_void_p),
    ]


#: Every public struct of the header, by its C name.
STRUCTS = {
    cls.__name__: cls
    for cls in (
        s2ft_device,
        s2ft_dtype,
        s2ft_tensor,
        s2ft_context_options,
        s2ft_model_shape,
        s2ft_select_options,
        s2ft_layer_weights,
        s2ft_slice,
        s2ft_optimizer_options,
        s2ft_lift_options,
        s2ft_spiel_options,
        s2ft_spiel_stats,
        s2ft_peft_export_options,
        s2ft_checkpoint_write_options,
    )
}

#: The opaque handle types; pointers to them cross as c_void_p.
OPAQUE = (
    "s2ft_context",
    "s2ft_statistics",
    "s2ft_selection",
    "s2ft_optimizer",
    "s2ft_adapter",
    "s2ft_model",
    "s2ft_sparse_delta",
    "s2ft_checkpoint",
    "s2ft_sparse_set",
    "s2ft_spiel",
)

# ---- prototypes ----------------------------------------------------------------------------------
_status = c_int32
_handle = c_void_p
_handle_out = POINTER(c_void_p)
_tensor_p = POINTER(s2ft_tensor)
_shape_p = POINTER(s2ft_model_shape)
_slice_p = POINTER(s2ft_slice)
_weights_p = POINTER(s2ft_layer_weights)
_i64_p = POINTER(c_int64)
_u64_p = POINTER(c_uint64)
_i32_p = POINTER(c_int32)
_u32_p = POINTER(c_uint32)
_f64_p = POINTER(c_double)
_str_p = POINTER(c_char_p)
_f32_p = POINTER(c_float)

#: name -> (restype, argtypes) for every S2FT_API function, in header order.
PROTOTYPES = {
    "s2ft_version": (c_uint32, []),
    "s2ft_version_string": (c_char_p, []),
    "s2ft_status_string": (c_char_p, [_status]),
    "s2ft_last_error": (c_char_p, []),
    "s2ft_clear_error": (None, []),
    "s2ft_live_handles": (c_int64, []),
    # tensors
    "s2ft_tensor_init": (_status, [_tensor_p, c_void_p, c_int32, c_int32, c_int32, c_int32, _i64_p]),
    "s2ft_tensor_cpu_f32_2d": (_status, [_tensor_p, POINTER(c_float), c_int64, c_int64]),
    # context
    "s2ft_context_options_init": (_status, [POINTER(s2ft_context_options), c_uint32]),
    "s2ft_context_create": (_status, [POINTER(s2ft_context_options), _handle_out]),
    "s2ft_context_destroy": (None, [_handle]),
    "s2ft_context_device": (_status, [_handle, POINTER(s2ft_device)]),
    "s2ft_device_count": (_status, [c_int32, _i32_p]),
    "s2ft_context_set_stream": (_status, [_handle, c_void_p]),
    "s2ft_context_stream": (_status, [_handle, POINTER(c_void_p)]),
    "s2ft_context_set_workspace": (_status, [_handle, c_void_p, c_size_t]),
    "s2ft_context_workspace_needed": (_status, [_handle, POINTER(c_size_t)]),
    "s2ft_context_synchronize": (_status, [_handle]),
    # model shape
    "s2ft_model_shape_check": (_status, [_shape_p]),
    # statistics
    "s2ft_statistics_create": (_status, [_handle, _shape_p, _handle_out]),
    "s2ft_statistics_destroy": (None, [_handle]),
    "s2ft_statistics_add_weight": (_status, [_handle, c_int32, c_int32, _tensor_p]),
    "s2ft_statistics_add_activation": (_status, [_handle, c_int32, c_int32, _tensor_p]),
    "s2ft_statistics_add_gradient": (_status, [_handle, c_int32, c_int32, _tensor_p, _tensor_p]),
    "s2ft_statistics_add_principal": (_status, [_handle, c_int32, c_int32, _tensor_p, c_int32]),
    "s2ft_statistics_get": (_status, [_handle, c_int32, c_int32, c_int32, _f64_p, c_int64, _i64_p]),
    # selection
    "s2ft_select_options_init": (_status, [POINTER(s2ft_select_options), c_uint32]),
    "s2ft_select": (_status, [_handle, _shape_p, POINTER(s2ft_select_options), _handle, _handle_out]),
    "s2ft_selection_create": (_status, [_shape_p, c_int32, POINTER(_i64_p), _i64_p, _handle_out]),
    "s2ft_selection_destroy": (None, [_handle]),
    "s2ft_selection_shape": (_status, [_handle, _shape_p]),
    "s2ft_selection_targets": (_status, [_handle, _u32_p]),
    "s2ft_selection_indices": (_status, [_handle, c_int32, c_int32, c_uint32, _i64_p, c_int64, _i64_p]),
    "s2ft_selection_range": (_status, [_handle, c_int32, c_int32, _i64_p, _i64_p]),
    "s2ft_selection_permutation": (_status, [_handle, c_int32, c_int32, _i64_p, c_int64, _i64_p]),
    "s2ft_selection_save": (_status, [_handle, c_char_p]),
    "s2ft_selection_load": (_status, [c_char_p, _handle_out]),
    # co-permutation
    "s2ft_permute": (_status, [_handle, _handle, c_int32, _weights_p, c_int32]),
    # partial forward and backward
    "s2ft_forward_partial": (_status, [_handle, _slice_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p]),
    "s2ft_backward_partial": (
        _status,
        [_handle, _slice_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, c_uint32],
    ),
    # optimizer
    "s2ft_optimizer_options_init": (_status, [POINTER(s2ft_optimizer_options), c_uint32]),
    "s2ft_optimizer_create": (_status, [_handle, POINTER(s2ft_optimizer_options), _handle_out]),
    "s2ft_optimizer_destroy": (None, [_handle]),
    "s2ft_optimizer_add_param": (_status, [_handle, _tensor_p, _slice_p, _i64_p]),
    "s2ft_optimizer_step": (_status, [_handle, c_double, _tensor_p, c_int64, _f64_p]),
    "s2ft_optimizer_step_count": (_status, [_handle, _i64_p]),
    "s2ft_optimizer_save": (_status, [_handle, c_char_p]),
    "s2ft_optimizer_load": (_status, [_handle, c_char_p]),
    # unstructured sparse training
    "s2ft_sparse_set_create": (_status, [_handle, c_int64, c_int64, _i64_p, c_int64, _handle_out]),
    "s2ft_sparse_set_destroy": (None, [_handle]),
    "s2ft_sparse_set_count": (_status, [_handle, _i64_p]),
    "s2ft_sparse_set_shape": (_status, [_handle, _i64_p, _i64_p]),
    "s2ft_sparse_set_indices": (_status, [_handle, _i64_p, c_int64]),
    "s2ft_backward_sparse": (
        _status,
        [_handle, _handle, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, c_uint32],
    ),
    "s2ft_optimizer_add_sparse": (_status, [_handle, _tensor_p, _handle, _i64_p]),
    "s2ft_optimizer_sparse_reindex": (_status, [_handle, c_int64, _handle]),
    "s2ft_lift_options_init": (_status, [POINTER(s2ft_lift_options), c_uint32]),
    "s2ft_lift_select": (_status, [_handle, _tensor_p, POINTER(s2ft_lift_options), _i64_p, c_int64, _i64_p]),
    "s2ft_lift_count_for_lora_rank": (c_int64, [c_int64, c_int64, c_int64]),
    # SORSA
    "s2ft_sorsa_init": (_status, [_handle, _tensor_p, c_int32, _tensor_p, _tensor_p, _tensor_p]),
    "s2ft_sorsa_forward": (
        _status,
        [_handle, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p],
    ),
    "s2ft_sorsa_backward": (
        _status,
        [_handle, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p,
         _tensor_p, _tensor_p, _tensor_p, c_uint32],
    ),
    "s2ft_sorsa_regularizer": (
        _status,
        [_handle, _tensor_p, _tensor_p, c_double, _f64_p, _tensor_p, _tensor_p, c_uint32],
    ),
    "s2ft_sorsa_regularizer_step": (_status, [_handle, _tensor_p, _tensor_p, c_double, _f64_p, c_uint32]),
    # LIFT's mask refresh and SpIEL
    "s2ft_lift_refresh": (
        _status,
        [_handle, _handle, c_int64, _tensor_p, POINTER(s2ft_lift_options), _handle_out, _i64_p],
    ),
    "s2ft_spiel_options_init": (_status, [POINTER(s2ft_spiel_options), c_uint32]),
    "s2ft_spiel_rate": (_status, [POINTER(s2ft_spiel_options), c_int64, _f64_p]),
    "s2ft_spiel_create": (
        _status,
        [_handle, _handle, c_int64, _tensor_p, POINTER(s2ft_spiel_options), _handle_out],
    ),
    "s2ft_spiel_destroy": (None, [_handle]),
    "s2ft_spiel_observe": (_status, [_handle, _handle, _tensor_p, _tensor_p]),
    "s2ft_spiel_step": (_status, [_handle, _handle, _tensor_p, _i32_p]),
    "s2ft_spiel_current_set": (_status, [_handle, _handle, _handle_out]),
    "s2ft_spiel_stats_get": (_status, [_handle, POINTER(s2ft_spiel_stats)]),
    # adapters
    "s2ft_adapter_create": (_status, [_shape_p, c_char_p, c_double, _handle_out]),
    "s2ft_adapter_destroy": (None, [_handle]),
    "s2ft_adapter_set": (_status, [_handle, c_int32, c_int32, _i64_p, c_int64, _tensor_p, _tensor_p]),
    "s2ft_adapter_from_training": (
        _status,
        [_handle, _handle, _weights_p, _weights_p, c_int32, c_char_p, _handle_out],
    ),
    "s2ft_adapter_set_info": (_status, [_handle, c_char_p, c_double]),
    "s2ft_adapter_name": (c_char_p, [_handle]),
    "s2ft_adapter_set_meta": (_status, [_handle, c_char_p, c_char_p]),
    "s2ft_adapter_meta": (_status, [_handle, c_char_p, _str_p]),
    "s2ft_adapter_meta_count": (_status, [_handle, _i64_p]),
    "s2ft_adapter_meta_at": (_status, [_handle, c_int64, _str_p, _str_p]),
    "s2ft_adapter_info": (_status, [_handle, _shape_p, _f64_p, _u32_p]),
    "s2ft_adapter_lines": (_status, [_handle, c_int32, c_int32, _i64_p, _u64_p, c_int64, _i64_p]),
    "s2ft_adapter_delta": (_status, [_handle, c_int32, c_int32, _tensor_p]),
    "s2ft_adapter_set_sparse": (_status, [_handle, c_int32, c_int32, _i64_p, c_int64, _tensor_p, _tensor_p]),
    "s2ft_adapter_sparse": (_status, [_handle, c_int32, c_int32, _i64_p, _f32_p, c_int64, _i64_p, _u64_p]),
    "s2ft_adapter_sparse_info": (_status, [_handle, _u32_p, _i64_p]),
    "s2ft_adapter_set_low_rank": (_status, [_handle, c_int32, c_int32, _tensor_p, _tensor_p, _tensor_p]),
    "s2ft_adapter_set_sorsa": (
        _status,
        [_handle, c_int32, c_int32, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p],
    ),
    "s2ft_adapter_low_rank": (_status, [_handle, c_int32, c_int32, _i64_p, _tensor_p, _tensor_p, _u64_p]),
    "s2ft_adapter_low_rank_info": (_status, [_handle, _u32_p, _i64_p]),
    "s2ft_adapter_save": (_status, [_handle, c_char_p]),
    "s2ft_adapter_load": (_status, [c_char_p, _handle_out]),
    "s2ft_adapter_fuse": (_status, [POINTER(c_void_p), _f64_p, c_int64, _handle_out]),
    "s2ft_peft_export_options_init": (_status, [POINTER(s2ft_peft_export_options), c_uint32]),
    "s2ft_adapter_export_peft": (_status, [_handle, c_char_p, POINTER(s2ft_peft_export_options)]),
    # models
    "s2ft_model_create": (_status, [_handle, _shape_p, _weights_p, _handle, _handle_out]),
    "s2ft_model_destroy": (None, [_handle]),
    "s2ft_adapter_apply": (_status, [_handle, _handle, c_double, c_uint32]),
    "s2ft_adapter_remove": (_status, [_handle]),
    "s2ft_adapter_switch": (_status, [_handle, _handle, c_double, c_uint32]),
    "s2ft_model_applied": (_status, [_handle, POINTER(c_void_p), _f64_p]),
    "s2ft_adapter_forward_mixed": (
        _status,
        [
            _handle,
            c_int32,
            c_int32,
            _tensor_p,
            _tensor_p,
            _handle,
            POINTER(c_void_p),
            _f64_p,
            c_int64,
            _i64_p,
            _i32_p,
            c_int64,
            _tensor_p,
        ],
    ),
    "s2ft_adapter_upload": (_status, [_handle, _handle]),
    # sparse deltas
    "s2ft_sparse_delta_create": (
        _status,
        [_handle, c_int64, c_int64, _i64_p, _i64_p, POINTER(c_float), c_int64, _handle_out],
    ),
    "s2ft_sparse_delta_from_adapter": (_status, [_handle, _handle, c_int32, c_int32, _handle, _handle_out]),
    "s2ft_sparse_delta_destroy": (None, [_handle]),
    "s2ft_sparse_delta_info": (_status, [_handle, _i64_p, _i64_p, _i64_p]),
    "s2ft_sparse_delta_forward": (_status, [_handle, _handle, c_double, _tensor_p, _tensor_p]),
    "s2ft_context_set_delta_path": (_status, [_handle, c_int32]),
    # checkpoints
    "s2ft_checkpoint_open": (_status, [c_char_p, _handle_out]),
    "s2ft_checkpoint_destroy": (None, [_handle]),
    "s2ft_checkpoint_shape": (_status, [_handle, _shape_p]),
    "s2ft_checkpoint_config": (_status, [_handle, _str_p]),
    "s2ft_checkpoint_tensor_count": (_status, [_handle, _i64_p]),
    "s2ft_checkpoint_file_count": (_status, [_handle, _i64_p]),
    "s2ft_checkpoint_file": (_status, [_handle, c_int64, _str_p]),
    "s2ft_checkpoint_tensor_info": (
        _status,
        [_handle, c_int64, _str_p, _str_p, _i32_p, _i64_p, c_int32, _u64_p],
    ),
    "s2ft_checkpoint_tensor": (_status, [_handle, c_char_p, _tensor_p]),
    "s2ft_checkpoint_tensor_data": (_status, [_handle, c_char_p, POINTER(c_void_p), _u64_p]),
    "s2ft_checkpoint_write_options_init": (_status, [POINTER(s2ft_checkpoint_write_options), c_uint32]),
    "s2ft_checkpoint_write": (
        _status,
        [_handle, c_char_p, _str_p, _tensor_p, c_int64, POINTER(s2ft_checkpoint_write_options)],
    ),
    "s2ft_model_from_checkpoint": (_status, [_handle, _handle, _shape_p, _handle, _handle_out]),
    "s2ft_model_layer": (_status, [_handle, c_int32, _weights_p]),
    "s2ft_model_apply_files": (_status, [_handle, _str_p, _f64_p, c_int64, c_uint32]),
}


class API:
    """The bound functions of one loaded libs2ft, as attributes named as in C."""

    def __init__(self, cdll):
        """Sets restype/argtypes of every prototype on ``cdll``; AttributeError names a missing one."""
        self.cdll = cdll
        for name, (restype, argtypes) in PROTOTYPES.items():
            fn = getattr(cdll, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
