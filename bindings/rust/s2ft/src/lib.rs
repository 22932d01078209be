//! Safe Rust API for libs2ft, the Structured Sparse Fine-Tuning engine.
//!
//! S2FT trains a few selected heads and FFN channels of each layer (columns
//! of o_proj/down_proj, rows of v_proj/up_proj), co-permutes them to the
//! front of the weights, and back-propagates through the slices only. This
//! crate wraps every function of the C API (`s2ft-sys`) with owned handles
//! that free themselves, borrowed tensor views whose extents are checked
//! against Rust slices, and `Result`s carrying the library's messages.
//!
//! - [`Context`]: backend and device; everything that computes takes one.
//! - [`Statistics`], [`SelectOptions`], [`Selection`]: choosing units.
//! - [`permute`]: the co-permutation of one layer's weights.
//! - [`forward_partial`], [`backward_partial`], [`Optimizer`]: training.
//! - [`Adapter`], [`Model`], [`forward_mixed`]: shipping and serving.
//! - [`Checkpoint`]: Hugging Face model folders, memory-mapped; views of
//!   their tensors, [`Model::from_checkpoint`], writing merged copies.
//! - [`SparseDelta`]: unstructured sparse deltas (CSR) on a context's device.
//! - [`SparseSet`], [`backward_sparse`], [`lift_select`]: unstructured sparse
//!   training (LIFT, SpIEL) with gradients at the trained entries only;
//!   [`Optimizer::add_sparse`] and [`Optimizer::sparse_reindex`];
//!   [`lift_refresh`] (LIFT's mask refresh) and [`Spiel`] (SpIEL's schedule);
//!   sparse entries of any of a layer's seven [`Weight`]s in an adapter
//!   ([`Adapter::set_sparse`]).
//! - [`sorsa_init`], [`sorsa_forward`], [`sorsa_backward`],
//!   [`sorsa_regularizer`]: SORSA's trained singular vectors and values;
//!   [`Adapter::set_sorsa`] ships what training changed as a low-rank
//!   adapter entry ([`Adapter::set_low_rank`], [`Adapter::low_rank`]).
//!
//! Threads: handles are `Send` where they hold no context (selections,
//! adapters, checkpoints) and so is a [`Context`], but nothing is `Sync`: the library
//! does not lock handles, so one thread uses a context (and what borrows
//! it) at a time.
//!
//! ```
//! assert_eq!(s2ft::version(), s2ft::VERSION_NUMBER);
//! assert!(s2ft::version_string().starts_with("0."));
//! ```
#![warn(missing_docs)]

#[macro_use]
mod c_enum;
mod adapter;
mod checkpoint;
mod context;
mod error;
mod model;
mod optimizer;
mod partial;
mod path;
mod selection;
mod shape;
mod sorsa;
mod sparse;
mod sparse_train;
mod spiel;
mod statistics;
mod tensor;
mod weights;

use std::ffi::CStr;

pub use adapter::{forward_mixed, Adapter, AdapterInfo, LowRankEntry, LowRankInfo, PeftExportOptions, SparseEntries, SparseInfo};
pub use checkpoint::{Checkpoint, CheckpointTensor, CheckpointTensorMut, TensorInfo, WriteOptions};
pub use context::{device_count, Context, ContextOptions, DeltaPath, DeviceType};
pub use error::{clear_error, last_error, status_string, Error, ErrorKind, Result};
pub use model::{ApplyOptions, Model};
pub use optimizer::{Optimizer, OptimizerKind, OptimizerOptions};
pub use partial::{backward_partial, forward_partial, Accumulate, Axis, Slice};
pub use selection::{Allocation, HeadGranularity, IndexKind, IndexOrder, Order, PermKind, SelectOptions, Selection, Strategy};
pub use shape::{ModelShape, Target, Weight};
pub use sorsa::{sorsa_backward, sorsa_forward, sorsa_init, sorsa_regularizer, sorsa_regularizer_step, SorsaFlags};
pub use sparse::SparseDelta;
pub use sparse_train::{backward_sparse, lift_count_for_lora_rank, lift_refresh, lift_select, LiftBudget, LiftMethod, LiftOptions, SparseSet};
pub use spiel::{Spiel, SpielDecay, SpielMaSource, SpielOptions, SpielRegrow, SpielStats};
pub use statistics::{StatKind, Statistics};
pub use tensor::{DType, Device, TensorMut, TensorRef};
pub use weights::{permute, Direction, LayerWeights, LayerWeightsRef};

/// The raw bindings, for what this crate does not cover.
pub use s2ft_sys as sys;

/// The version these bindings were generated for (`major * 10000 + minor * 100 + patch`).
pub const VERSION_NUMBER: u32 = sys::S2FT_VERSION_NUMBER;

/// The version number of the loaded library.
pub fn version() -> u32 {
    // SAFETY: no arguments.
    unsafe { sys::s2ft_version() }
}

/// The version of the loaded library, e.g. `"0.1.0"`.
pub fn version_string() -> &'static str {
    // SAFETY: a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::s2ft_version_string()) }.to_str().unwrap_or("")
}

/// The number of library objects alive in this process (for leak checks).
///
/// ```
/// let before = s2ft::live_handles();
/// let ctx = s2ft::Context::new().unwrap();
/// assert_eq!(s2ft::live_handles(), before + 1);
/// drop(ctx);
/// assert_eq!(s2ft::live_handles(), before);
/// ```
pub fn live_handles() -> i64 {
    // SAFETY: no arguments; thread-safe.
    unsafe { sys::s2ft_live_handles() }
}
