// CPU soft rasterizer (OpenMP + 4-lane SIMD).
//
// Each face visits only the pixel centres of its window (its cutoff-grown bounding box), so no
// pixel looks at a face that cannot reach it. The window's pixels are evaluated four at a time
// (row-major, continuing across rows) with branch-free vector code; the per-pixel sums still run
// over faces in ascending order, as in the reference.
//
// Work is split into (batch element, band of rows) items: forward items write disjoint rows of
// the log buffer, and backward items write their own slice of a per-(band, batch, face) gradient
// buffer that is reduced onto the vertices at the end (in a fixed order), so there are no data
// races and the result does not depend on the thread count.
#include "softras.h"
#include "softras_math.h"
#include "softras_simd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace recon_softras {
namespace {

using simd::kLanes;

struct Split {
  int64_t bands;  // row bands per image
  int threads;
};

// Small batches are split into bands of rows so that every thread gets work. The split depends on
// the batch size only, never on the thread count, so results are identical for any thread count.
constexpr int64_t kMinItems = 16;

Split make_split(int64_t batch, int64_t image_size) {
  int64_t bands = batch > 0 ? (kMinItems + batch - 1) / batch : 1;
  bands = std::max<int64_t>(1, std::min<int64_t>(bands, image_size));
  return Split{bands, std::max(1, at::get_num_threads())};
}

inline int64_t band_begin(int64_t band, int64_t bands, int64_t s) { return band * s / bands; }

// Up to kLanes consecutive pixels of a face window.
template <typename T>
struct Group {
  typename simd::Vec<T>::V px, py;
  int64_t off[kLanes];  // r * S + c
  int count;
};

// Row-major walk over the window rows [r, r1] x cols [c0, c1], kLanes pixels at a time.
template <typename T>
struct Cursor {
  int r, c, c0, c1;
  int64_t remaining;
  const T* xs;  // pixel centre x per column
  const T* ys;  // pixel centre y per row
  int S;

  bool next(Group<T>& g) {
    if (remaining <= 0) return false;
    g.count = (int)std::min<int64_t>(kLanes, remaining);
    remaining -= g.count;
    for (int j = 0; j < kLanes; ++j) {
      if (j < g.count) {
        g.px[j] = xs[c];
        g.py[j] = ys[r];
        g.off[j] = (int64_t)r * S + c;
        if (++c > c1) {
          c = c0;
          ++r;
        }
      } else {  // dead lanes repeat lane 0 so that they stay finite; they are masked out
        g.px[j] = g.px[0];
        g.py[j] = g.py[0];
        g.off[j] = g.off[0];
      }
    }
    return true;
  }
};

// Vector version of eval_pair (softras_math.h), plus the closest point offset p - q.
template <typename T>
struct VPair {
  typedef typename simd::Vec<T>::V V;
  typedef typename simd::Vec<T>::M M;
  V d2, t, dx, dy;
  M e0, e1, e2;  // which edge is the closest one (first minimum)
  M inside;
};

template <typename T>
inline VPair<T> eval_pairs(const Face<T>& f, typename simd::Vec<T>::V px, typename simd::Vec<T>::V py) {
  typedef typename simd::Vec<T>::V V;
  typedef typename simd::Vec<T>::M M;
  const V zero = simd::splat<V>(0), one = simd::splat<V>(1);
  V d2[3], t[3], dx[3], dy[3];
  M pos = simd::splat<M>(-1), neg = simd::splat<M>(-1);
  for (int k = 0; k < 3; ++k) {
    const V apx = px - f.ax[k], apy = py - f.ay[k];
    const V cross = f.ex[k] * apy - f.ey[k] * apx;
    pos &= cross >= zero;
    neg &= cross <= zero;
    V tk = (apx * f.ex[k] + apy * f.ey[k]) * f.inv_len2[k];
    tk = tk > zero ? tk : zero;
    tk = tk < one ? tk : one;
    dx[k] = apx - tk * f.ex[k];
    dy[k] = apy - tk * f.ey[k];
    d2[k] = dx[k] * dx[k] + dy[k] * dy[k];
    t[k] = tk;
  }
  VPair<T> p;
  const M m1 = d2[1] < d2[0];
  p.d2 = m1 ? d2[1] : d2[0];
  p.t = m1 ? t[1] : t[0];
  p.dx = m1 ? dx[1] : dx[0];
  p.dy = m1 ? dy[1] : dy[0];
  const M m2 = d2[2] < p.d2;
  p.d2 = m2 ? d2[2] : p.d2;
  p.t = m2 ? t[2] : p.t;
  p.dx = m2 ? dx[2] : p.dx;
  p.dy = m2 ? dy[2] : p.dy;
  p.e2 = m2;
  p.e1 = m1 & ~m2;
  p.e0 = ~m1 & ~m2;
  p.inside = (pos | neg) & simd::splat<M>(f.nondegenerate ? -1 : 0);
  return p;
}

template <typename T>
std::vector<T> pixel_table(int S, bool rows) {
  std::vector<T> v(S);
  for (int i = 0; i < S; ++i) v[i] = rows ? pixel_y<T>(i, S) : pixel_x<T>(i, S);
  return v;
}

template <typename T>
void forward_impl(const T* verts, const int64_t* faces, int64_t B, int64_t V, int64_t F, int S, double sigma,
                  double cutoff_sq, T* log_sum, T* sil) {
  typedef typename simd::Vec<T>::V Vt;
  typedef typename simd::Vec<T>::M Mt;
  const double radius = std::sqrt(cutoff_sq);
  const Vt inv_sigma = simd::splat<Vt>(T(1.0 / sigma)), cut = simd::splat<Vt>(T(cutoff_sq));
  const Vt zero = simd::splat<Vt>(0);
  Mt lane;
  for (int j = 0; j < kLanes; ++j) lane[j] = j;
  const std::vector<T> xs = pixel_table<T>(S, false), ys = pixel_table<T>(S, true);
  const Split split = make_split(B, S);
  const int64_t items = B * split.bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(split.threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / split.bands, band = item % split.bands;
    const int row_lo = (int)band_begin(band, split.bands, S), row_hi = (int)band_begin(band + 1, split.bands, S);
    const T* vb = verts + b * V * 3;
    T* ls = log_sum + b * S * S;
    std::fill(ls + (int64_t)row_lo * S, ls + (int64_t)row_hi * S, T(0));
    for (int64_t f = 0; f < F; ++f) {
      const Face<T> face = load_face(vb, faces + 3 * f);
      const Window w = face_window(face, S, radius);
      const int r0 = std::max(w.r0, row_lo), r1 = std::min(w.r1, row_hi - 1);
      if (r0 > r1 || w.c0 > w.c1) continue;
      Cursor<T> cur{r0, w.c0, w.c0, w.c1, (int64_t)(r1 - r0 + 1) * (w.c1 - w.c0 + 1), xs.data(), ys.data(), S};
      Group<T> g;
      while (cur.next(g)) {
        const VPair<T> p = eval_pairs(face, g.px, g.py);
        const Mt keep = (p.inside | (p.d2 < cut)) & (lane < simd::splat<Mt>(g.count));
        if (!simd::any(keep)) continue;
        const Vt val = simd::vlog_sigmoid((p.inside ? -inv_sigma : inv_sigma) * p.d2);
        const Vt add = keep ? val : zero;
        for (int j = 0; j < g.count; ++j) ls[g.off[j]] += add[j];
      }
    }
    for (int64_t i = (int64_t)row_lo * S; i < (int64_t)row_hi * S; ++i) sil[b * S * S + i] = -sr_expm1(ls[i]);
  }
}

template <typename V>
inline simd::elem_t<V> hsum(V v) {
  simd::elem_t<V> s = 0;
  for (int j = 0; j < kLanes; ++j) s += v[j];
  return s;
}

// grad_log: (B, S, S) dLoss/dlog_sum = -grad_sil * exp(log_sum). Writes face_grad (bands, B, F, 6):
// d/d(x, y) of each face's three vertices, summed over the band's pixels.
template <typename T>
void backward_impl(const T* verts, const int64_t* faces, const T* grad_log, int64_t B, int64_t V, int64_t F, int S,
                   double sigma, double cutoff_sq, const Split& split, T* face_grad) {
  typedef typename simd::Vec<T>::V Vt;
  typedef typename simd::Vec<T>::M Mt;
  const double radius = std::sqrt(cutoff_sq);
  const Vt inv_sigma = simd::splat<Vt>(T(1.0 / sigma)), cut = simd::splat<Vt>(T(cutoff_sq));
  const Vt zero = simd::splat<Vt>(0), minus_two = simd::splat<Vt>(-2), one = simd::splat<Vt>(1);
  const std::vector<T> xs = pixel_table<T>(S, false), ys = pixel_table<T>(S, true);
  const int64_t items = B * split.bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(split.threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / split.bands, band = item % split.bands;
    const int row_lo = (int)band_begin(band, split.bands, S), row_hi = (int)band_begin(band + 1, split.bands, S);
    const T* vb = verts + b * V * 3;
    const T* gl = grad_log + b * S * S;
    T* out = face_grad + (band * B + b) * F * 6;
    for (int64_t f = 0; f < F; ++f) {
      const Face<T> face = load_face(vb, faces + 3 * f);
      const Window w = face_window(face, S, radius);
      const int r0 = std::max(w.r0, row_lo), r1 = std::min(w.r1, row_hi - 1);
      if (r0 > r1 || w.c0 > w.c1) continue;
      Cursor<T> cur{r0, w.c0, w.c0, w.c1, (int64_t)(r1 - r0 + 1) * (w.c1 - w.c0 + 1), xs.data(), ys.data(), S};
      Group<T> g;
      Vt gx0 = zero, gx1 = zero, gx2 = zero, gy0 = zero, gy1 = zero, gy2 = zero;
      while (cur.next(g)) {
        Vt glog = zero;
        bool any = false;
        for (int j = 0; j < g.count; ++j) {
          glog[j] = gl[g.off[j]];
          any = any || glog[j] != T(0);
        }
        if (!any) continue;  // e.g. covered pixels where exp(log_sum) underflows
        const VPair<T> p = eval_pairs(face, g.px, g.py);
        const Mt keep = p.inside | (p.d2 < cut);
        // log(1 - D) = logsigmoid(x), x = a d^2, a = -sign / sigma, dlogsigmoid/dx = sigmoid(-x).
        const Vt a = p.inside ? -inv_sigma : inv_sigma;
        const Vt coef = keep ? glog * simd::vsigmoid_neg(a * p.d2) * a : zero;  // dLoss / d(d^2)
        // d^2 = |p - q|^2, q = A + t (B - A): d/dA = -2 (1 - t) (p - q), d/dB = -2 t (p - q); t is
        // the minimiser (or clamped), so its own variation does not contribute.
        const Vt wa = minus_two * coef * (one - p.t), wb = minus_two * coef * p.t;
        const Vt w0 = (p.e0 ? wa : zero) + (p.e2 ? wb : zero);
        const Vt w1 = (p.e1 ? wa : zero) + (p.e0 ? wb : zero);
        const Vt w2 = (p.e2 ? wa : zero) + (p.e1 ? wb : zero);
        gx0 += w0 * p.dx;
        gy0 += w0 * p.dy;
        gx1 += w1 * p.dx;
        gy1 += w1 * p.dy;
        gx2 += w2 * p.dx;
        gy2 += w2 * p.dy;
      }
      T* o = out + f * 6;
      o[0] = hsum(gx0);
      o[1] = hsum(gy0);
      o[2] = hsum(gx1);
      o[3] = hsum(gy1);
      o[4] = hsum(gx2);
      o[5] = hsum(gy2);
    }
  }
}

template <typename T>
void reduce_face_grad(const T* face_grad, const int64_t* faces, int64_t B, int64_t V, int64_t F, const Split& split,
                      T* grad_verts) {
#pragma omp parallel for schedule(static) num_threads(split.threads)
  for (int64_t b = 0; b < B; ++b) {
    T* gv = grad_verts + b * V * 3;
    for (int64_t band = 0; band < split.bands; ++band) {
      const T* fg = face_grad + (band * B + b) * F * 6;
      for (int64_t f = 0; f < F; ++f) {
        for (int k = 0; k < 3; ++k) {
          const int64_t v = faces[3 * f + k];
          gv[3 * v] += fg[6 * f + 2 * k];
          gv[3 * v + 1] += fg[6 * f + 2 * k + 1];
        }
      }
    }
  }
}

}  // namespace

std::vector<at::Tensor> forward_cpu(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                    double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor log_sum = at::empty({B, image_size, image_size}, verts.options());
  at::Tensor sil = at::empty_like(log_sum);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_forward_cpu", [&] {
    forward_impl<scalar_t>(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, (int)image_size, sigma,
                           cutoff_sq, log_sum.data_ptr<scalar_t>(), sil.data_ptr<scalar_t>());
  });
  return {sil, log_sum};
}

at::Tensor backward_cpu(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                        const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  const Split split = make_split(B, image_size);
  const at::Tensor grad_log = (-grad_sil * at::exp(log_sum)).contiguous();
  at::Tensor face_grad = at::zeros({split.bands, B, F, 6}, verts.options());
  at::Tensor grad_verts = at::zeros_like(verts);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_backward_cpu", [&] {
    backward_impl<scalar_t>(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), grad_log.data_ptr<scalar_t>(), B,
                            V, F, (int)image_size, sigma, cutoff_sq, split, face_grad.data_ptr<scalar_t>());
    reduce_face_grad<scalar_t>(face_grad.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, split,
                               grad_verts.data_ptr<scalar_t>());
  });
  return grad_verts;
}

}  // namespace recon_softras
