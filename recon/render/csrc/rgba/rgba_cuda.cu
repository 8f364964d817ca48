// CUDA RGBA renders: one thread per (batch element, pixel). A first kernel computes every face's
// window; each pixel then loops over its mesh's faces in ascending order and evaluates only those
// whose window covers it (the pair rule of the CPU kernel and the torch references). Backward
// recomputes the pair terms and accumulates vertex and colour gradients with atomicAdd.
#include "rgba.h"
#include "rgba_math.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

namespace recon_rgba {
namespace {

using recon_softras::eval_pair;
using recon_softras::face_window;
using recon_softras::load_face;
using recon_softras::log_not_arg;
using recon_softras::pixel_x;
using recon_softras::pixel_y;
using recon_softras::sr_exp;
using recon_softras::Window;

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n) { return (unsigned int)((n + kThreads - 1) / kThreads); }

template <typename T>
struct Soft {
  T inv_sigma, cut, inv_gamma, near, far, eps;
};

template <typename T>
__global__ void windows_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces, int64_t B, int64_t V,
                               int64_t F, int S, double radius, int4* __restrict__ windows) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  const int64_t b = i / F, f = i % F;
  const Window w = face_window(load_face(verts + b * V * 3, faces + 3 * f), S, radius);
  windows[i] = make_int4(w.c0, w.c1, w.r0, w.r1);
}

__device__ __forceinline__ bool in_window(const int4& w, int r, int c) {
  return c >= w.x && c <= w.y && r >= w.z && r <= w.w;
}

template <typename T>
__device__ __forceinline__ T interpolate(const T* cb, const int64_t* idx, int64_t C, int64_t c, const T w[3]) {
  return w[0] * cb[C * idx[0] + c] + w[1] * cb[C * idx[1] + c] + w[2] * cb[C * idx[2] + c];
}

template <typename T>
__global__ void soft_forward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                    const T* __restrict__ colors, const int4* __restrict__ windows,
                                    const T* __restrict__ background, int64_t B, int64_t V, int64_t F, int64_t C,
                                    int S, Soft<T> o, T* __restrict__ image, T* __restrict__ not_alpha,
                                    T* __restrict__ zmax, T* __restrict__ den) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return;
  const int64_t b = i / npix, off = i % npix;
  const int r = (int)(off / S), c = (int)(off % S);
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  const T* cb = colors + b * V * C;
  T* img = image + b * (C + 1) * npix + off;  // plane k at img[k * npix]
  for (int64_t k = 0; k < C; ++k) img[k * npix] = background[k];
  T na = T(1), zm = o.eps, dn = T(1);
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[b * F + f], r, c)) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    const Pair<T> p = eval_pair(face, px, py);
    if (!(p.inside || p.d2 < o.cut)) continue;
    const SoftCoverage<T> cov = soft_coverage(log_not_arg(p, o.inv_sigma));
    na *= cov.not_D;
    if (!face.nondegenerate) continue;
    ZPair<T> zq;
    if (!z_pair(face, colour_face(face, vb, idx), px, py, o.near, o.far, zq)) continue;
    const T rel = (zq.zn - zm) * o.inv_gamma;
    if (rel < T(kSkipExponent)) continue;  // negligible next to the heaviest pair so far
    if (rel > T(0)) {  // new maximum: rescale what was accumulated
      const T scale = sr_exp(-rel);
      dn *= scale;
      for (int64_t k = 0; k < C; ++k) img[k * npix] *= scale;
      zm = zq.zn;
    }
    const T weight = rel > T(0) ? cov.D : cov.D * sr_exp(rel);
    dn += weight;
    for (int64_t k = 0; k < C; ++k) img[k * npix] += weight * interpolate(cb, idx, C, k, zq.wc);
  }
  for (int64_t k = 0; k < C; ++k) img[k * npix] /= dn;
  img[C * npix] = T(1) - na;
  not_alpha[i] = na;
  zmax[i] = zm;
  den[i] = dn;
}

template <typename T>
__device__ __forceinline__ void add_face_grads(T* gv, const int64_t* idx, const T gx[3], const T gy[3], const T gz[3]) {
  for (int k = 0; k < 3; ++k) {
    atomicAdd(gv + 3 * idx[k], gx[k]);
    atomicAdd(gv + 3 * idx[k] + 1, gy[k]);
    if (gz != nullptr) atomicAdd(gv + 3 * idx[k] + 2, gz[k]);
  }
}

template <typename T>
__global__ void soft_backward_kernel(const T* __restrict__ grad_image, const T* __restrict__ image,
                                     const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                     const T* __restrict__ colors, const int4* __restrict__ windows,
                                     const T* __restrict__ not_alpha, const T* __restrict__ zmax,
                                     const T* __restrict__ den, int64_t B, int64_t V, int64_t F, int64_t C, int S,
                                     Soft<T> o, T* __restrict__ grad_verts, T* __restrict__ grad_colors) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return;
  const int64_t b = i / npix, off = i % npix;
  const T* gimg = grad_image + b * (C + 1) * npix + off;
  const T* img = image + b * (C + 1) * npix + off;
  const T glog = -gimg[C * npix] * not_alpha[i];  // dL/dlog(1 - alpha)
  bool live = glog != T(0);
  for (int64_t k = 0; k < C; ++k) live = live || gimg[k * npix] != T(0);
  if (!live) return;
  const int r = (int)(off / S), c = (int)(off % S);
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  const T* cb = colors + b * V * C;
  T* gv = grad_verts + b * V * 3;
  T* gcol = grad_colors + b * V * C;
  const T zm = zmax[i], inv_den = T(1) / den[i];
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[b * F + f], r, c)) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    const Pair<T> p = eval_pair(face, px, py);
    if (!(p.inside || p.d2 < o.cut)) continue;
    const T a = p.inside ? -o.inv_sigma : o.inv_sigma;
    const SoftCoverage<T> cov = soft_coverage(a * p.d2);
    T g_d2 = glog * cov.D * a;
    T gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0}, gz[3] = {0, 0, 0};
    const ColourFace<T> cf = colour_face(face, vb, idx);
    ZPair<T> zq;
    const bool colours = face.nondegenerate && z_pair(face, cf, px, py, o.near, o.far, zq);
    const T rel = colours ? (zq.zn - zm) * o.inv_gamma : T(0);
    if (colours && rel >= T(kSkipExponent)) {
      // Same closed form as rgba_cpu.cpp: A = sum_c g_c (c_jc - rgb_c), q = W_j / den.
      const T q = cov.D * sr_exp(rel) * inv_den;
      T A = T(0), g_wc[3] = {0, 0, 0};
      for (int64_t k = 0; k < C; ++k) {
        const T g = gimg[k * npix];
        A += g * (interpolate(cb, idx, C, k, zq.wc) - img[k * npix]);
        for (int j = 0; j < 3; ++j) {
          g_wc[j] += g * cb[C * idx[j] + k];
          atomicAdd(gcol + C * idx[j] + k, g * q * zq.wc[j]);
        }
      }
      for (int j = 0; j < 3; ++j) g_wc[j] *= q;
      g_d2 += A * q * cov.not_D * (-a);
      z_pair_backward(face, cf, px, py, o.near, o.far, zq, A * q * o.inv_gamma, g_wc, gx, gy, gz);
    }
    distance_backward(face, p, px, py, g_d2, gx, gy);
    add_face_grads(gv, idx, gx, gy, gz);
  }
}

template <typename T>
__global__ void dibr_forward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                    const T* __restrict__ colors, const int4* __restrict__ windows,
                                    const T* __restrict__ background, int64_t B, int64_t V, int64_t F, int64_t C,
                                    int S, T inv_sigma, T cut, T inf, T* __restrict__ image,
                                    T* __restrict__ not_alpha, int64_t* __restrict__ nearest) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return;
  const int64_t b = i / npix, off = i % npix;
  const int r = (int)(off / S), c = (int)(off % S);
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  T* img = image + b * (C + 1) * npix + off;
  // Hard rasterization: the nearest face whose inside holds the pixel centre.
  T best = inf, w_best[3] = {0, 0, 0};
  int64_t sel = -1;
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[b * F + f], r, c)) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    if (!face.nondegenerate) continue;
    const ColourFace<T> cf = colour_face(face, vb, idx);
    T w[3];
    if (!inside_barycentric(face, cf.inv_area2, px, py, w)) continue;
    const T depth = inside_depth(w, cf);
    if (depth < best) {
      best = depth;
      sel = f;
      for (int k = 0; k < 3; ++k) w_best[k] = w[k];
    }
  }
  nearest[i] = sel;
  if (sel >= 0) {
    for (int64_t k = 0; k < C; ++k) img[k * npix] = interpolate(colors + b * V * C, faces + 3 * sel, C, k, w_best);
    img[C * npix] = T(1);
    not_alpha[i] = T(1);
    return;
  }
  // Uncovered: soft alpha from every face within the cutoff.
  T na = T(1);
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[b * F + f], r, c)) continue;
    const Pair<T> p = eval_pair(load_face(vb, faces + 3 * f), px, py);
    if (p.d2 < cut) na *= one_minus_exp_neg(p.d2 * inv_sigma);
  }
  for (int64_t k = 0; k < C; ++k) img[k * npix] = background[k];
  img[C * npix] = T(1) - na;
  not_alpha[i] = na;
}

template <typename T>
__global__ void dibr_backward_kernel(const T* __restrict__ grad_image, const T* __restrict__ verts,
                                     const int64_t* __restrict__ faces, const T* __restrict__ colors,
                                     const int4* __restrict__ windows, const T* __restrict__ not_alpha,
                                     const int64_t* __restrict__ nearest, int64_t B, int64_t V, int64_t F, int64_t C,
                                     int S, T inv_sigma, T cut, T* __restrict__ grad_verts,
                                     T* __restrict__ grad_colors) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return;
  const int64_t b = i / npix, off = i % npix;
  const int r = (int)(off / S), c = (int)(off % S);
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  const T* cb = colors + b * V * C;
  const T* gimg = grad_image + b * (C + 1) * npix + off;
  T* gv = grad_verts + b * V * 3;
  const int64_t sel = nearest[i];
  if (sel >= 0) {  // covered: rgb = sum_k w_k c_k of the nearest face
    const int64_t* idx = faces + 3 * sel;
    const Face<T> face = load_face(vb, idx);
    const T inv_area2 = colour_face(face, vb, idx).inv_area2;
    T w[3], gw[3] = {0, 0, 0}, gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0};
    barycentric(face, inv_area2, px, py, w);
    for (int64_t k = 0; k < C; ++k) {
      const T g = gimg[k * npix];
      for (int j = 0; j < 3; ++j) {
        gw[j] += g * cb[C * idx[j] + k];
        atomicAdd(grad_colors + b * V * C + C * idx[j] + k, g * w[j]);
      }
    }
    barycentric_backward(face, inv_area2, w, px, py, gw, gx, gy);
    add_face_grads<T>(gv, idx, gx, gy, nullptr);
    return;
  }
  const T glog = -gimg[C * npix] * not_alpha[i];  // dL/dlog(1 - alpha)
  if (glog == T(0)) return;
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[b * F + f], r, c)) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    const Pair<T> p = eval_pair(face, px, py);
    if (p.inside || !(p.d2 < cut)) continue;
    T gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0};
    distance_backward(face, p, px, py, glog * log_one_minus_exp_neg_grad(p.d2 * inv_sigma) * inv_sigma, gx, gy);
    add_face_grads<T>(gv, idx, gx, gy, nullptr);
  }
}

at::Tensor compute_windows(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double radius) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor windows = at::empty({B, F, 4}, verts.options().dtype(at::kInt));
  if (B * F == 0) return windows;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_windows_cuda", [&] {
    windows_kernel<scalar_t><<<num_blocks(B * F), kThreads, 0, stream>>>(
        verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, (int)image_size, radius,
        reinterpret_cast<int4*>(windows.data_ptr<int>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return windows;
}

at::Tensor device_values(const std::vector<double>& values, const at::Tensor& like) {
  return at::tensor(at::ArrayRef<double>(values), at::TensorOptions().dtype(at::kDouble))
      .to(like.device(), like.scalar_type())
      .contiguous();
}

template <typename T>
Soft<T> soft_of(const SoftOptions& o) {
  return Soft<T>{T(1.0 / o.sigma), T(o.cutoff_sq), T(1.0 / o.gamma), T(o.near), T(o.far), T(o.eps)};
}

const int4* as_int4(const at::Tensor& windows) { return reinterpret_cast<const int4*>(windows.data_ptr<int>()); }

}  // namespace

std::vector<at::Tensor> soft_forward_cuda(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          const SoftOptions& o, const std::vector<double>& background) {
  const c10::cuda::CUDAGuard guard(verts.device());
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = o.image_size;
  at::Tensor image = at::empty({B, C + 1, S, S}, verts.options());
  at::Tensor not_alpha = at::empty({B, S, S}, verts.options());
  at::Tensor zmax = at::empty_like(not_alpha), den = at::empty_like(not_alpha);
  const int64_t n = not_alpha.numel();
  if (n == 0) return {image, not_alpha, zmax, den};
  const at::Tensor windows = compute_windows(verts, faces, S, std::sqrt(o.cutoff_sq));
  const at::Tensor bg = device_values(background, verts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_soft_forward_cuda", [&] {
    soft_forward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), as_int4(windows),
        bg.data_ptr<scalar_t>(), B, V, F, C, (int)S, soft_of<scalar_t>(o), image.data_ptr<scalar_t>(),
        not_alpha.data_ptr<scalar_t>(), zmax.data_ptr<scalar_t>(), den.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {image, not_alpha, zmax, den};
}

std::vector<at::Tensor> soft_backward_cuda(const at::Tensor& grad_image, const at::Tensor& image,
                                           const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                           const at::Tensor& not_alpha, const at::Tensor& zmax, const at::Tensor& den,
                                           const SoftOptions& o) {
  const c10::cuda::CUDAGuard guard(verts.device());
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = o.image_size;
  at::Tensor grad_verts = at::zeros_like(verts), grad_colors = at::zeros_like(colors);
  const int64_t n = not_alpha.numel();
  if (n == 0) return {grad_verts, grad_colors};
  const at::Tensor windows = compute_windows(verts, faces, S, std::sqrt(o.cutoff_sq));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_soft_backward_cuda", [&] {
    soft_backward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        grad_image.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), verts.data_ptr<scalar_t>(),
        faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), as_int4(windows), not_alpha.data_ptr<scalar_t>(),
        zmax.data_ptr<scalar_t>(), den.data_ptr<scalar_t>(), B, V, F, C, (int)S, soft_of<scalar_t>(o),
        grad_verts.data_ptr<scalar_t>(), grad_colors.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_verts, grad_colors};
}

std::vector<at::Tensor> dibr_forward_cuda(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          int64_t image_size, double sigma, double cutoff_sq,
                                          const std::vector<double>& background) {
  const c10::cuda::CUDAGuard guard(verts.device());
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = image_size;
  at::Tensor image = at::empty({B, C + 1, S, S}, verts.options());
  at::Tensor not_alpha = at::empty({B, S, S}, verts.options());
  at::Tensor nearest = at::empty({B, S, S}, verts.options().dtype(at::kLong));
  const int64_t n = not_alpha.numel();
  if (n == 0) return {image, not_alpha, nearest};
  const at::Tensor windows = compute_windows(verts, faces, S, std::sqrt(cutoff_sq));
  const at::Tensor bg = device_values(background, verts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_dibr_forward_cuda", [&] {
    dibr_forward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), as_int4(windows),
        bg.data_ptr<scalar_t>(), B, V, F, C, (int)S, scalar_t(1.0 / sigma), scalar_t(cutoff_sq),
        std::numeric_limits<scalar_t>::infinity(), image.data_ptr<scalar_t>(), not_alpha.data_ptr<scalar_t>(),
        nearest.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {image, not_alpha, nearest};
}

std::vector<at::Tensor> dibr_backward_cuda(const at::Tensor& grad_image, const at::Tensor& verts,
                                           const at::Tensor& faces, const at::Tensor& colors,
                                           const at::Tensor& not_alpha, const at::Tensor& nearest, int64_t image_size,
                                           double sigma, double cutoff_sq) {
  const c10::cuda::CUDAGuard guard(verts.device());
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = image_size;
  at::Tensor grad_verts = at::zeros_like(verts), grad_colors = at::zeros_like(colors);
  const int64_t n = not_alpha.numel();
  if (n == 0) return {grad_verts, grad_colors};
  const at::Tensor windows = compute_windows(verts, faces, S, std::sqrt(cutoff_sq));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_dibr_backward_cuda", [&] {
    dibr_backward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        grad_image.data_ptr<scalar_t>(), verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(),
        colors.data_ptr<scalar_t>(), as_int4(windows), not_alpha.data_ptr<scalar_t>(), nearest.data_ptr<int64_t>(), B,
        V, F, C, (int)S, scalar_t(1.0 / sigma), scalar_t(cutoff_sq), grad_verts.data_ptr<scalar_t>(),
        grad_colors.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_verts, grad_colors};
}

}  // namespace recon_rgba
