package s2ft

import (
	"errors"
	"math"
	"path/filepath"
	"sort"
	"testing"
)

// matrix is a row-major [rows, cols] float32 tensor in C memory filled from seed.
func matrix(t *testing.T, seed int64, rows, cols int) *Tensor {
	t.Helper()
	m := must(FromSlice(randoms(seed, rows*cols), int64(rows), int64(cols)))
	t.Cleanup(m.Close)
	return m
}

// clone copies a tensor into fresh C memory.
func clone(t *testing.T, src *Tensor) *Tensor {
	t.Helper()
	c := must(FromSlice(src.Data(), src.Shape()...))
	t.Cleanup(c.Close)
	return c
}

func sameBits(t *testing.T, what string, want, got []float32) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("%s: element %d is %g, want %g", what, i, got[i], want[i])
		}
	}
}

func wantStatus(t *testing.T, err error, status int, names string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != status || !containsStr(e.Message, names) {
		t.Fatalf("want %s naming %q, got %v", StatusString(status), names, err)
	}
}

// columnSquares[c] = sum_r m[r, c]^2 of a row-major [rows, cols] matrix.
func columnSquares(m []float32, rows, cols int) []float64 {
	s := make([]float64, cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			v := float64(m[r*cols+c])
			s[c] += v * v
		}
	}
	return s
}

func TestStatisticsWeightSelection(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	stats := must(NewStatistics(ctx, shape))
	defer stats.Close()
	_, err := stats.Get(0, TargetDown, StatWeight)
	wantStatus(t, err, ErrState, "weight")

	const k, T = 3, 5
	downs := make([]*Tensor, shape.NLayers)
	for l := range downs {
		downs[l] = matrix(t, 100+int64(l), shape.DModel, shape.DFF)
		ok(t, stats.AddWeight(l, TargetDown, downs[l]))
	}
	for l := range downs {
		want := columnSquares(downs[l].Data(), shape.DModel, shape.DFF)
		got := must(stats.Get(l, TargetDown, StatWeight))
		if len(got) != shape.DFF {
			t.Fatalf("layer %d: %d units, want %d", l, len(got), shape.DFF)
		}
		for c := range want {
			near(t, "weight sum of squares", want[c], got[c])
		}
	}

	// Activation: sum_t x[t, c]^2; gradient: sum over dW = dy^T x columns.
	x := matrix(t, 7, T, shape.DFF)
	dy := matrix(t, 8, T, shape.DModel)
	ok(t, stats.AddActivation(0, TargetDown, x))
	ok(t, stats.AddGradient(0, TargetDown, x, dy))
	wantAct := columnSquares(x.Data(), T, shape.DFF)
	dw := make([]float32, shape.DModel*shape.DFF)
	for o := 0; o < shape.DModel; o++ {
		for c := 0; c < shape.DFF; c++ {
			s := 0.0
			for i := 0; i < T; i++ {
				s += float64(dy.Data()[i*shape.DModel+o]) * float64(x.Data()[i*shape.DFF+c])
			}
			dw[o*shape.DFF+c] = float32(s)
		}
	}
	wantGrad := columnSquares(dw, shape.DModel, shape.DFF)
	gotAct, gotGrad := must(stats.Get(0, TargetDown, StatActivation)), must(stats.Get(0, TargetDown, StatGradient))
	for c := range wantAct {
		near(t, "activation sum of squares", wantAct[c], gotAct[c])
		if math.Abs(wantGrad[c]-gotGrad[c]) > 1e-4*math.Max(1, wantGrad[c]) {
			t.Fatalf("gradient sum of squares of %d: want %g, got %g", c, wantGrad[c], gotGrad[c])
		}
	}

	var count [4]int64
	count[TargetDown] = k
	sel := must(SelectWithStatistics(ctx, shape, SelectOptions{Targets: uint32(TargetBit(TargetDown)),
		Strategy: StrategyWeight, Count: count}, stats))
	defer sel.Close()
	for l := range downs {
		norms := columnSquares(downs[l].Data(), shape.DModel, shape.DFF)
		order := make([]int64, shape.DFF)
		for i := range order {
			order[i] = int64(i)
		}
		sort.SliceStable(order, func(a, b int) bool { return norms[order[a]] > norms[order[b]] })
		want := append([]int64(nil), order[:k]...)
		sort.Slice(want, func(a, b int) bool { return want[a] < want[b] })
		got := must(sel.Indices(l, TargetDown, IndexUnits))
		if len(got) != k {
			t.Fatalf("layer %d: selected %v, want %v", l, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("layer %d: selected %v, want the largest-norm channels %v", l, got, want)
			}
		}
	}
	// Scoring by weight without the statistics is an error.
	_, err = SelectWithStatistics(ctx, shape, SelectOptions{Targets: uint32(TargetBit(TargetDown)),
		Strategy: StrategyWeight, Count: count}, nil)
	wantStatus(t, err, ErrInvalidArgument, "s2ft_select")
	stats.Close()
	stats.Close() // idempotent
}

func silu(z float64) float64 { return z / (1 + math.Exp(-z)) }

// swiglu computes y = down (silu(gate x) * (up x)) for x [T, d] in float64.
func swiglu(x []float32, T, d, dff int, gate, up, down []float32) []float64 {
	y := make([]float64, T*d)
	for i := 0; i < T; i++ {
		h := make([]float64, dff)
		for c := 0; c < dff; c++ {
			g, u := 0.0, 0.0
			for j := 0; j < d; j++ {
				g += float64(gate[c*d+j]) * float64(x[i*d+j])
				u += float64(up[c*d+j]) * float64(x[i*d+j])
			}
			h[c] = silu(g) * u
		}
		for o := 0; o < d; o++ {
			for c := 0; c < dff; c++ {
				y[i*d+o] += float64(down[o*dff+c]) * h[c]
			}
		}
	}
	return y
}

func TestPermute(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	var count [4]int64
	count[TargetO], count[TargetDown] = 1, 3
	sel := must(Select(ctx, shape, SelectOptions{Seed: 9, Count: count}))
	defer sel.Close()
	d, dff, qd, kvd := shape.DModel, shape.DFF, shape.NHeads*shape.HeadDim, shape.NKVHeads*shape.HeadDim
	const T = 4
	x := randoms(77, T*d)
	for l := 0; l < shape.NLayers; l++ {
		s := int64(10 * l)
		w := LayerWeights{Q: matrix(t, s+1, qd, d), K: matrix(t, s+2, kvd, d), V: matrix(t, s+3, kvd, d),
			O: matrix(t, s+4, d, qd), Gate: matrix(t, s+5, dff, d), Up: matrix(t, s+6, dff, d), Down: matrix(t, s+7, d, dff)}
		all := []*Tensor{w.Q, w.K, w.V, w.O, w.Gate, w.Up, w.Down}
		orig := make([][]float32, len(all))
		for i, tt := range all {
			orig[i] = append([]float32(nil), tt.Data()...)
		}
		before := swiglu(x, T, d, dff, w.Gate.Data(), w.Up.Data(), w.Down.Data())

		ok(t, Permute(ctx, sel, l, w, PermuteForward))
		perm := must(sel.Permutation(l, PermChannels))
		if len(perm) != dff {
			t.Fatalf("channel permutation has %d entries, want %d", len(perm), dff)
		}
		for r := 0; r < d; r++ { // permuted column p of down is base column perm[p]
			for p, c := range perm {
				if w.Down.Data()[r*dff+p] != orig[6][r*dff+int(c)] {
					t.Fatalf("layer %d: down column %d is not base column %d", l, p, c)
				}
			}
		}
		chosen := must(sel.Indices(l, TargetDown, IndexUnits))
		for p := range chosen {
			if perm[p] != chosen[p] {
				t.Fatalf("layer %d: permutation %v does not start with the selected %v", l, perm, chosen)
			}
		}
		begin, n := must2(sel.Range(l, TargetDown))
		if begin != 0 || n != int64(len(chosen)) {
			t.Fatalf("layer %d: permuted range [%d, +%d), want [0, +%d)", l, begin, n, len(chosen))
		}
		after := swiglu(x, T, d, dff, w.Gate.Data(), w.Up.Data(), w.Down.Data())
		for i := range before {
			if math.Abs(before[i]-after[i]) > 1e-9*math.Max(1, math.Abs(before[i])) {
				t.Fatalf("layer %d: FFN output %d changed: %g -> %g", l, i, before[i], after[i])
			}
		}
		ok(t, Permute(ctx, sel, l, w, PermuteInverse))
		for i, tt := range all {
			sameBits(t, "inverse permute", orig[i], tt.Data())
		}
	}
	err := Permute(ctx, sel, shape.NLayers, LayerWeights{}, PermuteForward)
	wantStatus(t, err, ErrInvalidArgument, "layer")
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// adamw is the reference AdamW step t on a float64 copy of the slice, with
// the moments stored in f32 as the library stores them.
func adamw(o OptimizerOptions, lr float64, t int, x []float64, g []float32, m, v []float32) {
	for i := range x {
		gi := float64(g[i])
		x[i] *= 1 - lr*o.WeightDecay
		m[i] = float32(o.Beta1*float64(m[i]) + (1-o.Beta1)*gi)
		v[i] = float32(o.Beta2*float64(v[i]) + (1-o.Beta2)*gi*gi)
		mh := float64(m[i]) / (1 - math.Pow(o.Beta1, float64(t)))
		vh := float64(v[i]) / (1 - math.Pow(o.Beta2, float64(t)))
		x[i] -= lr * mh / (math.Sqrt(vh) + o.Eps)
		x[i] = float64(float32(x[i]))
	}
}

func TestAdamWStep(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	rows, cols := 5, 7
	slice := []int64{6, 1, 3}
	k := len(slice)
	w := matrix(t, 41, rows, cols)
	orig := append([]float32(nil), w.Data()...)
	opts := DefaultOptimizerOptions()
	if opts.Kind != OptimizerAdamW || opts.Beta1 != 0.9 || opts.Beta2 != 0.999 || opts.Eps != 1e-8 {
		t.Fatalf("unexpected defaults %+v", opts)
	}
	opts.WeightDecay = 0.05
	opt := must(NewOptimizer(ctx, opts))
	defer opt.Close()
	idx := must(opt.AddParam(w, Columns(slice...)))
	if idx != 0 {
		t.Fatalf("first parameter index %d", idx)
	}
	x := make([]float64, rows*k)
	for r := 0; r < rows; r++ {
		for j, c := range slice {
			x[r*k+j] = float64(orig[r*cols+int(c)])
		}
	}
	m, v := make([]float32, rows*k), make([]float32, rows*k)
	const lr = 0.01
	for step := 1; step <= 2; step++ {
		g := matrix(t, 50+int64(step), rows, k)
		norm := must(opt.Step(lr, []*Tensor{g}))
		wantNorm := 0.0
		for _, gi := range g.Data() {
			wantNorm += float64(gi) * float64(gi)
		}
		near(t, "gradient norm", math.Sqrt(wantNorm), norm)
		adamw(opts, lr, step, x, g.Data(), m, v)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				got := w.Data()[r*cols+c]
				j := -1
				for jj, sc := range slice {
					if int(sc) == c {
						j = jj
					}
				}
				if j < 0 {
					if math.Float32bits(got) != math.Float32bits(orig[r*cols+c]) {
						t.Fatalf("column %d is not trained but changed", c)
					}
					continue
				}
				if math.Abs(float64(got)-x[r*k+j]) > 1e-6*math.Max(1, math.Abs(x[r*k+j])) {
					t.Fatalf("step %d w[%d, %d]: want %g, got %g", step, r, c, x[r*k+j], got)
				}
			}
		}
		if n := must(opt.StepCount()); n != int64(step) {
			t.Fatalf("step count %d, want %d", n, step)
		}
	}
	_, err := opt.AddParam(w, Columns(0))
	wantStatus(t, err, ErrState, "step")
	_, err = opt.Step(lr, []*Tensor{matrix(t, 60, rows, k), matrix(t, 61, rows, k)})
	wantStatus(t, err, ErrInvalidArgument, "n_grads")
	opts.Beta1 = 1
	_, err = NewOptimizer(ctx, opts)
	wantStatus(t, err, ErrInvalidArgument, "beta1")
	opt.Close()
	opt.Close() // idempotent
}

func TestOptimizerResume(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	rows, cols := 6, 9
	w1, w2 := matrix(t, 71, cols, rows), matrix(t, 72, rows, cols) // a row and a column parameter
	g := [][]*Tensor{{matrix(t, 73, 2, rows), matrix(t, 74, rows, 3)}, {matrix(t, 75, 2, rows), matrix(t, 76, rows, 3)},
		{matrix(t, 77, 2, rows), matrix(t, 78, rows, 3)}}
	opts := DefaultOptimizerOptions()
	opts.WeightDecay, opts.MaxGradNorm = 0.01, 1.5
	setup := func(a, b *Tensor) *Optimizer {
		o := must(NewOptimizer(ctx, opts))
		must(o.AddParam(a, RowRange(2, 2)))
		must(o.AddParam(b, Columns(8, 0, 4)))
		return o
	}
	opt := setup(w1, w2)
	defer opt.Close()
	must(opt.Step(0.02, g[0]))
	path := filepath.Join(t.TempDir(), "opt.safetensors")
	ok(t, opt.Save(path))
	v1, v2 := clone(t, w1), clone(t, w2) // the weights as saved
	must(opt.Step(0.02, g[1]))
	must(opt.Step(0.02, g[2]))

	fresh := setup(v1, v2)
	defer fresh.Close()
	ok(t, fresh.Load(path))
	if n := must(fresh.StepCount()); n != 1 {
		t.Fatalf("resumed step count %d, want 1", n)
	}
	must(fresh.Step(0.02, g[1]))
	must(fresh.Step(0.02, g[2]))
	sameBits(t, "resumed row parameter", w1.Data(), v1.Data())
	sameBits(t, "resumed column parameter", w2.Data(), v2.Data())

	// A file that does not match the parameters is rejected.
	other := must(NewOptimizer(ctx, opts))
	defer other.Close()
	must(other.AddParam(clone(t, w2), Columns(1)))
	err := other.Load(path)
	var e *Error
	if !errors.As(err, &e) || e.Status != ErrFormat {
		t.Fatalf("want a format error, got %v", err)
	}
	err = fresh.Load(filepath.Join(t.TempDir(), "missing.safetensors"))
	wantStatus(t, err, ErrIO, "missing.safetensors")
}

func TestSelectionSaveLoad(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	var count [4]int64
	count[TargetO], count[TargetV], count[TargetDown], count[TargetUp] = 1, 1, 4, 2
	all := uint32(TargetBit(TargetO) | TargetBit(TargetV) | TargetBit(TargetDown) | TargetBit(TargetUp))
	sel := must(Select(ctx, shape, SelectOptions{Targets: all, Seed: 5, Count: count, HeadGranularity: HeadsSingle}))
	defer sel.Close()
	path := filepath.Join(t.TempDir(), "sel.json")
	ok(t, sel.Save(path))
	back := must(LoadSelection(path))
	defer back.Close()
	if s := must(back.Shape()); s != shape {
		t.Fatalf("loaded shape %+v, want %+v", s, shape)
	}
	if m := must(back.Targets()); m != all {
		t.Fatalf("loaded targets %b, want %b", m, all)
	}
	for l := 0; l < shape.NLayers; l++ {
		for target := 0; target < 4; target++ {
			for _, flags := range []uint{IndexUnits, IndexLines, IndexUnits | IndexPermuted, IndexLines | IndexPermuted} {
				a, b := must(sel.Indices(l, target, flags)), must(back.Indices(l, target, flags))
				if len(a) == 0 || len(a) != len(b) {
					t.Fatalf("layer %d target %d flags %d: %v vs %v", l, target, flags, a, b)
				}
				for i := range a {
					if a[i] != b[i] {
						t.Fatalf("layer %d target %d flags %d: %v vs %v", l, target, flags, a, b)
					}
				}
			}
		}
		for kind := PermHeads; kind <= PermChannels; kind++ {
			a, b := must(sel.Permutation(l, kind)), must(back.Permutation(l, kind))
			if len(a) != len(b) || len(a) == 0 {
				t.Fatalf("permutation kind %d: %v vs %v", kind, a, b)
			}
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("permutation kind %d: %v vs %v", kind, a, b)
				}
			}
		}
	}
	_, err := LoadSelection(filepath.Join(t.TempDir(), "none.json"))
	wantStatus(t, err, ErrIO, "none.json")
	_, err = sel.Permutation(0, 7)
	wantStatus(t, err, ErrInvalidArgument, "kind")
}

func TestAdapterFromTraining(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	var count [4]int64
	count[TargetO], count[TargetV], count[TargetDown], count[TargetUp] = 1, 1, 3, 2
	all := uint32(TargetBit(TargetO) | TargetBit(TargetV) | TargetBit(TargetDown) | TargetBit(TargetUp))
	sel := must(Select(ctx, shape, SelectOptions{Targets: all, Seed: 11, Count: count}))
	defer sel.Close()
	d, dff, qd, kvd := shape.DModel, shape.DFF, shape.NHeads*shape.HeadDim, shape.NKVHeads*shape.HeadDim
	base := make([]LayerWeights, shape.NLayers)
	trained := make([]LayerWeights, shape.NLayers)
	for l := range base {
		s := int64(20 * l)
		base[l] = LayerWeights{O: matrix(t, s+1, d, qd), V: matrix(t, s+2, kvd, d), Down: matrix(t, s+3, d, dff), Up: matrix(t, s+4, dff, d)}
		trained[l] = LayerWeights{O: matrix(t, s+5, d, qd), V: matrix(t, s+6, kvd, d), Down: matrix(t, s+7, d, dff), Up: matrix(t, s+8, dff, d)}
	}
	weightOf := func(lw LayerWeights, target int) *Tensor {
		return []*Tensor{lw.O, lw.V, lw.Down, lw.Up}[target]
	}
	a := must(AdapterFromTraining(ctx, sel, base, trained, false, "trained"))
	defer a.Close()
	check := func(a *Adapter) {
		t.Helper()
		for l := range base {
			for target := 0; target < 4; target++ {
				lines := must(sel.Indices(l, target, IndexLines))
				got := must(a.Lines(l, target))
				if len(got) != len(lines) {
					t.Fatalf("layer %d target %d: lines %v, want %v", l, target, got, lines)
				}
				for i := range lines {
					if got[i] != lines[i] {
						t.Fatalf("layer %d target %d: lines %v, want %v", l, target, got, lines)
					}
				}
				b, tr := weightOf(base[l], target), weightOf(trained[l], target)
				rows, cols := int(b.Shape()[0]), int(b.Shape()[1])
				k := len(lines)
				columns := target == TargetO || target == TargetDown
				var delta *Tensor
				if columns {
					delta = must(NewTensor(int64(rows), int64(k)))
				} else {
					delta = must(NewTensor(int64(k), int64(cols)))
				}
				for i := range delta.Data() {
					delta.Data()[i] = float32(math.NaN())
				}
				ok(t, a.Delta(l, target, delta))
				for j, line := range lines {
					n := rows
					if !columns {
						n = cols
					}
					for i := 0; i < n; i++ {
						src, dst := i*cols+int(line), i*k+j
						if !columns {
							src, dst = int(line)*cols+i, j*cols+i
						}
						want := float32(float64(tr.Data()[src]) - float64(b.Data()[src]))
						if math.Float32bits(delta.Data()[dst]) != math.Float32bits(want) {
							t.Fatalf("layer %d target %d line %d: delta %g, want %g", l, target, line, delta.Data()[dst], want)
						}
					}
				}
				delta.Close()
			}
		}
	}
	check(a)
	if a.Name() != "trained" {
		t.Fatalf("name %q", a.Name())
	}
	ok(t, a.SetInfo("renamed", 0.5))
	s, scale, targets, err := a.Info()
	ok(t, err)
	if a.Name() != "renamed" || scale != 0.5 || targets != all || s != shape {
		t.Fatalf("info: %q %g %b %+v", a.Name(), scale, targets, s)
	}
	wantStatus(t, a.SetInfo("x", math.Inf(1)), ErrInvalidArgument, "default_scale")

	// Trained in permuted order: the same adapter once lines map back.
	for l := range base {
		ok(t, Permute(ctx, sel, l, base[l], PermuteForward))
		ok(t, Permute(ctx, sel, l, trained[l], PermuteForward))
	}
	p := must(AdapterFromTraining(ctx, sel, base, trained, true, "permuted"))
	defer p.Close()
	for l := range base {
		ok(t, Permute(ctx, sel, l, base[l], PermuteInverse))
		ok(t, Permute(ctx, sel, l, trained[l], PermuteInverse))
	}
	check(p)

	_, err = AdapterFromTraining(ctx, sel, base[:1], trained[:1], false, "x")
	wantStatus(t, err, ErrInvalidArgument, "layers")
}
