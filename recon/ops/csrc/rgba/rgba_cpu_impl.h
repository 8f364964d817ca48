// Vectorised CPU kernels of the soft z-buffer, included by ../softras/simd_variants.h once per
// instruction set inside its own namespace, after ../softras/simd.h (vector types, exp, the pixel
// walk, the vector pair evaluation). No include guard on purpose: each inclusion compiles the same
// code for a different target.
//
// A face's window pixels are evaluated kLanes at a time (row-major, continuing across rows) with
// branch-free GCC/Clang vector code; the per-pixel accumulation then runs lane by lane, so each pixel
// still sums its faces in ascending order.

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
  const int S = (int)o.image_size;
  const int64_t npix = (int64_t)S * S;
  const double radius = std::sqrt(o.cutoff_sq);
  const SoftScalars<T> so = soft_scalars<T>(o);
  const Vt zero = splat<Vt>(0), skip = splat<Vt>(kSkipExponent);
  for_each_band(B, S, split, [&](const Band& bd) {
    const int64_t b = bd.b, lo = bd.lo, hi = bd.hi;
    const T* vb = verts + b * V * 3;
    const T* cb = colors + b * V * C;
    T* na = not_alpha + b * npix;
    T* zm = zmax + b * npix;
    T* dn = den + b * npix;
    T* img = image + b * (C + 1) * npix;  // colour planes accumulate the numerators
    std::fill(na + lo, na + hi, T(1));
    std::fill(zm + lo, zm + hi, so.eps);
    std::fill(dn + lo, dn + hi, T(1));  // the background's weight exp((eps - zmax) / gamma)
    for (int64_t c = 0; c < C; ++c) std::fill(img + c * npix + lo, img + c * npix + hi, T(background[c]));
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T> m = load_mesh_face(vb, cb, faces + 3 * f, C, S, radius, bd);
      if (is_empty(m.win)) continue;
      for_each_kept_group(m.face, m.win, S, so.cut, [&](const Group<T>& g, const VPair<T>& p, const auto& keep) {
        const Vt a = p.inside ? splat<Vt>(-so.inv_sigma) : splat<Vt>(so.inv_sigma);
        const VCoverage<T> cov = coverage<T>(a * p.d2);
        auto ok = keep & splat<typename Vec<T>::M>(m.face.nondegenerate ? -1 : 0);
        VDepth<T> d{};
        Vt rel = zero, ex = zero;
        if (any(ok)) {
          d = depth_terms(p, m.cf, so.near, so.far);
          rel = (d.zn - gather(zm, g)) * so.inv_gamma;
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
      });
    }
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t c = 0; c < C; ++c) img[c * npix + i] /= dn[i];
      img[C * npix + i] = T(1) - na[i];
    }
  });
}

// Writes face_grad (bands, B, F, 3, 3) and face_cgrad (bands, B, F, 3, C): the gradient of each
// face's vertices and vertex colours, summed over the band's pixels.
template <typename T>
void soft_backward_impl(const T* grad_image, const T* image, const T* verts, const int64_t* faces, const T* colors,
                        const T* not_alpha, const T* zmax, const T* den, int64_t B, int64_t V, int64_t F, int64_t C,
                        const SoftOptions& o, const Split& split, T* face_grad, T* face_cgrad) {
  typedef typename Vec<T>::V Vt;
  const int S = (int)o.image_size;
  const int64_t npix = (int64_t)S * S;
  const double radius = std::sqrt(o.cutoff_sq);
  const SoftScalars<T> so = soft_scalars<T>(o);
  const T near = so.near, far = so.far;
  const Vt zero = splat<Vt>(0), one = splat<Vt>(1), skip = splat<Vt>(kSkipExponent);
  for_each_band(B, S, split, [&](const Band& bd) {
    const int64_t b = bd.b;
    const T* vb = verts + b * V * 3;
    const T* cb = colors + b * V * C;
    const T* gimg = grad_image + b * (C + 1) * npix;
    const T* img = image + b * (C + 1) * npix;
    const T* zm = zmax + b * npix;
    // Per pixel (whole image, only the band's rows are read): dLoss/dlog(1 - alpha), 1 / den.
    std::vector<T> glog(npix, T(0)), inv_den(npix, T(0));
    bool any_colour_grad = false;
    for (int64_t i = bd.lo; i < bd.hi; ++i) {
      glog[i] = -gimg[C * npix + i] * not_alpha[b * npix + i];
      inv_den[i] = T(1) / den[b * npix + i];
      for (int64_t c = 0; c < C; ++c) any_colour_grad = any_colour_grad || gimg[c * npix + i] != T(0);
    }
    T* out = face_grad + (bd.band * B + b) * F * 9;
    T* outc = face_cgrad + (bd.band * B + b) * F * 3 * C;
    std::fill(out, out + F * 9, T(0));
    std::fill(outc, outc + F * 3 * C, T(0));
    std::vector<T> gcol(3 * C * kLanes);  // per-lane colour gradient sums of the current face
    for (int64_t f = 0; f < F; ++f) {
      const MeshFace<T> m = load_mesh_face(vb, cb, faces + 3 * f, C, S, radius, bd);
      if (is_empty(m.win)) continue;
      const bool coloured = m.face.nondegenerate && any_colour_grad;
      Vt gx[3] = {zero, zero, zero}, gy[3] = {zero, zero, zero}, gz[3] = {zero, zero, zero};
      std::fill(gcol.begin(), gcol.end(), T(0));
      for_each_kept_group(m.face, m.win, S, so.cut, [&](const Group<T>& g, const VPair<T>& p, const auto& keep) {
        const Vt a = p.inside ? splat<Vt>(-so.inv_sigma) : splat<Vt>(so.inv_sigma);
        const VCoverage<T> cov = coverage<T>(a * p.d2);
        // Alpha: log(1 - D) = logsigmoid(arg), d/darg = sigmoid(-arg) = D.
        Vt g_d2 = gather(glog.data(), g) * cov.D * a;
        if (coloured) {
          const VDepth<T> d = depth_terms(p, m.cf, near, far);
          const Vt rel = (d.zn - gather(zm, g)) * so.inv_gamma;  // <= 0: zmax is the maximum
          const auto ok = keep & d.in_range & (rel >= skip);   // else negligible (kSkipExponent)
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
            const Vt g_sigma = (A * q * so.inv_gamma) / (far - near) * d.zp * d.zp;
            for (int k = 0; k < 3; ++k) {
              g_wc[k] += g_sigma * m.cf.inv_z[k];
              gz[k] -= g_sigma * d.wc[k] * (m.cf.inv_z[k] * m.cf.inv_z[k]);
            }
            const Vt dot = g_wc[0] * d.wc[0] + g_wc[1] * d.wc[1] + g_wc[2] * d.wc[2];
            Vt gw[3];
            for (int k = 0; k < 3; ++k) {
              const auto pass = (d.w[k] >= zero) & (d.w[k] <= one);
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
        distance_grads(p, keep ? g_d2 : zero, gx, gy);
      });
      T* of = out + f * 9;
      for (int k = 0; k < 3; ++k) {
        of[3 * k] = hsum(gx[k]);
        of[3 * k + 1] = hsum(gy[k]);
        of[3 * k + 2] = hsum(gz[k]);
        for (int64_t c = 0; c < C; ++c)
          outc[f * 3 * C + k * C + c] = hsum(load<Vt>(gcol.data() + (k * C + c) * kLanes));
      }
    }
  });
}
