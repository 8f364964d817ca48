// Screen-tile binning of faces by their cutoff windows, shared by the CUDA kernels (which consume
// the bins) and the CPU build (which computes the same bins, so the tests check them without a GPU).
//
//   bin_faces(verts (B, V, 3), faces (F, 3), S, cutoff_sq, tile) -> {
//       windows           (B, F, 4) int32  c0, c1, r0, r1 of every face (softras_math.h face_window)
//       tile_offsets      (B * T + 1) int64, T = ceil(S / tile)^2 tiles per image, row-major: the faces
//                         of tile t of item b are tile_faces[tile_offsets[b * T + t] ...
//                         tile_offsets[b * T + t + 1]), in ascending face order
//       tile_faces        (P,) int32 face indices
//       face_pair_offsets (B * F + 1) int64: the P (face, tile) pairs in (b, f)-major order; the pairs
//                         of face f of item b are j in [face_pair_offsets[b * F + f], ... [b * F + f + 1])
//       pair_slot         (P,) int64: position of pair j in tile_faces (lets the deterministic backward
//                         sum each face's per-tile gradients in a fixed order)
//   }
//
// A face is listed in every tile its window touches, so every pixel-face pair the kernels keep
// (pixel centre in the window) is in the list of the pixel's tile. The work is done with ATen ops
// (a stable sort, cumulative sums) that run on either device and give the same result on both.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "softras_math.h"

namespace recon_softras {

// Tile side (pixels) the CUDA kernels use: one thread block of kTile * kTile threads per tile.
constexpr int kTile = 16;

// Inclusive tile ranges of a window; empty (tx1 < tx0) when the window is.
struct TileRange {
  int tx0, tx1, ty0, ty1;
};

SR_HD int tiles_per_side(int image_size, int tile) { return (image_size + tile - 1) / tile; }

SR_HD TileRange tile_range(const Window& w, int tile) {
  if (w.c1 < w.c0 || w.r1 < w.r0) return TileRange{0, -1, 0, -1};
  return TileRange{w.c0 / tile, w.c1 / tile, w.r0 / tile, w.r1 / tile};
}

// (B, F, 4) int32 windows on the device of verts.
at::Tensor face_windows_cpu(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double radius);
#ifdef RECON_WITH_CUDA
at::Tensor face_windows_cuda(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double radius);
#endif

std::vector<at::Tensor> bin_faces(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                  double cutoff_sq, int64_t tile);

}  // namespace recon_softras
