// Per-face and per-pixel-face math shared by the CPU and CUDA soft rasterizer kernels.
//
// Conventions (identical to recon/render/softras_torch.py, the reference):
//   * pixel (row r, col c) of an S x S image has its centre at NDC
//     x = (2c + 1 - S) / S, y = (S - 1 - 2r) / S (row 0 at the top);
//   * edge k of a face runs from vertex k to vertex k + 1 (mod 3);
//   * d^2 = squared distance from the pixel centre to the closest edge segment; the pixel is
//     inside iff the face has non-zero area and the three edge functions share a sign;
//   * a pair contributes iff inside || d^2 < cutoff_sq, with
//     log(1 - D) = logsigmoid(-sign * d^2 / sigma), sign = +1 inside, -1 outside;
//   * a face contributes only to the pixel centres inside its window: the bounding box grown by
//     sqrt(cutoff_sq), computed in double precision; faces with a vertex at z <= 0 or a non-finite
//     x/y are skipped.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SR_HD __host__ __device__ __forceinline__
#else
#define SR_HD inline
#endif

namespace recon_softras {

// Inclusive pixel ranges; empty when c1 < c0 or r1 < r0.
struct Window {
  int c0, c1, r0, r1;
};

// Projected face with its per-face constants (the reference's `_face_table`).
template <typename T>
struct Face {
  T ax[3], ay[3];    // edge start points
  T ex[3], ey[3];    // edge vectors
  T inv_len2[3];     // 1 / |e|^2, or 0 for a zero-length edge (closest point = its start)
  bool nondegenerate;
  bool valid;        // in front of the camera and finite
  Window win;        // filled by face_window
};

// Closest-edge data of one pixel-face pair.
template <typename T>
struct Pair {
  T d2;        // squared distance to the closest edge
  T t;         // closest point = a + t * (b - a) on that edge, t in [0, 1]
  int edge;    // index of the closest edge (first minimum)
  bool inside;
};

// Single/double precision math that resolves the same way in host and device code.
SR_HD float sr_exp(float x) { return expf(x); }
SR_HD double sr_exp(double x) { return exp(x); }
SR_HD float sr_log1p(float x) { return logf(1.0f + x); }
SR_HD double sr_log1p(double x) { return log1p(x); }
SR_HD float sr_expm1(float x) { return expm1f(x); }
SR_HD double sr_expm1(double x) { return expm1(x); }

SR_HD double sr_clamp(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

template <typename T>
SR_HD bool sr_finite(T v) {
  return v == v && v - v == v - v;  // false for NaN and +-inf without <cmath> device overloads
}

// Loads one face (vertex indices idx[0..2]) of a mesh whose vertices are at `v` (V x 3); the
// window is left empty, see face_window.
template <typename T>
SR_HD Face<T> load_face(const T* v, const int64_t* idx) {
  Face<T> face;
  face.valid = true;
  for (int k = 0; k < 3; ++k) {
    const T* p = v + 3 * idx[k];
    face.ax[k] = p[0];
    face.ay[k] = p[1];
    face.valid = face.valid && p[2] > T(0) && sr_finite(p[0]) && sr_finite(p[1]);
  }
  for (int k = 0; k < 3; ++k) {
    const int k1 = k == 2 ? 0 : k + 1;
    face.ex[k] = face.ax[k1] - face.ax[k];
    face.ey[k] = face.ay[k1] - face.ay[k];
    const T len2 = face.ex[k] * face.ex[k] + face.ey[k] * face.ey[k];
    face.inv_len2[k] = len2 > T(0) ? T(1) / len2 : T(0);
  }
  const T area2 = (face.ax[1] - face.ax[0]) * (face.ay[2] - face.ay[0]) -
                  (face.ay[1] - face.ay[0]) * (face.ax[2] - face.ax[0]);
  face.nondegenerate = area2 != T(0);
  face.win = Window{0, -1, 0, -1};
  return face;
}

// Pixel centres within `radius` of the face's bounding box (double precision, like the reference).
template <typename T>
SR_HD Window face_window(const Face<T>& face, int image_size, double radius) {
  Window win{0, -1, 0, -1};
  if (!face.valid) return win;
  double xmin = face.ax[0], xmax = face.ax[0], ymin = face.ay[0], ymax = face.ay[0];
  for (int k = 1; k < 3; ++k) {
    const double x = face.ax[k], y = face.ay[k];
    xmin = x < xmin ? x : xmin;
    xmax = x > xmax ? x : xmax;
    ymin = y < ymin ? y : ymin;
    ymax = y > ymax ? y : ymax;
  }
  const double s = image_size;
  // Clamp in double before the cast so far-away vertices cannot overflow int.
  win.c0 = (int)sr_clamp(ceil((s * (xmin - radius) + s - 1.0) / 2.0), 0.0, s);
  win.c1 = (int)sr_clamp(floor((s * (xmax + radius) + s - 1.0) / 2.0), -1.0, s - 1.0);
  win.r0 = (int)sr_clamp(ceil((s - 1.0 - s * (ymax + radius)) / 2.0), 0.0, s);
  win.r1 = (int)sr_clamp(floor((s - 1.0 - s * (ymin - radius)) / 2.0), -1.0, s - 1.0);
  return win;
}

template <typename T>
SR_HD T pixel_x(int col, int image_size) {
  return T(2 * col + 1 - image_size) / T(image_size);
}

template <typename T>
SR_HD T pixel_y(int row, int image_size) {
  return T(image_size - 1 - 2 * row) / T(image_size);
}

// Branch-free on purpose: the comparisons are data dependent and would mispredict.
template <typename T>
SR_HD Pair<T> eval_pair(const Face<T>& f, T px, T py) {
  T d2[3], t[3];
  bool pos = true, neg = true;
  for (int k = 0; k < 3; ++k) {
    const T apx = px - f.ax[k], apy = py - f.ay[k];
    const T cross = f.ex[k] * apy - f.ey[k] * apx;
    pos = pos & (cross >= T(0));
    neg = neg & (cross <= T(0));
    T tk = (apx * f.ex[k] + apy * f.ey[k]) * f.inv_len2[k];
    tk = tk > T(0) ? tk : T(0);
    tk = tk < T(1) ? tk : T(1);
    const T dx = apx - tk * f.ex[k], dy = apy - tk * f.ey[k];
    d2[k] = dx * dx + dy * dy;
    t[k] = tk;
  }
  Pair<T> out;
  const bool one = d2[1] < d2[0];
  out.d2 = one ? d2[1] : d2[0];
  out.t = one ? t[1] : t[0];
  out.edge = one ? 1 : 0;
  const bool two = d2[2] < out.d2;
  out.d2 = two ? d2[2] : out.d2;
  out.t = two ? t[2] : out.t;
  out.edge = two ? 2 : out.edge;
  out.inside = f.nondegenerate & (pos | neg);
  return out;
}

// log(sigmoid(x)), stable for any x.
template <typename T>
SR_HD T log_sigmoid(T x) {
  return (x < T(0) ? x : T(0)) - sr_log1p(sr_exp(-(x < T(0) ? -x : x)));
}

template <typename T>
SR_HD T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + sr_exp(-x));
  const T e = sr_exp(x);
  return e / (T(1) + e);
}

// Argument of logsigmoid for log(1 - D): -sign * d^2 / sigma, as (-sign / sigma) * d^2.
template <typename T>
SR_HD T log_not_arg(const Pair<T>& p, T inv_sigma) {
  return (p.inside ? -inv_sigma : inv_sigma) * p.d2;
}

}  // namespace recon_softras
