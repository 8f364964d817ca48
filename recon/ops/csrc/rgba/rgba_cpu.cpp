// CPU RGBA renders (OpenMP): the soft z-buffer (vectorised, rgba_cpu_impl.h) and the DIB-R-style render.
//
// Same structure as the silhouette kernel (../softras/softras_cpu.cpp): each face visits only the
// pixel centres of its window; work is split into (batch element, band of rows) items
// (../softras/cpu_bands.h): no data races, and the result does not depend on the thread count.
// Pixels sum their faces in ascending order.
//
// The soft z-buffer kernels (rgba_cpu_impl.h) are compiled for baseline x86-64 and for AVX2, picked
// at run time like the silhouette's (../softras/simd_variants.h).
#include "rgba.h"
#include "cpu_bands.h"
#include "rgba_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace recon_rgba {
namespace {

using recon_softras::Band;
using recon_softras::for_each_band;
using recon_softras::is_empty;
using recon_softras::make_split;
using recon_softras::reduce_face_grads;
using recon_softras::Split;

// One face of one mesh, with what the colour terms need besides the silhouette's Face.
template <typename T>
struct MeshFace {
  Face<T> face;
  ColourFace<T> cf;
  const T* col[3];  // per-vertex colours (C values each)
  Window win;       // clipped to the item's band; empty when r0 > r1 or c0 > c1
};

template <typename T>
MeshFace<T> load_mesh_face(const T* vb, const T* cb, const int64_t* idx, int64_t C, int S, double radius,
                           const Band& band) {
  MeshFace<T> m;
  m.face = load_face(vb, idx);
  m.cf = colour_face(m.face, vb, idx);
  for (int k = 0; k < 3; ++k) m.col[k] = cb + C * idx[k];
  m.win = recon_softras::clip_rows(face_window(m.face, S, radius), band.row_lo, band.row_hi);
  return m;
}

#define RECON_CPU_IMPL "rgba_cpu_impl.h"
#include "simd_variants.h"

// Every face of one mesh, loaded once per item (the DIB-R kernels visit each face more than once).
template <typename T>
std::vector<MeshFace<T>> load_mesh_faces(const T* vb, const T* cb, const int64_t* faces, int64_t F, int64_t C, int S,
                                         double radius, const Band& band) {
  std::vector<MeshFace<T>> out(F);
  for (int64_t f = 0; f < F; ++f) out[f] = load_mesh_face(vb, cb, faces + 3 * f, C, S, radius, band);
  return out;
}

// Two passes over the faces: the hard rasterization (edge functions only), then the soft alpha
// at the pixels no face covers (alpha is 1 elsewhere, so their pairs are never evaluated).
template <typename T>
void dibr_forward_impl(const T* verts, const int64_t* faces, const T* colors, int64_t B, int64_t V, int64_t F,
                       int64_t C, int S, double sigma, double cutoff_sq, const std::vector<double>& background,
                       const Split& split, T* image, T* not_alpha, int64_t* nearest) {
  const int64_t npix = (int64_t)S * S;
  const double radius = std::sqrt(cutoff_sq);
  const T inv_sigma = T(1.0 / sigma), cut = T(cutoff_sq);
  for_each_band(B, S, split, [&](const Band& bd) {
    const int64_t b = bd.b, lo = bd.lo, hi = bd.hi;
    T* na = not_alpha + b * npix;
    int64_t* nb = nearest + b * npix;
    T* img = image + b * (C + 1) * npix;
    const std::vector<MeshFace<T>> mesh = load_mesh_faces(verts + b * V * 3, colors + b * V * C, faces, F, C, S,
                                                          radius, bd);
    std::vector<T> best(hi - lo, std::numeric_limits<T>::infinity()), w_best(3 * (hi - lo));
    std::fill(na + lo, na + hi, T(1));
    std::fill(nb + lo, nb + hi, int64_t(-1));
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T>& m = mesh[f];
      if (is_empty(m.win) || !m.face.nondegenerate) continue;
      for (int r = m.win.r0; r <= m.win.r1; ++r) {
        const T py = pixel_y<T>(r, S);
        for (int col = m.win.c0; col <= m.win.c1; ++col) {
          T w[3];
          if (!inside_barycentric(m.face, m.cf.inv_area2, pixel_x<T>(col, S), py, w)) continue;
          const int64_t i = (int64_t)r * S + col - lo;
          const T depth = inside_depth(w, m.cf);
          if (depth < best[i]) {
            best[i] = depth;
            nb[lo + i] = f;
            for (int k = 0; k < 3; ++k) w_best[3 * i + k] = w[k];
          }
        }
      }
    }
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T>& m = mesh[f];
      if (is_empty(m.win)) continue;
      for (int r = m.win.r0; r <= m.win.r1; ++r) {
        const T py = pixel_y<T>(r, S);
        for (int col = m.win.c0; col <= m.win.c1; ++col) {
          const int64_t off = (int64_t)r * S + col;
          if (nb[off] >= 0) continue;  // covered: alpha is 1
          const Pair<T> p = eval_pair(m.face, pixel_x<T>(col, S), py);
          if (p.d2 < cut) na[off] *= one_minus_exp_neg(p.d2 * inv_sigma);  // outside: nothing covers it
        }
      }
    }
    for (int64_t i = lo; i < hi; ++i) {
      if (nb[i] < 0) {
        for (int64_t c = 0; c < C; ++c) img[c * npix + i] = T(background[c]);
        img[C * npix + i] = T(1) - na[i];
        continue;
      }
      const MeshFace<T>& m = mesh[nb[i]];
      const T* w = w_best.data() + 3 * (i - lo);
      for (int64_t c = 0; c < C; ++c) img[c * npix + i] = w[0] * m.col[0][c] + w[1] * m.col[1][c] + w[2] * m.col[2][c];
      img[C * npix + i] = T(1);
    }
  });
}

template <typename T>
void dibr_backward_impl(const T* grad_image, const T* verts, const int64_t* faces, const T* colors, const T* not_alpha,
                        const int64_t* nearest, int64_t B, int64_t V, int64_t F, int64_t C, int S, double sigma,
                        double cutoff_sq, const Split& split, T* face_grad, T* face_cgrad) {
  const int64_t npix = (int64_t)S * S;
  const double radius = std::sqrt(cutoff_sq);
  const T inv_sigma = T(1.0 / sigma), cut = T(cutoff_sq);
  for_each_band(B, S, split, [&](const Band& bd) {
    const int64_t b = bd.b, lo = bd.lo, hi = bd.hi;
    const T* gimg = grad_image + b * (C + 1) * npix;
    const int64_t* nb = nearest + b * npix;
    T* out = face_grad + (bd.band * B + b) * F * 9;
    T* outc = face_cgrad + (bd.band * B + b) * F * 3 * C;
    std::fill(out, out + F * 9, T(0));
    std::fill(outc, outc + F * 3 * C, T(0));
    const std::vector<MeshFace<T>> mesh = load_mesh_faces(verts + b * V * 3, colors + b * V * C, faces, F, C, S,
                                                          radius, bd);
    // Covered pixels: rgb = sum_k w_k c_k of the nearest face.
    std::vector<T> glog(hi - lo, T(0));
    for (int64_t i = lo; i < hi; ++i) {
      if (nb[i] < 0) {
        glog[i - lo] = -gimg[C * npix + i] * not_alpha[b * npix + i];  // dL/dlog(1 - alpha)
        continue;
      }
      const int64_t f = nb[i];
      const MeshFace<T>& m = mesh[f];
      const T px = pixel_x<T>((int)(i % S), S), py = pixel_y<T>((int)(i / S), S);
      T w[3], gw[3] = {0, 0, 0}, gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0};
      barycentric(m.face, m.cf.inv_area2, px, py, w);
      T* gc = outc + f * 3 * C;
      for (int64_t c = 0; c < C; ++c) {
        const T g = gimg[c * npix + i];
        for (int k = 0; k < 3; ++k) {
          gw[k] += g * m.col[k][c];
          gc[k * C + c] += g * w[k];
        }
      }
      barycentric_backward(m.face, m.cf.inv_area2, w, px, py, gw, gx, gy);
      for (int k = 0; k < 3; ++k) {
        out[f * 9 + 3 * k] += gx[k];
        out[f * 9 + 3 * k + 1] += gy[k];
      }
    }
    // Uncovered pixels: alpha = 1 - prod(1 - exp(-d^2 / sigma)).
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T>& m = mesh[f];
      if (is_empty(m.win)) continue;
      T gx[3] = {0, 0, 0}, gy[3] = {0, 0, 0};
      bool touched = false;
      for (int r = m.win.r0; r <= m.win.r1; ++r) {
        const T py = pixel_y<T>(r, S);
        for (int col = m.win.c0; col <= m.win.c1; ++col) {
          const int64_t off = (int64_t)r * S + col;
          const T g = glog[off - lo];
          if (g == T(0)) continue;
          const T px = pixel_x<T>(col, S);
          const Pair<T> p = eval_pair(m.face, px, py);
          if (p.inside || !(p.d2 < cut)) continue;
          distance_backward(m.face, p, px, py, g * log_one_minus_exp_neg_grad(p.d2 * inv_sigma) * inv_sigma, gx, gy);
          touched = true;
        }
      }
      if (!touched) continue;
      for (int k = 0; k < 3; ++k) {
        out[f * 9 + 3 * k] += gx[k];
        out[f * 9 + 3 * k + 1] += gy[k];
      }
    }
  });
}

std::vector<at::Tensor> soft_forward_cpu(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                         const SoftOptions& o, const std::vector<double>& background) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = o.image_size;
  at::Tensor image = at::empty({B, C + 1, S, S}, verts.options());
  at::Tensor not_alpha = at::empty({B, S, S}, verts.options());
  at::Tensor zmax = at::empty_like(not_alpha), den = at::empty_like(not_alpha);
  const Split split = make_split(B, S);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_soft_forward_cpu", [&] {
    auto run = [&](auto impl) {
      impl(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), B, V, F, C, o,
           background, split, image.data_ptr<scalar_t>(), not_alpha.data_ptr<scalar_t>(), zmax.data_ptr<scalar_t>(),
           den.data_ptr<scalar_t>());
    };
    RECON_SIMD_RUN(run, soft_forward_impl<scalar_t>);
  });
  return {image, not_alpha, zmax, den};
}

std::vector<at::Tensor> soft_backward_cpu(const at::Tensor& grad_image, const at::Tensor& image,
                                          const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          const at::Tensor& not_alpha, const at::Tensor& zmax, const at::Tensor& den,
                                          const SoftOptions& o) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2);
  const Split split = make_split(B, o.image_size);
  at::Tensor face_grad = at::empty({split.bands, B, F, 9}, verts.options());  // fully written
  at::Tensor face_cgrad = at::empty({split.bands, B, F, 3 * C}, verts.options());
  at::Tensor grad_verts = at::zeros_like(verts), grad_colors = at::zeros_like(colors);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_soft_backward_cpu", [&] {
    auto run = [&](auto impl) {
      impl(grad_image.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), verts.data_ptr<scalar_t>(),
           faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), not_alpha.data_ptr<scalar_t>(),
           zmax.data_ptr<scalar_t>(), den.data_ptr<scalar_t>(), B, V, F, C, o, split, face_grad.data_ptr<scalar_t>(),
           face_cgrad.data_ptr<scalar_t>());
    };
    RECON_SIMD_RUN(run, soft_backward_impl<scalar_t>);
    reduce_face_grads<scalar_t>(face_grad.data_ptr<scalar_t>(), 3, face_cgrad.data_ptr<scalar_t>(), C,
                                faces.data_ptr<int64_t>(), B, V, F, split, grad_verts.data_ptr<scalar_t>(),
                                grad_colors.data_ptr<scalar_t>());
  });
  return {grad_verts, grad_colors};
}

std::vector<at::Tensor> dibr_forward_cpu(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                         int64_t image_size, double sigma, double cutoff_sq,
                                         const std::vector<double>& background) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2), S = image_size;
  at::Tensor image = at::empty({B, C + 1, S, S}, verts.options());
  at::Tensor not_alpha = at::empty({B, S, S}, verts.options());
  at::Tensor nearest = at::empty({B, S, S}, verts.options().dtype(at::kLong));
  const Split split = make_split(B, S);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_dibr_forward_cpu", [&] {
    dibr_forward_impl<scalar_t>(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), B,
                                V, F, C, (int)S, sigma, cutoff_sq, background, split, image.data_ptr<scalar_t>(),
                                not_alpha.data_ptr<scalar_t>(), nearest.data_ptr<int64_t>());
  });
  return {image, not_alpha, nearest};
}

std::vector<at::Tensor> dibr_backward_cpu(const at::Tensor& grad_image, const at::Tensor& verts,
                                          const at::Tensor& faces, const at::Tensor& colors,
                                          const at::Tensor& not_alpha, const at::Tensor& nearest, int64_t image_size,
                                          double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0), C = colors.size(2);
  const Split split = make_split(B, image_size);
  at::Tensor face_grad = at::empty({split.bands, B, F, 9}, verts.options());
  at::Tensor face_cgrad = at::empty({split.bands, B, F, 3 * C}, verts.options());
  at::Tensor grad_verts = at::zeros_like(verts), grad_colors = at::zeros_like(colors);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rgba_dibr_backward_cpu", [&] {
    dibr_backward_impl<scalar_t>(grad_image.data_ptr<scalar_t>(), verts.data_ptr<scalar_t>(),
                                 faces.data_ptr<int64_t>(), colors.data_ptr<scalar_t>(), not_alpha.data_ptr<scalar_t>(),
                                 nearest.data_ptr<int64_t>(), B, V, F, C, (int)image_size, sigma, cutoff_sq, split,
                                 face_grad.data_ptr<scalar_t>(), face_cgrad.data_ptr<scalar_t>());
    reduce_face_grads<scalar_t>(face_grad.data_ptr<scalar_t>(), 3, face_cgrad.data_ptr<scalar_t>(), C,
                                faces.data_ptr<int64_t>(), B, V, F, split, grad_verts.data_ptr<scalar_t>(),
                                grad_colors.data_ptr<scalar_t>());
  });
  return {grad_verts, grad_colors};
}

}  // namespace

std::string cpu_simd() { return use_avx2() ? "avx2" : "baseline"; }

const Kernels& cpu_kernels() {
  static const Kernels kernels{soft_forward_cpu, soft_backward_cpu, dibr_forward_cpu, dibr_backward_cpu};
  return kernels;
}

}  // namespace recon_rgba
