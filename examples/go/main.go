// Command adapterserving serves two S2FT adapters on a model opened from its
// checkpoint folder with the Go binding: it loads both, applies the first and
// switches to the second on the model (only the union of their lines is
// touched), restores the base, then runs one batch whose requests use
// different adapters with ForwardMixed over the model's own down_proj,
// merging nothing.
//
// Usage: adapterserving FIRST.safetensors SECOND.safetensors [BASE_DIR]
//
// BASE_DIR defaults to stories260K-hf in the test data ($S2FT_TEST_DATA, else
// ../shared/data). `make_adapters BASE_DIR OUT_DIR` (examples/c) makes two
// adapters for a base, and `tiny_checkpoint DIR` a small random base.
package main

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"

	"s2ft.dev/s2ft"
)

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 {
		fmt.Fprintln(os.Stderr, "usage: adapterserving FIRST.safetensors SECOND.safetensors [BASE_DIR]")
		os.Exit(2)
	}
	base := defaultBase()
	if len(os.Args) == 4 {
		base = os.Args[3]
	}
	serve(base, os.Args[1], os.Args[2])
	fmt.Printf("live handles at exit: %d\n", s2ft.LiveHandles())
}

func serve(base, firstPath, secondPath string) {
	ctx := must(s2ft.NewContext())
	defer ctx.Close()
	first, second := must(s2ft.LoadAdapter(firstPath)), must(s2ft.LoadAdapter(secondPath))
	defer first.Close()
	defer second.Close()
	ckpt := must(s2ft.OpenCheckpoint(base))
	defer ckpt.Close()
	model := must(s2ft.NewModelFromCheckpoint(ctx, ckpt)) // closed (deferred) before the checkpoint
	defer model.Close()
	before := downProj(model)
	check(model.Apply(first, s2ft.DefaultScale))   // W[lines] += delta; the displaced lines are kept
	check(model.Switch(second, s2ft.DefaultScale)) // touches only the union of both adapters' lines
	check(model.Remove())                          // the base again, bit-exactly
	down := must(model.Layer(0)).Down              // [d_model, d_ff], a view into the checkpoint
	x, y := batch(down.Shape())                    // 9 tokens: 4 with adapter 0, 2 with none, 3 with adapter 1
	defer x.Close()
	defer y.Close()
	offsets, uses, adapters := []int64{0, 4, 6, 9}, []int32{0, -1, 1}, []*s2ft.Adapter{first, second}
	check(s2ft.ForwardMixed(ctx, 0, s2ft.TargetDown, x, down, adapters, nil, offsets, uses, y))

	restored := equalBits(before, downProj(model))
	fmt.Printf("base %s: layer 0's down_proj is %v\n", base, down.Shape())
	fmt.Printf("applied '%s', switched to '%s', removed: base restored bit-exactly = %v\n", first.Name(), second.Name(), restored)
	report(ctx, x, down, offsets, uses, adapters, y)
	if !restored {
		log.Fatal("the base was not restored")
	}
}

// must returns v, or ends the program with err.
func must[T any](v T, err error) T {
	check(err)
	return v
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// downProj copies layer 0's down_proj as the model holds it.
func downProj(model *s2ft.Model) []float32 {
	layer, err := model.Layer(0)
	if err != nil || layer.Down == nil {
		return nil
	}
	return layer.Down.Float32s()
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) || a == nil {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// batch makes the inputs x [9, d_ff] (deterministic, in [-1, 1)) and the
// output y [9, d_model] for a weight of shape [d_model, d_ff].
func batch(w []int64) (x, y *s2ft.Tensor) {
	xs := make([]float32, 9*w[1])
	for i := range xs {
		xs[i] = float32(i*7919%1000)/500 - 1
	}
	return must(s2ft.FromSlice(xs, 9, w[1])), must(s2ft.NewTensor(9, w[0]))
}

// report prints each request's largest change against the base layer's output.
func report(ctx *s2ft.Context, x, w *s2ft.Tensor, offsets []int64, uses []int32, adapters []*s2ft.Adapter, y *s2ft.Tensor) {
	tokens, dModel := offsets[len(offsets)-1], int(w.Shape()[0])
	yBase := must(s2ft.NewTensor(tokens, int64(dModel)))
	defer yBase.Close()
	check(s2ft.ForwardMixed(ctx, 0, s2ft.TargetDown, x, w, nil, nil, []int64{0, tokens}, []int32{-1}, yBase))
	for s, use := range uses {
		change := 0.0
		for i := int(offsets[s]) * dModel; i < int(offsets[s+1])*dModel; i++ {
			change = math.Max(change, math.Abs(float64(y.Data()[i]-yBase.Data()[i])))
		}
		name := "no adapter"
		if use >= 0 {
			name = fmt.Sprintf("adapter '%s'", adapters[use].Name())
		}
		fmt.Printf("request %d (%s): %d tokens, max |y - y_base| = %.6f\n", s, name, offsets[s+1]-offsets[s], change)
	}
}

// defaultBase is stories260K-hf in the test data: $S2FT_TEST_DATA, else ../shared/data.
func defaultBase() string {
	data := os.Getenv("S2FT_TEST_DATA")
	if data == "" {
		data = filepath.Join("..", "shared", "data")
	}
	return filepath.Join(data, "stories260K-hf")
}
