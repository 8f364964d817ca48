// Python bindings of the soft rasterizer kernels (module name set by the JIT build).
#include <torch/extension.h>

#include "softras.h"
#include "softras_tiles.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "recon soft silhouette rasterizer kernels (see recon/render/softras_ext.py)";
  m.def("forward", &recon_softras::forward, "(verts (B,V,3), faces (F,3) int64, image_size, sigma, cutoff_sq) -> "
        "[silhouette (B,S,S), log_sum (B,S,S)]",
        py::arg("verts"), py::arg("faces"), py::arg("image_size"), py::arg("sigma"), py::arg("cutoff_sq"));
  m.def("backward", &recon_softras::backward, "(grad_silhouette, verts, faces, log_sum, image_size, sigma, "
        "cutoff_sq, deterministic=False, bins=[]) -> grad_verts (B,V,3); bins: forward's extra CUDA outputs",
        py::arg("grad_silhouette"), py::arg("verts"), py::arg("faces"), py::arg("log_sum"), py::arg("image_size"),
        py::arg("sigma"), py::arg("cutoff_sq"), py::arg("deterministic") = false,
        py::arg("bins") = std::vector<at::Tensor>{});
  m.def("bin_faces", &recon_softras::bin_faces, "(verts, faces, image_size, cutoff_sq, tile) -> [windows (B,F,4), "
        "tile_offsets (B*T+1), tile_faces (P), face_pair_offsets (B*F+1), pair_slot (P)] (see softras_tiles.h)",
        py::arg("verts"), py::arg("faces"), py::arg("image_size"), py::arg("cutoff_sq"), py::arg("tile"));
  m.attr("cuda_tile") = recon_softras::kTile;
  m.def("cpu_simd", &recon_softras::cpu_simd, "SIMD variant of the CPU kernel in use: 'avx2' or 'baseline'");
  m.attr("with_cuda") = recon_softras::kWithCuda;
}
