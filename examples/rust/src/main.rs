//! Serves two S2FT adapters on a model opened from its checkpoint folder:
//! loads both, applies the first and switches to the second on the model
//! (only the union of their lines is touched), restores the base, then runs
//! one batch whose requests use different adapters with `forward_mixed`
//! over the model's own down_proj, merging nothing.
//!
//! usage: cargo run -- FIRST.safetensors SECOND.safetensors [BASE_DIR]
//!
//! BASE_DIR defaults to stories260K-hf in the test data ($S2FT_TEST_DATA,
//! else ../shared/data next to the repository). `make_adapters BASE_DIR
//! OUT_DIR` (examples/c) makes two adapters for a base, and
//! `tiny_checkpoint DIR` a small random base.

use std::path::{Path, PathBuf};

use s2ft::*;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        eprintln!("usage: cargo run -- FIRST.safetensors SECOND.safetensors [BASE_DIR]");
        std::process::exit(2);
    }
    let base_dir = args.get(2).map(PathBuf::from).unwrap_or_else(default_base);
    serve(&base_dir, &args[0], &args[1])?;
    println!("live handles at exit: {}", live_handles());
    Ok(())
}

fn serve(base_dir: &Path, first: &str, second: &str) -> Result<()> {
    let ctx = Context::new()?;
    let (first, second) = (Adapter::load(first)?, Adapter::load(second)?);
    let mut base = Checkpoint::open(base_dir)?;
    let mut model = Model::from_checkpoint(&ctx, &mut base, None, None)?;
    let before = down_proj_bits(&model)?;
    model.apply(&first, ApplyOptions::default())?; // W[lines] += delta; the displaced lines are kept
    model.switch(&second, ApplyOptions::default())?; // touches only the union of both adapters' lines
    model.remove()?; // the base again, bit-exactly
    let down = model.layer(0)?.down.expect("a model holds every layer's down_proj"); // [d_model, d_ff]
    let (d_model, d_ff) = (down.shape()[0], down.shape()[1]);
    let (x, offsets, uses) = requests(d_ff); // 9 tokens: 4 with adapter 0, 2 with none, 3 with adapter 1
    let mut y = vec![0.0f32; 9 * d_model];
    forward_mixed(&ctx, 0, Target::Down, &TensorRef::matrix(&x, 9, d_ff)?, &down, None, &[&first, &second], None,
                  &offsets, &uses, &mut TensorMut::matrix(&mut y, 9, d_model)?)?;

    let restored = down_proj_bits(&model)? == before;
    println!("base {}: layer 0's down_proj is [{d_model}, {d_ff}]", base_dir.display());
    println!("applied '{}', switched to '{}', removed: base restored bit-exactly = {restored}", first.name(), second.name());
    report(&ctx, &TensorRef::matrix(&x, 9, d_ff)?, &down, &offsets, &uses, &[&first, &second], &y, d_model)?;
    if !restored {
        return Err(Error { status: sys::S2FT_ERR_INTERNAL, message: "the base was not restored".into() });
    }
    Ok(())
}

/// The bits of layer 0's down_proj as the model holds it.
fn down_proj_bits(model: &Model) -> Result<Vec<u32>> {
    let down = model.layer(0)?.down.and_then(|w| w.to_f32_vec()).unwrap_or_default();
    Ok(down.iter().map(|v| v.to_bits()).collect())
}

/// A batch of three requests (4, 2 and 3 tokens): the first served with
/// adapter 0, the second with none, the third with adapter 1. Returns the
/// inputs [9, d_ff], the segment offsets and each segment's adapter.
fn requests(d_ff: usize) -> (Vec<f32>, [i64; 4], [i32; 3]) {
    let offsets = [0, 4, 6, 9];
    let x = (0..offsets[3] as usize * d_ff).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    (x, offsets, [0, -1, 1])
}

/// Prints each request's largest change against the base layer's output.
#[allow(clippy::too_many_arguments)]
fn report(ctx: &Context, x: &TensorRef<'_>, w: &TensorRef<'_>, offsets: &[i64], uses: &[i32], adapters: &[&Adapter], y: &[f32], d_model: usize) -> Result<()> {
    let tokens = offsets[offsets.len() - 1] as usize;
    let mut y_base = vec![0.0f32; tokens * d_model];
    forward_mixed(ctx, 0, Target::Down, x, w, None, &[], None, &[0, tokens as i64], &[-1],
                  &mut TensorMut::matrix(&mut y_base, tokens, d_model)?)?;
    for (s, &a) in uses.iter().enumerate() {
        let rows = offsets[s] as usize * d_model..offsets[s + 1] as usize * d_model;
        let change = y[rows.clone()].iter().zip(&y_base[rows]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let name = if a < 0 { "no adapter".to_string() } else { format!("adapter '{}'", adapters[a as usize].name()) };
        println!("request {s} ({name}): {} tokens, max |y - y_base| = {change:.6}", offsets[s + 1] - offsets[s]);
    }
    Ok(())
}

/// stories260K-hf in the test data: $S2FT_TEST_DATA, else ../shared/data
/// next to this repository.
fn default_base() -> PathBuf {
    std::env::var_os("S2FT_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("stories260K-hf")
}
