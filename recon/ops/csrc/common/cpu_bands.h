// Work split of the CPU kernels (silhouette here, RGBA in ../rgba): (batch element, band of rows)
// items. Forward items write disjoint rows; backward items write their own slice of a
// per-(band, batch, face) gradient buffer, reduced onto the vertices in a fixed order at the end
// (reduce_face_grads). So there are no data races and the result does not depend on the thread count.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "softras_math.h"

namespace recon_softras {

struct Split {
  int64_t bands;  // row bands per image
  int threads;
};

// Small batches are split into bands of rows so that every thread gets work. The split depends on
// the batch size only, never on the thread count, so results are identical for any thread count.
constexpr int64_t kMinItems = 16;

inline Split make_split(int64_t batch, int64_t image_size) {
  int64_t bands = batch > 0 ? (kMinItems + batch - 1) / batch : 1;
  bands = std::max<int64_t>(1, std::min<int64_t>(bands, image_size));
  return Split{bands, std::max(1, at::get_num_threads())};
}

inline int64_t band_begin(int64_t band, int64_t bands, int64_t s) { return band * s / bands; }

// One work item: batch element b, rows [row_lo, row_hi) of its S x S image, i.e. the flat pixels
// [lo, hi).
struct Band {
  int64_t b, band;
  int row_lo, row_hi;
  int64_t lo, hi;
};

// Runs body(const Band&) for every item of `split` over a batch of B images, on split.threads threads.
template <typename Body>
void for_each_band(int64_t B, int S, const Split& split, const Body& body) {
  const int64_t items = B * split.bands;
#pragma omp parallel for schedule(dynamic, 1) num_threads(split.threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / split.bands, band = item % split.bands;
    const int row_lo = (int)band_begin(band, split.bands, S), row_hi = (int)band_begin(band + 1, split.bands, S);
    body(Band{b, band, row_lo, row_hi, (int64_t)row_lo * S, (int64_t)row_hi * S});
  }
}

// A face window restricted to the rows [row_lo, row_hi).
inline Window clip_rows(Window w, int row_lo, int row_hi) {
  w.r0 = std::max(w.r0, row_lo);
  w.r1 = std::min(w.r1, row_hi - 1);
  return w;
}

inline bool is_empty(const Window& w) { return w.r0 > w.r1 || w.c0 > w.c1; }

// Sums the per-item gradients onto the vertices in a fixed order: face_grad (bands, B, F, 3, D) onto
// the first D coordinates of grad_verts (B, V, 3), and face_cgrad (bands, B, F, 3, C) onto
// grad_colors (B, V, C) (nothing when C == 0: both may then be null).
template <typename T>
void reduce_face_grads(const T* face_grad, int D, const T* face_cgrad, int64_t C, const int64_t* faces, int64_t B,
                       int64_t V, int64_t F, const Split& split, T* grad_verts, T* grad_colors) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(split.threads)
  for (int64_t b = 0; b < B; ++b) {
    T* gv = grad_verts + b * V * 3;
    T* gc = grad_colors + b * V * C;
    for (int64_t band = 0; band < split.bands; ++band) {
      const T* fg = face_grad + (band * B + b) * F * 3 * D;
      const T* fc = face_cgrad + (band * B + b) * F * 3 * C;
      for (int64_t f = 0; f < F; ++f) {
        for (int k = 0; k < 3; ++k) {
          const int64_t v = faces[3 * f + k];
          for (int j = 0; j < D; ++j) gv[3 * v + j] += fg[(3 * f + k) * D + j];
          for (int64_t c = 0; c < C; ++c) gc[C * v + c] += fc[(3 * f + k) * C + c];
        }
      }
    }
  }
}

}  // namespace recon_softras
