// Command adapterserving serves two S2FT adapters on one base layer with the
// Go binding: build adapters, fuse, save/load, apply/switch/remove on a model,
// then run a batch of requests that use different adapters with ForwardMixed.
package main

import (
	"fmt"
	"log"
	"math"
	"math/rand"
	"os"
	"path/filepath"

	"s2ft.dev/s2ft"
)

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func main() {
	shape := s2ft.ModelShape{NLayers: 1, DModel: 64, NHeads: 8, NKVHeads: 2, HeadDim: 8, DFF: 96}
	out, in := shape.DModel, shape.DFF
	rng := rand.New(rand.NewSource(2024))
	down, err := s2ft.NewTensor(int64(out), int64(in)) // C memory: the model edits it in place
	check(err)
	defer down.Close()
	for i := range down.Data() {
		down.Data()[i] = float32(rng.NormFloat64() * 0.05)
	}
	original := append([]float32(nil), down.Data()...)

	ctx, err := s2ft.NewContext()
	check(err)
	defer ctx.Close()
	newAdapter := func(name string, lines []int64) *s2ft.Adapter {
		a, err := s2ft.NewAdapter(shape, name, 1)
		check(err)
		d := make([]float32, out*len(lines))
		for i := range d {
			d[i] = float32(rng.NormFloat64() * 0.01)
		}
		delta, err := s2ft.FromSlice(d, int64(out), int64(len(lines)))
		check(err)
		defer delta.Close()
		check(a.Set(0, s2ft.TargetDown, lines, delta, down))
		return a
	}
	a := newAdapter("math", []int64{3, 17, 40, 77})
	defer a.Close()
	b := newAdapter("code", []int64{17, 50, 91})
	defer b.Close()

	dir, err := os.MkdirTemp("", "s2ft-example")
	check(err)
	defer os.RemoveAll(dir)
	fused, err := s2ft.FuseAdapters([]*s2ft.Adapter{a, b}, []float64{0.5, 0.5})
	check(err)
	path := filepath.Join(dir, "fused.safetensors")
	check(fused.Save(path))
	fused.Close()
	loaded, err := s2ft.LoadAdapter(path)
	check(err)
	defer loaded.Close()
	lines, err := loaded.Lines(0, s2ft.TargetDown)
	check(err)
	fmt.Printf("fused adapter '%s': %d lines\n", loaded.Name(), len(lines))

	model, err := s2ft.NewModel(ctx, shape, []s2ft.LayerWeights{{Down: down}})
	check(err)
	check(model.Apply(a, s2ft.DefaultScale))
	fmt.Printf("applied math, W[0,3] %.5f -> %.5f\n", original[3], down.Data()[3])
	check(model.Switch(b, s2ft.DefaultScale))
	fmt.Printf("switched to code, W[0,3] back to %.5f\n", down.Data()[3])
	check(model.Switch(loaded, s2ft.DefaultScale))
	check(model.Remove())
	model.Close()
	for i, v := range down.Data() {
		if math.Float32bits(v) != math.Float32bits(original[i]) {
			log.Fatal("base not restored bit-exactly")
		}
	}
	fmt.Println("removed: base restored bit-exactly = true")

	// A batch of three requests: rows 0-4 use "math", 5-6 no adapter, 7-11 "code".
	offsets, seg := []int64{0, 5, 7, 12}, []int32{0, -1, 1}
	tokens := int(offsets[len(offsets)-1])
	xs := make([]float32, tokens*in)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	x, err := s2ft.FromSlice(xs, int64(tokens), int64(in))
	check(err)
	defer x.Close()
	y, err := s2ft.NewTensor(int64(tokens), int64(out))
	check(err)
	defer y.Close()
	check(s2ft.ForwardMixed(ctx, 0, s2ft.TargetDown, x, down, []*s2ft.Adapter{a, b}, nil, offsets, seg, y))
	names := []string{"math", "code"}
	for s := range seg {
		sum := 0.0
		for r := offsets[s]; r < offsets[s+1]; r++ {
			for o := 0; o < out; o++ {
				sum += math.Abs(float64(y.Data()[int(r)*out+o]))
			}
		}
		name := "base"
		if seg[s] >= 0 {
			name = names[seg[s]]
		}
		n := offsets[s+1] - offsets[s]
		fmt.Printf("request %d (%s): %d tokens, mean |y| %.5f\n", s, name, n, sum/float64(n*int64(out)))
	}
	a.Close()
	b.Close()
	loaded.Close()
	ctx.Close()
	fmt.Printf("live handles at exit: %d\n", s2ft.LiveHandles())
}
