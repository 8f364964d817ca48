// Test-only build: softras_cuda.cu as plain C++ on CPU threads (cuda_emulation.h), with the same
// forward / backward / bin_faces signatures as the CUDA extension, taking CPU tensors. Built by
// recon.render.softras_ext.load_extension("cuda-emu"); tests/test_render_ext.py checks it against
// the torch reference, so the CUDA kernels' logic is executed without a GPU.
#define RECON_CUDA_EMULATION 1

#include <torch/extension.h>

#include "softras_cuda.cu"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "recon softras CUDA kernels emulated on CPU threads (tests only)";
  m.def("forward", &recon_softras::forward_cuda, py::arg("verts"), py::arg("faces"), py::arg("image_size"),
        py::arg("sigma"), py::arg("cutoff_sq"));
  m.def("backward", &recon_softras::backward_cuda, py::arg("grad_silhouette"), py::arg("verts"), py::arg("faces"),
        py::arg("log_sum"), py::arg("image_size"), py::arg("sigma"), py::arg("cutoff_sq"),
        py::arg("deterministic") = false, py::arg("bins") = std::vector<at::Tensor>{});
  m.def("bin_faces", &recon_softras::bin_faces, py::arg("verts"), py::arg("faces"), py::arg("image_size"),
        py::arg("cutoff_sq"), py::arg("tile"));
  m.attr("cuda_tile") = recon_softras::kTile;
  m.attr("with_cuda") = false;
}
