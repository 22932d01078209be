//! Saves two adapters for a 1-layer model, loads them back from their files,
//! applies the first to the model's down_proj, switches to the second,
//! removes it and checks that the base weights are restored bit-exactly.
use s2ft::{Adapter, ApplyOptions, Context, LayerWeights, Model, ModelShape, Target, TensorMut, TensorRef};

const D_MODEL: usize = 4;
const D_FF: usize = 8;

/// An adapter on down_proj columns `lines` (base order), saved to `path`.
fn save_adapter(shape: &ModelShape, name: &str, lines: &[i64], step: f32, base: &[f32], path: &str) -> s2ft::Result<()> {
    let delta: Vec<f32> = (0..D_MODEL * lines.len()).map(|i| step * (i + 1) as f32).collect();
    let mut adapter = Adapter::new(shape, name, 1.0)?;
    let base = TensorRef::matrix(base, D_MODEL, D_FF)?;
    adapter.set(0, Target::Down, lines, &TensorRef::matrix(&delta, D_MODEL, lines.len())?, Some(&base))?;
    adapter.save(path)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shape = ModelShape { n_layers: 1, d_model: D_MODEL as i32, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: D_FF as i32 };
    let base: Vec<f32> = (0..D_MODEL * D_FF).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
    save_adapter(&shape, "first", &[1, 5], 0.125, &base, "first.safetensors")?;
    save_adapter(&shape, "second", &[5, 6], -0.5, &base, "second.safetensors")?;
    let first = Adapter::load("first.safetensors")?;
    let second = Adapter::load("second.safetensors")?;
    std::fs::remove_file("first.safetensors")?;
    std::fs::remove_file("second.safetensors")?;

    let ctx = Context::new()?;
    let mut w = base.clone();
    {
        // The model borrows w (it edits it in place) until it is dropped.
        let layer = LayerWeights { down: Some(TensorMut::matrix(&mut w, D_MODEL, D_FF)?), ..Default::default() };
        let mut model = Model::new(&ctx, &shape, vec![layer], None)?;
        let applied_name = |m: &Model| m.applied().map(|a| a.map(|(adapter, _)| adapter.name()));
        model.apply(&first, ApplyOptions::default())?;
        assert_eq!(applied_name(&model)?.as_deref(), Some("first"));
        model.switch(&second, ApplyOptions::default())?;
        assert_eq!(applied_name(&model)?.as_deref(), Some("second"));
        model.remove()?;
    }
    let restored = w.iter().zip(&base).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(restored, "the base weights differ after remove");
    println!("Rust: loaded 'first' and 'second' from files, applied, switched, removed: base restored bit-exactly");
    Ok(())
}
