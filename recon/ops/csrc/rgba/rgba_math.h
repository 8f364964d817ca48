// Per pixel-face maths of the two RGBA renders, shared by the CPU and CUDA kernels. Builds on the
// silhouette's maths (../softras/softras_math.h: Face, windows, the closest-edge pair, logsigmoid).
//
// Conventions (identical to the torch references recon/render/softras_rgb_torch.py and dibr_torch.py):
//   * barycentrics: cross_k = e_k x (p - a_k) for edge k (vertex k -> k + 1),
//     (the kernels multiply by reciprocals where the references divide, except for the depth
//     terms of the soft z-buffer forward: equal to rounding)
//     area2 = (x1 - x0)(y2 - y0) - (y1 - y0)(x2 - x0), and w_{k+2} = cross_k / area2;
//   * soft z-buffer: u = clamp(w, 0, 1), wc = u / sum(u), z_p = 1 / sum(wc_k / z_k),
//     z_n = (far - z_p) / (far - near); a pair colours its pixel iff its face has an area and
//     near <= z_p <= far; weight D * exp((z_n - zmax) / gamma), D = sigmoid(-arg) where
//     arg = log_not_arg(pair) (so log(1 - D) = logsigmoid(arg)); pairs below kSkipExponent skipped;
//   * DIB-R: nearest inside face by depth 1 / sum(w_k / z_k), strict "<" in face order; soft alpha
//     1 - prod(1 - exp(-x)), x = max(d^2 / sigma, kMinExponent);
//   * the kernels accumulate 1 - alpha as a product (the references sum logs): equal to rounding.
#pragma once

#include "softras_math.h"

namespace recon_rgba {

using recon_softras::eval_pair;
using recon_softras::Face;
using recon_softras::face_window;
using recon_softras::load_face;
using recon_softras::log_not_arg;
using recon_softras::Pair;
using recon_softras::pixel_x;
using recon_softras::pixel_y;
using recon_softras::sr_exp;
using recon_softras::Window;

// x below which log(1 - exp(-x)) is held constant (dibr_torch.MIN_EXPONENT).
constexpr double kMinExponent = 1e-30;

// A soft z-buffer pair whose depth factor exp((z_n - zmax) / gamma) is below exp(kSkipExponent)
// (4e-18) is skipped by the kernels: the heaviest pair of its pixel weighs at least its D (>= eps of
// the cutoff) or the background's 1, so it changes colours and gradients by < 1e-13 relative.
constexpr double kSkipExponent = -40.0;

template <typename T>
SR_HD T area2_of(const Face<T>& f) {
  return (f.ax[1] - f.ax[0]) * (f.ay[2] - f.ay[0]) - (f.ay[1] - f.ay[0]) * (f.ax[2] - f.ax[0]);
}

// Screen-space barycentrics of (px, py) in a face with non-zero area2 (inv_area2 = 1 / area2).
template <typename T>
SR_HD void barycentric(const Face<T>& f, T inv_area2, T px, T py, T w[3]) {
  T cross[3];
  for (int k = 0; k < 3; ++k) cross[k] = f.ex[k] * (py - f.ay[k]) - f.ey[k] * (px - f.ax[k]);
  w[0] = cross[1] * inv_area2;
  w[1] = cross[2] * inv_area2;
  w[2] = cross[0] * inv_area2;
}

// Adds dLoss/d(x_k, y_k) of the three face vertices given dLoss/dw (w = barycentric(...)).
template <typename T>
SR_HD void barycentric_backward(const Face<T>& f, T inv_area2, const T w[3], T px, T py, const T gw[3], T gx[3],
                                T gy[3]) {
  // w_{k+2} = cross_k / area2: dL/dcross_k = gw_{k+2} / area2, dL/darea2 = -sum_l gw_l w_l / area2.
  const T garea = -(gw[0] * w[0] + gw[1] * w[1] + gw[2] * w[2]) * inv_area2;
  for (int k = 0; k < 3; ++k) {
    const int k1 = k == 2 ? 0 : k + 1, k2 = k == 0 ? 2 : k - 1;
    const T gc = gw[k2] * inv_area2;  // (k + 2) % 3 == (k - 1) % 3
    // cross_k = (x1 - x0)(py - y0) - (y1 - y0)(px - x0) with vertex 0 = k, 1 = k + 1.
    gx[k] += gc * (f.ay[k1] - py);
    gy[k] += gc * (px - f.ax[k1]);
    gx[k1] += gc * (py - f.ay[k]);
    gy[k1] += gc * (f.ax[k] - px);
    // d area2 / d x_k = y_{k+1} - y_{k+2}, d area2 / d y_k = x_{k+2} - x_{k+1}.
    gx[k] += garea * (f.ay[k1] - f.ay[k2]);
    gy[k] += garea * (f.ax[k2] - f.ax[k1]);
  }
}

// Depth terms of a pair of the soft z-buffer.
template <typename T>
struct ZPair {
  T w[3];   // raw barycentrics
  T wc[3];  // clamped, renormalised
  T usum;   // sum of the clamped weights (>= 1)
  T zp;     // perspective-correct depth at wc
  T zn;     // normalised depth (far - zp) / (far - near)
};

// Per-face constants of the colour terms.
template <typename T>
struct ColourFace {
  T area2;
  T inv_area2;  // 1 / area2 (only used for faces with an area)
  T z[3];       // vertex depths
  T inv_z[3];
};

template <typename T>
SR_HD ColourFace<T> colour_face(const Face<T>& f, const T* v, const int64_t* idx) {
  ColourFace<T> cf;
  const T area2 = area2_of(f);
  cf.area2 = area2;
  cf.inv_area2 = area2 != T(0) ? T(1) / area2 : T(0);
  for (int k = 0; k < 3; ++k) {
    cf.z[k] = v[3 * idx[k] + 2];
    cf.inv_z[k] = T(1) / cf.z[k];
  }
  return cf;
}

// Returns false when the pair does not colour its pixel (z_p outside [near, far]). Divides like the
// reference: gamma amplifies the rounding of z_n (1 ulp of z_n is 6e-4 of a weight at gamma 1e-4).
template <typename T>
SR_HD bool z_pair(const Face<T>& f, const ColourFace<T>& cf, T px, T py, T near, T far, ZPair<T>& out) {
  T cross[3];
  for (int k = 0; k < 3; ++k) cross[k] = f.ex[k] * (py - f.ay[k]) - f.ey[k] * (px - f.ax[k]);
  out.w[0] = cross[1] / cf.area2;
  out.w[1] = cross[2] / cf.area2;
  out.w[2] = cross[0] / cf.area2;
  T u[3];
  for (int k = 0; k < 3; ++k) u[k] = out.w[k] < T(0) ? T(0) : (out.w[k] > T(1) ? T(1) : out.w[k]);
  out.usum = u[0] + u[1] + u[2];
  for (int k = 0; k < 3; ++k) out.wc[k] = u[k] / out.usum;
  out.zp = T(1) / (out.wc[0] / cf.z[0] + out.wc[1] / cf.z[1] + out.wc[2] / cf.z[2]);
  if (!(out.zp >= near && out.zp <= far)) return false;
  out.zn = (far - out.zp) / (far - near);
  return true;
}

// Backward of z_pair: from dLoss/dz_n and dLoss/dwc, adds dLoss/d(x, y, z) of the face vertices.
template <typename T>
SR_HD void z_pair_backward(const Face<T>& f, const ColourFace<T>& cf, T px, T py, T near, T far, const ZPair<T>& zq,
                           T g_zn, const T g_wc_in[3], T gx[3], T gy[3], T gz[3]) {
  // z_n = (far - z_p) / (far - near), z_p = 1 / sigma_w, sigma_w = sum wc_k / z_k.
  const T g_sigma = g_zn / (far - near) * zq.zp * zq.zp;  // dz_n/dz_p = -1/(far-near), dz_p/dsigma = -z_p^2
  T g_wc[3];
  for (int k = 0; k < 3; ++k) {
    g_wc[k] = g_wc_in[k] + g_sigma * cf.inv_z[k];
    gz[k] += -g_sigma * zq.wc[k] * cf.inv_z[k] * cf.inv_z[k];
  }
  // wc = u / usum: dL/du_l = (dL/dwc_l - sum_k dL/dwc_k wc_k) / usum; clamp passes inside [0, 1].
  const T dot = g_wc[0] * zq.wc[0] + g_wc[1] * zq.wc[1] + g_wc[2] * zq.wc[2];
  T gw[3];
  const T inv_usum = T(1) / zq.usum;
  for (int k = 0; k < 3; ++k) {
    const bool pass = zq.w[k] >= T(0) && zq.w[k] <= T(1);
    gw[k] = pass ? (g_wc[k] - dot) * inv_usum : T(0);
  }
  barycentric_backward(f, cf.inv_area2, zq.w, px, py, gw, gx, gy);
}

// Adds the gradient of d^2 (closest edge `p.edge`, fixed t) scaled by g_d2 to the face vertices' x, y.
template <typename T>
SR_HD void distance_backward(const Face<T>& f, const Pair<T>& p, T px, T py, T g_d2, T gx[3], T gy[3]) {
  const int k = p.edge, k1 = k == 2 ? 0 : k + 1;
  const T dx = (px - f.ax[k]) - p.t * f.ex[k];
  const T dy = (py - f.ay[k]) - p.t * f.ey[k];
  // d^2 = |p - q|^2, q = A + t (B - A): d/dA = -2 (1 - t) (p - q), d/dB = -2 t (p - q).
  const T wa = T(-2) * g_d2 * (T(1) - p.t), wb = T(-2) * g_d2 * p.t;
  gx[k] += wa * dx;
  gy[k] += wa * dy;
  gx[k1] += wb * dx;
  gy[k1] += wb * dy;
}

// 1 - exp(-x) with x clamped at kMinExponent (a factor of DIB-R's 1 - alpha), and the derivative of
// its log, 1 / expm1(x) (0 where clamped).
template <typename T>
SR_HD T one_minus_exp_neg(T x) {
  return -recon_softras::sr_expm1(-(x < T(kMinExponent) ? T(kMinExponent) : x));
}

template <typename T>
SR_HD T log_one_minus_exp_neg_grad(T x) {
  return x < T(kMinExponent) ? T(0) : T(1) / recon_softras::sr_expm1(x);
}

// Barycentrics of (px, py) and whether the pixel centre is inside the face: the same edge
// functions and test as eval_pair (softras_math.h), without the distances.
template <typename T>
SR_HD bool inside_barycentric(const Face<T>& f, T inv_area2, T px, T py, T w[3]) {
  T cross[3];
  bool pos = true, neg = true;
  for (int k = 0; k < 3; ++k) {
    cross[k] = f.ex[k] * (py - f.ay[k]) - f.ey[k] * (px - f.ax[k]);
    pos = pos & (cross[k] >= T(0));
    neg = neg & (cross[k] <= T(0));
  }
  w[0] = cross[1] * inv_area2;
  w[1] = cross[2] * inv_area2;
  w[2] = cross[0] * inv_area2;
  return f.nondegenerate & (pos | neg);
}

// Depth used to pick the nearest covering face (exact perspective depth at the pixel centre).
template <typename T>
SR_HD T inside_depth(const T w[3], const ColourFace<T>& cf) {
  return T(1) / (w[0] * cf.inv_z[0] + w[1] * cf.inv_z[1] + w[2] * cf.inv_z[2]);
}

// D and 1 - D of a silhouette pair from arg = log_not_arg(pair) (log(1 - D) = logsigmoid(arg),
// D = sigmoid(-arg)), with one exp.
template <typename T>
struct SoftCoverage {
  T D, not_D;
};

template <typename T>
SR_HD SoftCoverage<T> soft_coverage(T arg) {
  const T e = recon_softras::sr_exp(arg < T(0) ? arg : -arg);  // exp(-|arg|)
  const T inv = T(1) / (T(1) + e);
  SoftCoverage<T> c;
  c.not_D = arg >= T(0) ? inv : e * inv;
  c.D = arg >= T(0) ? e * inv : inv;
  return c;
}

}  // namespace recon_rgba
