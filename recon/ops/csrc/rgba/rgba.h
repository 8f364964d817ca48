// RGBA renders (SoftRas soft z-buffer, DIB-R-style): declarations, input checks, device dispatch.
//
//   soft_forward(verts (B,V,3), faces (F,3) int64, colors (B,V,C), S, sigma, cutoff_sq, gamma, near, far, eps,
//                background [C]) -> {image (B,C+1,S,S), not_alpha (B,S,S), zmax (B,S,S), den (B,S,S)}
//       not_alpha = prod of (1 - D) = 1 - alpha; zmax = the per-pixel stabiliser;
//       den = sum of weights exp((z - zmax) / gamma) * D plus the background's
//   soft_backward(grad_image, image, verts, faces, colors, not_alpha, zmax, den, <same options>)
//       -> {grad_verts (B,V,3), grad_colors (B,V,C)}
//   dibr_forward(verts, faces, colors, S, sigma, cutoff_sq, background [C])
//       -> {image (B,C+1,S,S), not_alpha (B,S,S), nearest (B,S,S) int64 (-1: uncovered)}
//   dibr_backward(grad_image, verts, faces, colors, not_alpha, nearest, S, sigma, cutoff_sq)
//       -> {grad_verts (B,V,3) (z column zero), grad_colors (B,V,C)}
//
// The maths is in rgba_math.h; rgba_cpu.cpp and rgba_cuda.cu run it on each device.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace recon_rgba {

// SIMD variant the CPU soft z-buffer kernels use here: "avx2" or "baseline".
std::string cpu_simd();

struct SoftOptions {
  int64_t image_size;
  double sigma, cutoff_sq, gamma, near, far, eps;
};

// SoftOptions as the kernels use them, in their scalar type.
template <typename T>
struct SoftScalars {
  T inv_sigma, cut, inv_gamma, near, far, eps;
};

template <typename T>
inline SoftScalars<T> soft_scalars(const SoftOptions& o) {
  return SoftScalars<T>{T(1.0 / o.sigma), T(o.cutoff_sq), T(1.0 / o.gamma), T(o.near), T(o.far), T(o.eps)};
}

// The kernels of one device (inputs already checked; the layouts of the header comment).
struct Kernels {
  std::vector<at::Tensor> (*soft_forward)(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          const SoftOptions& o, const std::vector<double>& background);
  std::vector<at::Tensor> (*soft_backward)(const at::Tensor& grad_image, const at::Tensor& image,
                                           const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                           const at::Tensor& not_alpha, const at::Tensor& zmax, const at::Tensor& den,
                                           const SoftOptions& o);
  std::vector<at::Tensor> (*dibr_forward)(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                          int64_t image_size, double sigma, double cutoff_sq,
                                          const std::vector<double>& background);
  std::vector<at::Tensor> (*dibr_backward)(const at::Tensor& grad_image, const at::Tensor& verts,
                                           const at::Tensor& faces, const at::Tensor& colors,
                                           const at::Tensor& not_alpha, const at::Tensor& nearest,
                                           int64_t image_size, double sigma, double cutoff_sq);
};

const Kernels& cpu_kernels();  // rgba_cpu.cpp
#ifdef RECON_WITH_CUDA
constexpr bool kWithCuda = true;
const Kernels& cuda_kernels();  // rgba_cuda.cu
#else
constexpr bool kWithCuda = false;
#endif

// The kernels for the device of `verts`.
inline const Kernels& kernels_for(const at::Tensor& verts) {
#ifdef RECON_WITH_CUDA
  if (verts.is_cuda()) return cuda_kernels();
#endif
  TORCH_CHECK(!verts.is_cuda(), "rgba: not compiled with GPU support");
  return cpu_kernels();
}

inline void check_mesh(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors, int64_t image_size,
                       double sigma, double cutoff_sq) {
  TORCH_CHECK(verts.dim() == 3 && verts.size(2) == 3, "rgba: verts must be (B, V, 3), got ", verts.sizes());
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3, "rgba: faces must be (F, 3), got ", faces.sizes());
  TORCH_CHECK(colors.dim() == 3 && colors.size(0) == verts.size(0) && colors.size(1) == verts.size(1),
              "rgba: colors must be (B, V, C) with (B, V) of verts, got ", colors.sizes());
  TORCH_CHECK(verts.scalar_type() == at::kFloat || verts.scalar_type() == at::kDouble,
              "rgba: verts must be float32 or float64, got ", verts.scalar_type());
  TORCH_CHECK(colors.scalar_type() == verts.scalar_type(), "rgba: colors must have the dtype of verts (",
              verts.scalar_type(), "), got ", colors.scalar_type());
  TORCH_CHECK(faces.scalar_type() == at::kLong, "rgba: faces must be int64, got ", faces.scalar_type());
  TORCH_CHECK(verts.is_contiguous() && faces.is_contiguous() && colors.is_contiguous(),
              "rgba: verts, faces and colors must be contiguous");
  TORCH_CHECK(verts.device() == faces.device() && verts.device() == colors.device(),
              "rgba: verts, faces and colors must be on one device");
  TORCH_CHECK(image_size > 0 && image_size <= 4096, "rgba: image_size must be in [1, 4096], got ", image_size);
  TORCH_CHECK(sigma > 0, "rgba: sigma must be positive, got ", sigma);
  TORCH_CHECK(cutoff_sq >= 0, "rgba: cutoff_sq must be non-negative, got ", cutoff_sq);
  // Face indices must be in [0, V): checked where the mesh enters, not here (a host sync per call;
  // recon/ops/checks.py).
}

inline void check_soft_options(const SoftOptions& o) {
  TORCH_CHECK(o.gamma > 0, "rgba: gamma must be positive, got ", o.gamma);
  TORCH_CHECK(o.far > o.near, "rgba: far must exceed near, got near=", o.near, " far=", o.far);
}

inline void check_buffer(const at::Tensor& t, const at::Tensor& verts, at::IntArrayRef shape, const char* name,
                         at::ScalarType dtype) {
  TORCH_CHECK(t.sizes() == shape, "rgba: ", name, " must be ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "rgba: ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "rgba: ", name, " must be contiguous");
  TORCH_CHECK(t.device() == verts.device(), "rgba: ", name, " must be on the device of verts (", verts.device(), ")");
}

inline std::vector<at::Tensor> soft_forward(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                            int64_t image_size, double sigma, double cutoff_sq, double gamma,
                                            double near, double far, double eps,
                                            const std::vector<double>& background) {
  check_mesh(verts, faces, colors, image_size, sigma, cutoff_sq);
  const SoftOptions o{image_size, sigma, cutoff_sq, gamma, near, far, eps};
  check_soft_options(o);
  TORCH_CHECK((int64_t)background.size() == colors.size(2), "rgba: background must have ", colors.size(2),
              " values, got ", background.size());
  return kernels_for(verts).soft_forward(verts, faces, colors, o, background);
}

inline std::vector<at::Tensor> soft_backward(const at::Tensor& grad_image, const at::Tensor& image,
                                             const at::Tensor& verts, const at::Tensor& faces,
                                             const at::Tensor& colors, const at::Tensor& not_alpha,
                                             const at::Tensor& zmax, const at::Tensor& den, int64_t image_size,
                                             double sigma, double cutoff_sq, double gamma, double near, double far,
                                             double eps) {
  check_mesh(verts, faces, colors, image_size, sigma, cutoff_sq);
  const SoftOptions o{image_size, sigma, cutoff_sq, gamma, near, far, eps};
  check_soft_options(o);
  const auto dt = verts.scalar_type();
  const std::vector<int64_t> img{verts.size(0), colors.size(2) + 1, image_size, image_size};
  const std::vector<int64_t> pix{verts.size(0), image_size, image_size};
  check_buffer(grad_image, verts, img, "grad_image", dt);
  check_buffer(image, verts, img, "image", dt);
  check_buffer(not_alpha, verts, pix, "not_alpha", dt);
  check_buffer(zmax, verts, pix, "zmax", dt);
  check_buffer(den, verts, pix, "den", dt);
  return kernels_for(verts).soft_backward(grad_image, image, verts, faces, colors, not_alpha, zmax, den, o);
}

inline std::vector<at::Tensor> dibr_forward(const at::Tensor& verts, const at::Tensor& faces, const at::Tensor& colors,
                                            int64_t image_size, double sigma, double cutoff_sq,
                                            const std::vector<double>& background) {
  check_mesh(verts, faces, colors, image_size, sigma, cutoff_sq);
  TORCH_CHECK((int64_t)background.size() == colors.size(2), "rgba: background must have ", colors.size(2),
              " values, got ", background.size());
  return kernels_for(verts).dibr_forward(verts, faces, colors, image_size, sigma, cutoff_sq, background);
}

inline std::vector<at::Tensor> dibr_backward(const at::Tensor& grad_image, const at::Tensor& verts,
                                             const at::Tensor& faces, const at::Tensor& colors,
                                             const at::Tensor& not_alpha, const at::Tensor& nearest,
                                             int64_t image_size, double sigma, double cutoff_sq) {
  check_mesh(verts, faces, colors, image_size, sigma, cutoff_sq);
  const std::vector<int64_t> img{verts.size(0), colors.size(2) + 1, image_size, image_size};
  const std::vector<int64_t> pix{verts.size(0), image_size, image_size};
  check_buffer(grad_image, verts, img, "grad_image", verts.scalar_type());
  check_buffer(not_alpha, verts, pix, "not_alpha", verts.scalar_type());
  check_buffer(nearest, verts, pix, "nearest", at::kLong);
  // nearest (in [-1, F)) is dibr_forward's own output, saved for this backward: not re-read on the host.
  return kernels_for(verts).dibr_backward(grad_image, verts, faces, colors, not_alpha, nearest, image_size, sigma,
                                          cutoff_sq);
}

}  // namespace recon_rgba
