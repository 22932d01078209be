//! Sparse adapter entries (set/get, save/load, apply/remove bit-exact,
//! errors), SORSA (init, forward, backward, regularizer) and the principal
//! selection strategy through the safe API.

mod common;

use common::{assert_close, matmul_nt, temp_path, Rng};
use s2ft::*;

fn tiny_shape() -> ModelShape {
    ModelShape { n_layers: 2, d_model: 5, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: 7 }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn sparse_entries_round_trip_save_load_and_info() {
    let mut rng = Rng::new(11);
    let s = tiny_shape();
    let (qr, qc) = Weight::Q.dims(&s);
    assert_eq!((qr, qc), (4, 5));
    let q = rng.vec(qr * qc);
    let delta = rng.vec(3);
    let mut a = Adapter::new(&s, "sp", 1.0).unwrap();
    assert_eq!(a.sparse_info().unwrap(), SparseInfo { weights: 0, entries: 0 });
    a.set_sparse(1, Weight::Q, &[0, 7, 19], &TensorRef::new(&delta, &[3]).unwrap(), Some(&TensorRef::matrix(&q, qr, qc).unwrap())).unwrap();
    let gate_delta = [0.5f32, -0.25];
    a.set_sparse(0, Weight::Gate, &[3, 30], &TensorRef::matrix(&gate_delta, 1, 2).unwrap(), None).unwrap();
    let e = a.sparse(1, Weight::Q).unwrap();
    assert_eq!(e.indices, vec![0, 7, 19]);
    assert_eq!(bits(&e.deltas), bits(&delta));
    assert_ne!(e.fingerprint, 0);
    let g = a.sparse(0, Weight::Gate).unwrap();
    assert_eq!((g.indices, g.deltas, g.fingerprint), (vec![3, 30], gate_delta.to_vec(), 0));
    assert_eq!(a.sparse(0, Weight::Q).unwrap(), SparseEntries::default());
    assert_eq!(a.sparse_info().unwrap(), SparseInfo { weights: Weight::Q.bit() | Weight::Gate.bit(), entries: 5 });
    assert_eq!(a.info().unwrap().targets, 0); // sparse entries are not structured targets

    let path = temp_path("sparse.safetensors");
    a.save(&path).unwrap();
    let loaded = Adapter::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.sparse(1, Weight::Q).unwrap(), a.sparse(1, Weight::Q).unwrap());
    assert_eq!(loaded.sparse(0, Weight::Gate).unwrap(), a.sparse(0, Weight::Gate).unwrap());
    assert_eq!(loaded.sparse_info().unwrap(), a.sparse_info().unwrap());

    a.clear_sparse(0, Weight::Gate).unwrap();
    assert_eq!(a.sparse_info().unwrap(), SparseInfo { weights: Weight::Q.bit(), entries: 3 });
}

#[test]
fn sparse_entries_errors_change_nothing() {
    let s = tiny_shape();
    let mut a = Adapter::new(&s, "sp", 1.0).unwrap();
    let d = [1.0f32, 2.0];
    a.set_sparse(0, Weight::K, &[1, 2], &TensorRef::new(&d, &[2]).unwrap(), None).unwrap();
    let err = a.set_sparse(0, Weight::K, &[4, 3], &TensorRef::new(&d, &[2]).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(err.status, sys::S2FT_ERR_INVALID_ARGUMENT);
    assert!(!err.message.is_empty());
    let err = a.set_sparse(0, Weight::K, &[1, 1000], &TensorRef::new(&d, &[2]).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(a.sparse(0, Weight::K).unwrap().indices, vec![1, 2]);
    // A sparse entry on a structured line of the same weight is refused.
    let line_delta = vec![0.0f32; s.d_model as usize];
    a.set(0, Target::V, &[0], &TensorRef::matrix(&line_delta, 1, s.d_model as usize).unwrap(), None).unwrap();
    let err = a.set_sparse(0, Weight::V, &[1], &TensorRef::new(&d[..1], &[1]).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn sparse_entries_apply_then_remove_is_bit_exact() {
    let mut rng = Rng::new(12);
    let s = tiny_shape();
    let (qr, qc) = Weight::Q.dims(&s);
    let (gr, gc) = Weight::Gate.dims(&s);
    let (dr, dc) = Weight::Down.dims(&s);
    let q0 = rng.vec(qr * qc);
    let gate0 = rng.vec(gr * gc);
    let down0 = rng.vec(dr * dc);
    let (dq, dg) = (rng.vec(3), rng.vec(2));
    let mut a = Adapter::new(&s, "sp", 1.0).unwrap();
    a.set_sparse(1, Weight::Q, &[2, 9, 15], &TensorRef::new(&dq, &[3]).unwrap(), Some(&TensorRef::matrix(&q0, qr, qc).unwrap())).unwrap();
    a.set_sparse(0, Weight::Gate, &[0, 34], &TensorRef::new(&dg, &[2]).unwrap(), Some(&TensorRef::matrix(&gate0, gr, gc).unwrap())).unwrap();

    let ctx = Context::new().unwrap();
    let (mut q, mut gate, mut down) = (q0.clone(), gate0.clone(), down0.clone());
    let mut other_q = rng.vec(qr * qc);
    {
        let layers = vec![
            LayerWeights { gate: Some(TensorMut::matrix(&mut gate, gr, gc).unwrap()), ..Default::default() },
            LayerWeights { q: Some(TensorMut::matrix(&mut q, qr, qc).unwrap()), down: Some(TensorMut::matrix(&mut down, dr, dc).unwrap()), ..Default::default() },
        ];
        let mut model = Model::new(&ctx, &s, layers, None).unwrap();
        let scale = 0.75;
        model.apply(&a, ApplyOptions { scale: Some(scale), force: false }).unwrap();
        let mut want_q = q0.clone();
        for (i, &n) in [2usize, 9, 15].iter().enumerate() {
            want_q[n] = (q0[n] as f64 + scale * dq[i] as f64) as f32;
        }
        let mut want_gate = gate0.clone();
        for (i, &n) in [0usize, 34].iter().enumerate() {
            want_gate[n] = (gate0[n] as f64 + scale * dg[i] as f64) as f32;
        }
        let l1 = model.layer(1).unwrap();
        assert_eq!(bits(&l1.q.unwrap().to_f32_vec().unwrap()), bits(&want_q));
        assert_eq!(bits(&l1.down.unwrap().to_f32_vec().unwrap()), bits(&down0));
        assert_eq!(bits(&model.layer(0).unwrap().gate.unwrap().to_f32_vec().unwrap()), bits(&want_gate));
        model.remove().unwrap();
    }
    assert_eq!(bits(&q), bits(&q0));
    assert_eq!(bits(&gate), bits(&gate0));
    assert_eq!(bits(&down), bits(&down0));

    // Another base: the whole-weight fingerprint differs.
    let mut gate2 = gate0.clone();
    {
        let layers = vec![
            LayerWeights { gate: Some(TensorMut::matrix(&mut gate2, gr, gc).unwrap()), ..Default::default() },
            LayerWeights { q: Some(TensorMut::matrix(&mut other_q, qr, qc).unwrap()), ..Default::default() },
        ];
        let mut model = Model::new(&ctx, &s, layers, None).unwrap();
        assert_eq!(model.apply(&a, ApplyOptions::default()).unwrap_err().kind(), ErrorKind::Format);
    }
    // A model without the weight an entry needs is refused.
    let mut q3 = q0.clone();
    {
        let layers = vec![LayerWeights::default(), LayerWeights { q: Some(TensorMut::matrix(&mut q3, qr, qc).unwrap()), ..Default::default() }];
        let mut model = Model::new(&ctx, &s, layers, None).unwrap();
        assert_eq!(model.apply(&a, ApplyOptions::default()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    assert_eq!(bits(&q3), bits(&q0));
}

#[test]
fn sorsa_init_forward_backward_and_regularizer() {
    let mut rng = Rng::new(13);
    let (out, inp, r, t) = (6usize, 5usize, 3usize, 4usize);
    let w0 = rng.vec(out * inp);
    let ctx = Context::new().unwrap();
    let mut w = w0.clone();
    let (mut u, mut s, mut vt) = (vec![0.0f32; out * r], vec![0.0f32; r], vec![0.0f32; r * inp]);
    sorsa_init(&ctx, &mut TensorMut::matrix(&mut w, out, inp).unwrap(), r, &mut TensorMut::matrix(&mut u, out, r).unwrap(),
        &mut TensorMut::new(&mut s, &[r]).unwrap(), &mut TensorMut::matrix(&mut vt, r, inp).unwrap()).unwrap();
    assert!(s.windows(2).all(|p| p[0] >= p[1]) && s[r - 1] > 0.0, "singular values {s:?}");
    assert_ne!(w, w0);
    // A rank out of range is an InvalidArgument error and leaves w alone.
    let mut w_bad = w0.clone();
    let err = sorsa_init(&ctx, &mut TensorMut::matrix(&mut w_bad, out, inp).unwrap(), 9, &mut TensorMut::matrix(&mut u.clone(), out, r).unwrap(),
        &mut TensorMut::new(&mut s.clone(), &[r]).unwrap(), &mut TensorMut::matrix(&mut vt.clone(), r, inp).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(w_bad, w0);

    let (ur, sr, vtr, wr) = (TensorRef::matrix(&u, out, r).unwrap(), TensorRef::new(&s, &[r]).unwrap(), TensorRef::matrix(&vt, r, inp).unwrap(), TensorRef::matrix(&w, out, inp).unwrap());
    let x = rng.vec(t * inp);
    let xr = TensorRef::matrix(&x, t, inp).unwrap();
    let (mut y, mut h) = (vec![0.0f32; t * out], vec![0.0f32; t * r]);
    sorsa_forward(&ctx, &xr, &wr, &ur, &sr, &vtr, &mut TensorMut::matrix(&mut y, t, out).unwrap(), Some(&mut TensorMut::matrix(&mut h, t, r).unwrap())).unwrap();
    assert_close(&y, &matmul_nt(&x, &w0, t, out, inp), 1e-5, "sorsa forward vs x W^T");

    let dy = rng.vec(t * out);
    let (mut dx, mut du, mut ds, mut dvt) = (vec![f32::NAN; t * inp], vec![f32::NAN; out * r], vec![f32::NAN; r], vec![f32::NAN; r * inp]);
    sorsa_backward(&ctx, &xr, &wr, &ur, &sr, &vtr, Some(&TensorRef::matrix(&h, t, r).unwrap()), &TensorRef::matrix(&dy, t, out).unwrap(),
        Some(&mut TensorMut::matrix(&mut dx, t, inp).unwrap()), &mut TensorMut::matrix(&mut du, out, r).unwrap(),
        &mut TensorMut::new(&mut ds, &[r]).unwrap(), &mut TensorMut::matrix(&mut dvt, r, inp).unwrap(), Accumulate::default()).unwrap();
    assert!(dx.iter().chain(&du).chain(&ds).chain(&dvt).all(|v| v.is_finite()));
    // dx = dy W for the original weight.
    let w0t: Vec<f32> = (0..inp).flat_map(|j| (0..out).map(move |i| (i, j))).map(|(i, j)| w0[i * inp + j]).collect();
    assert_close(&dx, &matmul_nt(&dy, &w0t, t, inp, out), 1e-5, "sorsa dx vs dy W");
    // Recomputing h gives the same gradients.
    let (mut du2, mut ds2, mut dvt2) = (vec![0.0f32; out * r], vec![0.0f32; r], vec![0.0f32; r * inp]);
    sorsa_backward(&ctx, &xr, &wr, &ur, &sr, &vtr, None, &TensorRef::matrix(&dy, t, out).unwrap(), None,
        &mut TensorMut::matrix(&mut du2, out, r).unwrap(), &mut TensorMut::new(&mut ds2, &[r]).unwrap(),
        &mut TensorMut::matrix(&mut dvt2, r, inp).unwrap(), Accumulate::default()).unwrap();
    assert_close(&ds2, &ds.iter().map(|v| *v as f64).collect::<Vec<_>>(), 1e-6, "ds without h_saved");

    // The factors are orthonormal right after init: the regularizer is ~0.
    let value = sorsa_regularizer(&ctx, &ur, &vtr, 1.0, None, None, SorsaFlags::default()).unwrap();
    assert!(value.abs() < 1e-9, "regularizer {value}");
    let (mut gu, mut gvt) = (vec![f32::NAN; out * r], vec![f32::NAN; r * inp]);
    let value = sorsa_regularizer(&ctx, &ur, &vtr, 2.0, Some(&mut TensorMut::matrix(&mut gu, out, r).unwrap()),
        Some(&mut TensorMut::matrix(&mut gvt, r, inp).unwrap()), SorsaFlags { unsquared: true, accumulate: false }).unwrap();
    assert!(value.abs() < 1e-5 && gu.iter().chain(&gvt).all(|v| v.is_finite()), "unsquared {value}");
    let err = sorsa_regularizer(&ctx, &ur, &vtr, -1.0, None, None, SorsaFlags::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    // The decoupled step on a non-orthonormal u moves it toward orthonormal.
    let mut u2: Vec<f32> = u.iter().map(|v| v * 1.1).collect();
    let mut vt2 = vt.clone();
    let before = sorsa_regularizer(&ctx, &TensorRef::matrix(&u2, out, r).unwrap(), &vtr, 1.0, None, None, SorsaFlags::default()).unwrap();
    let step_value = sorsa_regularizer_step(&ctx, &mut TensorMut::matrix(&mut u2, out, r).unwrap(), &mut TensorMut::matrix(&mut vt2, r, inp).unwrap(), 0.01, SorsaFlags::default()).unwrap();
    assert!((step_value - 0.01 * before).abs() <= 1e-9 * before.max(1.0));
    let after = sorsa_regularizer(&ctx, &TensorRef::matrix(&u2, out, r).unwrap(), &TensorRef::matrix(&vt2, r, inp).unwrap(), 1.0, None, None, SorsaFlags::default()).unwrap();
    assert!(after < before, "{after} >= {before}");
}

#[test]
fn principal_statistics_then_select() {
    let mut rng = Rng::new(14);
    let s = tiny_shape();
    let ctx = Context::new().unwrap();
    let mut stats = Statistics::new(&ctx, &s).unwrap();
    let (dr, dc) = Weight::Down.dims(&s);
    let downs: Vec<Vec<f32>> = (0..2).map(|_| rng.vec(dr * dc)).collect();
    for (l, w) in downs.iter().enumerate() {
        stats.add_principal(l as i32, Target::Down, &TensorRef::matrix(w, dr, dc).unwrap(), 2).unwrap();
    }
    let err = stats.add_principal(0, Target::Down, &TensorRef::matrix(&downs[0], dr, dc).unwrap(), 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let scores = stats.get(0, Target::Down, StatKind::Principal).unwrap();
    assert_eq!(scores.len(), dc);
    let opts = SelectOptions { targets: 0, strategy: Strategy::Principal, ..SelectOptions::default() }.with_count(Target::Down, 2);
    let sel = Selection::select(&ctx, &s, &opts, Some(&stats)).unwrap();
    let picked = sel.indices(0, Target::Down, IndexKind::Units, IndexOrder::Base).unwrap();
    let mut order: Vec<usize> = (0..dc).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap());
    let mut want: Vec<i64> = order[..2].iter().map(|&c| c as i64).collect();
    want.sort_unstable();
    assert_eq!(picked, want);
}
