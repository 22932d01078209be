//! Behaviour of the safe API against plain Rust (f64) references.

mod common;

use common::{assert_close, matmul_nt, temp_path, Rng};
use s2ft::*;

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// A SwiGLU FFN in f64: y = (silu(x gate^T) * (x up^T)) down^T.
fn swiglu(x: &[f32], gate: &[f32], up: &[f32], down: &[f32], t: usize, d: usize, f: usize) -> Vec<f64> {
    let g = matmul_nt(x, gate, t, f, d);
    let u = matmul_nt(x, up, t, f, d);
    let h: Vec<f32> = g.iter().zip(&u).map(|(a, b)| (silu(*a) * b) as f32).collect();
    matmul_nt(&h, down, t, d, f)
}

#[test]
fn select_then_permute_keeps_the_ffn_and_o_proj_function() {
    let mut rng = Rng::new(1);
    let (d, f, t, heads, kv, hd) = (6usize, 7usize, 5usize, 4usize, 2usize, 2usize);
    let shape = ModelShape { n_layers: 1, d_model: d as i32, n_heads: heads as i32, n_kv_heads: kv as i32, head_dim: hd as i32, d_ff: f as i32 };
    let ctx = Context::new().unwrap();
    let opts = SelectOptions { seed: 3, ..Default::default() }.with_count(Target::Down, 3).with_count(Target::O, 1);
    let sel = Selection::select(&ctx, &shape, &opts, None).unwrap();
    let chosen = sel.indices(0, Target::Down, IndexKind::Units, IndexOrder::Base).unwrap();
    assert_eq!(chosen.len(), 3);

    let x = rng.vec(t * d);
    let a = rng.vec(t * heads * hd);
    let (gate0, up0, down0, o0) = (rng.vec(f * d), rng.vec(f * d), rng.vec(d * f), rng.vec(d * heads * hd));
    let (mut gate, mut up, mut down, mut o) = (gate0.clone(), up0.clone(), down0.clone(), o0.clone());
    let mut layer = LayerWeights {
        gate: Some(TensorMut::matrix(&mut gate, f, d).unwrap()),
        up: Some(TensorMut::matrix(&mut up, f, d).unwrap()),
        down: Some(TensorMut::matrix(&mut down, d, f).unwrap()),
        o: Some(TensorMut::matrix(&mut o, d, heads * hd).unwrap()),
        ..Default::default()
    };
    permute(&ctx, &sel, 0, &mut layer, Direction::Forward).unwrap();
    drop(layer);

    // The FFN computes the same function; the selected channels are first.
    let want = swiglu(&x, &gate0, &up0, &down0, t, d, f);
    let got: Vec<f32> = swiglu(&x, &gate, &up, &down, t, d, f).iter().map(|v| *v as f32).collect();
    assert_close(&got, &want, 1e-5, "permuted ffn");
    assert_eq!(sel.range(0, Target::Down).unwrap(), (0, 3));
    for (p, &c) in chosen.iter().enumerate() {
        for r in 0..d {
            assert_eq!(down[r * f + p], down0[r * f + c as usize]);
        }
    }

    // o_proj: permuting its input columns by the head permutation and the
    // input a the same way gives the same output.
    let perm = sel.permutation(0, PermKind::Heads).unwrap();
    let mut a_perm = vec![0.0f32; a.len()];
    for row in 0..t {
        for (p, &h) in perm.iter().enumerate() {
            for j in 0..hd {
                a_perm[row * heads * hd + p * hd + j] = a[row * heads * hd + h as usize * hd + j];
            }
        }
    }
    let want_o = matmul_nt(&a, &o0, t, d, heads * hd);
    let got_o: Vec<f32> = matmul_nt(&a_perm, &o, t, d, heads * hd).iter().map(|v| *v as f32).collect();
    assert_close(&got_o, &want_o, 1e-5, "permuted o_proj");

    // Inverse restores bit-exactly.
    let mut layer = LayerWeights {
        gate: Some(TensorMut::matrix(&mut gate, f, d).unwrap()),
        up: Some(TensorMut::matrix(&mut up, f, d).unwrap()),
        down: Some(TensorMut::matrix(&mut down, d, f).unwrap()),
        o: Some(TensorMut::matrix(&mut o, d, heads * hd).unwrap()),
        ..Default::default()
    };
    permute(&ctx, &sel, 0, &mut layer, Direction::Inverse).unwrap();
    drop(layer);
    assert_eq!((gate, up, down, o), (gate0, up0, down0, o0));
}

#[test]
fn backward_partial_matches_a_float64_reference() {
    let mut rng = Rng::new(2);
    let ctx = Context::new().unwrap();
    let (t, inn, out) = (5usize, 7usize, 6usize);
    let w = rng.vec(out * inn);
    let x = rng.vec(t * inn);
    let dy = rng.vec(t * out);
    let lines = vec![4i64, 0, 5];
    let k = lines.len();
    // dx = dy W (full), computed as dy (W^T)^T.
    let mut wt = vec![0.0f32; inn * out];
    for r in 0..out {
        for c in 0..inn {
            wt[c * out + r] = w[r * inn + c];
        }
    }
    let want_dx = matmul_nt(&dy, &wt, t, inn, out);

    // Columns: dw = dy^T x_S, [out, k], with x_S saved by the forward.
    let slice = Slice::Indices { axis: Axis::Columns, lines: lines.clone() };
    let (mut y, mut xs) = (vec![f32::NAN; t * out], vec![f32::NAN; t * k]);
    forward_partial(&ctx, &slice, &TensorRef::matrix(&x, t, inn).unwrap(), &TensorRef::matrix(&w, out, inn).unwrap(), &mut TensorMut::matrix(&mut y, t, out).unwrap(), Some(&mut TensorMut::matrix(&mut xs, t, k).unwrap())).unwrap();
    assert_close(&y, &matmul_nt(&x, &w, t, out, inn), 1e-5, "y");
    let (mut dx, mut dw) = (vec![f32::NAN; t * inn], vec![f32::NAN; out * k]);
    backward_partial(&ctx, &slice, &TensorRef::matrix(&w, out, inn).unwrap(), &TensorRef::matrix(&xs, t, k).unwrap(), &TensorRef::matrix(&dy, t, out).unwrap(), Some(&mut TensorMut::matrix(&mut dx, t, inn).unwrap()), &mut TensorMut::matrix(&mut dw, out, k).unwrap(), Accumulate::default()).unwrap();
    let mut want_dw = vec![0.0f64; out * k];
    for r in 0..out {
        for (j, &c) in lines.iter().enumerate() {
            want_dw[r * k + j] = (0..t).map(|s| dy[s * out + r] as f64 * x[s * inn + c as usize] as f64).sum();
        }
    }
    assert_close(&dw, &want_dw, 1e-5, "column dw");
    assert_close(&dx, &want_dx, 1e-5, "dx");

    // Rows: dw = dy[:, S]^T x, [k, in]; accumulate dw onto itself doubles it.
    let slice = Slice::Indices { axis: Axis::Rows, lines: lines.clone() };
    let mut dw = vec![f32::NAN; k * inn];
    for acc in [false, true] {
        backward_partial(&ctx, &slice, &TensorRef::matrix(&w, out, inn).unwrap(), &TensorRef::matrix(&x, t, inn).unwrap(), &TensorRef::matrix(&dy, t, out).unwrap(), None, &mut TensorMut::matrix(&mut dw, k, inn).unwrap(), Accumulate { dw: acc, dx: false }).unwrap();
    }
    let mut want_dw = vec![0.0f64; k * inn];
    for (j, &r) in lines.iter().enumerate() {
        for c in 0..inn {
            want_dw[j * inn + c] = 2.0 * (0..t).map(|s| dy[s * out + r as usize] as f64 * x[s * inn + c] as f64).sum::<f64>();
        }
    }
    assert_close(&dw, &want_dw, 1e-5, "row dw accumulated");
}

#[test]
fn adamw_step_matches_the_formula() {
    let mut rng = Rng::new(3);
    let ctx = Context::new().unwrap();
    let (out, inn) = (4usize, 5usize);
    let w0 = rng.vec(out * inn);
    let g = rng.vec(2 * inn);
    let opts = OptimizerOptions { weight_decay: 0.01, ..Default::default() };
    let (lr, b1, b2, eps, wd) = (0.1f64, opts.beta1, opts.beta2, opts.eps, opts.weight_decay);
    let mut w = w0.clone();
    {
        let mut opt = Optimizer::new(&ctx, &opts).unwrap();
        let slice = Slice::Range { axis: Axis::Rows, begin: 1, count: 2 };
        opt.add_param(TensorMut::matrix(&mut w, out, inn).unwrap(), &slice).unwrap();
        let norm = opt.step(lr, &[TensorRef::matrix(&g, 2, inn).unwrap()]).unwrap();
        let want_norm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - want_norm).abs() < 1e-5 * want_norm);
        assert_eq!(opt.weight(0).unwrap().shape(), vec![out, inn]);
        assert!(opt.weight(1).is_err());
    }
    let mut want = Vec::new();
    for (i, &w0v) in w0.iter().enumerate() {
        let row = i / inn;
        if !(1..3).contains(&row) {
            want.push(w0v as f64);
            continue;
        }
        let gv = g[(row - 1) * inn + i % inn] as f64;
        let m_hat = (1.0 - b1) * gv / (1.0 - b1);
        let v_hat = (1.0 - b2) * gv * gv / (1.0 - b2);
        want.push(w0v as f64 * (1.0 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps));
    }
    assert_close(&w, &want, 1e-5, "adamw");
    for (i, (a, b)) in w.iter().zip(&w0).enumerate() {
        if !(1..3).contains(&(i / inn)) {
            assert_eq!(a, b, "untrained row changed at {i}");
        }
    }
}


fn tiny_shape() -> ModelShape {
    ModelShape { n_layers: 2, d_model: 5, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: 7 }
}

/// An adapter with a Down entry in layer 1 on `lines`, fingerprinted
/// against `base` ([d_model, d_ff]).
fn down_adapter(rng: &mut Rng, name: &str, lines: &[i64], base: &[f32]) -> (Adapter, Vec<f32>) {
    let s = tiny_shape();
    let delta = rng.vec(s.d_model as usize * lines.len());
    let mut a = Adapter::new(&s, name, 1.0).unwrap();
    a.set(1, Target::Down, lines, &TensorRef::matrix(&delta, s.d_model as usize, lines.len()).unwrap(), Some(&TensorRef::matrix(base, s.d_model as usize, s.d_ff as usize).unwrap())).unwrap();
    (a, delta)
}

/// The base weight plus scale * delta on the given columns, in f64.
fn merged(base: &[f32], cols: usize, parts: &[(&[i64], &[f32], f64)]) -> Vec<f64> {
    let mut w: Vec<f64> = base.iter().map(|v| *v as f64).collect();
    let rows = base.len() / cols;
    for (lines, delta, scale) in parts {
        for r in 0..rows {
            for (j, &c) in lines.iter().enumerate() {
                w[r * cols + c as usize] += scale * delta[r * lines.len() + j] as f64;
            }
        }
    }
    w
}

#[test]
fn adapter_save_load_fuse_and_switch() {
    let mut rng = Rng::new(4);
    let s = tiny_shape();
    let (d, f) = (s.d_model as usize, s.d_ff as usize);
    let base = rng.vec(d * f);
    let (a, da) = down_adapter(&mut rng, "a", &[1, 4], &base);
    let (b, db) = down_adapter(&mut rng, "b", &[4, 6], &base);

    // Save and load round-trip everything.
    let path = temp_path("a.safetensors");
    a.save(&path).unwrap();
    let loaded = Adapter::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.name(), "a");
    assert_eq!(loaded.info().unwrap(), a.info().unwrap());
    assert_eq!(loaded.info().unwrap().targets, Target::Down.bit());
    assert_eq!(loaded.lines(1, Target::Down).unwrap(), a.lines(1, Target::Down).unwrap());
    assert!(a.lines(1, Target::Down).unwrap().1.iter().all(|&p| p != 0));
    assert_eq!(loaded.delta_f32(1, Target::Down).unwrap(), da);
    assert_eq!(loaded.lines(0, Target::Down).unwrap().0, Vec::<i64>::new());

    // Fuse: union of lines, weighted sum where they overlap.
    let fused = Adapter::fuse(&[&a, &b], Some(&[1.0, 0.5])).unwrap();
    assert_eq!(fused.name(), "a+b");
    assert_eq!(fused.lines(1, Target::Down).unwrap().0, vec![1, 4, 6]);
    let fd = fused.delta_f32(1, Target::Down).unwrap();
    let want = merged(&vec![0.0; d * f], f, &[(&[1, 4], &da, 1.0), (&[4, 6], &db, 0.5)]);
    let want_cols: Vec<f64> = (0..d).flat_map(|r| [1usize, 4, 6].map(|c| want[r * f + c])).collect();
    assert_close(&fd, &want_cols, 1e-6, "fused delta");

    // Switch a -> b equals remove a then apply b, bit for bit.
    let ctx = Context::new().unwrap();
    let (mut w_switch, mut w_ref) = (base.clone(), base.clone());
    let layer0: Vec<f32> = rng.vec(d * f);
    let (mut l0a, mut l0b) = (layer0.clone(), layer0.clone());
    {
        let layers = vec![
            LayerWeights { down: Some(TensorMut::matrix(&mut l0a, d, f).unwrap()), ..Default::default() },
            LayerWeights { down: Some(TensorMut::matrix(&mut w_switch, d, f).unwrap()), ..Default::default() },
        ];
        let mut m = Model::new(&ctx, &s, layers, None).unwrap();
        m.apply(&a, ApplyOptions::default()).unwrap();
        assert_eq!(m.apply(&b, ApplyOptions::default()).unwrap_err().kind(), ErrorKind::State);
        m.switch(&b, ApplyOptions { scale: Some(0.5), force: false }).unwrap();
        let (applied, scale) = m.applied().unwrap().unwrap();
        assert_eq!((applied.name(), scale), ("b".to_string(), 0.5));
    }
    {
        let layers = vec![
            LayerWeights { down: Some(TensorMut::matrix(&mut l0b, d, f).unwrap()), ..Default::default() },
            LayerWeights { down: Some(TensorMut::matrix(&mut w_ref, d, f).unwrap()), ..Default::default() },
        ];
        let mut m = Model::new(&ctx, &s, layers, None).unwrap();
        m.apply(&a, ApplyOptions::default()).unwrap();
        m.remove().unwrap();
        assert!(m.applied().unwrap().is_none());
        m.apply(&b, ApplyOptions { scale: Some(0.5), force: false }).unwrap();
    }
    assert_eq!(w_switch.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), w_ref.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    assert_close(&w_switch, &merged(&base, f, &[(&[4, 6], &db, 0.5)]), 1e-6, "switched weights");
    assert_eq!(l0a, layer0);

    // Remove restores the base bit-exactly; a foreign base is a Format error.
    let mut w = base.clone();
    let mut other = rng.vec(d * f);
    {
        let layers = vec![LayerWeights::default(), LayerWeights { down: Some(TensorMut::matrix(&mut w, d, f).unwrap()), ..Default::default() }];
        let mut m = Model::new(&ctx, &s, layers, None).unwrap();
        m.apply(&fused, ApplyOptions::default()).unwrap();
        m.remove().unwrap();
        let layers = vec![LayerWeights::default(), LayerWeights { down: Some(TensorMut::matrix(&mut other, d, f).unwrap()), ..Default::default() }];
        let mut m2 = Model::new(&ctx, &s, layers, None).unwrap();
        let err = m2.apply(&a, ApplyOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        m2.apply(&a, ApplyOptions { scale: None, force: true }).unwrap();
    }
    assert_eq!(w, base);
}

#[test]
fn mixed_forward_matches_merged_weights() {
    let mut rng = Rng::new(5);
    let s = tiny_shape();
    let (d, f, t) = (s.d_model as usize, s.d_ff as usize, 6usize);
    let base = rng.vec(d * f);
    let (a, da) = down_adapter(&mut rng, "a", &[0, 3], &base);
    let (b, db) = down_adapter(&mut rng, "b", &[3, 5, 6], &base);
    let x = rng.vec(t * f);
    let ctx = Context::new().unwrap();
    let mut y = vec![f32::NAN; t * d];
    let offsets = [0i64, 2, 3, 6];
    let segs = [0i32, -1, 1];
    forward_mixed(&ctx, 1, Target::Down, &TensorRef::matrix(&x, t, f).unwrap(), &TensorRef::matrix(&base, d, f).unwrap(), None, &[&a, &b], Some(&[1.0, 0.5]), &offsets, &segs, &mut TensorMut::matrix(&mut y, t, d).unwrap()).unwrap();
    let wa = merged(&base, f, &[(&[0, 3], &da, 1.0)]);
    let wb = merged(&base, f, &[(&[3, 5, 6], &db, 0.5)]);
    let base64: Vec<f64> = base.iter().map(|v| *v as f64).collect();
    for (j, w) in [&wa, &base64, &wb].iter().enumerate() {
        for row in offsets[j] as usize..offsets[j + 1] as usize {
            for o in 0..d {
                let want: f64 = (0..f).map(|c| x[row * f + c] as f64 * w[o * f + c]).sum();
                assert!((y[row * d + o] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "y[{row}, {o}]");
            }
        }
    }
    // Rust-side length checks name the argument.
    let err = forward_mixed(&ctx, 1, Target::Down, &TensorRef::matrix(&x, t, f).unwrap(), &TensorRef::matrix(&base, d, f).unwrap(), None, &[&a], Some(&[1.0, 0.5]), &offsets, &segs, &mut TensorMut::matrix(&mut y, t, d).unwrap()).unwrap_err();
    assert!(err.message.contains("scales"), "{err}");
}

#[test]
fn errors_carry_the_library_status_and_message() {
    let ctx = Context::new().unwrap();
    let (x, w) = (vec![1.0f32; 3 * 4], vec![1.0f32; 5 * 4]);
    let mut y = vec![0.0f32; 3 * 6]; // should be [3, 5]
    let slice = Slice::Range { axis: Axis::Columns, begin: 0, count: 1 };
    clear_error();
    let err = forward_partial(&ctx, &slice, &TensorRef::matrix(&x, 3, 4).unwrap(), &TensorRef::matrix(&w, 5, 4).unwrap(), &mut TensorMut::matrix(&mut y, 3, 6).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Shape);
    assert_eq!(err.status, -2);
    assert!(!err.message.is_empty());
    assert_eq!(err.message, last_error());
    assert!(err.message.contains('y'), "{}", err.message);
    assert!(err.to_string().contains(&err.message));

    let err = ModelShape { n_layers: 0, d_model: 4, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: 3 }.check().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message.contains("n_layers"), "{}", err.message);

    let err = Selection::load(temp_path("does-not-exist.json")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);

    let err = forward_partial(&ctx, &Slice::Range { axis: Axis::Columns, begin: 9, count: 1 }, &TensorRef::matrix(&x, 3, 4).unwrap(), &TensorRef::matrix(&w, 5, 4).unwrap(), &mut TensorMut::matrix(&mut y[..15], 3, 5).unwrap(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    // Checks made in Rust before calling C use the same codes.
    assert_eq!(TensorRef::new(&x, &[4, 4]).unwrap_err().kind(), ErrorKind::Shape);
    assert_eq!(TensorRef::new(&x, &[1, 1, 1, 1, 1]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(Adapter::new(&tiny_shape(), "a\0b", 1.0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(Context::with_options(&ContextOptions { device: Device::Cuda(0), num_threads: 0 }).err().map(|e| e.kind()).filter(|k| *k != ErrorKind::Unsupported), None);
    assert_eq!(ErrorKind::from_status(-1234), ErrorKind::Other(-1234));
}

#[test]
fn selection_and_statistics_accessors() {
    let mut rng = Rng::new(6);
    let s = tiny_shape();
    let ctx = Context::new().unwrap();
    let mut stats = Statistics::new(&ctx, &s).unwrap();
    for layer in 0..2 {
        stats.add_weight(layer, Target::Up, &TensorRef::matrix(&rng.vec(7 * 5), 7, 5).unwrap()).unwrap();
        let x = rng.vec(3 * 7);
        let dy = rng.vec(3 * 5);
        stats.add_gradient(layer, Target::Down, &TensorRef::matrix(&x, 3, 7).unwrap(), &TensorRef::matrix(&dy, 3, 5).unwrap()).unwrap();
    }
    assert_eq!(stats.get(1, Target::Up, StatKind::Weight).unwrap().len(), 7);
    assert_eq!(stats.get(0, Target::Down, StatKind::Activation).unwrap_err().kind(), ErrorKind::State);
    let opts = SelectOptions { strategy: Strategy::Weight, order: Order::Smallest, allocation: Allocation::Global, targets: 0, ..Default::default() }.with_count(Target::Up, 4);
    let sel = Selection::select(&ctx, &s, &opts, Some(&stats)).unwrap();
    assert_eq!(sel.shape().unwrap(), s);
    assert_eq!(sel.targets().unwrap(), Target::Up.bit());
    let total: usize = (0..2).map(|l| sel.indices(l, Target::Up, IndexKind::Lines, IndexOrder::Permuted).unwrap().len()).sum();
    assert_eq!(total, 4);
    let path = temp_path("sel.json");
    sel.save(&path).unwrap();
    let back = Selection::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    for l in 0..2 {
        assert_eq!(back.permutation(l, PermKind::Channels).unwrap(), sel.permutation(l, PermKind::Channels).unwrap());
    }
    // Explicit units, single heads under GQA: the O range is not contiguous.
    let sel = Selection::from_units(&s, HeadGranularity::Single, [&[1, 1], &[], &[], &[]]).unwrap();
    assert_eq!(sel.indices(0, Target::O, IndexKind::Lines, IndexOrder::Base).unwrap(), vec![2, 3]);
    assert!(Selection::from_units(&s, HeadGranularity::Single, [&[1], &[], &[], &[]]).is_err());
    assert_eq!(Context::new().unwrap().device().unwrap(), Device::Cpu);
    assert_eq!(version_string(), format!("{}.{}.{}", s2ft::sys::S2FT_VERSION_MAJOR, s2ft::sys::S2FT_VERSION_MINOR, s2ft::sys::S2FT_VERSION_PATCH));
}
