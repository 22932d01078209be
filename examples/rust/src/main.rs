//! Trains two columns of one down_proj with S2FT, ships the change as an
//! adapter file, and applies it to a fresh copy of the base weights.
//!
//! Steps: pick the trained channels (a Selection), then per step
//! forward_partial (y = x W^T, keeping x[:, S]), the gradient of a squared
//! error, backward_partial (dW_S only) and an AdamW step on the slice; then
//! Adapter::from_training (trained - base), save, load, Model::apply.

use s2ft::*;

/// A small deterministic generator (SplitMix64) for the example's data.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

fn main() -> Result<()> {
    let (d_model, d_ff, tokens, steps) = (6usize, 8usize, 16usize, 20);
    let shape = ModelShape { n_layers: 1, d_model: d_model as i32, n_heads: 2, n_kv_heads: 1, head_dim: 3, d_ff: d_ff as i32 };
    let mut rng = Rng(42);
    let base = rng.vec(d_model * d_ff); // down_proj [d_model, d_ff]
    let x = rng.vec(tokens * d_ff);
    let target_y = rng.vec(tokens * d_model);

    let ctx = Context::new()?;
    let sel = Selection::from_units(&shape, HeadGranularity::ByGroup, [&[], &[], &[2, 5], &[]])?;
    let lines = sel.indices(0, Target::Down, IndexKind::Lines, IndexOrder::Base)?;
    let k = lines.len();
    let slice = Slice::Indices { axis: Axis::Columns, lines };

    let mut trained = base.clone();
    {
        let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default())?;
        opt.add_param(TensorMut::matrix(&mut trained, d_model, d_ff)?, &slice)?;
        let (mut y, mut x_s, mut dw) = (vec![0.0f32; tokens * d_model], vec![0.0f32; tokens * k], vec![0.0f32; d_model * k]);
        for step in 0..steps {
            let w = opt.weight(0)?;
            forward_partial(&ctx, &slice, &TensorRef::matrix(&x, tokens, d_ff)?, &w, &mut TensorMut::matrix(&mut y, tokens, d_model)?, Some(&mut TensorMut::matrix(&mut x_s, tokens, k)?))?;
            // loss = mean (y - target)^2; dy = 2 (y - target) / n.
            let n = y.len() as f32;
            let loss: f32 = y.iter().zip(&target_y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / n;
            let dy: Vec<f32> = y.iter().zip(&target_y).map(|(a, b)| 2.0 * (a - b) / n).collect();
            backward_partial(&ctx, &slice, &w, &TensorRef::matrix(&x_s, tokens, k)?, &TensorRef::matrix(&dy, tokens, d_model)?, None, &mut TensorMut::matrix(&mut dw, d_model, k)?, Accumulate::default())?;
            opt.step(0.05, &[TensorRef::matrix(&dw, d_model, k)?])?;
            if step % 5 == 0 || step == steps - 1 {
                println!("step {step:2}: loss {loss:.5}");
            }
        }
    }

    let base_layer = [LayerWeightsRef { down: Some(TensorRef::matrix(&base, d_model, d_ff)?), ..Default::default() }];
    let trained_layer = [LayerWeightsRef { down: Some(TensorRef::matrix(&trained, d_model, d_ff)?), ..Default::default() }];
    let adapter = Adapter::from_training(&ctx, &sel, &base_layer, &trained_layer, false, "example")?;
    let path = std::env::temp_dir().join(format!("s2ft-rust-example-{}.safetensors", std::process::id()));
    adapter.save(&path)?;
    let loaded = Adapter::load(&path)?;
    std::fs::remove_file(&path).ok();
    println!("adapter '{}' saved and loaded: lines {:?}", loaded.name(), loaded.lines(0, Target::Down)?.0);

    let mut fresh = base.clone();
    {
        let layers = vec![LayerWeights { down: Some(TensorMut::matrix(&mut fresh, d_model, d_ff)?), ..Default::default() }];
        let mut model = Model::new(&ctx, &shape, layers, None)?;
        model.apply(&loaded, ApplyOptions::default())?;
    }
    let max_diff = fresh.iter().zip(&trained).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let changed = trained.iter().zip(&base).filter(|(a, b)| a != b).count();
    println!("{changed} weights trained; base + adapter vs trained: max |difference| = {max_diff:e}");
    if max_diff > 1e-6 {
        eprintln!("the applied adapter does NOT reproduce the trained weights");
        std::process::exit(1);
    }
    println!("the applied adapter reproduces the trained weights");
    Ok(())
}
