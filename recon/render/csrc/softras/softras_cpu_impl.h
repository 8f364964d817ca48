// CPU kernel bodies, included once per instruction set by softras_cpu.cpp inside its own
// namespace, after `constexpr int kLanes` (pixels per SIMD group) is declared there. No include
// guard on purpose: each inclusion compiles the same code for a different target.
//
// SIMD uses GCC/Clang vector extensions. float lanes use Cephes-style exp/log polynomials (about
// 1 ulp); double lanes call libm per lane, so float64 results match the reference to rounding.

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
  // Cephes polynomial, evaluated with Estrin's scheme (shorter dependency chains than Horner).
  const V x2 = x * x, x4 = x2 * x2;
  const V p = (5.0000001201E-1f + 1.6666665459E-1f * x) + x2 * (4.1665795894E-2f + 8.3334519073E-3f * x) +
              x4 * (1.3981999507E-3f + 1.9875691500E-4f * x);
  const V y = p * x2 + x + 1.0f;
  const M bits = (__builtin_convertvector(fl, M) + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof(V));
  return y * scale;
}

// log(u) for float lanes with u > 0 finite (Cephes logf).
inline Vec<float>::V vlog(Vec<float>::V u) {
  typedef Vec<float>::V V;
  typedef Vec<float>::M M;
  M bits;
  std::memcpy(&bits, &u, sizeof(V));
  M ex = ((bits >> 23) & 0xff) - 126;
  const M mbits = (bits & 0x807fffff) | 0x3f000000;
  V m;
  std::memcpy(&m, &mbits, sizeof(V));  // mantissa in [0.5, 1)
  const M small = m < splat<V>(0.707106781186547524f);
  ex = ex + small;  // small is -1 where true
  V x = m - 1.0f;
  x = small ? x + m : x;  // 2m - 1 below sqrt(1/2), m - 1 above; both exact
  const V e = __builtin_convertvector(ex, V);
  // Cephes polynomial, evaluated with Estrin's scheme.
  const V z = x * x, x4 = z * z, x8 = x4 * x4;
  const V p = (3.3333331174E-1f - 2.4999993993E-1f * x) + z * (2.0000714765E-1f - 1.6668057665E-1f * x) +
              x4 * ((1.4249322787E-1f - 1.2420140846E-1f * x) + z * (1.1676998740E-1f - 1.1514610310E-1f * x)) +
              x8 * 7.0376836292E-2f;
  V y = p * x * z;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  return x + y + e * 0.693359375f;
}

// log1p(e) for e in [0, 1] as log(1 + e): the rounding of 1 + e costs at most ~6e-8 absolute,
// far below the float32 parity tolerance, and saves a division per lane.
inline Vec<float>::V vlog1p_unit(Vec<float>::V e) { return vlog(e + 1.0f); }

inline Vec<double>::V vexp(Vec<double>::V x) {
  for (int i = 0; i < kLanes; ++i) x[i] = std::exp(x[i]);
  return x;
}

inline Vec<double>::V vlog1p_unit(Vec<double>::V e) {
  for (int i = 0; i < kLanes; ++i) e[i] = std::log1p(e[i]);
  return e;
}

// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)).
template <typename V>
inline V vlog_sigmoid(V x) {
  const V zero = splat<V>(0);
  const V ax = x < zero ? -x : x;
  return (x < zero ? x : zero) - vlog1p_unit(vexp(-ax));
}

// sigmoid(-x) = 1 / (1 + exp(x)) (exp clamped in float lanes, so no inf / inf).
template <typename V>
inline V vsigmoid_neg(V x) {
  return splat<V>(1) / (splat<V>(1) + vexp(x));
}

typedef int32_t Idx __attribute__((vector_size(4 * kLanes)));
typedef float IdxF __attribute__((vector_size(4 * kLanes)));

// Up to kLanes consecutive pixels of a face window.
template <typename T>
struct Group {
  typename Vec<T>::V px, py;
  int32_t off[kLanes];  // r * S + c within the image
  int count;
};

// Row-major walk over the window rows [r0, r0 + n / w) x cols [c0, c0 + w), kLanes pixels at a
// time, computed with vector arithmetic. Dead lanes (past the end) repeat the last pixel so that
// they stay finite; callers mask them out with `count`.
template <typename T>
struct Cursor {
  int r0, c0, w, n, S;
  int next_i = 0;

  bool next(Group<T>& g) {
    typedef typename Vec<T>::V V;
    if (next_i >= n) return false;
    g.count = std::min(kLanes, n - next_i);
    Idx idx;
    for (int j = 0; j < kLanes; ++j) idx[j] = next_i + j;
    next_i += kLanes;
    idx = idx < n ? idx : Idx{} + (n - 1);
    // idx / w through a float reciprocal, then one correction step: exact for idx < 2^24.
    Idx q = __builtin_convertvector((__builtin_convertvector(idx, IdxF) + 0.5f) * (1.0f / w), Idx);
    Idx cl = idx - q * w;
    q = cl < 0 ? q - 1 : q;
    cl = cl < 0 ? cl + w : cl;
    q = cl >= w ? q + 1 : q;
    cl = cl >= w ? cl - w : cl;
    const Idx c = c0 + cl, r = r0 + q;
    // Same expressions as pixel_x / pixel_y (an exact int -> T conversion, one rounded division).
    g.px = __builtin_convertvector(2 * c + 1 - S, V) / T(S);
    g.py = __builtin_convertvector(S - 1 - 2 * r, V) / T(S);
    const Idx off = r * S + c;
    std::memcpy(g.off, &off, sizeof(off));
    return true;
  }
};

// Vector version of eval_pair (softras_math.h), plus the closest point offset p - q.
template <typename T>
struct VPair {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::M M;
  V d2, t, dx, dy;
  M e0, e1, e2;  // which edge is the closest one (first minimum)
  M inside;
};

template <typename T>
inline VPair<T> eval_pairs(const Face<T>& f, typename Vec<T>::V px, typename Vec<T>::V py) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::M M;
  const V zero = splat<V>(0), one = splat<V>(1);
  V d2[3], t[3], dx[3], dy[3];
  M pos = splat<M>(-1), neg = splat<M>(-1);
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
  p.inside = (pos | neg) & splat<M>(f.nondegenerate ? -1 : 0);
  return p;
}

template <typename T>
void forward_impl(const T* verts, const int64_t* faces, int64_t B, int64_t V, int64_t F, int S, double sigma,
                  double cutoff_sq, const Split& split, T* log_sum, T* sil) {
  typedef typename Vec<T>::V Vt;
  typedef typename Vec<T>::M Mt;
  const double radius = std::sqrt(cutoff_sq);
  const Vt inv_sigma = splat<Vt>(T(1.0 / sigma)), cut = splat<Vt>(T(cutoff_sq));
  const Vt zero = splat<Vt>(0);
  Mt lane;
  for (int j = 0; j < kLanes; ++j) lane[j] = j;
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
      Cursor<T> cur{r0, w.c0, w.c1 - w.c0 + 1, (r1 - r0 + 1) * (w.c1 - w.c0 + 1), S};
      Group<T> g;
      while (cur.next(g)) {
        const VPair<T> p = eval_pairs(face, g.px, g.py);
        const Mt keep = (p.inside | (p.d2 < cut)) & (lane < splat<Mt>(g.count));
        if (!any(keep)) continue;
        const Vt val = vlog_sigmoid((p.inside ? -inv_sigma : inv_sigma) * p.d2);
        const Vt add = keep ? val : zero;
        for (int j = 0; j < g.count; ++j) ls[g.off[j]] += add[j];
      }
    }
    for (int64_t i = (int64_t)row_lo * S; i < (int64_t)row_hi * S; ++i) sil[b * S * S + i] = -sr_expm1(ls[i]);
  }
}

template <typename V>
inline elem_t<V> hsum(V v) {
  elem_t<V> s = 0;
  for (int j = 0; j < kLanes; ++j) s += v[j];
  return s;
}

// Writes face_grad (bands, B, F, 6): d/d(x, y) of each face's three vertices, summed over the
// band's pixels, from grad_sil and log_sum (B, S, S).
template <typename T>
void backward_impl(const T* verts, const int64_t* faces, const T* grad_sil, const T* log_sum, int64_t B, int64_t V,
                   int64_t F, int S, double sigma, double cutoff_sq, const Split& split, T* face_grad) {
  typedef typename Vec<T>::V Vt;
  typedef typename Vec<T>::M Mt;
  const double radius = std::sqrt(cutoff_sq);
  const Vt inv_sigma = splat<Vt>(T(1.0 / sigma)), cut = splat<Vt>(T(cutoff_sq));
  const Vt zero = splat<Vt>(0), minus_two = splat<Vt>(-2), one = splat<Vt>(1);
  const int64_t items = B * split.bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(split.threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / split.bands, band = item % split.bands;
    const int row_lo = (int)band_begin(band, split.bands, S), row_hi = (int)band_begin(band + 1, split.bands, S);
    const T* vb = verts + b * V * 3;
    // dLoss/dlog_sum = dLoss/dsil * dsil/dlog_sum = -grad_sil * exp(log_sum), for this band's rows.
    std::vector<T> glog_rows((size_t)(row_hi - row_lo) * S);
    for (int64_t i = 0; i < (int64_t)glog_rows.size(); ++i) {
      const int64_t pix = b * S * S + (int64_t)row_lo * S + i;
      glog_rows[i] = -grad_sil[pix] * std::exp(log_sum[pix]);
    }
    const int32_t row_base = row_lo * S;  // glog_rows[r * S + c - row_base]
    T* out = face_grad + (band * B + b) * F * 6;
    for (int64_t f = 0; f < F; ++f) {
      std::fill(out + f * 6, out + f * 6 + 6, T(0));
      const Face<T> face = load_face(vb, faces + 3 * f);
      const Window w = face_window(face, S, radius);
      const int r0 = std::max(w.r0, row_lo), r1 = std::min(w.r1, row_hi - 1);
      if (r0 > r1 || w.c0 > w.c1) continue;
      Cursor<T> cur{r0, w.c0, w.c1 - w.c0 + 1, (r1 - r0 + 1) * (w.c1 - w.c0 + 1), S};
      Group<T> g;
      Vt gx0 = zero, gx1 = zero, gx2 = zero, gy0 = zero, gy1 = zero, gy2 = zero;
      while (cur.next(g)) {
        Vt glog = zero;
        bool live = false;
        for (int j = 0; j < g.count; ++j) {
          glog[j] = glog_rows[g.off[j] - row_base];
          live = live || glog[j] != T(0);
        }
        if (!live) continue;  // e.g. covered pixels where exp(log_sum) underflows
        const VPair<T> p = eval_pairs(face, g.px, g.py);
        const Mt keep = p.inside | (p.d2 < cut);
        // log(1 - D) = logsigmoid(x), x = a d^2, a = -sign / sigma, dlogsigmoid/dx = sigmoid(-x).
        const Vt a = p.inside ? -inv_sigma : inv_sigma;
        const Vt coef = keep ? glog * vsigmoid_neg(a * p.d2) * a : zero;  // dLoss / d(d^2)
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
#pragma omp parallel for schedule(dynamic, 4) num_threads(split.threads)
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

