//! No leaks: every handle the safe API creates is destroyed when dropped.
//! (Its own test binary, because the live-handle count is process-wide and
//! the tests of one binary run in parallel.)

mod common;

use common::{temp_dir, temp_path, tiny_checkpoint, Rng};
use s2ft::*;

#[test]
fn live_handles_return_to_start_after_dropping_everything() {
    let start = live_handles();
    let mut rng = Rng::new(11);
    let shape = ModelShape { n_layers: 2, d_model: 4, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: 6 };
    {
        let ctx = Context::new().unwrap();
        let mut stats = Statistics::new(&ctx, &shape).unwrap();
        let down = rng.vec(4 * 6);
        for layer in 0..2 {
            stats.add_weight(layer, Target::Down, &TensorRef::matrix(&down, 4, 6).unwrap()).unwrap();
        }
        let opts = SelectOptions { strategy: Strategy::Weight, targets: Target::Down.bit(), ..Default::default() }.with_count(Target::Down, 2);
        let sel = Selection::select(&ctx, &shape, &opts, Some(&stats)).unwrap();
        let mut w = down.clone();
        let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
        opt.add_param(TensorMut::matrix(&mut w, 4, 6).unwrap(), &Slice::Range { axis: Axis::Columns, begin: 0, count: 2 }).unwrap();
        let mut a = Adapter::new(&shape, "a", 1.0).unwrap();
        a.set(0, Target::Down, &[1, 3], &TensorRef::matrix(&rng.vec(8), 4, 2).unwrap(), None).unwrap();
        let path = temp_path("leak.safetensors");
        a.save(&path).unwrap();
        let b = Adapter::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let fused = Adapter::fuse(&[&a, &b], None).unwrap();
        let mut base0 = down.clone();
        let mut base1 = down.clone();
        let layers = vec![
            LayerWeights { down: Some(TensorMut::matrix(&mut base0, 4, 6).unwrap()), ..Default::default() },
            LayerWeights { down: Some(TensorMut::matrix(&mut base1, 4, 6).unwrap()), ..Default::default() },
        ];
        let mut model = Model::new(&ctx, &shape, layers, Some(&sel)).unwrap();
        model.apply(&fused, ApplyOptions::default()).unwrap();
        // A failing create must not leak either.
        assert!(Adapter::load(temp_path("missing.safetensors")).is_err());
        assert!(live_handles() >= start + 8);
    }
    assert_eq!(live_handles(), start);

    // A checkpoint, a model over it and adapters it loads from files.
    let dir = temp_dir("leak-ckpt");
    tiny_checkpoint(&dir.join("base"), &shape, 5);
    {
        let ctx = Context::new().unwrap();
        let mut ckpt = Checkpoint::open(dir.join("base")).unwrap();
        let mut a = Adapter::new(&shape, "a", 1.0).unwrap();
        a.set(1, Target::Down, &[0, 5], &TensorRef::matrix(&rng.vec(8), 4, 2).unwrap(), None).unwrap();
        a.set_meta("k", "v").unwrap();
        let path = dir.join("a.safetensors");
        a.save(&path).unwrap();
        let mut model = Model::from_checkpoint(&ctx, &mut ckpt, None, None).unwrap();
        model.apply_files(&[&path, &path], None).unwrap();
        model.apply_files(&[&path], None).unwrap();
        assert!(model.apply_files(&[dir.join("missing.safetensors")], None).is_err());
        drop(model);
        assert!(Checkpoint::open(dir.join("missing")).is_err());
        ckpt.write(dir.join("out"), &[], &WriteOptions::new()).unwrap();
        a.export_peft(dir.join("peft"), &PeftExportOptions::default()).unwrap();
    }
    assert_eq!(live_handles(), start);
    std::fs::remove_dir_all(&dir).ok();
}
