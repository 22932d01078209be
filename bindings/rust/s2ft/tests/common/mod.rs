//! Helpers shared by the integration tests: a seeded generator and plain
//! f64 reference math.
#![allow(dead_code)]

/// SplitMix64, so test data is the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), never exactly zero in practice.
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// C = A B^T in f64 for row-major A [m, k], B [n, k].
pub fn matmul_nt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[j * k + p] as f64).sum();
        }
    }
    c
}

pub fn assert_close(got: &[f32], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(((*g as f64) - w).abs() <= rel * scale, "{what}[{i}]: got {g}, want {w}");
    }
}

pub fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("s2ft-rs-{}-{name}", std::process::id()))
}

/// A tensor to store in a safetensors file.
pub struct Stored {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Stored {
    pub fn f32(name: &str, shape: &[usize], values: &[f32]) -> Stored {
        Stored { name: name.to_string(), dtype: "F32", shape: shape.to_vec(), bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }
}

/// Writes a safetensors file: an 8-byte little-endian header length, the
/// JSON header (padded with spaces to a multiple of 8, so data stays
/// aligned), then the tensors' bytes in order.
pub fn write_safetensors(path: &std::path::Path, tensors: &[Stored]) {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    for t in tensors {
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        entries.push(format!(
            "\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            t.name,
            t.dtype,
            shape.join(","),
            offset,
            offset + t.bytes.len()
        ));
        offset += t.bytes.len();
    }
    let mut header = format!("{{{}}}", entries.join(","));
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for t in tensors {
        file.extend_from_slice(&t.bytes);
    }
    std::fs::write(path, file).unwrap();
}

/// The name of a layer's projection weight in a Hugging Face LLaMA checkpoint.
pub fn weight_name(layer: usize, target: s2ft::Target) -> String {
    match target {
        s2ft::Target::O => format!("model.layers.{layer}.self_attn.o_proj.weight"),
        s2ft::Target::V => format!("model.layers.{layer}.self_attn.v_proj.weight"),
        s2ft::Target::Down => format!("model.layers.{layer}.mlp.down_proj.weight"),
        s2ft::Target::Up => format!("model.layers.{layer}.mlp.up_proj.weight"),
    }
}

/// Writes a small LLaMA checkpoint folder (config.json, model.safetensors
/// with every layer's seven projections and norms in F32, the embedding in
/// BF16, and an I64 buffer) and returns the F32 values written, by name.
pub fn tiny_checkpoint(dir: &std::path::Path, shape: &s2ft::ModelShape, seed: u64) -> std::collections::BTreeMap<String, Vec<f32>> {
    std::fs::create_dir_all(dir).unwrap();
    let (d, nq, nkv, f) = (shape.d_model as usize, (shape.n_heads * shape.head_dim) as usize, (shape.n_kv_heads * shape.head_dim) as usize, shape.d_ff as usize);
    let vocab = 16usize;
    std::fs::write(
        dir.join("config.json"),
        format!(
            "{{\"model_type\": \"llama\", \"hidden_size\": {d}, \"num_hidden_layers\": {}, \"num_attention_heads\": {}, \
             \"num_key_value_heads\": {}, \"intermediate_size\": {f}, \"head_dim\": {}, \"vocab_size\": {vocab}, \
             \"tie_word_embeddings\": true}}\n",
            shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.head_dim
        ),
    )
    .unwrap();
    let mut rng = Rng::new(seed);
    let mut values = std::collections::BTreeMap::new();
    let mut stored = Vec::new();
    // bf16 embedding: values exactly representable, kept as their f32 values.
    let embed: Vec<f32> = (0..vocab * d).map(|i| ((i % 13) as f32 - 6.0) * 0.125).collect();
    stored.push(Stored {
        name: "model.embed_tokens.weight".into(),
        dtype: "BF16",
        shape: vec![vocab, d],
        bytes: embed.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect(),
    });
    values.insert("model.embed_tokens.weight".to_string(), embed);
    for l in 0..shape.n_layers as usize {
        for (name, rows, cols) in [
            ("self_attn.q_proj", nq, d),
            ("self_attn.k_proj", nkv, d),
            ("self_attn.v_proj", nkv, d),
            ("self_attn.o_proj", d, nq),
            ("mlp.gate_proj", f, d),
            ("mlp.up_proj", f, d),
            ("mlp.down_proj", d, f),
        ] {
            let full = format!("model.layers.{l}.{name}.weight");
            let v = rng.vec(rows * cols);
            stored.push(Stored::f32(&full, &[rows, cols], &v));
            values.insert(full, v);
        }
        let norm = format!("model.layers.{l}.input_layernorm.weight");
        stored.push(Stored::f32(&norm, &[d], &vec![1.0; d]));
        values.insert(norm, vec![1.0; d]);
    }
    stored.push(Stored { name: "model.rotary_buffer".into(), dtype: "I64", shape: vec![3], bytes: [7i64, -1, 42].iter().flat_map(|v| v.to_le_bytes()).collect() });
    write_safetensors(&dir.join("model.safetensors"), &stored);
    values
}

/// A fresh, empty folder under the temporary directory.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = temp_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The stories260K-hf model folder of the test data (S2FT_TEST_DATA, else
/// ../shared/data next to the repository), if present.
pub fn stories260k() -> Option<std::path::PathBuf> {
    let data = std::env::var_os("S2FT_TEST_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data"));
    let dir = data.join("stories260K-hf");
    dir.join("config.json").exists().then_some(dir)
}
