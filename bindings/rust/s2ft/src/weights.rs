//! One layer's weights, and the co-permutation that reorders them in place.

use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Result};
use crate::selection::Selection;
use crate::tensor::{TensorMut, TensorRef};

/// One layer's writable weights (`[out, in]` row-major each); `None`
/// leaves a weight alone. Used by [`permute`] and [`Model`](crate::Model).
#[derive(Debug, Default)]
pub struct LayerWeights<'a> {
    /// q_proj `[n_heads*head_dim, d_model]`.
    pub q: Option<TensorMut<'a>>,
    /// k_proj `[n_kv_heads*head_dim, d_model]`.
    pub k: Option<TensorMut<'a>>,
    /// v_proj `[n_kv_heads*head_dim, d_model]`.
    pub v: Option<TensorMut<'a>>,
    /// o_proj `[d_model, n_heads*head_dim]`.
    pub o: Option<TensorMut<'a>>,
    /// gate_proj `[d_ff, d_model]`.
    pub gate: Option<TensorMut<'a>>,
    /// up_proj `[d_ff, d_model]`.
    pub up: Option<TensorMut<'a>>,
    /// down_proj `[d_model, d_ff]`.
    pub down: Option<TensorMut<'a>>,
}

/// One layer's read-only weights, as [`LayerWeights`]; used where the
/// library only reads them ([`Adapter::from_training`](crate::Adapter::from_training)).
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerWeightsRef<'a> {
    /// q_proj.
    pub q: Option<TensorRef<'a>>,
    /// k_proj.
    pub k: Option<TensorRef<'a>>,
    /// v_proj.
    pub v: Option<TensorRef<'a>>,
    /// o_proj.
    pub o: Option<TensorRef<'a>>,
    /// gate_proj.
    pub gate: Option<TensorRef<'a>>,
    /// up_proj.
    pub up: Option<TensorRef<'a>>,
    /// down_proj.
    pub down: Option<TensorRef<'a>>,
}

fn mut_ptr(t: &mut Option<TensorMut<'_>>) -> *mut sys::s2ft_tensor {
    t.as_mut().map_or(ptr::null_mut(), |t| &mut t.raw as *mut _)
}

// The library only reads through these pointers (the functions that take a
// LayerWeightsRef never write weights), so casting away const is sound.
fn ref_ptr(t: &Option<TensorRef<'_>>) -> *mut sys::s2ft_tensor {
    t.as_ref().map_or(ptr::null_mut(), |t| &t.raw as *const _ as *mut _)
}

impl LayerWeights<'_> {
    /// The C struct pointing at this value's descriptors (valid while
    /// `self` is neither moved nor dropped).
    pub(crate) fn to_raw(&mut self) -> sys::s2ft_layer_weights {
        sys::s2ft_layer_weights {
            q: mut_ptr(&mut self.q),
            k: mut_ptr(&mut self.k),
            v: mut_ptr(&mut self.v),
            o: mut_ptr(&mut self.o),
            gate: mut_ptr(&mut self.gate),
            up: mut_ptr(&mut self.up),
            down: mut_ptr(&mut self.down),
        }
    }
}

impl LayerWeightsRef<'_> {
    pub(crate) fn to_raw(&self) -> sys::s2ft_layer_weights {
        sys::s2ft_layer_weights {
            q: ref_ptr(&self.q),
            k: ref_ptr(&self.k),
            v: ref_ptr(&self.v),
            o: ref_ptr(&self.o),
            gate: ref_ptr(&self.gate),
            up: ref_ptr(&self.up),
            down: ref_ptr(&self.down),
        }
    }
}

/// Direction of [`permute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Base order to selected-units-first.
    Forward,
    /// Permuted order back to base order.
    Inverse,
}

/// Co-permutes one layer's weights in place so that the selected units come
/// first (`Forward`), or undoes it (`Inverse`, bit-exact). The layer's
/// function is unchanged when all coupled weights are given (q, k, v, o for
/// heads; gate, up, down for channels).
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 3 };
/// let sel = Selection::from_units(&shape, HeadGranularity::ByGroup, [&[], &[], &[2], &[]]).unwrap();
/// let mut down = vec![0.0f32, 1.0, 2.0, 10.0, 11.0, 12.0]; // [d_model=2, d_ff=3]
/// let mut layer = LayerWeights { down: Some(TensorMut::new(&mut down, &[2, 3]).unwrap()), ..Default::default() };
/// permute(&ctx, &sel, 0, &mut layer, Direction::Forward).unwrap();
/// drop(layer);
/// assert_eq!(down[0], 2.0); // channel 2 moved to the front
/// assert_eq!(down[3], 12.0);
/// ```
pub fn permute(ctx: &Context, sel: &Selection, layer: i32, weights: &mut LayerWeights<'_>, direction: Direction) -> Result<()> {
    let raw = weights.to_raw();
    let dir = match direction {
        Direction::Forward => sys::S2FT_PERMUTE_FORWARD,
        Direction::Inverse => sys::S2FT_PERMUTE_INVERSE,
    } as i32;
    // SAFETY: live handles; raw points at descriptors exclusively borrowed
    // through `weights` for the call.
    check(unsafe { sys::s2ft_permute(ctx.raw, sel.raw, layer, &raw, dir) })
}
