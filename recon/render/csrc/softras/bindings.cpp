// Python bindings of the soft rasterizer kernels (module name set by the JIT build).
#include <torch/extension.h>

#include "softras.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "recon soft silhouette rasterizer kernels (see recon/render/softras_ext.py)";
  m.def("forward", &recon_softras::forward, "(verts (B,V,3), faces (F,3) int64, image_size, sigma, cutoff_sq) -> "
        "[silhouette (B,S,S), log_sum (B,S,S)]",
        py::arg("verts"), py::arg("faces"), py::arg("image_size"), py::arg("sigma"), py::arg("cutoff_sq"));
  m.def("backward", &recon_softras::backward, "(grad_silhouette, verts, faces, log_sum, image_size, sigma, "
        "cutoff_sq) -> grad_verts (B,V,3)",
        py::arg("grad_silhouette"), py::arg("verts"), py::arg("faces"), py::arg("log_sum"), py::arg("image_size"),
        py::arg("sigma"), py::arg("cutoff_sq"));
  m.def("cpu_simd", &recon_softras::cpu_simd, "SIMD variant of the CPU kernel in use: 'avx2' or 'baseline'");
#ifdef RECON_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
