//! Model shapes and trainable targets.

use s2ft_sys as sys;

use crate::error::{check, Result};

/// The shape of a LLaMA-architecture decoder (see `s2ft_model_shape`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ModelShape {
    /// Number of decoder layers.
    pub n_layers: i32,
    /// Hidden size.
    pub d_model: i32,
    /// Query heads.
    pub n_heads: i32,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: i32,
    /// Size of one head.
    pub head_dim: i32,
    /// FFN intermediate size.
    pub d_ff: i32,
}

impl ModelShape {
    /// Checks the shape (all fields positive, `n_heads % n_kv_heads == 0`).
    ///
    /// ```
    /// let s = s2ft::ModelShape { n_layers: 2, d_model: 8, n_heads: 4, n_kv_heads: 2, head_dim: 2, d_ff: 12 };
    /// assert!(s.check().is_ok());
    /// let bad = s2ft::ModelShape { n_kv_heads: 3, ..s };
    /// assert!(bad.check().unwrap_err().message.contains("n_kv_heads"));
    /// ```
    pub fn check(&self) -> Result<()> {
        let raw = self.to_raw();
        // SAFETY: raw is a valid pointer for the call.
        check(unsafe { sys::s2ft_model_shape_check(&raw) })
    }

    pub(crate) fn to_raw(self) -> sys::s2ft_model_shape {
        sys::s2ft_model_shape {
            n_layers: self.n_layers,
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            d_ff: self.d_ff,
        }
    }

    pub(crate) fn from_raw(r: sys::s2ft_model_shape) -> ModelShape {
        ModelShape {
            n_layers: r.n_layers,
            d_model: r.d_model,
            n_heads: r.n_heads,
            n_kv_heads: r.n_kv_heads,
            head_dim: r.head_dim,
            d_ff: r.d_ff,
        }
    }
}

/// A trainable weight. O and Down are column-trained (their inputs are
/// selected), V and Up row-trained (their outputs are selected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// o_proj columns of selected query heads.
    O,
    /// v_proj rows of selected KV heads.
    V,
    /// down_proj columns of selected FFN channels.
    Down,
    /// up_proj rows of selected FFN channels.
    Up,
}

impl Target {
    /// All targets in C order.
    pub const ALL: [Target; 4] = [Target::O, Target::V, Target::Down, Target::Up];

    /// The C value (`S2FT_TARGET_*`).
    pub fn to_raw(self) -> i32 {
        (match self {
            Target::O => sys::S2FT_TARGET_O,
            Target::V => sys::S2FT_TARGET_V,
            Target::Down => sys::S2FT_TARGET_DOWN,
            Target::Up => sys::S2FT_TARGET_UP,
        }) as i32
    }

    /// This target's bit in a target mask (`S2FT_TARGET_BIT`).
    ///
    /// ```
    /// assert_eq!(s2ft::Target::O.bit() | s2ft::Target::Down.bit(), 0b101);
    /// ```
    pub fn bit(self) -> u32 {
        1u32 << self.to_raw()
    }
}

c_enum! {
    /// One of the seven projection weights of a layer (`S2FT_WEIGHT_*`), in
    /// one id space with [`Target`] (the four targets keep their ids).
    /// Unstructured sparse entries of an adapter ([`Adapter::set_sparse`](crate::Adapter::set_sparse))
    /// name weights by these.
    Weight {
        /// o_proj `[d_model, n_heads*head_dim]`.
        O = sys::S2FT_WEIGHT_O,
        /// v_proj `[n_kv_heads*head_dim, d_model]`.
        V = sys::S2FT_WEIGHT_V,
        /// down_proj `[d_model, d_ff]`.
        Down = sys::S2FT_WEIGHT_DOWN,
        /// up_proj `[d_ff, d_model]`.
        Up = sys::S2FT_WEIGHT_UP,
        /// q_proj `[n_heads*head_dim, d_model]`.
        Q = sys::S2FT_WEIGHT_Q,
        /// k_proj `[n_kv_heads*head_dim, d_model]`.
        K = sys::S2FT_WEIGHT_K,
        /// gate_proj `[d_ff, d_model]`.
        Gate = sys::S2FT_WEIGHT_GATE,
    }
}

impl Weight {
    /// All seven weights in C order.
    pub const ALL: [Weight; 7] = [Weight::O, Weight::V, Weight::Down, Weight::Up, Weight::Q, Weight::K, Weight::Gate];

    /// This weight's bit in a weight mask (`S2FT_WEIGHT_BIT`).
    ///
    /// ```
    /// assert_eq!(s2ft::Weight::Q.bit() | s2ft::Weight::O.bit(), 0b1_0001);
    /// ```
    pub fn bit(self) -> u32 {
        1u32 << self.to_raw()
    }

    /// `(rows, cols)` of this weight in a model of `shape`.
    ///
    /// ```
    /// let s = s2ft::ModelShape { n_layers: 1, d_model: 8, n_heads: 4, n_kv_heads: 2, head_dim: 2, d_ff: 12 };
    /// assert_eq!(s2ft::Weight::K.dims(&s), (4, 8));
    /// assert_eq!(s2ft::Weight::Down.dims(&s), (8, 12));
    /// ```
    pub fn dims(self, shape: &ModelShape) -> (usize, usize) {
        let d = shape.d_model.max(0) as usize;
        let heads = (shape.n_heads.max(0) * shape.head_dim.max(0)) as usize;
        let kv = (shape.n_kv_heads.max(0) * shape.head_dim.max(0)) as usize;
        let f = shape.d_ff.max(0) as usize;
        match self {
            Weight::O => (d, heads),
            Weight::V | Weight::K => (kv, d),
            Weight::Q => (heads, d),
            Weight::Down => (d, f),
            Weight::Up | Weight::Gate => (f, d),
        }
    }
}

impl From<Target> for Weight {
    /// The weight a target trains (same id).
    fn from(t: Target) -> Weight {
        match t {
            Target::O => Weight::O,
            Target::V => Weight::V,
            Target::Down => Weight::Down,
            Target::Up => Weight::Up,
        }
    }
}
