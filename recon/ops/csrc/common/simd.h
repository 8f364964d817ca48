// SIMD building blocks of the CPU kernels (silhouette: softras_cpu_impl.h, RGBA:
// ../rgba/rgba_cpu_impl.h), included by simd_variants.h once per instruction set inside its own
// namespace, after `constexpr int kLanes` (pixels per SIMD group) is declared there. No include
// guard on purpose: each inclusion compiles the same code for a different target.
//
// GCC/Clang vector extensions. float lanes use a Cephes-style exp polynomial (about 1 ulp); double
// lanes call libm per lane, so float64 results match the references to rounding.

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

inline Vec<double>::V vexp(Vec<double>::V x) {
  for (int i = 0; i < kLanes; ++i) x[i] = std::exp(x[i]);
  return x;
}

typedef int32_t Idx __attribute__((vector_size(4 * kLanes)));
typedef float IdxF __attribute__((vector_size(4 * kLanes)));

// Up to kLanes consecutive pixels of a face window.
template <typename T>
struct Group {
  typename Vec<T>::V px, py;
  typename Vec<T>::M live;  // lane < count
  int32_t off[kLanes];      // r * S + c within the image
  int count;
};

// Row-major walk over the window rows [r0, r0 + n / w) x cols [c0, c0 + w), kLanes pixels at a
// time, computed with vector arithmetic. Dead lanes (past the end) repeat the last pixel so that
// they stay finite; callers mask them out with `live`.
template <typename T>
struct Cursor {
  int r0, c0, w, n, S;
  int next_i = 0;

  bool next(Group<T>& g) {
    typedef typename Vec<T>::V V;
    typedef typename Vec<T>::M M;
    if (next_i >= n) return false;
    g.count = std::min(kLanes, n - next_i);
    Idx idx;
    M lane;
    for (int j = 0; j < kLanes; ++j) {
      idx[j] = next_i + j;
      lane[j] = j < g.count ? -1 : 0;
    }
    g.live = lane;
    next_i += kLanes;
    idx = idx < n ? idx : Idx{} + (n - 1);
    // idx / w through a float reciprocal, then one correction step: exact for idx < 2^24 (the
    // kernels take images of at most 4096^2 pixels).
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

// The walk over a non-empty window (already clipped to the item's rows).
template <typename T>
inline Cursor<T> window_cursor(const Window& win, int S) {
  const int w = win.c1 - win.c0 + 1;
  return Cursor<T>{win.r0, win.c0, w, (win.r1 - win.r0 + 1) * w, S};
}

// Vector eval_pair (softras_math.h) plus the edge functions (the RGBA kernels' barycentrics) and
// the offset p - q to the closest point.
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

// Calls fn(group, pair, keep) for every group of the window's pixels (clipped to the item's rows,
// non-empty) that holds a kept pair: keep = the live lanes whose pixel centre is inside the face or
// within the cutoff (d^2 < cut).
template <typename T, typename Fn>
inline void for_each_kept_group(const Face<T>& face, const Window& win, int S, T cut, const Fn& fn) {
  Cursor<T> cur = window_cursor<T>(win, S);
  Group<T> g;
  while (cur.next(g)) {
    const VPair<T> p = eval_pairs(face, g.px, g.py);
    const typename Vec<T>::M keep = (p.inside | (p.d2 < cut)) & g.live;
    if (any(keep)) fn(g, p, keep);
  }
}

// dLoss/d(x, y) of the three face vertices from dLoss/d(d^2) per lane (`g_d2`, zero in dropped
// lanes), added to gx, gy: d^2 = |p - q|^2, q = A + t (B - A): d/dA = -2 (1 - t) (p - q),
// d/dB = -2 t (p - q); t is the minimiser (or clamped), so its own variation does not contribute.
template <typename T>
inline void distance_grads(const VPair<T>& p, typename Vec<T>::V g_d2, typename Vec<T>::V gx[3],
                           typename Vec<T>::V gy[3]) {
  typedef typename Vec<T>::V V;
  const V zero = splat<V>(0), minus_two = splat<V>(-2), one = splat<V>(1);
  const V wa = minus_two * g_d2 * (one - p.t), wb = minus_two * g_d2 * p.t;
  const V w0 = (p.e0 ? wa : zero) + (p.e2 ? wb : zero);
  const V w1 = (p.e1 ? wa : zero) + (p.e0 ? wb : zero);
  const V w2 = (p.e2 ? wa : zero) + (p.e1 ? wb : zero);
  gx[0] += w0 * p.dx;
  gy[0] += w0 * p.dy;
  gx[1] += w1 * p.dx;
  gy[1] += w1 * p.dy;
  gx[2] += w2 * p.dx;
  gy[2] += w2 * p.dy;
}
