// CPU silhouette kernels, included by simd_variants.h once per instruction set inside its own
// namespace, after simd.h (vector types, exp, the pixel walk, the vector pair evaluation). No include
// guard on purpose: each inclusion compiles the same code for a different target.
//
// float lanes use Cephes-style log polynomials (about 1 ulp); double lanes call libm per lane, so
// float64 results match the reference to rounding.

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

template <typename T>
void forward_impl(const T* verts, const int64_t* faces, int64_t B, int64_t V, int64_t F, int S, double sigma,
                  double cutoff_sq, const Split& split, T* log_sum, T* sil) {
  typedef typename Vec<T>::V Vt;
  const double radius = std::sqrt(cutoff_sq);
  const Vt inv_sigma = splat<Vt>(T(1.0 / sigma)), zero = splat<Vt>(0);
  for_each_band(B, S, split, [&](const Band& bd) {
    const T* vb = verts + bd.b * V * 3;
    T* ls = log_sum + bd.b * S * S;
    std::fill(ls + bd.lo, ls + bd.hi, T(0));
    for (int64_t f = 0; f < F; ++f) {
      const Face<T> face = load_face(vb, faces + 3 * f);
      const Window w = clip_rows(face_window(face, S, radius), bd.row_lo, bd.row_hi);
      if (is_empty(w)) continue;
      for_each_kept_group(face, w, S, T(cutoff_sq), [&](const Group<T>& g, const VPair<T>& p, const auto& keep) {
        const Vt add = keep ? vlog_sigmoid((p.inside ? -inv_sigma : inv_sigma) * p.d2) : zero;
        for (int j = 0; j < g.count; ++j) ls[g.off[j]] += add[j];
      });
    }
    for (int64_t i = bd.lo; i < bd.hi; ++i) sil[bd.b * S * S + i] = -sr_expm1(ls[i]);
  });
}

// Writes face_grad (bands, B, F, 3, 2): d/d(x, y) of each face's three vertices, summed over the
// band's pixels, from grad_sil and log_sum (B, S, S).
template <typename T>
void backward_impl(const T* verts, const int64_t* faces, const T* grad_sil, const T* log_sum, int64_t B, int64_t V,
                   int64_t F, int S, double sigma, double cutoff_sq, const Split& split, T* face_grad) {
  typedef typename Vec<T>::V Vt;
  const double radius = std::sqrt(cutoff_sq);
  const Vt inv_sigma = splat<Vt>(T(1.0 / sigma)), cut = splat<Vt>(T(cutoff_sq)), zero = splat<Vt>(0);
  for_each_band(B, S, split, [&](const Band& bd) {
    const T* vb = verts + bd.b * V * 3;
    // dLoss/dlog_sum = dLoss/dsil * dsil/dlog_sum = -grad_sil * exp(log_sum), for this band's rows.
    std::vector<T> glog_rows((size_t)(bd.hi - bd.lo));
    for (int64_t i = 0; i < (int64_t)glog_rows.size(); ++i) {
      const int64_t pix = bd.b * S * S + bd.lo + i;
      glog_rows[i] = -grad_sil[pix] * std::exp(log_sum[pix]);
    }
    const int32_t row_base = (int32_t)bd.lo;  // glog_rows[r * S + c - row_base]
    T* out = face_grad + (bd.band * B + bd.b) * F * 6;
    for (int64_t f = 0; f < F; ++f) {
      std::fill(out + f * 6, out + f * 6 + 6, T(0));
      const Face<T> face = load_face(vb, faces + 3 * f);
      const Window w = clip_rows(face_window(face, S, radius), bd.row_lo, bd.row_hi);
      if (is_empty(w)) continue;
      Cursor<T> cur = window_cursor<T>(w, S);
      Group<T> g;
      Vt gx[3] = {zero, zero, zero}, gy[3] = {zero, zero, zero};
      while (cur.next(g)) {
        Vt glog = zero;
        bool live = false;
        for (int j = 0; j < g.count; ++j) {
          glog[j] = glog_rows[g.off[j] - row_base];
          live = live || glog[j] != T(0);
        }
        if (!live) continue;  // e.g. covered pixels where exp(log_sum) underflows
        const VPair<T> p = eval_pairs(face, g.px, g.py);
        const auto keep = p.inside | (p.d2 < cut);
        // log(1 - D) = logsigmoid(x), x = a d^2, a = -sign / sigma, dlogsigmoid/dx = sigmoid(-x).
        const Vt a = p.inside ? -inv_sigma : inv_sigma;
        distance_grads(p, keep ? glog * vsigmoid_neg(a * p.d2) * a : zero, gx, gy);  // dLoss / d(d^2)
      }
      T* o = out + f * 6;
      for (int k = 0; k < 3; ++k) {
        o[2 * k] = hsum(gx[k]);
        o[2 * k + 1] = hsum(gy[k]);
      }
    }
  });
}
