package s2ft

import (
	"math"
	"path/filepath"
	"sort"
	"testing"
)

// Shapes of the seven weights of `shape` (s2ft_test.go).
func weightDims(w int) (int64, int64) {
	d, f := int64(shape.DModel), int64(shape.DFF)
	nq, kv := int64(shape.NHeads*shape.HeadDim), int64(shape.NKVHeads*shape.HeadDim)
	switch w {
	case WeightO:
		return d, nq
	case WeightV, WeightK:
		return kv, d
	case WeightQ:
		return nq, d
	case WeightDown:
		return d, f
	default: // Up, Gate
		return f, d
	}
}

func TestSparseAdapterEntries(t *testing.T) {
	noLeaks(t)
	a := must(NewAdapter(shape, "sp", 1))
	defer a.Close()
	if w, n, err := a.SparseInfo(); err != nil || w != 0 || n != 0 {
		t.Fatalf("empty adapter: %d %d %v", w, n, err)
	}
	qr, qc := weightDims(WeightQ)
	q := must(FromSlice(randoms(3, int(qr*qc)), qr, qc))
	defer q.Close()
	dqv := randoms(4, 3)
	dq := must(FromSlice(dqv, 3))
	defer dq.Close()
	ok(t, a.SetSparse(1, WeightQ, []int64{0, 17, 143}, dq, q))
	dg := must(FromSlice([]float32{0.5, -0.25}, 1, 2))
	defer dg.Close()
	ok(t, a.SetSparse(0, WeightGate, []int64{5, 6}, dg, nil))

	e := must(a.Sparse(1, WeightQ))
	if len(e.Indices) != 3 || e.Indices[0] != 0 || e.Indices[1] != 17 || e.Indices[2] != 143 || e.Fingerprint == 0 {
		t.Fatalf("q entries %+v", e)
	}
	sameBits(t, "q deltas", dqv, e.Deltas)
	g := must(a.Sparse(0, WeightGate))
	if len(g.Indices) != 2 || g.Indices[1] != 6 || g.Deltas[0] != 0.5 || g.Deltas[1] != -0.25 || g.Fingerprint != 0 {
		t.Fatalf("gate entries %+v", g)
	}
	if none := must(a.Sparse(0, WeightK)); len(none.Indices) != 0 || none.Fingerprint != 0 {
		t.Fatalf("k entries %+v", none)
	}
	w, n, err := a.SparseInfo()
	ok(t, err)
	if w != WeightBit(WeightQ)|WeightBit(WeightGate) || n != 5 {
		t.Fatalf("sparse info %b %d", w, n)
	}

	path := filepath.Join(t.TempDir(), "sp.safetensors")
	ok(t, a.Save(path))
	b := must(LoadAdapter(path))
	defer b.Close()
	for _, lw := range [][2]int{{1, WeightQ}, {0, WeightGate}} {
		x, y := must(a.Sparse(lw[0], lw[1])), must(b.Sparse(lw[0], lw[1]))
		if len(x.Indices) != len(y.Indices) || x.Fingerprint != y.Fingerprint {
			t.Fatalf("loaded %+v, saved %+v", y, x)
		}
		for i := range x.Indices {
			if x.Indices[i] != y.Indices[i] {
				t.Fatalf("loaded indices %v, saved %v", y.Indices, x.Indices)
			}
		}
		sameBits(t, "loaded deltas", x.Deltas, y.Deltas)
	}

	// Unsorted indices: ErrInvalidArgument, and nothing changes.
	two := must(FromSlice([]float32{1, 2}, 2))
	defer two.Close()
	wantStatus(t, a.SetSparse(1, WeightQ, []int64{4, 3}, two, nil), ErrInvalidArgument, "")
	if e2 := must(a.Sparse(1, WeightQ)); len(e2.Indices) != 3 {
		t.Fatalf("a failed SetSparse changed the entries: %v", e2.Indices)
	}
	ok(t, a.ClearSparse(0, WeightGate))
	if w, n, _ := a.SparseInfo(); w != WeightBit(WeightQ) || n != 3 {
		t.Fatalf("after clear: %b %d", w, n)
	}
}

func TestSparseAdapterApplyRemoveBitExact(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	qr, qc := weightDims(WeightQ)
	gr, gc := weightDims(WeightGate)
	q0, g0 := randoms(5, int(qr*qc)), randoms(6, int(gr*gc))
	q := must(FromSlice(q0, qr, qc))
	defer q.Close()
	gate := must(FromSlice(g0, gr, gc))
	defer gate.Close()
	dqv, dgv := randoms(7, 3), randoms(8, 2)
	qi, gi := []int64{2, 50, 143}, []int64{0, 119}
	dq := must(FromSlice(dqv, 3))
	defer dq.Close()
	dg := must(FromSlice(dgv, 2))
	defer dg.Close()
	a := must(NewAdapter(shape, "sp", 1))
	defer a.Close()
	ok(t, a.SetSparse(1, WeightQ, qi, dq, q))
	ok(t, a.SetSparse(0, WeightGate, gi, dg, gate))

	model := must(NewModel(ctx, shape, []LayerWeights{{Gate: gate}, {Q: q}}))
	defer model.Close()
	ok(t, model.Apply(a, 0.5))
	wantQ, wantG := append([]float32(nil), q0...), append([]float32(nil), g0...)
	for i, n := range qi {
		wantQ[n] = float32(float64(q0[n]) + 0.5*float64(dqv[i]))
	}
	for i, n := range gi {
		wantG[n] = float32(float64(g0[n]) + 0.5*float64(dgv[i]))
	}
	sameBits(t, "applied q", wantQ, q.Data())
	sameBits(t, "applied gate", wantG, gate.Data())
	ok(t, model.Remove())
	sameBits(t, "restored q", q0, q.Data())
	sameBits(t, "restored gate", g0, gate.Data())
}

func matmulNT(a, b []float32, m, n, k int) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[j*k+p])
			}
			c[i*n+j] = s
		}
	}
	return c
}

func TestSorsa(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	out, in, r, T := 7, 6, 3, 5
	w0 := randoms(9, out*in)
	w := must(FromSlice(w0, int64(out), int64(in)))
	defer w.Close()
	u := must(NewTensor(int64(out), int64(r)))
	defer u.Close()
	s := must(NewTensor(int64(r)))
	defer s.Close()
	vt := must(NewTensor(int64(r), int64(in)))
	defer vt.Close()
	ok(t, SorsaInit(ctx, w, r, u, s, vt))
	sv := s.Data()
	if !(sv[0] >= sv[1] && sv[1] >= sv[2] && sv[2] > 0) {
		t.Fatalf("singular values %v", sv)
	}
	wBad := must(FromSlice(w0, int64(out), int64(in)))
	defer wBad.Close()
	wantStatus(t, SorsaInit(ctx, wBad, 0, u, s, vt), ErrInvalidArgument, "")

	xv := randoms(10, T*in)
	x := must(FromSlice(xv, int64(T), int64(in)))
	defer x.Close()
	y := must(NewTensor(int64(T), int64(out)))
	defer y.Close()
	h := must(NewTensor(int64(T), int64(r)))
	defer h.Close()
	ok(t, SorsaForward(ctx, x, w, u, s, vt, y, h))
	ref := matmulNT(xv, w0, T, out, in)
	for i, v := range y.Data() {
		if math.Abs(float64(v)-ref[i]) > 1e-5 {
			t.Fatalf("y[%d] = %g, want %g", i, v, ref[i])
		}
	}

	dyv := randoms(11, T*out)
	dy := must(FromSlice(dyv, int64(T), int64(out)))
	defer dy.Close()
	dx := must(NewTensor(int64(T), int64(in)))
	defer dx.Close()
	du := must(NewTensor(int64(out), int64(r)))
	defer du.Close()
	ds := must(NewTensor(int64(r)))
	defer ds.Close()
	dvt := must(NewTensor(int64(r), int64(in)))
	defer dvt.Close()
	ok(t, SorsaBackward(ctx, x, w, u, s, vt, h, dy, dx, du, ds, dvt, 0))
	for _, g := range [][]float32{dx.Data(), du.Data(), ds.Data(), dvt.Data()} {
		for _, v := range g {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatal("a non-finite gradient")
			}
		}
	}
	w0t := make([]float32, in*out)
	for i := 0; i < out; i++ {
		for j := 0; j < in; j++ {
			w0t[j*out+i] = w0[i*in+j]
		}
	}
	refDx := matmulNT(dyv, w0t, T, in, out)
	for i, v := range dx.Data() {
		if math.Abs(float64(v)-refDx[i]) > 1e-5 {
			t.Fatalf("dx[%d] = %g, want %g", i, v, refDx[i])
		}
	}

	reg, err := SorsaRegularizer(ctx, u, vt, 1, nil, nil, 0)
	ok(t, err)
	if math.Abs(reg) > 1e-9 {
		t.Fatalf("regularizer after init %g", reg)
	}
	_, err = SorsaRegularizer(ctx, u, vt, 2, du, dvt, SorsaUnsquared)
	ok(t, err)
	_, err = SorsaRegularizer(ctx, u, vt, -1, nil, nil, 0)
	wantStatus(t, err, ErrInvalidArgument, "")
	for i := range u.Data() {
		u.Data()[i] *= 1.1
	}
	before := must(SorsaRegularizer(ctx, u, vt, 1, nil, nil, 0))
	step := must(SorsaRegularizerStep(ctx, u, vt, 0.01, 0))
	near(t, "step value", 0.01*before, step)
	if after := must(SorsaRegularizer(ctx, u, vt, 1, nil, nil, 0)); after >= before {
		t.Fatalf("the step did not lower the regularizer: %g >= %g", after, before)
	}
}

func TestPrincipalSelect(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	stats := must(NewStatistics(ctx, shape))
	defer stats.Close()
	dr, dc := weightDims(WeightDown)
	for l := 0; l < shape.NLayers; l++ {
		w := must(FromSlice(randoms(int64(20+l), int(dr*dc)), dr, dc))
		ok(t, stats.AddPrincipal(l, TargetDown, w, 3))
		w.Close()
	}
	scores := must(stats.Get(0, TargetDown, StatPrincipal))
	if len(scores) != shape.DFF {
		t.Fatalf("%d scores", len(scores))
	}
	var count [4]int64
	count[TargetDown] = 4
	sel := must(SelectWithStatistics(ctx, shape, SelectOptions{Targets: TargetBit(TargetDown), Strategy: StrategyPrincipal, Count: count}, stats))
	defer sel.Close()
	units := must(sel.Indices(0, TargetDown, IndexUnits))
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return scores[order[i]] > scores[order[j]] })
	want := append([]int(nil), order[:4]...)
	sort.Ints(want)
	if len(units) != 4 {
		t.Fatalf("units %v, want %v", units, want)
	}
	for i := range want {
		if units[i] != int64(want[i]) {
			t.Fatalf("units %v, want %v", units, want)
		}
	}
}
