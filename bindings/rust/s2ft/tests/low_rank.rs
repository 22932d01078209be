//! Low-rank adapter entries through the safe API: set/get and info, SORSA's
//! update as a rank-2r entry, apply/remove on a model, and the errors.

mod common;

use common::{temp_path, Rng};
use s2ft::*;

fn tiny_shape() -> ModelShape {
    ModelShape { n_layers: 2, d_model: 5, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: 7 }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// C = A B in f64 for row-major A [m, k], B [k, n].
fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
        }
    }
    c
}

/// max |got - want| / max |want|.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs())) / scale
}

#[test]
fn low_rank_round_trip_and_info() {
    let mut rng = Rng::new(21);
    let s = tiny_shape();
    let mut a = Adapter::new(&s, "lr", 1.0).unwrap();
    assert_eq!(a.low_rank_info().unwrap(), LowRankInfo { weights: 0, entries: 0 });
    assert_eq!(a.low_rank(0, Weight::Q).unwrap(), None);
    let (qr, qc) = Weight::Q.dims(&s);
    let q = rng.vec(qr * qc);
    let (b, f) = (rng.vec(qr * 3), rng.vec(3 * qc));
    a.set_low_rank(1, Weight::Q, &TensorRef::matrix(&b, qr, 3).unwrap(), &TensorRef::matrix(&f, 3, qc).unwrap(), Some(&TensorRef::matrix(&q, qr, qc).unwrap())).unwrap();
    let (gr, gc) = Weight::Gate.dims(&s);
    let (bg, ag) = (rng.vec(gr), rng.vec(gc));
    a.set_low_rank(0, Weight::Gate, &TensorRef::matrix(&bg, gr, 1).unwrap(), &TensorRef::matrix(&ag, 1, gc).unwrap(), None).unwrap();

    let e = a.low_rank(1, Weight::Q).unwrap().unwrap();
    assert_eq!(e.rank, 3);
    assert_eq!(bits(&e.b), bits(&b));
    assert_eq!(bits(&e.a), bits(&f));
    assert_ne!(e.fingerprint, 0);
    let g = a.low_rank(0, Weight::Gate).unwrap().unwrap();
    assert_eq!((g.rank, bits(&g.b), bits(&g.a), g.fingerprint), (1, bits(&bg), bits(&ag), 0));
    assert_eq!(a.low_rank(0, Weight::Q).unwrap(), None);
    assert_eq!(a.low_rank_info().unwrap(), LowRankInfo { weights: Weight::Q.bit() | Weight::Gate.bit(), entries: 2 });
    assert_eq!(a.info().unwrap().targets, 0); // low-rank entries are not structured targets
    assert_eq!(a.sparse_info().unwrap(), SparseInfo::default());

    // The rank alone, and a copy into tensors of the caller's.
    assert_eq!(a.low_rank_into(1, Weight::Q, None, None).unwrap(), (3, e.fingerprint));
    let mut b2 = vec![0.0f32; qr * 3];
    assert_eq!(a.low_rank_into(1, Weight::Q, Some(&mut TensorMut::matrix(&mut b2, qr, 3).unwrap()), None).unwrap().0, 3);
    assert_eq!(bits(&b2), bits(&b));
    let err = a.low_rank_into(0, Weight::Q, Some(&mut TensorMut::matrix(&mut b2, qr, 3).unwrap()), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State);

    // Saved and loaded back (adapter file format v4) bit-exactly.
    let path = temp_path("low_rank.safetensors");
    a.save(&path).unwrap();
    let loaded = Adapter::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.low_rank(1, Weight::Q).unwrap(), a.low_rank(1, Weight::Q).unwrap());
    assert_eq!(loaded.low_rank(0, Weight::Gate).unwrap(), a.low_rank(0, Weight::Gate).unwrap());
    assert_eq!(loaded.low_rank_info().unwrap(), a.low_rank_info().unwrap());

    a.clear_low_rank(0, Weight::Gate).unwrap();
    a.clear_low_rank(0, Weight::K).unwrap(); // none: not an error
    assert_eq!(a.low_rank_info().unwrap(), LowRankInfo { weights: Weight::Q.bit(), entries: 1 });
}

#[test]
fn set_sorsa_is_a_rank_2r_entry() {
    let mut rng = Rng::new(22);
    let s = tiny_shape();
    let (rows, cols) = Weight::Down.dims(&s);
    let r = 2usize;
    let (u0, vt0) = (rng.vec(rows * r), rng.vec(r * cols));
    let s0: Vec<f32> = rng.vec(r).iter().map(|v| v.abs() + 0.5).collect();
    let u: Vec<f32> = u0.iter().map(|v| v + 0.1 * rng.uniform()).collect();
    let sv: Vec<f32> = s0.iter().map(|v| v + 0.1 * rng.uniform()).collect();
    let vt: Vec<f32> = vt0.iter().map(|v| v + 0.1 * rng.uniform()).collect();
    let base = rng.vec(rows * cols);
    let mut a = Adapter::new(&s, "sorsa", 1.0).unwrap();
    a.set_sorsa(0, Weight::Down, &TensorRef::matrix(&u0, rows, r).unwrap(), &TensorRef::new(&s0, &[r]).unwrap(),
        &TensorRef::matrix(&vt0, r, cols).unwrap(), &TensorRef::matrix(&u, rows, r).unwrap(), &TensorRef::matrix(&sv, 1, r).unwrap(),
        &TensorRef::matrix(&vt, r, cols).unwrap(), Some(&TensorRef::matrix(&base, rows, cols).unwrap())).unwrap();
    let e = a.low_rank(0, Weight::Down).unwrap().unwrap();
    assert_eq!(e.rank, 2 * r);
    assert_ne!(e.fingerprint, 0);
    let got = matmul(&e.b, &e.a, rows, 2 * r, cols);
    let mut want = vec![0.0f64; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            for p in 0..r {
                want[i * cols + j] += u[i * r + p] as f64 * sv[p] as f64 * vt[p * cols + j] as f64
                    - u0[i * r + p] as f64 * s0[p] as f64 * vt0[p * cols + j] as f64;
            }
        }
    }
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "b a vs u diag(s) vt - u0 diag(s0) vt0: relative error {err}");
    assert_eq!(a.low_rank_info().unwrap(), LowRankInfo { weights: Weight::Down.bit(), entries: 1 });

    // Factors of different ranks: Shape; not f32: DType; nothing changes.
    let err = a.set_sorsa(1, Weight::Down, &TensorRef::matrix(&u0[..rows], rows, 1).unwrap(), &TensorRef::new(&s0, &[r]).unwrap(),
        &TensorRef::matrix(&vt0, r, cols).unwrap(), &TensorRef::matrix(&u, rows, r).unwrap(), &TensorRef::new(&sv, &[r]).unwrap(),
        &TensorRef::matrix(&vt, r, cols).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shape);
    assert!(!err.message.is_empty());
    let u0_bf16: Vec<u16> = u0.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
    let err = a.set_sorsa(1, Weight::Down, &TensorRef::from_u16(&u0_bf16, DType::BF16, &[rows, r]).unwrap(), &TensorRef::new(&s0, &[r]).unwrap(),
        &TensorRef::matrix(&vt0, r, cols).unwrap(), &TensorRef::matrix(&u, rows, r).unwrap(), &TensorRef::new(&sv, &[r]).unwrap(),
        &TensorRef::matrix(&vt, r, cols).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DType);
    assert!(err.message.contains("f32"), "{}", err.message);
    assert_eq!(a.low_rank(1, Weight::Down).unwrap(), None);
}

#[test]
fn low_rank_apply_then_remove_restores_the_base() {
    let mut rng = Rng::new(23);
    let s = tiny_shape();
    let (qr, qc) = Weight::Q.dims(&s);
    let (ur, uc) = Weight::Up.dims(&s);
    let (dr, dc) = Weight::Down.dims(&s);
    let (q0, up0, down0) = (rng.vec(qr * qc), rng.vec(ur * uc), rng.vec(dr * dc));
    let (bq, aq) = (rng.vec(qr * 2), rng.vec(2 * qc));
    let (bu, au) = (rng.vec(ur * 3), rng.vec(3 * uc));
    let mut a = Adapter::new(&s, "lr", 1.0).unwrap();
    a.set_low_rank(1, Weight::Q, &TensorRef::matrix(&bq, qr, 2).unwrap(), &TensorRef::matrix(&aq, 2, qc).unwrap(), Some(&TensorRef::matrix(&q0, qr, qc).unwrap())).unwrap();
    a.set_low_rank(0, Weight::Up, &TensorRef::matrix(&bu, ur, 3).unwrap(), &TensorRef::matrix(&au, 3, uc).unwrap(), Some(&TensorRef::matrix(&up0, ur, uc).unwrap())).unwrap();

    let ctx = Context::new().unwrap();
    for scale in [None, Some(0.5)] {
        let (mut q, mut up, mut down) = (q0.clone(), up0.clone(), down0.clone());
        {
            let layers = vec![
                LayerWeights { up: Some(TensorMut::matrix(&mut up, ur, uc).unwrap()), ..Default::default() },
                LayerWeights { q: Some(TensorMut::matrix(&mut q, qr, qc).unwrap()), down: Some(TensorMut::matrix(&mut down, dr, dc).unwrap()), ..Default::default() },
            ];
            let mut model = Model::new(&ctx, &s, layers, None).unwrap();
            model.apply(&a, ApplyOptions { scale, force: false }).unwrap();
            let sc = scale.unwrap_or(1.0);
            for (got, w0, b, f, rows, k, cols, what) in [
                (model.layer(1).unwrap().q.unwrap().to_f32_vec().unwrap(), &q0, &bq, &aq, qr, 2, qc, "q"),
                (model.layer(0).unwrap().up.unwrap().to_f32_vec().unwrap(), &up0, &bu, &au, ur, 3, uc, "up"),
            ] {
                let want: Vec<f64> = matmul(b, f, rows, k, cols).iter().zip(w0.iter()).map(|(d, w)| *w as f64 + sc * d).collect();
                let got: Vec<f64> = got.iter().map(|v| *v as f64).collect();
                let err = rel_err(&got, &want);
                assert!(err <= 1e-5, "{what} at scale {sc}: relative error {err}");
            }
            assert_eq!(bits(&model.layer(1).unwrap().down.unwrap().to_f32_vec().unwrap()), bits(&down0));
            model.remove().unwrap();
        }
        assert_eq!(bits(&q), bits(&q0));
        assert_eq!(bits(&up), bits(&up0));
        assert_eq!(bits(&down), bits(&down0));
    }

    // Another base: the whole-weight fingerprint differs.
    let (mut q2, mut up2) = (q0.clone(), up0.clone());
    q2[0] += 1.0;
    {
        let layers = vec![
            LayerWeights { up: Some(TensorMut::matrix(&mut up2, ur, uc).unwrap()), ..Default::default() },
            LayerWeights { q: Some(TensorMut::matrix(&mut q2, qr, qc).unwrap()), ..Default::default() },
        ];
        let mut model = Model::new(&ctx, &s, layers, None).unwrap();
        assert_eq!(model.apply(&a, ApplyOptions::default()).unwrap_err().kind(), ErrorKind::Format);
    }
    assert_eq!(bits(&up2), bits(&up0));
}

#[test]
fn low_rank_errors_change_nothing() {
    let mut rng = Rng::new(24);
    let s = tiny_shape();
    let (kr, kc) = Weight::K.dims(&s);
    let (b, f) = (rng.vec(kr * 2), rng.vec(2 * kc));
    let mut a = Adapter::new(&s, "lr", 1.0).unwrap();
    a.set_low_rank(0, Weight::K, &TensorRef::matrix(&b, kr, 2).unwrap(), &TensorRef::matrix(&f, 2, kc).unwrap(), None).unwrap();

    // Wrong shapes: b's rows, a's rank, the base.
    let err = a.set_low_rank(0, Weight::K, &TensorRef::matrix(&b[..2], 1, 2).unwrap(), &TensorRef::matrix(&f, 2, kc).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shape);
    assert_eq!(err.status, sys::S2FT_ERR_SHAPE);
    assert!(!err.message.is_empty());
    let err = a.set_low_rank(0, Weight::K, &TensorRef::matrix(&b, kr, 2).unwrap(), &TensorRef::matrix(&f[..kc], 1, kc).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shape);
    let wrong_base = vec![0.0f32; kr * kc];
    let err = a.set_low_rank(0, Weight::K, &TensorRef::matrix(&b, kr, 2).unwrap(), &TensorRef::matrix(&f, 2, kc).unwrap(), Some(&TensorRef::matrix(&wrong_base, kc, kr).unwrap())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shape);
    // A value not finite.
    let mut bad = b.clone();
    bad[3] = f32::INFINITY;
    let err = a.set_low_rank(0, Weight::K, &TensorRef::matrix(&bad, kr, 2).unwrap(), &TensorRef::matrix(&f, 2, kc).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message.contains("non-finite"), "{}", err.message);
    let e = a.low_rank(0, Weight::K).unwrap().unwrap();
    assert_eq!((bits(&e.b), bits(&e.a)), (bits(&b), bits(&f)));

    // Only one factor cannot be written with the safe API (both are
    // references); the C call refuses it with a message naming the factor.
    let fr = TensorRef::matrix(&f, 2, kc).unwrap();
    // SAFETY: a live adapter no model holds; `a` is the only factor given.
    let status = unsafe { sys::s2ft_adapter_set_low_rank(a.as_raw() as *mut _, 0, Weight::K.to_raw(), std::ptr::null(), fr.as_raw(), std::ptr::null()) };
    assert_eq!(status, sys::S2FT_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("b is NULL"), "{}", last_error());
    assert_eq!(a.low_rank(0, Weight::K).unwrap().unwrap().rank, 2);

    // A low-rank entry where sparse entries are, sparse entries where a
    // low-rank entry is, and a low-rank entry beside a structured one.
    let (gr, gc) = Weight::Gate.dims(&s);
    let ones = vec![1.0f32; gr.max(gc) * 2];
    a.set_sparse(1, Weight::Gate, &[3, 4], &TensorRef::new(&ones[..2], &[2]).unwrap(), None).unwrap();
    let err = a.set_low_rank(1, Weight::Gate, &TensorRef::matrix(&ones[..gr], gr, 1).unwrap(), &TensorRef::matrix(&ones[..gc], 1, gc).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message.contains("sparse entries"), "{}", err.message);
    assert_eq!(a.low_rank(1, Weight::Gate).unwrap(), None);
    let err = a.set_sparse(0, Weight::K, &[0], &TensorRef::new(&ones[..1], &[1]).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let d = s.d_model as usize;
    a.set(1, Target::V, &[0], &TensorRef::matrix(&ones[..d], 1, d).unwrap(), None).unwrap();
    let (vr, vc) = Weight::V.dims(&s);
    let err = a.set_low_rank(1, Weight::V, &TensorRef::matrix(&ones[..vr], vr, 1).unwrap(), &TensorRef::matrix(&ones[..vc], 1, vc).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message.contains("structured entry"), "{}", err.message);
    assert_eq!(a.low_rank_info().unwrap(), LowRankInfo { weights: Weight::K.bit(), entries: 1 });
}
