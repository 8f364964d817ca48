// Python bindings of the RGBA render kernels (module name set by the JIT build).
#include <torch/extension.h>

#include "rgba.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "recon RGBA render kernels: SoftRas soft z-buffer and DIB-R-style (see recon/render/rgba_ext.py)";
  m.def("soft_forward", &recon_rgba::soft_forward,
        "(verts (B,V,3), faces (F,3) int64, colors (B,V,C), image_size, sigma, cutoff_sq, gamma, near, far, eps, "
        "background [C]) -> [image (B,C+1,S,S), not_alpha, zmax, den (B,S,S)]",
        py::arg("verts"), py::arg("faces"), py::arg("colors"), py::arg("image_size"), py::arg("sigma"),
        py::arg("cutoff_sq"), py::arg("gamma"), py::arg("near"), py::arg("far"), py::arg("eps"),
        py::arg("background"));
  m.def("soft_backward", &recon_rgba::soft_backward,
        "(grad_image, image, verts, faces, colors, not_alpha, zmax, den, image_size, sigma, cutoff_sq, gamma, near, "
        "far, eps) -> [grad_verts (B,V,3), grad_colors (B,V,C)]",
        py::arg("grad_image"), py::arg("image"), py::arg("verts"), py::arg("faces"), py::arg("colors"),
        py::arg("not_alpha"), py::arg("zmax"), py::arg("den"), py::arg("image_size"), py::arg("sigma"),
        py::arg("cutoff_sq"), py::arg("gamma"), py::arg("near"), py::arg("far"), py::arg("eps"));
  m.def("dibr_forward", &recon_rgba::dibr_forward,
        "(verts, faces, colors, image_size, sigma, cutoff_sq, background [C]) -> [image (B,C+1,S,S), not_alpha "
        "(B,S,S), nearest (B,S,S) int64]",
        py::arg("verts"), py::arg("faces"), py::arg("colors"), py::arg("image_size"), py::arg("sigma"),
        py::arg("cutoff_sq"), py::arg("background"));
  m.def("dibr_backward", &recon_rgba::dibr_backward,
        "(grad_image, verts, faces, colors, not_alpha, nearest, image_size, sigma, cutoff_sq) -> [grad_verts, "
        "grad_colors]",
        py::arg("grad_image"), py::arg("verts"), py::arg("faces"), py::arg("colors"), py::arg("not_alpha"),
        py::arg("nearest"), py::arg("image_size"), py::arg("sigma"), py::arg("cutoff_sq"));
  m.def("cpu_simd", &recon_rgba::cpu_simd, "SIMD variant of the CPU soft z-buffer kernels: 'avx2' or 'baseline'");
  m.attr("with_cuda") = recon_rgba::kWithCuda;
}
