// CPU soft rasterizer (OpenMP + SIMD).
//
// Each face visits only the pixel centres of its window (its cutoff-grown bounding box), so no
// pixel looks at a face that cannot reach it. A window's pixels are evaluated kLanes at a time
// (row-major, continuing across rows) with branch-free vector code; each pixel still sums its
// faces in ascending order, as the reference does.
//
// Work is split into (batch element, band of rows) items: forward items write disjoint rows of
// the log buffer, and backward items write their own slice of a per-(band, batch, face) gradient
// buffer that is reduced onto the vertices at the end (in a fixed order), so there are no data
// races and the result does not depend on the thread count.
//
// The kernels (softras_cpu_impl.h) are compiled twice: 4 float lanes for baseline x86-64 (SSE2) or
// any other CPU, and 8 lanes with AVX2 enabled for these functions only, picked at run time (no
// -march flag, so the build runs anywhere). RECON_SOFTRAS_SIMD=baseline forces the first.
#include "softras.h"
#include "softras_math.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace recon_softras {
namespace {

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

namespace baseline {
constexpr int kLanes = 4;
#include "softras_cpu_impl.h"
}  // namespace baseline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RECON_SOFTRAS_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
constexpr int kLanes = 8;
#include "softras_cpu_impl.h"
}  // namespace avx2
#pragma GCC pop_options
#endif

bool use_avx2() {
#ifdef RECON_SOFTRAS_AVX2
  const char* force = std::getenv("RECON_SOFTRAS_SIMD");
  if (force != nullptr && std::strcmp(force, "baseline") == 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

}  // namespace

std::string cpu_simd() { return use_avx2() ? "avx2" : "baseline"; }

std::vector<at::Tensor> forward_cpu(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                    double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor log_sum = at::empty({B, image_size, image_size}, verts.options());
  at::Tensor sil = at::empty_like(log_sum);
  const Split split = make_split(B, image_size);
  const bool avx2 = use_avx2();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_forward_cpu", [&] {
    auto run = [&](auto impl) {
      impl(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, (int)image_size, sigma, cutoff_sq, split,
           log_sum.data_ptr<scalar_t>(), sil.data_ptr<scalar_t>());
    };
#ifdef RECON_SOFTRAS_AVX2
    if (avx2) return run(avx2::forward_impl<scalar_t>);
#endif
    run(baseline::forward_impl<scalar_t>);
  });
  return {sil, log_sum};
}

at::Tensor backward_cpu(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                        const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  const Split split = make_split(B, image_size);
  at::Tensor face_grad = at::empty({split.bands, B, F, 6}, verts.options());  // fully written
  at::Tensor grad_verts = at::zeros_like(verts);
  const bool avx2 = use_avx2();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_backward_cpu", [&] {
    auto run = [&](auto impl) {
      impl(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), grad_sil.data_ptr<scalar_t>(),
           log_sum.data_ptr<scalar_t>(), B, V, F, (int)image_size, sigma, cutoff_sq, split,
           face_grad.data_ptr<scalar_t>());
    };
#ifdef RECON_SOFTRAS_AVX2
    if (avx2) run(avx2::backward_impl<scalar_t>);
    else
#endif
      run(baseline::backward_impl<scalar_t>);
    baseline::reduce_face_grad<scalar_t>(face_grad.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, split,
                                         grad_verts.data_ptr<scalar_t>());
  });
  return grad_verts;
}

}  // namespace recon_softras
