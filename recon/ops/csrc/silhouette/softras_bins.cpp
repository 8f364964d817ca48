// bin_faces (softras_tiles.h): face windows on the input's device, then ATen ops that behave the
// same on CPU and CUDA. Deterministic: the only reordering is a stable sort.
#include "softras.h"
#include "softras_tiles.h"

#include <ATen/Parallel.h>

#include <cmath>

namespace recon_softras {

at::Tensor face_windows_cpu(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double radius) {
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor windows = at::empty({B, F, 4}, verts.options().dtype(at::kInt));
  int32_t* out = windows.data_ptr<int32_t>();
  const int64_t* fi = faces.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_windows_cpu", [&] {
    const scalar_t* v = verts.data_ptr<scalar_t>();
    at::parallel_for(0, B * F, 1024, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t b = i / F, f = i % F;
        const Window w = face_window(load_face(v + b * V * 3, fi + 3 * f), (int)image_size, radius);
        out[4 * i] = w.c0;
        out[4 * i + 1] = w.c1;
        out[4 * i + 2] = w.r0;
        out[4 * i + 3] = w.r1;
      }
    });
  });
  return windows;
}

std::vector<at::Tensor> bin_faces(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                  double cutoff_sq, int64_t tile) {
  check_inputs(verts, faces, image_size, 1.0, cutoff_sq);
  TORCH_CHECK(tile >= 1 && tile <= 256, "softras: tile must be in [1, 256], got ", tile);
  const int64_t B = verts.size(0), F = faces.size(0);
  const double radius = std::sqrt(cutoff_sq);
  at::Tensor windows;
  if (verts.is_cuda()) {
#ifdef RECON_WITH_CUDA
    windows = face_windows_cuda(verts, faces, image_size, radius);
#else
    TORCH_CHECK(false, "softras: not compiled with GPU support");
#endif
  } else {
    windows = face_windows_cpu(verts, faces, image_size, radius);
  }
  const auto lopt = verts.options().dtype(at::kLong);
  const at::Tensor w = windows.reshape({B * F, 4}).to(at::kLong);
  const at::Tensor c0 = w.select(1, 0), c1 = w.select(1, 1), r0 = w.select(1, 2), r1 = w.select(1, 3);
  const at::Tensor empty = (c1 < c0).logical_or(r1 < r0);
  // Non-empty windows lie in [0, S - 1], so integer division is floor division here.
  const at::Tensor tx0 = at::div(c0, tile, "floor"), ty0 = at::div(r0, tile, "floor");
  const at::Tensor zero = at::zeros({}, lopt);
  const at::Tensor wt = at::where(empty, zero, at::div(c1, tile, "floor") - tx0 + 1);
  const at::Tensor ht = at::where(empty, zero, at::div(r1, tile, "floor") - ty0 + 1);
  const at::Tensor counts = wt * ht;  // (B * F) tiles per face
  const at::Tensor face_pair_offsets = at::cat({at::zeros({1}, lopt), counts.cumsum(0)});
  const int64_t P = face_pair_offsets[B * F].item<int64_t>();
  const int64_t side = tiles_per_side((int)image_size, (int)tile), T = side * side;

  // Pair j belongs to face owner[j] and is its local-th tile, row-major within the face's tile range.
  const at::Tensor owner = at::arange(B * F, lopt).repeat_interleave(counts, /*dim=*/0, /*output_size=*/P);
  const at::Tensor local = at::arange(P, lopt) - face_pair_offsets.index_select(0, owner);
  const at::Tensor wt_o = wt.index_select(0, owner);
  const at::Tensor tx = tx0.index_select(0, owner) + at::remainder(local, wt_o);
  const at::Tensor ty = ty0.index_select(0, owner) + at::div(local, wt_o, "floor");
  const at::Tensor key = at::div(owner, F, "floor") * T + ty * side + tx;
  // Pairs are generated in (b, f) order, so a stable sort by tile keeps each tile's faces ascending.
  const auto sorted = at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor& keys = std::get<0>(sorted);
  const at::Tensor& perm = std::get<1>(sorted);
  const at::Tensor tile_faces = at::remainder(owner, F).index_select(0, perm).to(at::kInt);
  const at::Tensor tile_offsets = at::searchsorted(keys, at::arange(B * T + 1, lopt));
  // Inverse permutation by sorting (unique keys, so any sort agrees); avoids a scatter, which ATen
  // flags as non-deterministic on CUDA under torch.use_deterministic_algorithms.
  const at::Tensor pair_slot = std::get<1>(at::sort(perm, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  return {windows, tile_offsets, tile_faces, face_pair_offsets, pair_slot};
}

}  // namespace recon_softras
