// CUDA helpers shared by the silhouette (softras_cuda.cu) and RGBA (../rgba/rgba_cuda.cu) kernels:
// the launch wrapper and the per-face window kernel. With RECON_CUDA_EMULATION defined (tests only,
// softras_cuda_emu.cpp) this compiles as plain C++ and launches run on CPU threads (cuda_emulation.h).
#pragma once

#include <ATen/ATen.h>

#include "softras_math.h"

#ifdef RECON_CUDA_EMULATION
#include "cuda_emulation.h"
#define SR_DEVICE_GUARD(tensor) (void)(tensor)
#define SR_DYNAMIC_SHARED(name) unsigned char* name = ::cuda_emulation::dynamic_shared()
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define SR_DEVICE_GUARD(tensor) const c10::cuda::CUDAGuard device_guard((tensor).device())
#define SR_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace recon_softras {

constexpr int kThreads = 256;  // block size of the one-thread-per-element kernels

inline int64_t num_blocks(int64_t n, int threads = kThreads) { return (n + threads - 1) / threads; }

// kernel<<<blocks, threads, shared_bytes, current stream>>>(args...), then the launch check.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), int64_t blocks, int threads, size_t shared_bytes, Args... args) {
  if (blocks <= 0) return;
#ifdef RECON_CUDA_EMULATION
  ::cuda_emulation::run(blocks, threads, shared_bytes, [&] { kernel(args...); });
#else
  kernel<<<(unsigned int)blocks, threads, shared_bytes, c10::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
#endif
}

template <typename T>
__global__ void windows_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces, int64_t B, int64_t V,
                               int64_t F, int S, double radius, int4* __restrict__ windows) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  const int64_t b = i / F, f = i % F;
  const Window w = face_window(load_face(verts + b * V * 3, faces + 3 * f), S, radius);
  windows[i] = make_int4(w.c0, w.c1, w.r0, w.r1);
}

// (B, F, 4) int32 windows c0, c1, r0, r1 of every face (face_window), on the device of `verts`.
inline at::Tensor launch_face_windows(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                      double radius) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor windows = at::empty({B, F, 4}, verts.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "face_windows_cuda", [&] {
    launch(windows_kernel<scalar_t>, num_blocks(B * F), kThreads, 0, verts.data_ptr<scalar_t>(),
           faces.data_ptr<int64_t>(), B, V, F, (int)image_size, radius,
           reinterpret_cast<int4*>(windows.data_ptr<int>()));
  });
  return windows;
}

// The windows of launch_face_windows as the kernels read them.
inline const int4* as_int4(const at::Tensor& windows) {
  return reinterpret_cast<const int4*>(windows.data_ptr<int>());
}

}  // namespace recon_softras
