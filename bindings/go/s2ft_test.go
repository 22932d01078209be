package s2ft

import (
	"errors"
	"math"
	"math/rand"
	"path/filepath"
	"testing"
)

var shape = ModelShape{NLayers: 2, DModel: 12, NHeads: 4, NKVHeads: 2, HeadDim: 3, DFF: 10}

func randoms(seed int64, n int) []float32 {
	r := rand.New(rand.NewSource(seed))
	a := make([]float32, n)
	for i := range a {
		a[i] = r.Float32()*2 - 1
		if a[i] == 0 {
			a[i] = 0.25
		}
	}
	return a
}

// must returns v or panics (a panic fails the test with the error).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func near(t *testing.T, what string, want, got float64) {
	t.Helper()
	if math.Abs(want-got) > 1e-5*math.Max(1, math.Abs(want)) {
		t.Fatalf("%s: want %g, got %g", what, want, got)
	}
}

func noLeaks(t *testing.T) {
	start := LiveHandles()
	t.Cleanup(func() {
		if n := LiveHandles(); n != start {
			t.Errorf("live handles %d, want %d", n, start)
		}
	})
}

func TestSelect(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	var c [4]int64
	c[TargetDown] = 3
	c[TargetO] = 1
	sel := must(Select(ctx, shape, SelectOptions{Seed: 42, Count: c}))
	defer sel.Close()
	for l := 0; l < shape.NLayers; l++ {
		ch := must(sel.Indices(l, TargetDown, IndexUnits))
		if len(ch) != 3 {
			t.Fatalf("got %v", ch)
		}
		heads := must(sel.Indices(l, TargetO, IndexUnits))
		if len(heads) != 2 || heads[0]/2 != heads[1]/2 {
			t.Fatalf("want one KV group, got %v", heads)
		}
	}
	sel.Close()
	sel.Close() // idempotent
}

func makeAdapter(t *testing.T, name string, seed int64, lines []int64, base []LayerWeights) *Adapter {
	a := must(NewAdapter(shape, name, 1))
	for l := 0; l < shape.NLayers; l++ {
		d := must(FromSlice(randoms(seed+int64(l), shape.DModel*len(lines)), int64(shape.DModel), int64(len(lines))))
		var b *Tensor
		if base != nil {
			b = base[l].Down
		}
		ok(t, a.Set(l, TargetDown, lines, d, b))
		d.Close()
	}
	return a
}

func deltaOf(t *testing.T, a *Adapter, layer int, k int) []float32 {
	d := must(NewTensor(int64(shape.DModel), int64(k)))
	defer d.Close()
	ok(t, a.Delta(layer, TargetDown, d))
	return append([]float32(nil), d.Data()...)
}

func TestAdapterLifecycle(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	out, in := shape.DModel, shape.DFF
	base := make([]LayerWeights, shape.NLayers)
	orig := make([][]float32, shape.NLayers)
	for l := range base {
		base[l].Down = must(FromSlice(randoms(10+int64(l), out*in), int64(out), int64(in)))
		defer base[l].Down.Close()
		orig[l] = append([]float32(nil), base[l].Down.Data()...)
	}
	a := makeAdapter(t, "A", 1, []int64{1, 4}, base)
	defer a.Close()
	b := makeAdapter(t, "B", 2, []int64{4, 8}, base)
	defer b.Close()

	path := filepath.Join(t.TempDir(), "a.safetensors")
	ok(t, a.Save(path))
	a2 := must(LoadAdapter(path))
	defer a2.Close()
	if a2.Name() != "A" {
		t.Fatalf("name %q", a2.Name())
	}
	da, da2 := deltaOf(t, a, 1, 2), deltaOf(t, a2, 1, 2)
	for i := range da {
		if da[i] != da2[i] {
			t.Fatal("loaded delta differs")
		}
	}

	f := must(FuseAdapters([]*Adapter{a, b}, []float64{0.5, 2}))
	defer f.Close()
	lines := must(f.Lines(0, TargetDown))
	if len(lines) != 3 || lines[0] != 1 || lines[1] != 4 || lines[2] != 8 {
		t.Fatalf("fused lines %v", lines)
	}
	db, df := deltaOf(t, b, 0, 2), deltaOf(t, f, 0, 3)
	da0 := deltaOf(t, a, 0, 2)
	for r := 0; r < out; r++ {
		near(t, "fused overlap", 0.5*float64(da0[r*2+1])+2*float64(db[r*2]), float64(df[r*3+1]))
	}

	m := must(NewModel(ctx, shape, base))
	defer m.Close()
	ok(t, m.Apply(a, 0.75))
	w := base[0].Down.Data()
	for r := 0; r < out; r++ {
		if w[r*in+4] != float32(float64(orig[0][r*in+4])+0.75*float64(da0[r*2+1])) {
			t.Fatal("apply: wrong merged value")
		}
	}
	ok(t, m.Remove())
	for l := range base {
		for i, v := range base[l].Down.Data() {
			if math.Float32bits(v) != math.Float32bits(orig[l][i]) {
				t.Fatal("remove did not restore bit-exactly")
			}
		}
	}
	ok(t, m.Apply(a, 2))
	ok(t, m.Switch(b, 1.5))
	switched := append([]float32(nil), base[1].Down.Data()...)
	ok(t, m.Remove())
	ok(t, m.Apply(b, 1.5))
	for i, v := range base[1].Down.Data() {
		if math.Float32bits(v) != math.Float32bits(switched[i]) {
			t.Fatal("switch differs from remove + apply")
		}
	}
	ok(t, m.Remove())
}

func TestForwardMixed(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	out, in, T := shape.DModel, shape.DFF, 9
	lines := [][]int64{{1, 4, 7}, {4, 8}}
	a := makeAdapter(t, "A", 31, lines[0], nil)
	defer a.Close()
	b := makeAdapter(t, "B", 32, lines[1], nil)
	defer b.Close()
	deltas := [][]float32{deltaOf(t, a, 1, 3), deltaOf(t, b, 1, 2)}
	xs, ws := randoms(21, T*in), randoms(22, out*in)
	x := must(FromSlice(xs, int64(T), int64(in)))
	defer x.Close()
	w := must(FromSlice(ws, int64(out), int64(in)))
	defer w.Close()
	y := must(NewTensor(int64(T), int64(out)))
	defer y.Close()
	for i := range y.Data() {
		y.Data()[i] = float32(math.NaN())
	}
	offsets, seg, scales := []int64{0, 3, 5, 9}, []int32{0, -1, 1}, []float64{0.5, 1.25}
	ok(t, ForwardMixed(ctx, 1, TargetDown, x, w, []*Adapter{a, b}, scales, offsets, seg, y))
	for s := range seg {
		for i := offsets[s]; i < offsets[s+1]; i++ {
			for o := 0; o < out; o++ {
				ref := 0.0
				for c := 0; c < in; c++ {
					ref += float64(xs[int(i)*in+c]) * float64(ws[o*in+c])
				}
				if ad := seg[s]; ad >= 0 {
					k := len(lines[ad])
					for j, line := range lines[ad] {
						ref += scales[ad] * float64(xs[int(i)*in+int(line)]) * float64(deltas[ad][o*k+j])
					}
				}
				near(t, "y", ref, float64(y.Data()[int(i)*out+o]))
			}
		}
	}
}

func TestPartialBackward(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	T, in, out := 7, 11, 5
	cols := []int64{9, 2, 5}
	k := len(cols)
	xs, ws, dys := randoms(1, T*in), randoms(2, out*in), randoms(3, T*out)
	x := must(FromSlice(xs, int64(T), int64(in)))
	w := must(FromSlice(ws, int64(out), int64(in)))
	dy := must(FromSlice(dys, int64(T), int64(out)))
	y := must(NewTensor(int64(T), int64(out)))
	xsv := must(NewTensor(int64(T), int64(k)))
	dx := must(NewTensor(int64(T), int64(in)))
	dw := must(NewTensor(int64(out), int64(k)))
	for _, tt := range []*Tensor{x, w, dy, y, xsv, dx, dw} {
		defer tt.Close()
	}
	ok(t, ctx.ForwardPartial(Columns(cols...), x, w, y, xsv))
	ok(t, ctx.BackwardPartial(Columns(cols...), w, xsv, dy, dx, dw, 0))
	for i := 0; i < T; i++ {
		for c := 0; c < in; c++ {
			ref := 0.0
			for o := 0; o < out; o++ {
				ref += float64(dys[i*out+o]) * float64(ws[o*in+c])
			}
			near(t, "dx", ref, float64(dx.Data()[i*in+c]))
		}
	}
	for o := 0; o < out; o++ {
		for j, c := range cols {
			ref := 0.0
			for i := 0; i < T; i++ {
				ref += float64(dys[i*out+o]) * float64(xs[i*in+int(c)])
			}
			near(t, "dW_S", ref, float64(dw.Data()[o*k+j]))
		}
	}
}

func TestErrors(t *testing.T) {
	noLeaks(t)
	err := ModelShape{NLayers: 2, DModel: 12, NHeads: 4, NKVHeads: 3, HeadDim: 3, DFF: 10}.Check()
	var e *Error
	if !errors.As(err, &e) || e.Status != ErrInvalidArgument {
		t.Fatalf("want invalid argument, got %v", err)
	}
	if !containsStr(e.Message, "n_kv_heads") {
		t.Fatalf("message %q does not name n_kv_heads", e.Message)
	}
	_, err = LoadAdapter("/nonexistent-dir-s2ft/a.safetensors")
	if !errors.As(err, &e) || e.Status != ErrIO || !containsStr(e.Message, "/nonexistent-dir-s2ft/a.safetensors") {
		t.Fatalf("want an IO error naming the path, got %v", err)
	}
	ctx := must(NewContext())
	defer ctx.Close()
	var c [4]int64
	c[TargetDown] = int64(shape.DFF + 1)
	_, err = Select(ctx, shape, SelectOptions{Count: c})
	if !errors.As(err, &e) || e.Status != ErrInvalidArgument || !containsStr(e.Message, "s2ft_select") {
		t.Fatalf("want invalid argument from s2ft_select, got %v", err)
	}
	if Version() == 0 || VersionString() == "" {
		t.Fatal("no version")
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
