//! The CUDA-era context calls and sparse deltas, on a CPU context.

mod common;

use common::{assert_close, Rng};
use s2ft::*;

/// A random CSR delta [rows, cols] with about half the entries stored.
fn random_csr(rng: &mut Rng, rows: usize, cols: usize) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let (mut offsets, mut indices, mut values) = (vec![0i64], Vec::new(), Vec::new());
    for _ in 0..rows {
        for c in 0..cols {
            if rng.next_u64() % 2 == 0 {
                indices.push(c as i64);
                values.push(rng.uniform());
            }
        }
        offsets.push(indices.len() as i64);
    }
    (offsets, indices, values)
}

#[test]
fn device_count_of_the_cpu_is_one() {
    assert_eq!(device_count(DeviceType::Cpu).unwrap(), 1);
    assert!(device_count(DeviceType::Cuda).unwrap() >= 0);
}

#[test]
fn cpu_context_calls() {
    let ctx = Context::new().unwrap();
    ctx.synchronize().unwrap();
    assert_eq!(ctx.workspace_needed().unwrap(), 0);
    assert!(ctx.stream().unwrap().is_null());
    ctx.set_delta_path(DeltaPath::Dense).unwrap();
    ctx.set_delta_path(DeltaPath::Auto).unwrap();
    assert_eq!(ctx.set_delta_path(DeltaPath::Sparse).unwrap_err().kind(), ErrorKind::Unsupported);
    // SAFETY: null is always an acceptable stream and workspace.
    let err = unsafe { ctx.set_stream(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(!err.message.is_empty());
    // SAFETY: as above.
    let err = unsafe { ctx.set_workspace(std::ptr::null_mut(), 0) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn sparse_delta_forward_matches_a_dense_reference() {
    let mut rng = Rng::new(7);
    let (rows, cols, t) = (7usize, 5usize, 3usize);
    let (offsets, indices, values) = random_csr(&mut rng, rows, cols);
    let ctx = Context::new().unwrap();
    let d = SparseDelta::new(&ctx, rows, cols, &offsets, &indices, &values).unwrap();
    assert_eq!(d.info().unwrap(), (rows as i64, cols as i64, values.len() as i64));

    let mut dense = vec![0.0f64; rows * cols];
    for r in 0..rows {
        for p in offsets[r] as usize..offsets[r + 1] as usize {
            dense[r * cols + indices[p] as usize] = values[p] as f64;
        }
    }
    let x = rng.vec(t * cols);
    let y0 = rng.vec(t * rows);
    let scale = 0.75;
    let mut want = vec![0.0f64; t * rows];
    for i in 0..t {
        for r in 0..rows {
            let dot: f64 = (0..cols).map(|c| x[i * cols + c] as f64 * dense[r * cols + c]).sum();
            want[i * rows + r] = y0[i * rows + r] as f64 + scale * dot;
        }
    }
    let mut y = y0.clone();
    d.forward(&ctx, scale, &TensorRef::matrix(&x, t, cols).unwrap(), &mut TensorMut::matrix(&mut y, t, rows).unwrap()).unwrap();
    assert_close(&y, &want, 1e-6, "y");

    // A wrong x shape is the library's shape error.
    let err = d.forward(&ctx, scale, &TensorRef::matrix(&x[..t * (cols - 1)], t, cols - 1).unwrap(), &mut TensorMut::matrix(&mut y, t, rows).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shape);
}

#[test]
fn sparse_delta_bad_offsets_are_an_error_with_a_message() {
    let ctx = Context::new().unwrap();
    // The offsets end at 3 but there are 2 entries.
    let err = SparseDelta::new(&ctx, 2, 3, &[0, 1, 3], &[0, 2], &[1.0, 2.0]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message.contains("offsets"), "message: {}", err.message);
    // Lengths that do not fit are refused before reaching C.
    assert_eq!(SparseDelta::new(&ctx, 2, 3, &[0, 1], &[0], &[1.0]).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn sparse_delta_from_an_adapter_and_upload() {
    let ctx = Context::new().unwrap();
    let shape = ModelShape { n_layers: 1, d_model: 3, n_heads: 1, n_kv_heads: 1, head_dim: 3, d_ff: 4 };
    let mut a = Adapter::new(&shape, "a", 1.0).unwrap();
    // Down [d_model = 3, d_ff = 4]: columns 1 and 3.
    let delta = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    a.set(0, Target::Down, &[1, 3], &TensorRef::matrix(&delta, 3, 2).unwrap(), None).unwrap();
    a.upload(&ctx).unwrap();
    let d = SparseDelta::from_adapter(&ctx, &a, 0, Target::Down, None).unwrap();
    assert_eq!(d.info().unwrap(), (3, 4, 6));
    let x = [1.0f32, 10.0, 100.0, 1000.0];
    let mut y = vec![0.0f32; 3];
    d.forward(&ctx, 1.0, &TensorRef::matrix(&x, 1, 4).unwrap(), &mut TensorMut::matrix(&mut y, 1, 3).unwrap()).unwrap();
    assert_eq!(y, vec![10.0 + 2000.0, 30.0 + 4000.0, 50.0 + 6000.0]);
    let empty = SparseDelta::from_adapter(&ctx, &a, 0, Target::Up, None).unwrap();
    assert_eq!(empty.info().unwrap(), (4, 3, 0));
}
