// Compiles the SIMD kernels of a CPU extension twice: 4 float lanes for baseline x86-64 (SSE2) or
// any other CPU, and 8 lanes with AVX2 enabled for these functions only, picked at run time (no
// -march flag, so the build runs anywhere). RECON_SOFTRAS_SIMD=baseline forces the first.
//
// Include it inside the extension's (anonymous) namespace, with RECON_CPU_IMPL naming the kernels'
// header (e.g. "softras_cpu_impl.h") and <algorithm>, <cmath>, <cstdlib>, <cstring>, <type_traits>
// included before. It defines the namespaces `baseline` and (x86-64 GCC) `avx2`, each with simd.h
// and the kernels, plus use_avx2() and RECON_SIMD_RUN. No include guard: one inclusion per extension.

namespace baseline {
constexpr int kLanes = 4;
#include "simd.h"
#include RECON_CPU_IMPL
}  // namespace baseline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RECON_CPU_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
constexpr int kLanes = 8;
#include "simd.h"
#include RECON_CPU_IMPL
}  // namespace avx2
#pragma GCC pop_options
#endif

// Whether the AVX2 variant runs here.
inline bool use_avx2() {
#ifdef RECON_CPU_AVX2
  const char* force = std::getenv("RECON_SOFTRAS_SIMD");
  if (force != nullptr && std::strcmp(force, "baseline") == 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

// run(variant::kernel) for the variant use_avx2() picks; `kernel` names a function of the kernels'
// header, e.g. RECON_SIMD_RUN(run, forward_impl<scalar_t>).
#ifdef RECON_CPU_AVX2
#define RECON_SIMD_RUN(run, kernel) (use_avx2() ? run(avx2::kernel) : run(baseline::kernel))
#else
#define RECON_SIMD_RUN(run, kernel) run(baseline::kernel)
#endif
