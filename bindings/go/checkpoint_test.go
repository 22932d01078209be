package s2ft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// stored is a tensor to write into a safetensors file.
type stored struct {
	name, dtype string
	shape       []int64
	data        []byte
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// writeSafetensors writes an 8-byte little-endian header length, the JSON
// header (padded with spaces to a multiple of 8) and the tensors' bytes.
func writeSafetensors(t *testing.T, path string, tensors []stored) {
	t.Helper()
	var entries []string
	offset := 0
	for _, s := range tensors {
		dims := make([]string, len(s.shape))
		for i, d := range s.shape {
			dims[i] = fmt.Sprint(d)
		}
		entries = append(entries, fmt.Sprintf(`"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}`,
			s.name, s.dtype, strings.Join(dims, ","), offset, offset+len(s.data)))
		offset += len(s.data)
	}
	header := "{" + strings.Join(entries, ",") + "}"
	for len(header)%8 != 0 {
		header += " "
	}
	var out bytes.Buffer
	ok(t, binary.Write(&out, binary.LittleEndian, uint64(len(header))))
	out.WriteString(header)
	for _, s := range tensors {
		out.Write(s.data)
	}
	ok(t, os.WriteFile(path, out.Bytes(), 0o644))
}

func weightName(layer, target int) string {
	switch target {
	case TargetO:
		return fmt.Sprintf("model.layers.%d.self_attn.o_proj.weight", layer)
	case TargetV:
		return fmt.Sprintf("model.layers.%d.self_attn.v_proj.weight", layer)
	case TargetDown:
		return fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", layer)
	default:
		return fmt.Sprintf("model.layers.%d.mlp.up_proj.weight", layer)
	}
}

// tinyCheckpoint writes a small LLaMA checkpoint folder (config.json,
// model.safetensors: every layer's seven projections in F32, a BF16
// embedding, an I64 buffer) and returns the F32 values written by name.
func tinyCheckpoint(t *testing.T, dir string, seed int64) map[string][]float32 {
	t.Helper()
	ok(t, os.MkdirAll(dir, 0o755))
	d, f, nq, nkv := shape.DModel, shape.DFF, shape.NHeads*shape.HeadDim, shape.NKVHeads*shape.HeadDim
	ok(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(
		`{"model_type": "llama", "hidden_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d, `+
			`"num_key_value_heads": %d, "intermediate_size": %d, "head_dim": %d}`,
		d, shape.NLayers, shape.NHeads, shape.NKVHeads, f, shape.HeadDim)), 0o644))
	values := map[string][]float32{}
	embed := make([]float32, 16*d)
	bf16 := make([]byte, 0, 2*len(embed))
	for i := range embed {
		embed[i] = float32(i%13-6) * 0.125
		bf16 = binary.LittleEndian.AppendUint16(bf16, uint16(math.Float32bits(embed[i])>>16))
	}
	tensors := []stored{{"model.embed_tokens.weight", "BF16", []int64{16, int64(d)}, bf16}}
	values["model.embed_tokens.weight"] = embed
	projections := []struct {
		name       string
		rows, cols int
	}{{"self_attn.q_proj", nq, d}, {"self_attn.k_proj", nkv, d}, {"self_attn.v_proj", nkv, d},
		{"self_attn.o_proj", d, nq}, {"mlp.gate_proj", f, d}, {"mlp.up_proj", f, d}, {"mlp.down_proj", d, f}}
	for l := 0; l < shape.NLayers; l++ {
		for p, pr := range projections {
			name := fmt.Sprintf("model.layers.%d.%s.weight", l, pr.name)
			v := randoms(seed+int64(10*l+p), pr.rows*pr.cols)
			tensors = append(tensors, stored{name, "F32", []int64{int64(pr.rows), int64(pr.cols)}, f32Bytes(v)})
			values[name] = v
		}
	}
	i64 := binary.LittleEndian.AppendUint64(nil, 7)
	i64 = binary.LittleEndian.AppendUint64(i64, math.MaxUint64) // -1
	i64 = binary.LittleEndian.AppendUint64(i64, 42)
	tensors = append(tensors, stored{"model.rotary_buffer", "I64", []int64{3}, i64})
	writeSafetensors(t, filepath.Join(dir, "model.safetensors"), tensors)
	return values
}

// ckptAdapter has deltas on down columns and v rows of every layer,
// fingerprinted against the checkpoint's weights.
func ckptAdapter(t *testing.T, ckpt *Checkpoint, name string, down, v []int64, seed int64) *Adapter {
	t.Helper()
	a := must(NewAdapter(shape, name, 1))
	for l := 0; l < shape.NLayers; l++ {
		d := must(FromSlice(randoms(seed+int64(l), shape.DModel*len(down)), int64(shape.DModel), int64(len(down))))
		ok(t, a.Set(l, TargetDown, down, d, must(ckpt.Tensor(weightName(l, TargetDown)))))
		d.Close()
		d = must(FromSlice(randoms(seed+50+int64(l), len(v)*shape.DModel), int64(len(v)), int64(shape.DModel)))
		ok(t, a.Set(l, TargetV, v, d, must(ckpt.Tensor(weightName(l, TargetV)))))
		d.Close()
	}
	return a
}

// merged is W[line] + scale*delta in double, rounded once to float32, on
// the adapter's lines of (layer, target).
func merged(t *testing.T, base []float32, a *Adapter, layer, target int, scale float64, rows, cols int) []float32 {
	t.Helper()
	w := append([]float32(nil), base...)
	lines := must(a.Lines(layer, target))
	k := len(lines)
	columns := target == TargetO || target == TargetDown
	dr, dc := rows, k
	if !columns {
		dr, dc = k, cols
	}
	dt := must(NewTensor(int64(dr), int64(dc)))
	defer dt.Close()
	ok(t, a.Delta(layer, target, dt))
	delta := dt.Data()
	for j, line := range lines {
		if columns {
			for r := 0; r < rows; r++ {
				i := r*cols + int(line)
				w[i] = float32(float64(w[i]) + scale*float64(delta[r*k+j]))
			}
		} else {
			for c := 0; c < cols; c++ {
				i := int(line)*cols + c
				w[i] = float32(float64(w[i]) + scale*float64(delta[j*cols+c]))
			}
		}
	}
	return w
}

func TestCheckpointViewsReadWhatWasWritten(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	written := tinyCheckpoint(t, dir, 1)
	ckpt := must(OpenCheckpoint(dir))
	defer func() { ok(t, ckpt.Close()) }()
	if got := must(ckpt.Shape()); got != shape {
		t.Fatalf("shape %+v, want %+v", got, shape)
	}
	if cfg, present := ckpt.Config(); !present || !strings.Contains(cfg, `"model_type": "llama"`) {
		t.Fatalf("config %q, present %v", cfg, present)
	}
	if files := must(ckpt.Files()); len(files) != 1 || files[0] != "model.safetensors" {
		t.Fatalf("files %v", files)
	}
	if n := ckpt.TensorCount(); n != 2*7+2 {
		t.Fatalf("%d tensors", n)
	}
	infos := map[string]TensorInfo{}
	for _, info := range must(ckpt.Tensors()) {
		infos[info.Name] = info
	}
	down := infos[weightName(1, TargetDown)]
	if down.DType != "F32" || len(down.Shape) != 2 || down.Shape[0] != 12 || down.Shape[1] != 10 || down.NBytes != 480 {
		t.Fatalf("down_proj info %+v", down)
	}
	if infos["model.embed_tokens.weight"].DType != "BF16" {
		t.Fatalf("embedding info %+v", infos["model.embed_tokens.weight"])
	}
	names := make([]string, 0, len(written))
	for name := range written {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := must(ckpt.Tensor(name))
		sameBits(t, name, written[name], v.Float32s())
		v.Close() // a view belongs to the checkpoint: a no-op
	}
	if v := must(ckpt.Tensor("model.embed_tokens.weight")); v.DType() != BF16 || v.Data() != nil || len(v.Uint16s()) != 16*12 {
		t.Fatalf("bf16 view: dtype %d", v.DType())
	}
	raw := must(ckpt.TensorData("model.rotary_buffer"))
	if len(raw) != 24 || int64(binary.LittleEndian.Uint64(raw[8:])) != -1 || binary.LittleEndian.Uint64(raw[16:]) != 42 {
		t.Fatalf("I64 bytes %v", raw)
	}
	_, err := ckpt.Tensor("model.rotary_buffer")
	wantStatus(t, err, ErrDtype, "")
	_, err = ckpt.Tensor("model.layers.9.mlp.down_proj.weight")
	wantStatus(t, err, ErrInvalidArgument, "model.layers.9")
	_, err = ckpt.TensorInfo(99)
	wantStatus(t, err, ErrInvalidArgument, "")
	_, err = OpenCheckpoint(filepath.Join(dir, "missing"))
	wantStatus(t, err, ErrIO, "")
}

func TestCheckpointSingleFileHasNoConfig(t *testing.T) {
	noLeaks(t)
	file := filepath.Join(t.TempDir(), "one.safetensors")
	writeSafetensors(t, file, []stored{{"w", "F32", []int64{2, 3}, f32Bytes([]float32{1, 2, 3, 4, 5, 6})}})
	ckpt := must(OpenCheckpoint(file))
	defer func() { ok(t, ckpt.Close()) }()
	if _, present := ckpt.Config(); present {
		t.Fatal("a single file has no config")
	}
	_, err := ckpt.Shape()
	wantStatus(t, err, ErrState, "")
	sameBits(t, "w", []float32{1, 2, 3, 4, 5, 6}, must(ckpt.Tensor("w")).Data())
}

func TestCheckpointWriteRoundTrip(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	written := tinyCheckpoint(t, src, 2)
	ok(t, os.WriteFile(filepath.Join(src, "tokenizer.json"), []byte("{}"), 0o644))
	ok(t, os.WriteFile(filepath.Join(src, "notes.txt"), []byte("hello"), 0o644))
	ckpt := must(OpenCheckpoint(src))
	defer func() { ok(t, ckpt.Close()) }()

	oName, downName := weightName(0, TargetO), weightName(1, TargetDown)
	must(ckpt.Tensor(oName)).Data()[5] = 123.5 // this process's copy, not the file
	again := must(OpenCheckpoint(src))
	if got := must(again.Tensor(oName)).Data()[5]; got != written[oName][5] {
		t.Fatalf("the file changed: %g", got)
	}
	ok(t, again.Close())

	newDown := make([]float32, 12*10)
	for i := range newDown {
		newDown[i] = float32(i) * 0.5
	}
	repl := must(FromSlice(newDown, 12, 10))
	defer repl.Close()
	out := filepath.Join(dir, "out")
	ok(t, ckpt.Write(out, map[string]*Tensor{downName: repl}, &WriteOptions{Exclude: []string{"notes.txt"}}))
	if _, err := os.Stat(filepath.Join(out, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err == nil {
		t.Fatal("notes.txt was copied")
	}
	back := must(OpenCheckpoint(out))
	sameBits(t, "replaced", newDown, must(back.Tensor(downName)).Data())
	if got := must(back.Tensor(oName)).Data()[5]; got != 123.5 {
		t.Fatalf("the view's write was not written: %g", got)
	}
	for name, v := range written {
		if name != downName && name != oName {
			sameBits(t, name, v, must(back.Tensor(name)).Float32s())
		}
	}
	if !bytes.Equal(must(back.TensorData("model.rotary_buffer")), must(ckpt.TensorData("model.rotary_buffer"))) {
		t.Fatal("the I64 buffer changed")
	}
	ok(t, back.Close())

	sharded := filepath.Join(dir, "sharded")
	ok(t, ckpt.Write(sharded, nil, &WriteOptions{MaxShardBytes: 1024, SkipOtherFiles: true}))
	if _, err := os.Stat(filepath.Join(sharded, "tokenizer.json")); err == nil {
		t.Fatal("tokenizer.json was copied")
	}
	back = must(OpenCheckpoint(sharded))
	if files := must(back.Files()); len(files) < 2 {
		t.Fatalf("files %v", files)
	}
	sameBits(t, "resharded", written[downName], must(back.Tensor(downName)).Data())
	ok(t, back.Close())

	// Progress: after each tensor, the bytes written so far and their total.
	var calls [][2]uint64
	ok(t, ckpt.Write(filepath.Join(dir, "progress"), nil, &WriteOptions{Progress: func(done, total uint64) {
		calls = append(calls, [2]uint64{done, total})
	}}))
	total := uint64(0)
	for _, info := range must(ckpt.Tensors()) {
		total += info.NBytes
	}
	if len(calls) != ckpt.TensorCount() || calls[len(calls)-1] != [2]uint64{total, total} {
		t.Fatalf("progress calls %v, total %d", calls, total)
	}
	func() {
		defer func() {
			if r := recover(); r != "stop" {
				t.Fatalf("recovered %v, want the callback's panic", r)
			}
		}()
		_ = ckpt.Write(filepath.Join(dir, "stopped"), nil, &WriteOptions{Progress: func(uint64, uint64) { panic("stop") }})
		t.Fatal("Write did not panic again")
	}()

	wrong := must(FromSlice(newDown, 10, 12))
	defer wrong.Close()
	wantStatus(t, ckpt.Write(filepath.Join(dir, "bad"), map[string]*Tensor{downName: wrong}, nil), ErrShape, "")
	wantStatus(t, ckpt.Write(filepath.Join(dir, "bad"), map[string]*Tensor{"no.such.tensor": repl}, nil),
		ErrInvalidArgument, "no.such.tensor")
}

func TestModelFromCheckpointApplyFiles(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	written := tinyCheckpoint(t, filepath.Join(dir, "base"), 3)
	ctx := must(NewContext())
	defer ctx.Close()
	ckpt := must(OpenCheckpoint(filepath.Join(dir, "base")))
	defer func() { ok(t, ckpt.Close()) }()
	pa, pb := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	a := ckptAdapter(t, ckpt, "a", []int64{1, 7, 9}, []int64{0, 3}, 10)
	defer a.Close()
	b := ckptAdapter(t, ckpt, "b", []int64{7, 2}, []int64{3}, 20)
	defer b.Close()
	ok(t, a.Save(pa))
	ok(t, b.Save(pb))
	fused := must(FuseAdapters([]*Adapter{a, b}, []float64{0.5, 2}))
	defer fused.Close()
	d, f, kv := shape.DModel, shape.DFF, shape.NKVHeads*shape.HeadDim

	model := must(NewModelFromCheckpoint(ctx, ckpt))
	if applied, _, err := model.Applied(); err != nil || applied != nil {
		t.Fatalf("applied %v, %v", applied, err)
	}
	ok(t, model.ApplyFiles([]string{pa}, nil))
	applied, scale, err := model.Applied()
	ok(t, err)
	if applied.Name() != "a" || scale != 1 {
		t.Fatalf("applied %q at %g", applied.Name(), scale)
	}
	for l := 0; l < shape.NLayers; l++ {
		w := must(model.Layer(l))
		// A model from a checkpoint holds all seven projections; q, k and gate stay the checkpoint's.
		if w.Q == nil || w.K == nil || w.Gate == nil {
			t.Fatal("q, k and gate are missing from a model made from a checkpoint")
		}
		sameBits(t, "q", written[fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", l)], w.Q.Data())
		sameBits(t, "k", written[fmt.Sprintf("model.layers.%d.self_attn.k_proj.weight", l)], w.K.Data())
		sameBits(t, "gate", written[fmt.Sprintf("model.layers.%d.mlp.gate_proj.weight", l)], w.Gate.Data())
		sameBits(t, "down", merged(t, written[weightName(l, TargetDown)], a, l, TargetDown, 1, d, f), w.Down.Data())
		sameBits(t, "v", merged(t, written[weightName(l, TargetV)], a, l, TargetV, 1, kv, d), w.V.Data())
		sameBits(t, "o", written[weightName(l, TargetO)], w.O.Data())
	}
	ok(t, model.ApplyFiles([]string{pa, pb}, []float64{0.5, 2}))
	if applied.Name() != "" {
		t.Fatal("the replaced adapter from files was not forgotten")
	}
	applied, _, _ = model.Applied()
	if applied.Name() != "a+b" {
		t.Fatalf("fused name %q", applied.Name())
	}
	sameBits(t, "fused down", merged(t, written[weightName(1, TargetDown)], fused, 1, TargetDown, 1, d, f),
		must(model.Layer(1)).Down.Data())
	ok(t, model.ApplyFiles([]string{pb}, []float64{0.25}))
	sameBits(t, "scaled v", merged(t, written[weightName(0, TargetV)], b, 0, TargetV, 0.25, kv, d),
		must(model.Layer(0)).V.Data())
	ok(t, model.Switch(a, DefaultScale))
	if applied, _, _ = model.Applied(); applied != a {
		t.Fatal("Applied is not the switched-to adapter")
	}
	wantStatus(t, model.ApplyFiles([]string{filepath.Join(dir, "missing.safetensors")}, nil), ErrIO, "")
	if applied, _, _ = model.Applied(); applied != a {
		t.Fatal("a failed ApplyFiles changed the model")
	}
	wantStatus(t, ckpt.Close(), ErrState, "model")
	ok(t, model.Remove())
	for l := 0; l < shape.NLayers; l++ {
		w := must(model.Layer(l))
		for target, tensor := range map[int]*Tensor{TargetO: w.O, TargetV: w.V, TargetDown: w.Down, TargetUp: w.Up} {
			sameBits(t, "restored", written[weightName(l, target)], tensor.Data())
		}
	}
	ok(t, model.ApplyFiles([]string{pb}, nil))
	view := must(model.Layer(0)).Down
	model.Close()
	if view.Data() != nil {
		t.Fatal("a layer view outlived its model")
	}
	out := filepath.Join(dir, "merged")
	ok(t, ckpt.Write(out, nil, nil))
	back := must(OpenCheckpoint(out))
	defer func() { ok(t, back.Close()) }()
	sameBits(t, "merged file", merged(t, written[weightName(0, TargetDown)], b, 0, TargetDown, 1, d, f),
		must(back.Tensor(weightName(0, TargetDown))).Data())
}

func TestForwardMixedOverModelLayer(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	written := tinyCheckpoint(t, filepath.Join(dir, "base"), 4)
	ctx := must(NewContext())
	defer ctx.Close()
	ckpt := must(OpenCheckpoint(filepath.Join(dir, "base")))
	defer func() { ok(t, ckpt.Close()) }()
	a := ckptAdapter(t, ckpt, "a", []int64{0, 5}, []int64{1}, 30)
	defer a.Close()
	b := ckptAdapter(t, ckpt, "b", []int64{5, 9}, []int64{2}, 40)
	defer b.Close()
	model := must(NewModelFromCheckpoint(ctx, ckpt))
	defer model.Close()
	d, f, tokens := shape.DModel, shape.DFF, 5
	xs := randoms(5, tokens*f)
	x := must(FromSlice(xs, int64(tokens), int64(f)))
	defer x.Close()
	y := must(NewTensor(int64(tokens), int64(d)))
	defer y.Close()
	offsets, seg := []int64{0, 2, 3, 5}, []int32{0, -1, 1}
	ok(t, ForwardMixed(ctx, 1, TargetDown, x, must(model.Layer(1)).Down, []*Adapter{a, b}, nil, offsets, seg, y))
	w0 := written[weightName(1, TargetDown)]
	for s, use := range seg {
		w := w0
		if use >= 0 {
			w = merged(t, w0, []*Adapter{a, b}[use], 1, TargetDown, 1, d, f)
		}
		for r := offsets[s]; r < offsets[s+1]; r++ {
			for o := 0; o < d; o++ {
				want := 0.0
				for c := 0; c < f; c++ {
					want += float64(xs[int(r)*f+c]) * float64(w[o*f+c])
				}
				near(t, fmt.Sprintf("segment %d y[%d,%d]", s, r, o), want, float64(y.Data()[int(r)*d+o]))
			}
		}
	}
}

func TestCheckpointViewsAreInvalidAfterClose(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	tinyCheckpoint(t, dir, 5)
	ckpt := must(OpenCheckpoint(dir))
	view := must(ckpt.Tensor(weightName(0, TargetDown)))
	if view.Data() == nil {
		t.Fatal("no data")
	}
	ok(t, ckpt.Close())
	ok(t, ckpt.Close()) // idempotent
	if view.Data() != nil || view.Float32s() != nil {
		t.Fatal("a view outlived its checkpoint")
	}
	ctx := must(NewContext())
	defer ctx.Close()
	x := must(NewTensor(1, int64(shape.DFF)))
	defer x.Close()
	y := must(NewTensor(1, int64(shape.DModel)))
	defer y.Close()
	// The library sees a NULL weight, not freed memory.
	wantStatus(t, ForwardMixed(ctx, 0, TargetDown, x, view, nil, nil, []int64{0, 1}, []int32{-1}, y), ErrInvalidArgument, "w")
}

func TestAdapterMetadataRoundTrip(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	a := makeAdapter(t, "a", 1, []int64{3}, nil)
	defer a.Close()
	b := makeAdapter(t, "b", 2, []int64{4}, nil)
	defer b.Close()
	if m := must(a.Metadata()); len(m) != 0 {
		t.Fatalf("new adapter has metadata %v", m)
	}
	ok(t, a.SetMeta("base_model", "tiny-llama"))
	ok(t, a.SetMeta("note", "héllo 😀"))
	ok(t, a.SetMeta("empty", ""))
	ok(t, a.SetMeta("gone", "x"))
	ok(t, a.RemoveMeta("gone"))
	ok(t, a.RemoveMeta("absent"))
	wantStatus(t, a.SetMeta("bad key", "x"), ErrInvalidArgument, "")
	wantStatus(t, a.SetMeta("k", "nul\x00inside"), ErrInvalidArgument, "NUL")
	path := filepath.Join(dir, "a.safetensors")
	ok(t, a.Save(path))
	back := must(LoadAdapter(path))
	defer back.Close()
	m := must(back.Metadata())
	if len(m) != 3 || m["base_model"] != "tiny-llama" || m["note"] != "héllo 😀" || m["empty"] != "" {
		t.Fatalf("loaded metadata %v", m)
	}
	if v, present := back.Meta("empty"); !present || v != "" {
		t.Fatal("an empty value is present")
	}
	if _, present := back.Meta("missing"); present {
		t.Fatal("a missing key is absent")
	}
	ok(t, b.SetMeta("base_model", "tiny-llama"))
	fused := must(FuseAdapters([]*Adapter{back, b}, []float64{0.5, 1}))
	defer fused.Close()
	for key, want := range map[string]string{"input.0.name": "a", "input.1.name": "b", "input.0.note": "héllo 😀",
		"input.1.base_model": "tiny-llama"} {
		if got, _ := fused.Meta(key); got != want {
			t.Fatalf("fused %s = %q, want %q", key, got, want)
		}
	}
	if w, _ := fused.Meta("input.0.weight"); w != "0.5" && !strings.HasPrefix(w, "0.5") {
		t.Fatalf("input.0.weight %q", w)
	}
}

func TestExportPEFT(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	a := must(NewAdapter(shape, "a", 2))
	defer a.Close()
	delta := make([]float32, shape.DModel*2)
	for i := range delta {
		delta[i] = float32(i)*0.25 - 1
	}
	dt := must(FromSlice(delta, int64(shape.DModel), 2))
	defer dt.Close()
	ok(t, a.Set(1, TargetDown, []int64{2, 9}, dt, nil))
	out := filepath.Join(dir, "peft")
	ok(t, a.ExportPEFT(out, &PEFTExportOptions{BaseModelNameOrPath: "org/tiny-llama", Scale: 1}))
	config := must(os.ReadFile(filepath.Join(out, "adapter_config.json")))
	if !strings.Contains(string(config), "org/tiny-llama") {
		t.Fatalf("config %s", config)
	}
	lora := must(OpenCheckpoint(filepath.Join(out, "adapter_model.safetensors")))
	defer func() { ok(t, lora.Close()) }()
	var bName, aName string
	for _, info := range must(lora.Tensors()) {
		if strings.Contains(info.Name, "layers.1.mlp.down_proj.lora_B") {
			bName = info.Name
		}
		if strings.Contains(info.Name, "layers.1.mlp.down_proj.lora_A") {
			aName = info.Name
		}
	}
	sameBits(t, "lora_B", delta, must(lora.Tensor(bName)).Data())
	oneHot := must(lora.Tensor(aName))
	if s := oneHot.Shape(); len(s) != 2 || s[0] != 2 || s[1] != int64(shape.DFF) {
		t.Fatalf("lora_A shape %v", s)
	}
	for j, line := range []int{2, 9} {
		for c := 0; c < shape.DFF; c++ {
			want := float32(0)
			if c == line {
				want = 1
			}
			if got := oneHot.Data()[j*shape.DFF+c]; got != want {
				t.Fatalf("lora_A[%d,%d] = %g", j, c, got)
			}
		}
	}
	out2 := filepath.Join(dir, "peft2") // the default scale, 2, folded into B
	ok(t, a.ExportPEFT(out2, nil))
	lora2 := must(OpenCheckpoint(filepath.Join(out2, "adapter_model.safetensors")))
	defer func() { ok(t, lora2.Close()) }()
	if got := must(lora2.Tensor(bName)).Data()[3]; got != delta[3]*2 {
		t.Fatalf("default scale: %g, want %g", got, delta[3]*2)
	}
	wantStatus(t, a.ExportPEFT(filepath.Join(dir, "bad"), &PEFTExportOptions{Scale: math.Inf(1)}), ErrInvalidArgument, "")
}
