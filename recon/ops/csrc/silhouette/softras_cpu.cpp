// CPU soft rasterizer (OpenMP + SIMD).
//
// Each face visits only the pixel centres of its window (its cutoff-grown bounding box), so no
// pixel looks at a face that cannot reach it. A window's pixels are evaluated kLanes at a time
// (row-major, continuing across rows) with branch-free vector code; each pixel still sums its
// faces in ascending order, as the reference does.
//
// Work is split into (batch element, band of rows) items (cpu_bands.h): no data races, and the
// result does not depend on the thread count.
//
// The kernels (softras_cpu_impl.h) are compiled for baseline x86-64 and for AVX2, picked at run
// time (simd_variants.h).
#include "softras.h"
#include "cpu_bands.h"
#include "softras_math.h"

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

#define RECON_CPU_IMPL "softras_cpu_impl.h"
#include "simd_variants.h"

}  // namespace

std::string cpu_simd() { return use_avx2() ? "avx2" : "baseline"; }

std::vector<at::Tensor> forward_cpu(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                    double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor log_sum = at::empty({B, image_size, image_size}, verts.options());
  at::Tensor sil = at::empty_like(log_sum);
  const Split split = make_split(B, image_size);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_forward_cpu", [&] {
    auto run = [&](auto impl) {
      impl(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), B, V, F, (int)image_size, sigma, cutoff_sq, split,
           log_sum.data_ptr<scalar_t>(), sil.data_ptr<scalar_t>());
    };
    RECON_SIMD_RUN(run, forward_impl<scalar_t>);
  });
  return {sil, log_sum};
}

at::Tensor backward_cpu(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                        const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  const Split split = make_split(B, image_size);
  at::Tensor face_grad = at::empty({split.bands, B, F, 6}, verts.options());  // fully written
  at::Tensor grad_verts = at::zeros_like(verts);
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_backward_cpu", [&] {
    auto run = [&](auto impl) {
      impl(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), grad_sil.data_ptr<scalar_t>(),
           log_sum.data_ptr<scalar_t>(), B, V, F, (int)image_size, sigma, cutoff_sq, split,
           face_grad.data_ptr<scalar_t>());
    };
    RECON_SIMD_RUN(run, backward_impl<scalar_t>);
    reduce_face_grads<scalar_t>(face_grad.data_ptr<scalar_t>(), 2, nullptr, 0, faces.data_ptr<int64_t>(), B, V, F,
                                split, grad_verts.data_ptr<scalar_t>(), nullptr);
  });
  return grad_verts;
}

}  // namespace recon_softras
