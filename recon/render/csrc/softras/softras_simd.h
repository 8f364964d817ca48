// 4-lane SIMD helpers for the CPU kernel (GCC/Clang vector extensions: SSE2 on any x86-64, NEON on
// arm64; no -march flags needed). float lanes use Cephes-style exp/log polynomials (about 1 ulp);
// double lanes call libm per lane, so float64 results match the reference to rounding.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace recon_softras {
namespace simd {

constexpr int kLanes = 4;

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(16)));
  typedef int32_t M __attribute__((vector_size(16)));  // comparison masks: -1 (true) / 0
};

template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(32)));
  typedef int64_t M __attribute__((vector_size(32)));
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

}  // namespace simd
}  // namespace recon_softras
