//! Borrowed tensor views: Rust slices described as `s2ft_tensor`s.
//!
//! A [`TensorRef`] borrows its memory shared, a [`TensorMut`] exclusively,
//! for the lifetime `'a`; the shape and strides are checked against the
//! slice's length here, before anything reaches C, so the library never
//! reads or writes outside the slice.

use std::ffi::c_void;
use std::marker::PhantomData;

use s2ft_sys as sys;

use crate::error::{check, Error, Result};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE float32 (Rust `f32`).
    F32,
    /// IEEE float16, stored as raw `u16` bits.
    F16,
    /// bfloat16, stored as raw `u16` bits.
    BF16,
}

impl DType {
    fn code(self) -> i32 {
        (match self {
            DType::F32 => sys::S2FT_F32,
            DType::F16 => sys::S2FT_F16,
            DType::BF16 => sys::S2FT_BF16,
        }) as i32
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub(crate) fn from_raw(dt: sys::s2ft_dtype) -> Option<DType> {
        match (dt.code as u32, dt.bits) {
            (sys::S2FT_DLPACK_FLOAT, 32) => Some(DType::F32),
            (sys::S2FT_DLPACK_FLOAT, 16) => Some(DType::F16),
            (sys::S2FT_DLPACK_BFLOAT, 16) => Some(DType::BF16),
            _ => None,
        }
    }
}

/// Where a tensor's memory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory.
    Cpu,
    /// CUDA device memory on the given ordinal.
    Cuda(i32),
}

impl Device {
    pub(crate) fn to_raw(self) -> (i32, i32) {
        match self {
            Device::Cpu => (sys::S2FT_DEVICE_CPU as i32, 0),
            Device::Cuda(id) => (sys::S2FT_DEVICE_CUDA as i32, id),
        }
    }

    pub(crate) fn from_raw(d: sys::s2ft_device) -> Device {
        if d.type_ == sys::S2FT_DEVICE_CUDA as i32 {
            Device::Cuda(d.id)
        } else {
            Device::Cpu
        }
    }
}

/// Converts extents to the C representation, checking rank and range.
fn extents(what: &str, values: &[usize]) -> Result<[i64; 4]> {
    if values.is_empty() || values.len() > sys::S2FT_MAX_DIMS as usize {
        return Err(Error::invalid(format!(
            "tensor {what} has {} dimensions; expected 1..={}",
            values.len(),
            sys::S2FT_MAX_DIMS
        )));
    }
    let mut out = [0i64; 4];
    for (i, &v) in values.iter().enumerate() {
        out[i] = i64::try_from(v).map_err(|_| Error::invalid(format!("tensor {what}[{i}] = {v} is too large")))?;
    }
    Ok(out)
}

fn compact_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1].saturating_mul(shape[i + 1]);
    }
    strides
}

/// Builds a CPU descriptor over `len` elements at `ptr`, checking that every
/// element the shape and strides address lies inside the buffer.
fn describe(ptr: *mut c_void, len: usize, dtype: DType, shape: &[usize], strides: Option<&[usize]>) -> Result<sys::s2ft_tensor> {
    let shape_c = extents("shape", shape)?;
    let owned_strides;
    let strides = match strides {
        Some(s) => {
            if s.len() != shape.len() {
                return Err(Error::shape(format!(
                    "tensor strides have {} entries but the shape has {}",
                    s.len(),
                    shape.len()
                )));
            }
            s
        }
        None => {
            owned_strides = compact_strides(shape);
            &owned_strides
        }
    };
    let strides_c = extents("strides", strides)?;
    if shape.iter().all(|&n| n > 0) {
        // The last element addressed is at sum (shape[i] - 1) * strides[i].
        let mut last: usize = 0;
        for (&n, &s) in shape.iter().zip(strides) {
            last = (n - 1)
                .checked_mul(s)
                .and_then(|x| x.checked_add(last))
                .ok_or_else(|| Error::shape("tensor extent overflows usize"))?;
        }
        if last >= len {
            return Err(Error::shape(format!(
                "tensor of shape {shape:?} and strides {strides:?} needs {} elements but the slice has {len}",
                last + 1
            )));
        }
    }
    let mut t = empty_raw();
    let (dev_type, dev_id) = Device::Cpu.to_raw();
    // SAFETY: t and shape_c are valid for the call; the library only fills t.
    check(unsafe { sys::s2ft_tensor_init(&mut t, ptr, dtype.code(), dev_type, dev_id, shape.len() as i32, shape_c.as_ptr()) })?;
    t.strides = strides_c;
    Ok(t)
}

fn empty_raw() -> sys::s2ft_tensor {
    sys::s2ft_tensor {
        data: std::ptr::null_mut(),
        device: sys::s2ft_device { type_: sys::S2FT_DEVICE_CPU as i32, id: 0 },
        ndim: 0,
        dtype: sys::s2ft_dtype { code: 0, bits: 0, lanes: 0 },
        shape: [0; 4],
        strides: [0; 4],
        byte_offset: 0,
    }
}

fn half_dtype(dtype: DType) -> Result<DType> {
    match dtype {
        DType::F16 | DType::BF16 => Ok(dtype),
        DType::F32 => Err(Error::new(sys::S2FT_ERR_DTYPE, "u16 data must be described as DType::F16 or DType::BF16")),
    }
}

fn matrix_f32(ptr: *mut f32, len: usize, rows: usize, cols: usize) -> Result<sys::s2ft_tensor> {
    let need = rows.checked_mul(cols).ok_or_else(|| Error::shape("matrix size overflows usize"))?;
    if need != len {
        return Err(Error::shape(format!("a [{rows}, {cols}] matrix needs {need} elements but the slice has {len}")));
    }
    let mut t = empty_raw();
    // SAFETY: t is valid; the data pointer is only recorded.
    check(unsafe { sys::s2ft_tensor_cpu_f32_2d(&mut t, ptr, rows as i64, cols as i64) })?;
    Ok(t)
}

/// Accessors shared by both views.
macro_rules! tensor_accessors {
    () => {
        /// The extents, one per dimension.
        pub fn shape(&self) -> Vec<usize> {
            self.raw.shape[..self.raw.ndim as usize].iter().map(|&v| v as usize).collect()
        }

        /// The strides in elements, one per dimension.
        pub fn strides(&self) -> Vec<usize> {
            self.raw.strides[..self.raw.ndim as usize].iter().map(|&v| v as usize).collect()
        }

        /// The element type.
        pub fn dtype(&self) -> DType {
            DType::from_raw(self.raw.dtype).unwrap_or(DType::F32)
        }

        /// The device the memory lives on.
        pub fn device(&self) -> Device {
            Device::from_raw(self.raw.device)
        }

        /// The C descriptor (for use with `s2ft-sys`).
        pub fn as_raw(&self) -> &sys::s2ft_tensor {
            &self.raw
        }
    };
}

/// A read-only tensor view borrowing its memory for `'a`.
///
/// ```
/// let w = vec![1.0f32; 6];
/// let t = s2ft::TensorRef::new(&w, &[2, 3]).unwrap();
/// assert_eq!(t.shape(), vec![2, 3]);
/// assert_eq!(t.strides(), vec![3, 1]);
/// // A shape that needs more elements than the slice has is refused.
/// assert!(s2ft::TensorRef::new(&w, &[3, 3]).is_err());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub(crate) raw: sys::s2ft_tensor,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> TensorRef<'a> {
    /// A compact row-major f32 tensor of the given shape (rank 1 to 4) over
    /// `data`, whose length must be the product of the extents or more.
    pub fn new(data: &'a [f32], shape: &[usize]) -> Result<Self> {
        Self::strided(data, shape, &compact_strides(shape))
    }

    /// A strided f32 view (strides in elements), e.g. a column block or a
    /// transposed matrix. Every addressed element must lie inside `data`.
    ///
    /// ```
    /// // The transpose of a row-major [2, 3] matrix.
    /// let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let t = s2ft::TensorRef::strided(&w, &[3, 2], &[1, 3]).unwrap();
    /// assert_eq!(t.shape(), vec![3, 2]);
    /// ```
    pub fn strided(data: &'a [f32], shape: &[usize], strides: &[usize]) -> Result<Self> {
        let raw = describe(data.as_ptr() as *mut c_void, data.len(), DType::F32, shape, Some(strides))?;
        Ok(TensorRef { raw, _borrow: PhantomData })
    }

    /// A compact row-major [rows, cols] f32 matrix; `data.len()` must equal
    /// `rows * cols`.
    ///
    /// ```
    /// let x = [0.5f32; 8];
    /// assert_eq!(s2ft::TensorRef::matrix(&x, 2, 4).unwrap().shape(), vec![2, 4]);
    /// ```
    pub fn matrix(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        let raw = matrix_f32(data.as_ptr() as *mut f32, data.len(), rows, cols)?;
        Ok(TensorRef { raw, _borrow: PhantomData })
    }

    /// A compact row-major f16 or bf16 tensor over raw 16-bit values.
    ///
    /// ```
    /// use s2ft::{DType, TensorRef};
    /// let bits = [0x3f80u16; 4]; // bf16 1.0
    /// let t = TensorRef::from_u16(&bits, DType::BF16, &[2, 2]).unwrap();
    /// assert_eq!(t.dtype(), DType::BF16);
    /// assert!(TensorRef::from_u16(&bits, DType::F32, &[2, 2]).is_err());
    /// ```
    pub fn from_u16(data: &'a [u16], dtype: DType, shape: &[usize]) -> Result<Self> {
        Self::from_u16_strided(data, dtype, shape, &compact_strides(shape))
    }

    /// A strided f16 or bf16 view over raw 16-bit values.
    pub fn from_u16_strided(data: &'a [u16], dtype: DType, shape: &[usize], strides: &[usize]) -> Result<Self> {
        let raw = describe(data.as_ptr() as *mut c_void, data.len(), half_dtype(dtype)?, shape, Some(strides))?;
        Ok(TensorRef { raw, _borrow: PhantomData })
    }

    /// A view of memory this crate cannot check, e.g. a CUDA allocation.
    ///
    /// # Safety
    /// `ptr` must point to memory on `device` that holds every element the
    /// shape and strides (in elements) address, with element type `dtype`,
    /// and that stays valid and is not written by anyone else for `'a`.
    pub unsafe fn from_raw_parts(ptr: *const c_void, dtype: DType, device: Device, shape: &[usize], strides: &[usize]) -> Result<Self> {
        Ok(TensorRef { raw: raw_parts(ptr as *mut c_void, dtype, device, shape, strides)?, _borrow: PhantomData })
    }

    /// A row-major copy of the elements as f32 (f16 and bf16 converted
    /// exactly), or `None` for device memory.
    ///
    /// ```
    /// // Column 1 of a row-major [2, 3] matrix, as a strided view.
    /// let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let col = s2ft::TensorRef::strided(&w[1..], &[2, 1], &[3, 1]).unwrap();
    /// assert_eq!(col.to_f32_vec().unwrap(), vec![2.0, 5.0]);
    /// let half = s2ft::TensorRef::from_u16(&[0x3c00, 0xc000], s2ft::DType::F16, &[2]).unwrap();
    /// assert_eq!(half.to_f32_vec().unwrap(), vec![1.0, -2.0]);
    /// ```
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        if self.device() != Device::Cpu {
            return None;
        }
        let raw = &self.raw;
        let nd = raw.ndim as usize;
        let n: usize = raw.shape[..nd].iter().map(|&d| d as usize).product();
        let base = (raw.data as *const u8).wrapping_add(raw.byte_offset as usize);
        let dtype = self.dtype();
        let mut out = Vec::with_capacity(n);
        let mut index = [0i64; 4];
        for _ in 0..n {
            let e: i64 = (0..nd).map(|i| index[i] * raw.strides[i]).sum();
            let p = base.wrapping_add(e as usize * dtype.size());
            // SAFETY: every element the shape and strides address lies in
            // memory the view borrows (checked by the constructors, promised
            // by from_raw_parts' callers, held by the library otherwise);
            // unaligned reads, as byte offsets may be anything.
            out.push(unsafe {
                match dtype {
                    DType::F32 => (p as *const f32).read_unaligned(),
                    DType::BF16 => f32::from_bits(((p as *const u16).read_unaligned() as u32) << 16),
                    DType::F16 => f16_to_f32((p as *const u16).read_unaligned()),
                }
            });
            for i in (0..nd).rev() {
                index[i] += 1;
                if index[i] < raw.shape[i] {
                    break;
                }
                index[i] = 0;
            }
        }
        Some(out)
    }

    /// A view of a descriptor the library made (a checkpoint's tensor, a
    /// model's weight).
    ///
    /// # Safety
    /// The memory `raw` describes must stay valid, and unwritten by anyone
    /// else, for `'a`.
    pub(crate) unsafe fn from_descriptor(raw: sys::s2ft_tensor) -> Self {
        TensorRef { raw, _borrow: PhantomData }
    }

    tensor_accessors!();
}

/// A writable tensor view borrowing its memory exclusively for `'a`.
///
/// ```
/// let mut y = vec![0.0f32; 4];
/// let t = s2ft::TensorMut::new(&mut y, &[2, 2]).unwrap();
/// assert_eq!(t.as_ref().shape(), vec![2, 2]);
/// ```
#[derive(Debug)]
pub struct TensorMut<'a> {
    pub(crate) raw: sys::s2ft_tensor,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> TensorMut<'a> {
    /// A compact row-major f32 tensor of the given shape over `data`.
    pub fn new(data: &'a mut [f32], shape: &[usize]) -> Result<Self> {
        Self::strided(data, shape, &compact_strides(shape))
    }

    /// A strided f32 view (strides in elements). Strides that make two
    /// indices address one element are allowed by the library only for
    /// inputs; outputs are written element by element.
    pub fn strided(data: &'a mut [f32], shape: &[usize], strides: &[usize]) -> Result<Self> {
        let raw = describe(data.as_mut_ptr() as *mut c_void, data.len(), DType::F32, shape, Some(strides))?;
        Ok(TensorMut { raw, _borrow: PhantomData })
    }

    /// A compact row-major [rows, cols] f32 matrix; `data.len()` must equal
    /// `rows * cols`.
    pub fn matrix(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self> {
        let raw = matrix_f32(data.as_mut_ptr(), data.len(), rows, cols)?;
        Ok(TensorMut { raw, _borrow: PhantomData })
    }

    /// A compact row-major f16 or bf16 tensor over raw 16-bit values.
    pub fn from_u16(data: &'a mut [u16], dtype: DType, shape: &[usize]) -> Result<Self> {
        Self::from_u16_strided(data, dtype, shape, &compact_strides(shape))
    }

    /// A strided f16 or bf16 view over raw 16-bit values.
    pub fn from_u16_strided(data: &'a mut [u16], dtype: DType, shape: &[usize], strides: &[usize]) -> Result<Self> {
        let raw = describe(data.as_mut_ptr() as *mut c_void, data.len(), half_dtype(dtype)?, shape, Some(strides))?;
        Ok(TensorMut { raw, _borrow: PhantomData })
    }

    /// A writable view of memory this crate cannot check, e.g. CUDA memory.
    ///
    /// # Safety
    /// As [`TensorRef::from_raw_parts`], and nobody else may read or write
    /// the memory for `'a`.
    pub unsafe fn from_raw_parts(ptr: *mut c_void, dtype: DType, device: Device, shape: &[usize], strides: &[usize]) -> Result<Self> {
        Ok(TensorMut { raw: raw_parts(ptr, dtype, device, shape, strides)?, _borrow: PhantomData })
    }

    /// A writable view of a descriptor the library made (a checkpoint's
    /// tensor).
    ///
    /// # Safety
    /// The memory `raw` describes must stay valid, and untouched by anyone
    /// else, for `'a`.
    pub(crate) unsafe fn from_descriptor(raw: sys::s2ft_tensor) -> Self {
        TensorMut { raw, _borrow: PhantomData }
    }

    /// A read-only view of the same memory, borrowing this one.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef { raw: self.raw, _borrow: PhantomData }
    }

    /// A shorter-lived writable view of the same memory.
    pub fn reborrow(&mut self) -> TensorMut<'_> {
        TensorMut { raw: self.raw, _borrow: PhantomData }
    }

    tensor_accessors!();
}

/// An IEEE half-precision value as f32 (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    match exp {
        // subnormal: frac * 2^-24
        0 => f32::from_bits(sign | (frac as f32 * (1.0 / 16_777_216.0)).to_bits()),
        31 => f32::from_bits(sign | 0x7f80_0000 | (frac << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (frac << 13)),
    }
}

fn raw_parts(ptr: *mut c_void, dtype: DType, device: Device, shape: &[usize], strides: &[usize]) -> Result<sys::s2ft_tensor> {
    // Describe it as if on the CPU with a length large enough, then set the
    // real device: the bound check is the caller's promise here.
    let mut raw = describe(ptr, usize::MAX, dtype, shape, Some(strides))?;
    let (t, id) = device.to_raw();
    raw.device = sys::s2ft_device { type_: t, id };
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_values_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2.0f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2.0f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }
}
