// CUDA soft rasterizer: one thread per (batch element, pixel). A first kernel computes every
// face's window; each pixel then loops over its mesh's faces and evaluates only those whose window
// covers it (same pair rule as the CPU path and the torch reference). Backward recomputes the pair
// terms and accumulates vertex gradients with atomicAdd.
#include "softras.h"
#include "softras_math.h"

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace recon_softras {
namespace {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n) { return (unsigned int)((n + kThreads - 1) / kThreads); }

template <typename T>
__global__ void windows_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces, int64_t B, int64_t V,
                               int64_t F, int S, double radius, int4* __restrict__ windows) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  const int64_t b = i / F, f = i % F;
  const Window w = face_window(load_face(verts + b * V * 3, faces + 3 * f), S, radius);
  windows[i] = make_int4(w.c0, w.c1, w.r0, w.r1);
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                               const int4* __restrict__ windows, int64_t B, int64_t V, int64_t F, int S, T inv_sigma,
                               T cut, T* __restrict__ log_sum, T* __restrict__ sil) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return;
  const int64_t b = i / npix;
  const int r = (int)((i % npix) / S), c = (int)(i % S);
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  T acc = T(0);
  for (int64_t f = 0; f < F; ++f) {
    const int4 w = windows[b * F + f];
    if (c < w.x || c > w.y || r < w.z || r > w.w) continue;
    const Pair<T> p = eval_pair(load_face(vb, faces + 3 * f), px, py);
    if (p.inside || p.d2 < cut) acc += log_sigmoid(log_not_arg(p, inv_sigma));
  }
  log_sum[i] = acc;
  sil[i] = -sr_expm1(acc);
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                const int4* __restrict__ windows, const T* __restrict__ grad_log, int64_t B,
                                int64_t V, int64_t F, int S, T inv_sigma, T cut, T* __restrict__ grad_verts) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return;
  const T glog = grad_log[i];
  if (glog == T(0)) return;
  const int64_t b = i / npix;
  const int r = (int)((i % npix) / S), c = (int)(i % S);
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  T* gv = grad_verts + b * V * 3;
  for (int64_t f = 0; f < F; ++f) {
    const int4 w = windows[b * F + f];
    if (c < w.x || c > w.y || r < w.z || r > w.w) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    const Pair<T> p = eval_pair(face, px, py);
    if (!(p.inside || p.d2 < cut)) continue;
    // Same closed form as softras_cpu.cpp: dLoss/d(d^2), then d^2 = |p - q|^2 onto the edge ends.
    const T a = p.inside ? -inv_sigma : inv_sigma;
    const T coef = glog * sigmoid(-a * p.d2) * a;
    const int k = p.edge, k1 = k == 2 ? 0 : k + 1;
    const T dx = (px - face.ax[k]) - p.t * face.ex[k];
    const T dy = (py - face.ay[k]) - p.t * face.ey[k];
    const T wa = T(-2) * coef * (T(1) - p.t), wb = T(-2) * coef * p.t;
    atomicAdd(gv + 3 * idx[k], wa * dx);
    atomicAdd(gv + 3 * idx[k] + 1, wa * dy);
    atomicAdd(gv + 3 * idx[k1], wb * dx);
    atomicAdd(gv + 3 * idx[k1] + 1, wb * dy);
  }
}

at::Tensor compute_windows(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double radius) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor windows = at::empty({B, F, 4}, verts.options().dtype(at::kInt));
  if (B * F == 0) return windows;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_windows_cuda", [&] {
    windows_kernel<scalar_t><<<num_blocks(B * F), kThreads, 0, stream>>>(
        verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, (int)image_size, radius,
        reinterpret_cast<int4*>(windows.data_ptr<int>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return windows;
}

}  // namespace

std::vector<at::Tensor> forward_cuda(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                     double sigma, double cutoff_sq) {
  const c10::cuda::CUDAGuard guard(verts.device());
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor log_sum = at::empty({B, image_size, image_size}, verts.options());
  at::Tensor sil = at::empty_like(log_sum);
  const int64_t n = log_sum.numel();
  if (n == 0) return {sil, log_sum};
  const at::Tensor windows = compute_windows(verts, faces, image_size, std::sqrt(cutoff_sq));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_forward_cuda", [&] {
    forward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), reinterpret_cast<const int4*>(windows.data_ptr<int>()),
        B, V, F, (int)image_size, scalar_t(1.0 / sigma), scalar_t(cutoff_sq), log_sum.data_ptr<scalar_t>(),
        sil.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {sil, log_sum};
}

at::Tensor backward_cuda(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                         const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq) {
  const c10::cuda::CUDAGuard guard(verts.device());
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor grad_verts = at::zeros_like(verts);
  const int64_t n = log_sum.numel();
  if (n == 0) return grad_verts;
  const at::Tensor grad_log = (-grad_sil * at::exp(log_sum)).contiguous();
  const at::Tensor windows = compute_windows(verts, faces, image_size, std::sqrt(cutoff_sq));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_backward_cuda", [&] {
    backward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), reinterpret_cast<const int4*>(windows.data_ptr<int>()),
        grad_log.data_ptr<scalar_t>(), B, V, F, (int)image_size, scalar_t(1.0 / sigma), scalar_t(cutoff_sq),
        grad_verts.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_verts;
}

}  // namespace recon_softras
