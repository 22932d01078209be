//! Checkpoints, models made from them, and adapter files applied to them,
//! on a small checkpoint folder the tests write (and on stories260K when
//! the test data is present).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{stories260k, temp_dir, tiny_checkpoint, weight_name, write_safetensors, Rng, Stored};
use s2ft::*;

const SHAPE: ModelShape = ModelShape { n_layers: 2, d_model: 8, n_heads: 4, n_kv_heads: 2, head_dim: 2, d_ff: 12 };

/// An adapter with random deltas on `down` columns and `v` rows of every
/// layer, fingerprinted against the checkpoint's weights, saved to `path`.
fn make_adapter(ckpt: &Checkpoint, name: &str, down: &[i64], v: &[i64], seed: u64, path: &Path) -> Adapter {
    let shape = ckpt.shape().unwrap();
    let d = shape.d_model as usize;
    let mut rng = Rng::new(seed);
    let mut a = Adapter::new(&shape, name, 1.0).unwrap();
    for l in 0..shape.n_layers as usize {
        let base = ckpt.tensor(&weight_name(l, Target::Down)).unwrap();
        let delta = rng.vec(d * down.len());
        a.set(l as i32, Target::Down, down, &TensorRef::matrix(&delta, d, down.len()).unwrap(), Some(&base)).unwrap();
        let base = ckpt.tensor(&weight_name(l, Target::V)).unwrap();
        let delta = rng.vec(v.len() * d);
        a.set(l as i32, Target::V, v, &TensorRef::matrix(&delta, v.len(), d).unwrap(), Some(&base)).unwrap();
    }
    a.set_meta("base_model", "tiny").unwrap();
    a.save(path).unwrap();
    a
}

/// What merging `delta` into (layer, target) at `scale` gives, per element:
/// `W[line] + scale * delta` in double, rounded once to f32.
fn merged(base: &[f32], a: &Adapter, layer: i32, target: Target, scale: f64, rows: usize, cols: usize) -> Vec<f32> {
    let mut w = base.to_vec();
    let lines = a.lines(layer, target).unwrap().0;
    let delta = a.delta_f32(layer, target).unwrap();
    let k = lines.len();
    for (j, &line) in lines.iter().enumerate() {
        let line = line as usize;
        match target {
            Target::O | Target::Down => {
                for r in 0..rows {
                    w[r * cols + line] = (w[r * cols + line] as f64 + scale * delta[r * k + j] as f64) as f32;
                }
            }
            Target::V | Target::Up => {
                for c in 0..cols {
                    w[line * cols + c] = (w[line * cols + c] as f64 + scale * delta[j * cols + c] as f64) as f32;
                }
            }
        }
    }
    w
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn views_read_the_values_that_were_written() {
    let dir = temp_dir("ckpt-views");
    let written = tiny_checkpoint(&dir, &SHAPE, 1);
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert_eq!(ckpt.shape().unwrap(), SHAPE);
    assert!(ckpt.config().unwrap().contains("\"model_type\": \"llama\""));
    assert_eq!(ckpt.files().unwrap(), vec!["model.safetensors"]);
    // 7 projections and a norm per layer, the embedding, the I64 buffer.
    assert_eq!(ckpt.tensor_count(), 2 * 8 + 2);
    let infos: BTreeMap<&str, TensorInfo<'_>> = ckpt.tensors().map(|i| (i.name, i)).collect();
    assert_eq!(infos.len(), ckpt.tensor_count());
    let down = &infos["model.layers.1.mlp.down_proj.weight"];
    assert_eq!((down.dtype, down.shape.clone(), down.nbytes), ("F32", vec![8, 12], 8 * 12 * 4));
    assert_eq!(infos["model.embed_tokens.weight"].dtype, "BF16");
    assert_eq!(infos["model.rotary_buffer"].shape, vec![3]);

    for (name, values) in &written {
        let t = ckpt.tensor(name).unwrap();
        assert_eq!(t.shape(), infos[name.as_str()].shape, "{name}");
        assert_eq!(bits(&t.to_f32_vec()), bits(values), "{name}");
    }
    let v = ckpt.tensor("model.layers.0.self_attn.v_proj.weight").unwrap();
    assert_eq!((v.dtype(), v.len()), (DType::F32, 4 * 8));
    assert_eq!(v.as_f32().unwrap(), &written["model.layers.0.self_attn.v_proj.weight"][..]);
    assert!(v.as_u16().is_none());
    let embed = ckpt.tensor("model.embed_tokens.weight").unwrap();
    assert_eq!(embed.dtype(), DType::BF16);
    assert_eq!(embed.as_u16().unwrap()[1], (written["model.embed_tokens.weight"][1].to_bits() >> 16) as u16);
    assert_eq!(ckpt.tensor_data("model.embed_tokens.weight").unwrap().len(), 16 * 8 * 2);

    // Other dtypes only as bytes; unknown names are argument errors.
    assert_eq!(ckpt.tensor("model.rotary_buffer").unwrap_err().kind(), ErrorKind::DType);
    let raw = ckpt.tensor_data("model.rotary_buffer").unwrap();
    let ints: Vec<i64> = raw.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(ints, vec![7, -1, 42]);
    let e = ckpt.tensor("model.layers.9.mlp.down_proj.weight").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message.contains("model.layers.9"), "{}", e.message);
    assert_eq!(ckpt.tensor_info(99).unwrap_err().kind(), ErrorKind::InvalidArgument);
    drop(ckpt);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_single_file_has_tensors_but_no_config() {
    let dir = temp_dir("ckpt-one-file");
    let file = dir.join("one.safetensors");
    write_safetensors(&file, &[Stored::f32("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
    let ckpt = Checkpoint::open(&file).unwrap();
    assert_eq!(ckpt.config(), None);
    assert_eq!(ckpt.shape().unwrap_err().kind(), ErrorKind::State);
    assert_eq!(ckpt.tensor("w").unwrap().as_f32().unwrap(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    drop(ckpt);

    assert_eq!(Checkpoint::open(dir.join("missing")).unwrap_err().kind(), ErrorKind::Io);
    std::fs::write(dir.join("bad.safetensors"), b"\x10\0\0\0\0\0\0\0{not json}      ").unwrap();
    assert_eq!(Checkpoint::open(dir.join("bad.safetensors")).unwrap_err().kind(), ErrorKind::Format);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn write_then_reopen_round_trips_replacements_and_view_writes() {
    let dir = temp_dir("ckpt-write");
    let src = dir.join("src");
    let written = tiny_checkpoint(&src, &SHAPE, 2);
    std::fs::write(src.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(src.join("notes.txt"), "hello").unwrap();
    let mut ckpt = Checkpoint::open(&src).unwrap();

    // A write through a view changes this process's copy, not the file.
    let o_name = weight_name(0, Target::O);
    ckpt.tensor_mut(&o_name).unwrap().as_f32_mut().unwrap()[5] = 123.5;
    assert_eq!(ckpt.tensor(&o_name).unwrap().as_f32().unwrap()[5], 123.5);
    assert_eq!(Checkpoint::open(&src).unwrap().tensor(&o_name).unwrap().as_f32().unwrap()[5], written[&o_name][5]);

    // A replacement in f32 for the F32 down_proj, and one in bf16 bits for
    // the BF16 embedding.
    let down_name = weight_name(1, Target::Down);
    let new_down: Vec<f32> = (0..8 * 12).map(|i| i as f32 * 0.5).collect();
    let new_embed: Vec<u16> = (0..16 * 8).map(|i| (((i % 5) as f32).to_bits() >> 16) as u16).collect();
    let out = dir.join("out");
    ckpt.write(
        &out,
        &[
            (down_name.as_str(), TensorRef::matrix(&new_down, 8, 12).unwrap()),
            ("model.embed_tokens.weight", TensorRef::from_u16(&new_embed, DType::BF16, &[16, 8]).unwrap()),
        ],
        &WriteOptions::new().exclude("notes.txt"),
    )
    .unwrap();
    assert!(out.join("tokenizer.json").exists());
    assert!(!out.join("notes.txt").exists());
    assert_eq!(std::fs::read(out.join("config.json")).unwrap(), std::fs::read(src.join("config.json")).unwrap());
    let back = Checkpoint::open(&out).unwrap();
    assert_eq!(back.tensor(&down_name).unwrap().as_f32().unwrap(), &new_down[..]);
    assert_eq!(back.tensor("model.embed_tokens.weight").unwrap().as_u16().unwrap(), &new_embed[..]);
    assert_eq!(back.tensor(&o_name).unwrap().as_f32().unwrap()[5], 123.5);
    for (name, values) in &written {
        if name != &down_name && name != &o_name && name != "model.embed_tokens.weight" {
            assert_eq!(bits(&back.tensor(name).unwrap().to_f32_vec()), bits(values), "{name}");
        }
    }
    assert_eq!(back.tensor_data("model.rotary_buffer").unwrap(), ckpt.tensor_data("model.rotary_buffer").unwrap());

    // Resharded, without the other files: same tensors, several files.
    let sharded = dir.join("sharded");
    ckpt.write(&sharded, &[], &WriteOptions::new().max_shard_bytes(1024).copy_other_files(false)).unwrap();
    assert!(!sharded.join("tokenizer.json").exists());
    let back = Checkpoint::open(&sharded).unwrap();
    assert!(back.files().unwrap().len() > 1, "{:?}", back.files().unwrap());
    assert_eq!(back.shape().unwrap(), SHAPE);
    assert_eq!(back.tensor(&down_name).unwrap().as_f32().unwrap(), &written[&down_name][..]);

    // Progress: after each tensor, the bytes written so far and their total.
    let mut calls = Vec::new();
    ckpt.write_with_progress(dir.join("progress"), &[], &WriteOptions::new(), |done, total| calls.push((done, total))).unwrap();
    let total: u64 = ckpt.tensors().map(|i| i.nbytes).sum();
    assert_eq!(calls.len(), ckpt.tensor_count());
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    assert_eq!(*calls.last().unwrap(), (total, total));
    // A panic in the callback does not unwind through C: it is resumed after.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ckpt.write_with_progress(dir.join("panics"), &[], &WriteOptions::new(), |_, _| panic!("stop")).ok();
    }));
    assert_eq!(*caught.unwrap_err().downcast_ref::<&str>().unwrap(), "stop");

    // Wrong replacements are refused with the library's message.
    let e = ckpt.write(dir.join("bad"), &[("no.such.tensor", TensorRef::matrix(&new_down, 8, 12).unwrap())], &WriteOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message.contains("no.such.tensor"), "{}", e.message);
    let e = ckpt.write(dir.join("bad"), &[(down_name.as_str(), TensorRef::matrix(&new_down, 12, 8).unwrap())], &WriteOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Shape);
    assert_eq!(ckpt.write(&src, &[], &WriteOptions::new()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    drop((ckpt, back));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn apply_files_changes_the_layer_weights_by_exactly_the_delta() {
    let dir = temp_dir("ckpt-apply");
    let src = dir.join("base");
    let written = tiny_checkpoint(&src, &SHAPE, 3);
    let mut ckpt = Checkpoint::open(&src).unwrap();
    let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    let a = make_adapter(&ckpt, "a", &[1, 7, 10], &[0, 3], 10, &pa);
    let b = make_adapter(&ckpt, "b", &[7, 2], &[3], 20, &pb);
    let fused = Adapter::fuse(&[&a, &b], Some(&[0.5, 2.0])).unwrap();
    let ctx = Context::new().unwrap();
    let (d, f, nkv) = (8usize, 12usize, 4usize);
    let weight = |model: &Model, l: usize, t: Target| -> Vec<f32> {
        let layer = model.layer(l as i32).unwrap();
        // A model from a checkpoint holds all seven projections (s2ft_model_layer).
        assert!(layer.q.is_some() && layer.k.is_some() && layer.gate.is_some());
        let w = match t {
            Target::Down => layer.down,
            Target::V => layer.v,
            Target::O => layer.o,
            Target::Up => layer.up,
        };
        w.unwrap().to_f32_vec().unwrap()
    };
    {
        let mut model = Model::from_checkpoint(&ctx, &mut ckpt, None, None).unwrap();
        assert!(model.applied().unwrap().is_none());
        model.apply_files(&[&pa], None).unwrap();
        let (applied, scale) = model.applied().unwrap().unwrap();
        assert_eq!((applied.name(), scale, applied.meta("base_model")), ("a".to_string(), 1.0, Some("tiny")));
        for l in 0..2 {
            let down0 = &written[&weight_name(l, Target::Down)];
            assert_eq!(bits(&weight(&model, l, Target::Down)), bits(&merged(down0, &a, l as i32, Target::Down, 1.0, d, f)));
            let v0 = &written[&weight_name(l, Target::V)];
            assert_eq!(bits(&weight(&model, l, Target::V)), bits(&merged(v0, &a, l as i32, Target::V, 1.0, nkv, d)));
            assert_eq!(bits(&weight(&model, l, Target::O)), bits(&written[&weight_name(l, Target::O)]));
            // q, k and gate are the checkpoint's, untouched by an adapter without entries there.
            let layer = model.layer(l as i32).unwrap();
            for (w, name) in [(layer.q, "self_attn.q_proj"), (layer.k, "self_attn.k_proj"), (layer.gate, "mlp.gate_proj")] {
                assert_eq!(bits(&w.unwrap().to_f32_vec().unwrap()), bits(&written[&format!("model.layers.{l}.{name}.weight")]), "{name}");
            }
        }

        // Two files fused at the given weights replace it.
        model.apply_files(&[&pa, &pb], Some(&[0.5, 2.0])).unwrap();
        assert_eq!(model.applied().unwrap().unwrap().0.name(), "a+b");
        let down0 = &written[&weight_name(1, Target::Down)];
        assert_eq!(bits(&weight(&model, 1, Target::Down)), bits(&merged(down0, &fused, 1, Target::Down, 1.0, d, f)));

        // One file at a scale; a borrowed adapter replaces the owned one.
        model.apply_files(&[&pb], Some(&[0.25])).unwrap();
        assert_eq!(model.applied().unwrap().unwrap().1, 0.25);
        let v0 = &written[&weight_name(0, Target::V)];
        assert_eq!(bits(&weight(&model, 0, Target::V)), bits(&merged(v0, &b, 0, Target::V, 0.25, nkv, d)));
        model.switch(&a, ApplyOptions::default()).unwrap();
        assert_eq!(model.applied().unwrap().unwrap().0.name(), "a");

        // Errors leave the model as it was.
        let e = model.apply_files(&[dir.join("missing.safetensors")], None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(model.applied().unwrap().unwrap().0.name(), "a");
        assert_eq!(model.apply_files(&[&pa, &pb], Some(&[1.0])).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(model.layer(2).unwrap_err().kind(), ErrorKind::InvalidArgument);

        model.remove().unwrap();
        for l in 0..2 {
            for t in [Target::Down, Target::V, Target::O, Target::Up] {
                assert_eq!(bits(&weight(&model, l, t)), bits(&written[&weight_name(l, t)]), "layer {l} {t:?} restored");
            }
        }
        model.apply_files(&[&pb], None).unwrap();
    }
    // The merged model is the checkpoint's contents now: written out whole.
    let out = dir.join("merged");
    ckpt.write(&out, &[], &WriteOptions::new()).unwrap();
    let back = Checkpoint::open(&out).unwrap();
    let down0 = &written[&weight_name(0, Target::Down)];
    assert_eq!(bits(back.tensor(&weight_name(0, Target::Down)).unwrap().as_f32().unwrap()), bits(&merged(down0, &b, 0, Target::Down, 1.0, d, f)));
    drop((ckpt, back));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn forward_mixed_over_the_model_layer_serves_each_segment_with_its_adapter() {
    let dir = temp_dir("ckpt-mixed");
    let src = dir.join("base");
    let written = tiny_checkpoint(&src, &SHAPE, 4);
    let mut ckpt = Checkpoint::open(&src).unwrap();
    let a = make_adapter(&ckpt, "a", &[0, 5], &[1], 30, &dir.join("a.safetensors"));
    let b = make_adapter(&ckpt, "b", &[5, 11], &[2], 40, &dir.join("b.safetensors"));
    let ctx = Context::new().unwrap();
    let model = Model::from_checkpoint(&ctx, &mut ckpt, None, None).unwrap();
    let (d, f, t) = (8usize, 12usize, 5usize);
    let x = Rng::new(5).vec(t * f);
    let mut y = vec![0.0f32; t * d];
    let (offsets, segments) = ([0i64, 2, 3, 5], [0i32, -1, 1]);
    let down = model.layer(1).unwrap().down.unwrap();
    forward_mixed(&ctx, 1, Target::Down, &TensorRef::matrix(&x, t, f).unwrap(), &down, None, &[&a, &b], None, &offsets, &segments, &mut TensorMut::matrix(&mut y, t, d).unwrap()).unwrap();
    // Each segment equals x times that adapter's merged weight.
    let w0 = &written[&weight_name(1, Target::Down)];
    for (s, &adapter) in segments.iter().enumerate() {
        let w = match adapter {
            0 => merged(w0, &a, 1, Target::Down, 1.0, d, f),
            1 => merged(w0, &b, 1, Target::Down, 1.0, d, f),
            _ => w0.clone(),
        };
        let rows = offsets[s] as usize..offsets[s + 1] as usize;
        let want = common::matmul_nt(&x[rows.start * f..rows.end * f], &w, rows.len(), d, f);
        common::assert_close(&y[rows.start * d..rows.end * d], &want, 1e-5, &format!("segment {s}"));
    }
    drop(model);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn metadata_round_trips_through_save_load_and_fuse() {
    let dir = temp_dir("meta");
    let mut a = Adapter::new(&SHAPE, "a", 1.0).unwrap();
    a.set(0, Target::Down, &[3], &TensorRef::matrix(&[1.0; 8], 8, 1).unwrap(), None).unwrap();
    assert_eq!(a.meta_count(), 0);
    a.set_meta("base_model", "tiny-llama").unwrap();
    a.set_meta("selection.strategy", "activation smallest").unwrap();
    a.set_meta("note", "héllo, ünïcode").unwrap();
    a.set_meta("empty", "").unwrap();
    a.set_meta("note", "replaced").unwrap();
    a.remove_meta("absent").unwrap();
    assert_eq!(a.set_meta("bad key", "x").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(a.set_meta("", "x").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(a.set_meta("k", "nul\0inside").is_err());
    let path = dir.join("a.safetensors");
    a.save(&path).unwrap();

    let back = Adapter::load(&path).unwrap();
    let entries: Vec<(&str, &str)> = back.metadata().collect();
    assert_eq!(entries, vec![("base_model", "tiny-llama"), ("empty", ""), ("note", "replaced"), ("selection.strategy", "activation smallest")]);
    assert_eq!(back.meta("note"), Some("replaced"));
    assert_eq!(back.meta("missing"), None);

    let mut b = Adapter::new(&SHAPE, "b", 1.0).unwrap();
    b.set(0, Target::Down, &[4], &TensorRef::matrix(&[2.0; 8], 8, 1).unwrap(), None).unwrap();
    b.set_meta("base_model", "tiny-llama").unwrap();
    let fused = Adapter::fuse(&[&back, &b], Some(&[0.5, 1.0])).unwrap();
    assert_eq!(fused.meta("input.0.name"), Some("a"));
    assert_eq!(fused.meta("input.1.name"), Some("b"));
    assert_eq!(fused.meta("input.0.weight").unwrap().parse::<f64>().unwrap(), 0.5);
    assert_eq!(fused.meta("input.0.note"), Some("replaced"));
    assert_eq!(fused.meta("input.1.base_model"), Some("tiny-llama"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn export_peft_writes_lora_factors_whose_product_is_the_delta() {
    let dir = temp_dir("peft");
    let mut a = Adapter::new(&SHAPE, "a", 2.0).unwrap();
    let delta: Vec<f32> = (0..8 * 2).map(|i| i as f32 * 0.25 - 1.0).collect();
    a.set(1, Target::Down, &[2, 9], &TensorRef::matrix(&delta, 8, 2).unwrap(), None).unwrap();
    let out = dir.join("peft");
    a.export_peft(&out, &PeftExportOptions { base_model_name_or_path: Some("org/tiny-llama".into()), scale: Some(1.0) }).unwrap();
    let config = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    assert!(config.contains("org/tiny-llama"), "{config}");
    assert!(config.contains("LORA"), "{config}");

    // The factors, read back with the checkpoint reader (one file).
    let lora = Checkpoint::open(out.join("adapter_model.safetensors")).unwrap();
    let names: Vec<&str> = lora.tensors().map(|i| i.name).collect();
    let b_name = names.iter().find(|n| n.contains("layers.1.mlp.down_proj.lora_B")).expect("lora_B of down_proj");
    let a_name = names.iter().find(|n| n.contains("layers.1.mlp.down_proj.lora_A")).expect("lora_A of down_proj");
    assert_eq!(lora.tensor(b_name).unwrap().as_f32().unwrap(), &delta[..]);
    let one_hot = lora.tensor(a_name).unwrap();
    assert_eq!(one_hot.shape(), vec![2, 12]);
    let one_hot = one_hot.as_f32().unwrap();
    for (j, &line) in [2usize, 9].iter().enumerate() {
        for c in 0..12 {
            assert_eq!(one_hot[j * 12 + c], if c == line { 1.0 } else { 0.0 });
        }
    }

    // The default scale (2) is folded into B.
    let out2 = dir.join("peft2");
    a.export_peft(&out2, &PeftExportOptions::default()).unwrap();
    let lora = Checkpoint::open(out2.join("adapter_model.safetensors")).unwrap();
    let doubled: Vec<f32> = delta.iter().map(|v| v * 2.0).collect();
    assert_eq!(lora.tensor(b_name).unwrap().as_f32().unwrap(), &doubled[..]);
    assert!(std::fs::read_to_string(out2.join("adapter_config.json")).unwrap().contains("null"));

    let empty = Adapter::new(&SHAPE, "empty", 1.0).unwrap();
    assert_eq!(empty.export_peft(dir.join("none"), &PeftExportOptions::default()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let e = a.export_peft(&out, &PeftExportOptions { scale: Some(f64::INFINITY), ..Default::default() }).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    drop(lora);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn stories260k_model_from_checkpoint_applies_and_restores_bit_exactly() {
    let Some(dir) = stories260k() else {
        eprintln!("SKIP: stories260K-hf not found (set S2FT_TEST_DATA)");
        return;
    };
    let mut ckpt = Checkpoint::open(&dir).unwrap();
    let shape = ckpt.shape().unwrap();
    assert_eq!(shape, ModelShape { n_layers: 5, d_model: 64, n_heads: 8, n_kv_heads: 4, head_dim: 8, d_ff: 172 });
    let base: Vec<Vec<f32>> = (0..5).map(|l| ckpt.tensor(&weight_name(l, Target::Down)).unwrap().to_f32_vec()).collect();
    let tmp = temp_dir("stories");
    let path = tmp.join("a.safetensors");
    let a = make_adapter(&ckpt, "a", &[3, 40, 171], &[5], 50, &path);
    let ctx = Context::new().unwrap();
    let mut model = Model::from_checkpoint(&ctx, &mut ckpt, None, None).unwrap();
    model.apply_files(&[&path], None).unwrap();
    for (l, base) in base.iter().enumerate() {
        let got = model.layer(l as i32).unwrap().down.unwrap().to_f32_vec().unwrap();
        assert_eq!(bits(&got), bits(&merged(base, &a, l as i32, Target::Down, 1.0, 64, 172)));
    }
    model.remove().unwrap();
    drop(model);
    for (l, base) in base.iter().enumerate() {
        assert_eq!(bits(ckpt.tensor(&weight_name(l, Target::Down)).unwrap().as_f32().unwrap()), bits(base));
    }
    std::fs::remove_dir_all(&tmp).ok();
}
