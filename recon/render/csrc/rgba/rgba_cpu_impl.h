// Vectorised CPU kernels of the soft z-buffer, included once per instruction set by rgba_cpu.cpp
// inside its own namespace, after `constexpr int kLanes` (pixels per SIMD group) is declared there.
// No include guard on purpose: each inclusion compiles the same code for a different target.
//
// A face's window pixels are evaluated kLanes at a time (row-major, continuing across rows) with
// branch-free GCC/Clang vector code; the per-pixel accumulation then runs lane by lane, so each pixel
// still sums its faces in ascending order. float lanes use a Cephes-style exp polynomial (about
// 1 ulp; the same one as ../softras/softras_cpu_impl.h); double lanes call libm per lane.

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(4 * kLanes)));
  typedef int32_t M __attribute__((vector_size(4 * kLanes)));  // comparison masks: -1 (true) / 0
};

template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(8 * kLanes)));
  typedef int64_t M __attribute__((vector_size(8 * kLanes)));
};

template <typename V>
using elem_t = typename std::remove_reference<decltype(V{}[0])>::type;

template <typename V, typename S>
inline V splat(S s) {
  return V{} + static_cast<elem_t<V>>(s);
}

template <typename M>
inline bool any(M m) {
  bool r = false;
  for (int i = 0; i < kLanes; ++i) r = r || m[i] != 0;
  return r;
}

template <typename V>
inline elem_t<V> hsum(V v) {
  elem_t<V> s = 0;
  for (int j = 0; j < kLanes; ++j) s += v[j];
  return s;
}

// exp(x) for float lanes, x clamped to [-87, 88] (Cephes expf).
inline Vec<float>::V vexp(Vec<float>::V x) {
  typedef Vec<float>::V V;
  typedef Vec<float>::M M;
  x = x < splat<V>(-87.0f) ? splat<V>(-87.0f) : x;
  x = x > splat<V>(88.0f) ? splat<V>(88.0f) : x;
  V fx = x * 1.44269504088896341f + 0.5f;
  V fl = __builtin_convertvector(__builtin_convertvector(fx, M), V);  // trunc
  fl = fl > fx ? fl - 1.0f : fl;                                      // floor
  x = x - fl * 0.693359375f;
  x = x - fl * -2.12194440e-4f;
  const V x2 = x * x, x4 = x2 * x2;
  const V p = (5.0000001201E-1f + 1.6666665459E-1f * x) + x2 * (4.1665795894E-2f + 8.3334519073E-3f * x) +
              x4 * (1.3981999507E-3f + 1.9875691500E-4f * x);
  const V y = p * x2 + x + 1.0f;
  const M bits = (__builtin_convertvector(fl, M) + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof(V));
  return y * scale;
}

inline Vec<double>::V vexp(Vec<double>::V x) {
  for (int i = 0; i < kLanes; ++i) x[i] = std::exp(x[i]);
  return x;
}

typedef int32_t Idx __attribute__((vector_size(4 * kLanes)));

// Up to kLanes consecutive pixels of a face window (row-major, continuing across rows). Dead lanes
// (past the end) repeat the last pixel so that they stay finite; callers mask them out.
template <typename T>
struct Group {
  typename Vec<T>::V px, py;
  typename Vec<T>::M live;  // lane < count
  int32_t off[kLanes];      // r * S + c within the image
  int count;
};

template <typename T>
struct Cursor {
  int r0, c0, w, n, S;
  int next_i = 0, row = 0, col = 0;  // position of next_i within the window

  bool next(Group<T>& g) {
    typedef typename Vec<T>::V V;
    typedef typename Vec<T>::M M;
    if (next_i >= n) return false;
    g.count = std::min(kLanes, n - next_i);
    Idx r, c;
    for (int j = 0; j < kLanes; ++j) {
      r[j] = r0 + row;
      c[j] = c0 + col;
      if (j < g.count - 1) {
        if (++col == w) {
          col = 0;
          ++row;
        }
      }
    }
    if (++col == w) {  // step past the group's last pixel
      col = 0;
      ++row;
    }
    next_i += g.count;
    M lane;
    for (int j = 0; j < kLanes; ++j) lane[j] = j < g.count ? -1 : 0;
    g.live = lane;
    // Same expressions as pixel_x / pixel_y (an exact int -> T conversion, one rounded division).
    g.px = __builtin_convertvector(2 * c + 1 - S, V) / T(S);
    g.py = __builtin_convertvector(S - 1 - 2 * r, V) / T(S);
    const Idx off = r * S + c;
    std::memcpy(g.off, &off, sizeof(off));
    return true;
  }
};

// Vector eval_pair (softras_math.h) plus the edge functions (for the barycentrics) and the offset
// p - q to the closest point.
template <typename T>
struct VPair {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::M M;
  V d2, t, dx, dy;
  V cross[3];
  M e0, e1, e2;  // which edge is the closest one (first minimum)
  M inside;
};

template <typename T>
inline VPair<T> eval_pairs(const Face<T>& f, typename Vec<T>::V px, typename Vec<T>::V py) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::M M;
  const V zero = splat<V>(0), one = splat<V>(1);
  V d2[3], t[3], dx[3], dy[3];
  VPair<T> p;
  M pos = splat<M>(-1), neg = splat<M>(-1);
  for (int k = 0; k < 3; ++k) {
    const V apx = px - f.ax[k], apy = py - f.ay[k];
    p.cross[k] = f.ex[k] * apy - f.ey[k] * apx;
    pos &= p.cross[k] >= zero;
    neg &= p.cross[k] <= zero;
    V tk = (apx * f.ex[k] + apy * f.ey[k]) * f.inv_len2[k];
    tk = tk > zero ? tk : zero;
    tk = tk < one ? tk : one;
    dx[k] = apx - tk * f.ex[k];
    dy[k] = apy - tk * f.ey[k];
    d2[k] = dx[k] * dx[k] + dy[k] * dy[k];
    t[k] = tk;
  }
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
  p.inside = (pos | neg) & splat<M>(f.nondegenerate ? -1 : 0);
  return p;
}

// Soft coverage D = sigmoid(-arg) and 1 - D from arg = (-sign / sigma) d^2, one exp per lane.
template <typename T>
struct VCoverage {
  typename Vec<T>::V D, not_D;
};

template <typename T>
inline VCoverage<T> coverage(typename Vec<T>::V arg) {
  typedef typename Vec<T>::V V;
  const V zero = splat<V>(0), one = splat<V>(1);
  const V e = vexp(arg < zero ? arg : -arg);
  const V inv = one / (one + e);
  return VCoverage<T>{arg >= zero ? e * inv : inv, arg >= zero ? inv : e * inv};
}

// The depth terms of z_pair (rgba_math.h), per lane.
template <typename T>
struct VDepth {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::M M;
  V w[3], wc[3], inv_usum, zp, zn;
  M in_range;
};

template <typename T>
inline VDepth<T> depth_terms(const VPair<T>& p, const ColourFace<T>& cf, T near, T far) {
  typedef typename Vec<T>::V V;
  const V zero = splat<V>(0), one = splat<V>(1);
  VDepth<T> d;
  // Divisions as in the reference (z_pair in rgba_math.h says why).
  d.w[0] = p.cross[1] / cf.area2;
  d.w[1] = p.cross[2] / cf.area2;
  d.w[2] = p.cross[0] / cf.area2;
  V u[3];
  for (int k = 0; k < 3; ++k) {
    u[k] = d.w[k] < zero ? zero : d.w[k];
    u[k] = u[k] > one ? one : u[k];
  }
  const V usum = u[0] + u[1] + u[2];
  d.inv_usum = one / usum;
  for (int k = 0; k < 3; ++k) d.wc[k] = u[k] / usum;
  d.zp = one / (d.wc[0] / cf.z[0] + d.wc[1] / cf.z[1] + d.wc[2] / cf.z[2]);
  d.in_range = (d.zp >= near) & (d.zp <= far);
  d.zn = (far - d.zp) / (far - near);
  return d;
}

// Unaligned vector load / add-store (containers cannot hold the vector types: GCC drops their
// alignment attribute in template arguments).
template <typename V>
inline V load(const elem_t<V>* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
inline void add_to(elem_t<V>* p, V v) {
  v += load<V>(p);
  std::memcpy(p, &v, sizeof(V));
}

// Gathers per-pixel values of a group.
template <typename T>
inline typename Vec<T>::V gather(const T* a, const Group<T>& g) {
  typename Vec<T>::V v;
  for (int j = 0; j < kLanes; ++j) v[j] = a[g.off[j]];
  return v;
}

template <typename T>
void soft_forward_impl(const T* verts, const int64_t* faces, const T* colors, int64_t B, int64_t V, int64_t F,
                       int64_t C, const SoftOptions& o, const std::vector<double>& background, const Split& split,
                       T* image, T* not_alpha, T* zmax, T* den) {
  typedef typename Vec<T>::V Vt;
  typedef typename Vec<T>::M Mt;
  const int S = (int)o.image_size;
  const int64_t npix = (int64_t)S * S;
  const double radius = std::sqrt(o.cutoff_sq);
  const T inv_sigma = T(1.0 / o.sigma), cut = T(o.cutoff_sq), inv_gamma = T(1.0 / o.gamma), near = T(o.near),
          far = T(o.far);
  const Vt zero = splat<Vt>(0), skip = splat<Vt>(kSkipExponent);
  const int64_t items = B * split.bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(split.threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / split.bands, band = item % split.bands;
    const int row_lo = (int)band_begin(band, split.bands, S), row_hi = (int)band_begin(band + 1, split.bands, S);
    const int64_t lo = (int64_t)row_lo * S, hi = (int64_t)row_hi * S;
    const T* vb = verts + b * V * 3;
    const T* cb = colors + b * V * C;
    T* na = not_alpha + b * npix;
    T* zm = zmax + b * npix;
    T* dn = den + b * npix;
    T* img = image + b * (C + 1) * npix;  // colour planes accumulate the numerators
    std::fill(na + lo, na + hi, T(1));
    std::fill(zm + lo, zm + hi, T(o.eps));
    std::fill(dn + lo, dn + hi, T(1));  // the background's weight exp((eps - zmax) / gamma)
    for (int64_t c = 0; c < C; ++c) std::fill(img + c * npix + lo, img + c * npix + hi, T(background[c]));
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T> m = load_mesh_face(vb, cb, faces + 3 * f, C, S, radius, row_lo, row_hi);
      if (empty(m.win)) continue;
      const int w = m.win.c1 - m.win.c0 + 1;
      Cursor<T> cur{m.win.r0, m.win.c0, w, (m.win.r1 - m.win.r0 + 1) * w, S};
      Group<T> g;
      while (cur.next(g)) {
        const VPair<T> p = eval_pairs(m.face, g.px, g.py);
        const Mt keep = (p.inside | (p.d2 < cut)) & g.live;
        if (!any(keep)) continue;
        const VCoverage<T> cov = coverage<T>((p.inside ? splat<Vt>(-inv_sigma) : splat<Vt>(inv_sigma)) * p.d2);
        Mt ok = keep & splat<Mt>(m.face.nondegenerate ? -1 : 0);
        VDepth<T> d{};
        Vt rel = zero, ex = zero;
        if (any(ok)) {
          d = depth_terms(p, m.cf, near, far);
          rel = (d.zn - gather(zm, g)) * inv_gamma;
          ok &= d.in_range & (rel >= skip);  // else no colour, or negligible next to the heaviest so far
          ex = vexp(rel > zero ? -rel : rel);  // rescale factor of a new maximum, else the weight's factor
        }
        for (int j = 0; j < g.count; ++j) {
          if (!keep[j]) continue;
          const int64_t off = g.off[j];
          na[off] *= cov.not_D[j];
          if (!ok[j]) continue;
          T weight = cov.D[j];
          if (rel[j] > T(0)) {  // new maximum: rescale what was accumulated
            dn[off] *= ex[j];
            for (int64_t c = 0; c < C; ++c) img[c * npix + off] *= ex[j];
            zm[off] = d.zn[j];
          } else {
            weight *= ex[j];
          }
          dn[off] += weight;
          for (int64_t c = 0; c < C; ++c)
            img[c * npix + off] += weight * (d.wc[0][j] * m.col[0][c] + d.wc[1][j] * m.col[1][c] +
                                             d.wc[2][j] * m.col[2][c]);
        }
      }
    }
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t c = 0; c < C; ++c) img[c * npix + i] /= dn[i];
      img[C * npix + i] = T(1) - na[i];
    }
  }
}

// Writes face_grad (bands, B, F, 3, 3) and face_cgrad (bands, B, F, 3, C): the gradient of each
// face's vertices and vertex colours, summed over the band's pixels.
template <typename T>
void soft_backward_impl(const T* grad_image, const T* image, const T* verts, const int64_t* faces, const T* colors,
                        const T* not_alpha, const T* zmax, const T* den, int64_t B, int64_t V, int64_t F, int64_t C,
                        const SoftOptions& o, const Split& split, T* face_grad, T* face_cgrad) {
  typedef typename Vec<T>::V Vt;
  typedef typename Vec<T>::M Mt;
  const int S = (int)o.image_size;
  const int64_t npix = (int64_t)S * S;
  const double radius = std::sqrt(o.cutoff_sq);
  const T inv_sigma = T(1.0 / o.sigma), cut = T(o.cutoff_sq), inv_gamma = T(1.0 / o.gamma), near = T(o.near),
          far = T(o.far);
  const Vt zero = splat<Vt>(0), one = splat<Vt>(1), skip = splat<Vt>(kSkipExponent);
  const int64_t items = B * split.bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(split.threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / split.bands, band = item % split.bands;
    const int row_lo = (int)band_begin(band, split.bands, S), row_hi = (int)band_begin(band + 1, split.bands, S);
    const int64_t lo = (int64_t)row_lo * S, hi = (int64_t)row_hi * S;
    const T* vb = verts + b * V * 3;
    const T* cb = colors + b * V * C;
    const T* gimg = grad_image + b * (C + 1) * npix;
    const T* img = image + b * (C + 1) * npix;
    const T* zm = zmax + b * npix;
    // Per pixel (whole image, only the band's rows are read): dLoss/dlog(1 - alpha), 1 / den.
    std::vector<T> glog(npix, T(0)), inv_den(npix, T(0));
    bool any_colour_grad = false;
    for (int64_t i = lo; i < hi; ++i) {
      glog[i] = -gimg[C * npix + i] * not_alpha[b * npix + i];
      inv_den[i] = T(1) / den[b * npix + i];
      for (int64_t c = 0; c < C; ++c) any_colour_grad = any_colour_grad || gimg[c * npix + i] != T(0);
    }
    T* out = face_grad + (band * B + b) * F * 9;
    T* outc = face_cgrad + (band * B + b) * F * 3 * C;
    std::fill(out, out + F * 9, T(0));
    std::fill(outc, outc + F * 3 * C, T(0));
    std::vector<T> gcol(3 * C * kLanes);  // per-lane colour gradient sums of the current face
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T> m = load_mesh_face(vb, cb, faces + 3 * f, C, S, radius, row_lo, row_hi);
      if (empty(m.win)) continue;
      const bool coloured = m.face.nondegenerate && any_colour_grad;
      const int w = m.win.c1 - m.win.c0 + 1;
      Cursor<T> cur{m.win.r0, m.win.c0, w, (m.win.r1 - m.win.r0 + 1) * w, S};
      Group<T> g;
      Vt gx[3] = {zero, zero, zero}, gy[3] = {zero, zero, zero}, gz[3] = {zero, zero, zero};
      std::fill(gcol.begin(), gcol.end(), T(0));
      while (cur.next(g)) {
        const VPair<T> p = eval_pairs(m.face, g.px, g.py);
        const Mt keep = (p.inside | (p.d2 < cut)) & g.live;
        if (!any(keep)) continue;
        const Vt a = p.inside ? splat<Vt>(-inv_sigma) : splat<Vt>(inv_sigma);
        const VCoverage<T> cov = coverage<T>(a * p.d2);
        // Alpha: log(1 - D) = logsigmoid(arg), d/darg = sigmoid(-arg) = D.
        Vt g_d2 = gather(glog.data(), g) * cov.D * a;
        if (coloured) {
          const VDepth<T> d = depth_terms(p, m.cf, near, far);
          const Vt rel = (d.zn - gather(zm, g)) * inv_gamma;  // <= 0: zmax is the maximum
          const Mt ok = keep & d.in_range & (rel >= skip);   // else negligible (kSkipExponent)
          if (any(ok)) {
            // rgb = (bg w_bg + sum_j W_j c_j) / den with W_j = D_j exp((z_j - zmax) / gamma):
            // dL/dW_j = sum_c g_c (c_jc - rgb_c) / den =: A / den, and q = W_j / den.
            const Vt ex = vexp(rel < zero ? rel : zero);
            const Vt q = ok ? cov.D * ex * gather(inv_den.data(), g) : zero;
            Vt A = zero, g_wc[3] = {zero, zero, zero};
            for (int64_t c = 0; c < C; ++c) {
              const Vt gc = gather(gimg + c * npix, g);
              const Vt colour = d.wc[0] * m.col[0][c] + d.wc[1] * m.col[1][c] + d.wc[2] * m.col[2][c];
              A += gc * (colour - gather(img + c * npix, g));
              const Vt gq = gc * q;
              for (int k = 0; k < 3; ++k) {
                g_wc[k] += gc * m.col[k][c];
                add_to(gcol.data() + (k * C + c) * kLanes, gq * d.wc[k]);
              }
            }
            for (int k = 0; k < 3; ++k) g_wc[k] *= q;
            // dD/dd^2 = D (1 - D) (-a); dW/dz_n = W / gamma.
            g_d2 += A * q * cov.not_D * (-a);
            // z_n = (far - z_p) / (far - near), z_p = 1 / sum wc_k / z_k (z_pair_backward, per lane).
            const Vt g_sigma = (A * q * inv_gamma) / (far - near) * d.zp * d.zp;
            for (int k = 0; k < 3; ++k) {
              g_wc[k] += g_sigma * m.cf.inv_z[k];
              gz[k] -= g_sigma * d.wc[k] * (m.cf.inv_z[k] * m.cf.inv_z[k]);
            }
            const Vt dot = g_wc[0] * d.wc[0] + g_wc[1] * d.wc[1] + g_wc[2] * d.wc[2];
            Vt gw[3];
            for (int k = 0; k < 3; ++k) {
              const Mt pass = (d.w[k] >= zero) & (d.w[k] <= one);
              gw[k] = pass ? (g_wc[k] - dot) * d.inv_usum : zero;
            }
            // w_{k+2} = cross_k / area2 (barycentric_backward, per lane).
            const T ia = m.cf.inv_area2;
            const Vt garea = -(gw[0] * d.w[0] + gw[1] * d.w[1] + gw[2] * d.w[2]) * ia;
            for (int k = 0; k < 3; ++k) {
              const int k1 = k == 2 ? 0 : k + 1, k2 = k == 0 ? 2 : k - 1;
              const Vt gc = gw[k2] * ia;
              const Face<T>& fc = m.face;
              gx[k] += gc * (fc.ay[k1] - g.py) + garea * (fc.ay[k1] - fc.ay[k2]);
              gy[k] += gc * (g.px - fc.ax[k1]) + garea * (fc.ax[k2] - fc.ax[k1]);
              gx[k1] += gc * (g.py - fc.ay[k]);
              gy[k1] += gc * (fc.ax[k] - g.px);
            }
          }
        }
        g_d2 = keep ? g_d2 : zero;
        // d^2 = |p - q|^2, q = A + t (B - A): d/dA = -2 (1 - t) (p - q), d/dB = -2 t (p - q).
        const Vt wa = splat<Vt>(-2) * g_d2 * (one - p.t), wb = splat<Vt>(-2) * g_d2 * p.t;
        const Vt w0 = (p.e0 ? wa : zero) + (p.e2 ? wb : zero);
        const Vt w1 = (p.e1 ? wa : zero) + (p.e0 ? wb : zero);
        const Vt w2 = (p.e2 ? wa : zero) + (p.e1 ? wb : zero);
        gx[0] += w0 * p.dx;
        gy[0] += w0 * p.dy;
        gx[1] += w1 * p.dx;
        gy[1] += w1 * p.dy;
        gx[2] += w2 * p.dx;
        gy[2] += w2 * p.dy;
      }
      T* of = out + f * 9;
      for (int k = 0; k < 3; ++k) {
        of[3 * k] = hsum(gx[k]);
        of[3 * k + 1] = hsum(gy[k]);
        of[3 * k + 2] = hsum(gz[k]);
        for (int64_t c = 0; c < C; ++c)
          outc[f * 3 * C + k * C + c] = hsum(load<Vt>(gcol.data() + (k * C + c) * kLanes));
      }
    }
  }
}
