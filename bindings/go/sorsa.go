package s2ft

import "s2ft.dev/s2ft/internal/capi"

// SorsaUnsquared is the flag of SorsaRegularizer and SorsaRegularizerStep
// for plain Frobenius norms, R = ||U^T U - I||_F + ||V^T V - I||_F, as the
// released SORSA code does, instead of the paper's squares.
const SorsaUnsquared = 4

// SORSA (Cao, 2024) splits a frozen weight W [out, in] by its thin SVD into a
// frozen residual and trained f32 factors u [out, r], s [r] (or [1, r]) and
// vt [r, in]: W = W_res + u diag(s) vt. Train the factors with an Optimizer
// (each a parameter with a slice over all its columns) and keep u and vt
// orthonormal with SorsaRegularizer or SorsaRegularizerStep.

// SorsaInit splits w (f32, f16 or bf16) in place: its top rank singular
// triplets written to u, s and vt (f32; singular values descending, signs
// fixed) and w overwritten by the residual w - u diag(s) vt, rounded once to
// its dtype. rank is in [1, min(out, in)]. On failure w is unchanged. On a
// CUDA context the SVD runs on the device (cuSOLVER) and the call synchronises.
func SorsaInit(ctx *Context, w *Tensor, rank int, u, s, vt *Tensor) error {
	return call(func() int { return capi.S2ft_sorsa_init(ctx.p, w.ptr(), rank, u.ptr(), s.ptr(), vt.ptr()) })
}

// SorsaForward computes y = x wRes^T + ((x vt^T) * s) u^T for x [T, in], wRes
// [out, in] and y [T, out] (one dtype) and the f32 factors, without forming
// the [out, in] product. hSaved (f32 [T, r], may be nil) receives h = x vt^T
// for SorsaBackward.
func SorsaForward(ctx *Context, x, wRes, u, s, vt, y, hSaved *Tensor) error {
	return call(func() int {
		return capi.S2ft_sorsa_forward(ctx.p, x.ptr(), wRes.ptr(), u.ptr(), s.ptr(), vt.ptr(), y.ptr(), hSaved.ptr())
	})
}

// SorsaBackward is the backward of SorsaForward for dy [T, out]: du = dy^T (h
// * s), ds = sum_t (dy u) * h, dvt = ((dy u) * s)^T x (f32, shaped as u, s,
// vt) and, when dx is not nil, dx = dy wRes + ((dy u) * s) vt. hSaved is the
// forward's h (nil: recomputed). flags: AccumulateDW adds into du, ds and dvt,
// AccumulateDX into dx.
func SorsaBackward(ctx *Context, x, wRes, u, s, vt, hSaved, dy, dx, du, ds, dvt *Tensor, flags uint32) error {
	return call(func() int {
		return capi.S2ft_sorsa_backward(ctx.p, x.ptr(), wRes.ptr(), u.ptr(), s.ptr(), vt.ptr(), hSaved.ptr(), dy.ptr(),
			dx.ptr(), du.ptr(), ds.ptr(), dvt.ptr(), uint(flags))
	})
}

// SorsaRegularizer returns SORSA's orthonormal regularizer on u [out, r] and
// vt [r, in] (f32), gamma * (||u^T u - I||_F^2 + ||vt vt^T - I||_F^2), and
// writes its gradients into du and dvt when not nil. flags: SorsaUnsquared
// (plain norms), AccumulateDW (add into du and dvt). gamma is finite and >= 0.
// On a CUDA context it synchronises.
func SorsaRegularizer(ctx *Context, u, vt *Tensor, gamma float64, du, dvt *Tensor, flags uint32) (float64, error) {
	var value float64
	err := call(func() int {
		return capi.S2ft_sorsa_regularizer(ctx.p, u.ptr(), vt.ptr(), gamma, &value, du.ptr(), dvt.ptr(), uint(flags))
	})
	return value, err
}

// SorsaRegularizerStep is the paper's decoupled update with its own rate: u
// -= rate dR/du and vt -= rate dR/dvt in place (gradients at the factors
// before the step); it returns rate * R before the step. flags: SorsaUnsquared
// or 0. Call it after the backward and before the optimizer step.
func SorsaRegularizerStep(ctx *Context, u, vt *Tensor, rate float64, flags uint32) (float64, error) {
	var value float64
	err := call(func() int {
		return capi.S2ft_sorsa_regularizer_step(ctx.p, u.ptr(), vt.ptr(), rate, &value, uint(flags))
	})
	return value, err
}
