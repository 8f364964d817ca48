// Soft silhouette rasterizer: declarations, input checks and device dispatch.
//
//   forward(verts (B, V, 3), faces (F, 3) int64, S, sigma, cutoff_sq)
//       -> {silhouette (B, S, S), log_sum (B, S, S)}, log_sum = sum over kept pairs of log(1 - D)
//       On CUDA the list also holds the five face-bin tensors of softras_tiles.h (bin_faces); hand
//       them back to backward to skip re-binning.
//   backward(grad_silhouette (B, S, S), verts, faces, log_sum, S, sigma, cutoff_sq, deterministic, bins)
//       -> grad_verts (B, V, 3) (the z column is zero: depth only decides visibility)
//       deterministic: CUDA only (the CPU kernel always is): no float atomics, fixed reduction order.
//
// The math is in softras_math.h; softras_cpu.cpp and softras_cuda.cu run it on each device.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace recon_softras {

// SIMD variant the CPU kernel uses here: "avx2" or "baseline".
std::string cpu_simd();

std::vector<at::Tensor> forward_cpu(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                    double sigma, double cutoff_sq);
at::Tensor backward_cpu(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                        const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq);

#ifdef RECON_WITH_CUDA
constexpr bool kWithCuda = true;
std::vector<at::Tensor> forward_cuda(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                     double sigma, double cutoff_sq);
at::Tensor backward_cuda(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                         const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq,
                         bool deterministic, const std::vector<at::Tensor>& bins);
#else
constexpr bool kWithCuda = false;
#endif

inline void check_inputs(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double sigma,
                         double cutoff_sq) {
  TORCH_CHECK(verts.dim() == 3 && verts.size(2) == 3, "softras: verts must be (B, V, 3), got ", verts.sizes());
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3, "softras: faces must be (F, 3), got ", faces.sizes());
  TORCH_CHECK(verts.scalar_type() == at::kFloat || verts.scalar_type() == at::kDouble,
              "softras: verts must be float32 or float64, got ", verts.scalar_type());
  TORCH_CHECK(faces.scalar_type() == at::kLong, "softras: faces must be int64, got ", faces.scalar_type());
  TORCH_CHECK(verts.is_contiguous(), "softras: verts must be contiguous");
  TORCH_CHECK(faces.is_contiguous(), "softras: faces must be contiguous");
  TORCH_CHECK(verts.device() == faces.device(), "softras: verts (", verts.device(), ") and faces (",
              faces.device(), ") must be on the same device");
  // Pixel offsets and window indices are 32-bit in the kernels.
  TORCH_CHECK(image_size > 0 && image_size <= 4096, "softras: image_size must be in [1, 4096], got ", image_size);
  TORCH_CHECK(sigma > 0, "softras: sigma must be positive, got ", sigma);
  TORCH_CHECK(cutoff_sq >= 0, "softras: cutoff_sq must be non-negative, got ", cutoff_sq);
  // Face indices must be in [0, V): reading them back here would sync the host on every forward and
  // backward, so they are checked where the mesh enters (recon/ops/checks.py; RECON_DEBUG_CHECKS=1 checks
  // every call).
}

inline void check_grad_inputs(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& log_sum,
                              int64_t image_size) {
  const std::vector<int64_t> shape{verts.size(0), image_size, image_size};
  TORCH_CHECK(grad_sil.sizes() == shape && log_sum.sizes() == shape,
              "softras: grad and log_sum must be (B, S, S) = ", at::IntArrayRef(shape), ", got ", grad_sil.sizes(),
              " and ", log_sum.sizes());
  TORCH_CHECK(grad_sil.scalar_type() == verts.scalar_type() && log_sum.scalar_type() == verts.scalar_type(),
              "softras: grad and log_sum must have the dtype of verts (", verts.scalar_type(), ")");
  TORCH_CHECK(grad_sil.is_contiguous() && log_sum.is_contiguous(), "softras: grad and log_sum must be contiguous");
  TORCH_CHECK(grad_sil.device() == verts.device() && log_sum.device() == verts.device(),
              "softras: grad and log_sum must be on the device of verts (", verts.device(), ")");
}

inline std::vector<at::Tensor> forward(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                       double sigma, double cutoff_sq) {
  check_inputs(verts, faces, image_size, sigma, cutoff_sq);
  if (verts.is_cuda()) {
#ifdef RECON_WITH_CUDA
    return forward_cuda(verts, faces, image_size, sigma, cutoff_sq);
#else
    TORCH_CHECK(false, "softras: not compiled with GPU support");
#endif
  }
  return forward_cpu(verts, faces, image_size, sigma, cutoff_sq);
}

inline at::Tensor backward(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                           const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq,
                           bool deterministic = false, const std::vector<at::Tensor>& bins = {}) {
  check_inputs(verts, faces, image_size, sigma, cutoff_sq);
  check_grad_inputs(grad_sil, verts, log_sum, image_size);
  if (verts.is_cuda()) {
#ifdef RECON_WITH_CUDA
    return backward_cuda(grad_sil, verts, faces, log_sum, image_size, sigma, cutoff_sq, deterministic, bins);
#else
    TORCH_CHECK(false, "softras: not compiled with GPU support");
#endif
  }
  return backward_cpu(grad_sil, verts, faces, log_sum, image_size, sigma, cutoff_sq);
}

}  // namespace recon_softras
