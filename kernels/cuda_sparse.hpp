// Sparse deltas on the device: CSR arrays (int64 offsets and indices, f32
// values) and y += scale * x D^T through cusparseSpMM. A plain C++ header
// (no CUDA types).
#pragma once

#include <cstdint>
#include <memory>

#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {

struct HostCsr;  // src/adapter/csr.hpp

namespace cuda {

class Scratch;  // cuda_runtime.cuh

// A CSR matrix in device memory of one device (owned; freed with cudaFree).
struct DeviceCsr;
using DeviceCsrPtr = std::shared_ptr<const DeviceCsr>;

// Copies a (validated) host CSR to ctx's device and waits for the copy: a
// synchronising call (it allocates device memory).
DeviceCsrPtr upload_csr(Context &ctx, const HostCsr &csr);

// The device the CSR lives on.
int32_t csr_device(const DeviceCsr &csr);

// y += scale * x D^T for x [T, D.cols], y [T, D.rows] (checked device views
// of one dtype). Queued on ctx's stream; no synchronisation.
void sparse_forward(Context &ctx, const DeviceCsr &csr, float scale, const Matrix &x, const Matrix &y);

// The same, split for callers that own the call's Scratch and may run the
// product several times (the mixed forward times it): plan_spmm allocates
// everything (scratch, cuSPARSE descriptors and buffer), run_spmm only
// queues work and may be called repeatedly (each run adds again).
struct SpmmPlan;
std::shared_ptr<SpmmPlan> plan_spmm(Scratch &s, const DeviceCsr &csr, float scale, const Matrix &x, const Matrix &y);
void run_spmm(Context &ctx, const SpmmPlan &plan);

}  // namespace cuda
}  // namespace s2ft
