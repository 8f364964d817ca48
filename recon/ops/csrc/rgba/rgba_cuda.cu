// CUDA RGBA renders: one thread per (batch element, pixel). A first kernel computes every face's
// window (../softras/cuda_common.cuh); each pixel then loops over its mesh's faces in ascending
// order and evaluates only those whose window covers it (the pair rule of the CPU kernel and the
// torch references). Backward recomputes the pair terms and accumulates vertex and colour gradients
// with atomicAdd.
#include "rgba.h"
#include "cuda_common.cuh"
#include "rgba_math.h"

#include <limits>

namespace recon_rgba {
namespace {

using recon_softras::as_int4;
using recon_softras::kThreads;
using recon_softras::launch;
using recon_softras::launch_face_windows;
using recon_softras::num_blocks;

// The pixel of this thread of a one-thread-per-(batch element, pixel) kernel over B images of S x S.
template <typename T>
struct PixelOf {
  int64_t i, npix;  // thread index (= flat pixel index over the batch), pixels per image
  int64_t b, off;   // batch element, r * S + c
  int r, c;
  T px, py;         // NDC centre
};

// False for the threads past the last pixel.
template <typename T>
__device__ __forceinline__ bool pixel_of(int64_t B, int S, PixelOf<T>& out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t npix = (int64_t)S * S;
  if (i >= B * npix) return false;
  const int64_t off = i % npix;
  const int r = (int)(off / S), c = (int)(off % S);
  out = PixelOf<T>{i, npix, i / npix, off, r, c, pixel_x<T>(c, S), pixel_y<T>(r, S)};
  return true;
}

__device__ __forceinline__ bool in_window(const int4& w, int r, int c) {
  return c >= w.x && c <= w.y && r >= w.z && r <= w.w;
}

// The pair of face `idx` (window `win`) and this thread's pixel; false when the pixel is outside the
// window or the pair is dropped (outside the face and d^2 >= cut).
template <typename T>
__device__ __forceinline__ bool kept_pair(const int4& win, const T* vb, const int64_t* idx, const PixelOf<T>& pix,
                                          T cut, Face<T>& face, Pair<T>& p) {
  if (!in_window(win, pix.r, pix.c)) return false;
  face = load_face(vb, idx);
  p = eval_pair(face, pix.px, pix.py);
  return p.inside || p.d2 < cut;
}

template <typename T>
__device__ __forceinline__ T interpolate(const T* cb, const int64_t* idx, int64_t C, int64_t c, const T w[3]) {
  return w[0] * cb[C * idx[0] + c] + w[1] * cb[C * idx[1] + c] + w[2] * cb[C * idx[2] + c];
}

template <typename T>
__global__ void soft_forward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                    const T* __restrict__ colors, const int4* __restrict__ windows,
                                    const T* __restrict__ background, int64_t B, int64_t V, int64_t F, int64_t C,
                                    int S, SoftScalars<T> o, T* __restrict__ image, T* __restrict__ not_alpha,
                                    T* __restrict__ zmax, T* __restrict__ den) {
  PixelOf<T> pix;
  if (!pixel_of(B, S, pix)) return;
  const int64_t npix = pix.npix;
  const T* vb = verts + pix.b * V * 3;
  const T* cb = colors + pix.b * V * C;
  T* img = image + pix.b * (C + 1) * npix + pix.off;  // plane k at img[k * npix]
  for (int64_t k = 0; k < C; ++k) img[k * npix] = background[k];
  T na = T(1), zm = o.eps, dn = T(1);
  for (int64_t f = 0; f < F; ++f) {
    const int64_t* idx = faces + 3 * f;
    Face<T> face;
    Pair<T> p;
    if (!kept_pair(windows[pix.b * F + f], vb, idx, pix, o.cut, face, p)) continue;
    const SoftCoverage<T> cov = soft_coverage(log_not_arg(p, o.inv_sigma));
    na *= cov.not_D;
    if (!face.nondegenerate) continue;
    ZPair<T> zq;
    if (!z_pair(face, colour_face(face, vb, idx), pix.px, pix.py, o.near, o.far, zq)) continue;
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
  not_alpha[pix.i] = na;
  zmax[pix.i] = zm;
  den[pix.i] = dn;
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
                                     SoftScalars<T> o, T* __restrict__ grad_verts, T* __restrict__ grad_colors) {
  PixelOf<T> pix;
  if (!pixel_of(B, S, pix)) return;
  const int64_t npix = pix.npix;
  const T* gimg = grad_image + pix.b * (C + 1) * npix + pix.off;
  const T* img = image + pix.b * (C + 1) * npix + pix.off;
  const T glog = -gimg[C * npix] * not_alpha[pix.i];  // dL/dlog(1 - alpha)
  bool live = glog != T(0);
  for (int64_t k = 0; k < C; ++k) live = live || gimg[k * npix] != T(0);
  if (!live) return;
  const T* vb = verts + pix.b * V * 3;
  const T* cb = colors + pix.b * V * C;
  T* gv = grad_verts + pix.b * V * 3;
  T* gcol = grad_colors + pix.b * V * C;
  const T zm = zmax[pix.i], inv_den = T(1) / den[pix.i];
  for (int64_t f = 0; f < F; ++f) {
    const int64_t* idx = faces + 3 * f;
    Face<T> face;
    Pair<T> p;
    if (!kept_pair(windows[pix.b * F + f], vb, idx, pix, o.cut, face, p)) continue;
    const T a = p.inside ? -o.inv_sigma : o.inv_sigma;
    const SoftCoverage<T> cov = soft_coverage(a * p.d2);
    T g_d2 = glog * cov.D * a;
    T gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0}, gz[3] = {0, 0, 0};
    const ColourFace<T> cf = colour_face(face, vb, idx);
    ZPair<T> zq;
    const bool colours = face.nondegenerate && z_pair(face, cf, pix.px, pix.py, o.near, o.far, zq);
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
      z_pair_backward(face, cf, pix.px, pix.py, o.near, o.far, zq, A * q * o.inv_gamma, g_wc, gx, gy, gz);
    }
    distance_backward(face, p, pix.px, pix.py, g_d2, gx, gy);
    add_face_grads(gv, idx, gx, gy, gz);
  }
}

template <typename T>
__global__ void dibr_forward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                    const T* __restrict__ colors, const int4* __restrict__ windows,
                                    const T* __restrict__ background, int64_t B, int64_t V, int64_t F, int64_t C,
                                    int S, T inv_sigma, T cut, T inf, T* __restrict__ image,
                                    T* __restrict__ not_alpha, int64_t* __restrict__ nearest) {
  PixelOf<T> pix;
  if (!pixel_of(B, S, pix)) return;
  const int64_t npix = pix.npix;
  const T* vb = verts + pix.b * V * 3;
  T* img = image + pix.b * (C + 1) * npix + pix.off;
  // Hard rasterization: the nearest face whose inside holds the pixel centre.
  T best = inf, w_best[3] = {0, 0, 0};
  int64_t sel = -1;
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[pix.b * F + f], pix.r, pix.c)) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    if (!face.nondegenerate) continue;
    const ColourFace<T> cf = colour_face(face, vb, idx);
    T w[3];
    if (!inside_barycentric(face, cf.inv_area2, pix.px, pix.py, w)) continue;
    const T depth = inside_depth(w, cf);
    if (depth < best) {
      best = depth;
      sel = f;
      for (int k = 0; k < 3; ++k) w_best[k] = w[k];
    }
  }
  nearest[pix.i] = sel;
  if (sel >= 0) {
    const T* cb = colors + pix.b * V * C;
    for (int64_t k = 0; k < C; ++k) img[k * npix] = interpolate(cb, faces + 3 * sel, C, k, w_best);
    img[C * npix] = T(1);
    not_alpha[pix.i] = T(1);
    return;
  }
  // Uncovered: soft alpha from every face within the cutoff.
  T na = T(1);
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[pix.b * F + f], pix.r, pix.c)) continue;
    const Pair<T> p = eval_pair(load_face(vb, faces + 3 * f), pix.px, pix.py);
    if (p.d2 < cut) na *= one_minus_exp_neg(p.d2 * inv_sigma);
  }
  for (int64_t k = 0; k < C; ++k) img[k * npix] = background[k];
  img[C * npix] = T(1) - na;
  not_alpha[pix.i] = na;
}

template <typename T>
__global__ void dibr_backward_kernel(const T* __restrict__ grad_image, const T* __restrict__ verts,
                                     const int64_t* __restrict__ faces, const T* __restrict__ colors,
                                     const int4* __restrict__ windows, const T* __restrict__ not_alpha,
                                     const int64_t* __restrict__ nearest, int64_t B, int64_t V, int64_t F, int64_t C,
                                     int S, T inv_sigma, T cut, T* __restrict__ grad_verts,
                                     T* __restrict__ grad_colors) {
  PixelOf<T> pix;
  if (!pixel_of(B, S, pix)) return;
  const int64_t npix = pix.npix;
  const T* vb = verts + pix.b * V * 3;
  const T* cb = colors + pix.b * V * C;
  const T* gimg = grad_image + pix.b * (C + 1) * npix + pix.off;
  T* gv = grad_verts + pix.b * V * 3;
  const int64_t sel = nearest[pix.i];
  if (sel >= 0) {  // covered: rgb = sum_k w_k c_k of the nearest face
    const int64_t* idx = faces + 3 * sel;
    const Face<T> face = load_face(vb, idx);
    const T inv_area2 = colour_face(face, vb, idx).inv_area2;
    T w[3], gw[3] = {0, 0, 0}, gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0};
    barycentric(face, inv_area2, pix.px, pix.py, w);
    for (int64_t k = 0; k < C; ++k) {
      const T g = gimg[k * npix];
      for (int j = 0; j < 3; ++j) {
        gw[j] += g * cb[C * idx[j] + k];
        atomicAdd(grad_colors + pix.b * V * C + C * idx[j] + k, g * w[j]);
      }
    }
    barycentric_backward(face, inv_area2, w, pix.px, pix.py, gw, gx, gy);
    add_face_grads<T>(gv, idx, gx, gy, nullptr);
    return;
  }
  const T glog = -gimg[C * npix] * not_alpha[pix.i];  // dL/dlog(1 - alpha)
  if (glog == T(0)) return;
  for (int64_t f = 0; f < F; ++f) {
    if (!in_window(windows[pix.b * F + f], pix.r, pix.c)) continue;
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    const Pair<T> p = eval_pair(face, pix.px, pix.py);
    if (p.inside || !(p.d2 < cut)) continue;
    T gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0};
    const T g_d2 = glog * log_one_minus_exp_neg_grad(p.d2 * inv_sigma) * inv_sigma;
    distance_backward(face, p, pix.px, pix.py, g_d2, gx, gy);
    add_face_grads<T>(gv, idx, gx, gy, nullptr);
  }
}

at::Tensor device_values(const std::vector<double>& values, const at::Tensor& like) {
  return at::tensor(at::ArrayRef<double>(values), at::TensorOptions().dtype(at::kDouble))
      .to(like.device(), like.scalar_type())
      .contiguous();
}

std::vector<at::Tensor> soft_forward_cuda(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          const SoftOptions& o, const std::vector<double>& background) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = o.image_size;
  at::Tensor image = at::empty({B, C + 1, S, S}, verts.options());
  at::Tensor not_alpha = at::empty({B, S, S}, verts.options());
  at::Tensor zmax = at::empty_like(not_alpha), den = at::empty_like(not_alpha);
  const int64_t n = not_alpha.numel();
  if (n == 0) return {image, not_alpha, zmax, den};
  const at::Tensor windows = launch_face_windows(verts, faces, S, std::sqrt(o.cutoff_sq));
  const at::Tensor bg = device_values(background, verts);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_soft_forward_cuda", [&] {
    launch(soft_forward_kernel<scalar_t>, num_blocks(n), kThreads, 0, verts.data_ptr<scalar_t>(),
           faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), as_int4(windows), bg.data_ptr<scalar_t>(), B, V,
           F, C, (int)S, soft_scalars<scalar_t>(o), image.data_ptr<scalar_t>(), not_alpha.data_ptr<scalar_t>(),
           zmax.data_ptr<scalar_t>(), den.data_ptr<scalar_t>());
  });
  return {image, not_alpha, zmax, den};
}

std::vector<at::Tensor> soft_backward_cuda(const at::Tensor& grad_image, const at::Tensor& image,
                                           const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                           const at::Tensor& not_alpha, const at::Tensor& zmax, const at::Tensor& den,
                                           const SoftOptions& o) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = o.image_size;
  at::Tensor grad_verts = at::zeros_like(verts), grad_colors = at::zeros_like(colors);
  const int64_t n = not_alpha.numel();
  if (n == 0) return {grad_verts, grad_colors};
  const at::Tensor windows = launch_face_windows(verts, faces, S, std::sqrt(o.cutoff_sq));
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_soft_backward_cuda", [&] {
    launch(soft_backward_kernel<scalar_t>, num_blocks(n), kThreads, 0, grad_image.data_ptr<scalar_t>(),
           image.data_ptr<scalar_t>(), verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(),
           colors.data_ptr<scalar_t>(), as_int4(windows), not_alpha.data_ptr<scalar_t>(), zmax.data_ptr<scalar_t>(),
           den.data_ptr<scalar_t>(), B, V, F, C, (int)S, soft_scalars<scalar_t>(o), grad_verts.data_ptr<scalar_t>(),
           grad_colors.data_ptr<scalar_t>());
  });
  return {grad_verts, grad_colors};
}

std::vector<at::Tensor> dibr_forward_cuda(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          int64_t image_size, double sigma, double cutoff_sq,
                                          const std::vector<double>& background) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = image_size;
  at::Tensor image = at::empty({B, C + 1, S, S}, verts.options());
  at::Tensor not_alpha = at::empty({B, S, S}, verts.options());
  at::Tensor nearest = at::empty({B, S, S}, verts.options().dtype(at::kLong));
  const int64_t n = not_alpha.numel();
  if (n == 0) return {image, not_alpha, nearest};
  const at::Tensor windows = launch_face_windows(verts, faces, S, std::sqrt(cutoff_sq));
  const at::Tensor bg = device_values(background, verts);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_dibr_forward_cuda", [&] {
    launch(dibr_forward_kernel<scalar_t>, num_blocks(n), kThreads, 0, verts.data_ptr<scalar_t>(),
           faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), as_int4(windows), bg.data_ptr<scalar_t>(), B, V,
           F, C, (int)S, scalar_t(1.0 / sigma), scalar_t(cutoff_sq), std::numeric_limits<scalar_t>::infinity(),
           image.data_ptr<scalar_t>(), not_alpha.data_ptr<scalar_t>(), nearest.data_ptr<int64_t>());
  });
  return {image, not_alpha, nearest};
}

std::vector<at::Tensor> dibr_backward_cuda(const at::Tensor& grad_image, const at::Tensor& verts,
                                           const at::Tensor& faces, const at::Tensor& colors,
                                           const at::Tensor& not_alpha, const at::Tensor& nearest, int64_t image_size,
                                           double sigma, double cutoff_sq) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = image_size;
  at::Tensor grad_verts = at::zeros_like(verts), grad_colors = at::zeros_like(colors);
  const int64_t n = not_alpha.numel();
  if (n == 0) return {grad_verts, grad_colors};
  const at::Tensor windows = launch_face_windows(verts, faces, S, std::sqrt(cutoff_sq));
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_dibr_backward_cuda", [&] {
    launch(dibr_backward_kernel<scalar_t>, num_blocks(n), kThreads, 0, grad_image.data_ptr<scalar_t>(),
           verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), as_int4(windows),
           not_alpha.data_ptr<scalar_t>(), nearest.data_ptr<int64_t>(), B, V, F, C, (int)S, scalar_t(1.0 / sigma),
           scalar_t(cutoff_sq), grad_verts.data_ptr<scalar_t>(), grad_colors.data_ptr<scalar_t>());
  });
  return {grad_verts, grad_colors};
}

}  // namespace

const Kernels& cuda_kernels() {
  static const Kernels kernels{soft_forward_cuda, soft_backward_cuda, dibr_forward_cuda, dibr_backward_cuda};
  return kernels;
}

}  // namespace recon_rgba
