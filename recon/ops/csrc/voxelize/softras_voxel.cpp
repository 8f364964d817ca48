// SoftRas's voxelization (soft_renderer/cuda/voxelization_cuda_kernel.cu) on the CPU.
//
// Same cells as recon.protocols.softras_voxel.voxelize_softras_reference, which states the
// algorithm; this file only makes it fast. Built with -ffp-contract=off and without -ffast-math:
// every float32 operation of the column test is the reference's, in the same order, so the
// column decisions are bitwise the same.
//
// Speed-up: a face is tested only against the integer columns inside its bounding box grown by
// kMarginPerLength * L (L = the largest edge-vector component in the column plane), not against
// all R x R columns. This never drops a hit. Rounding analysis of the test (u = 2^-24): for a
// column that passes, the computed t1, t2 lie in [0, 1] and differ from the exact barycentric
// coordinates of the (rounded) column offset by at most
//     eta <= u (3.03 + 6.06 G) / (1 - u (1 + 4.04 G)),   G = L^2 / |det|,
// so the column lies within L (2 eta + 5.1 u) of the face's bounding box. With G <= 1000 that is
// below 7.3e-4 L, inside the margin 2e-3 L. Faces with G > kMaxConditioning (nearly edge-on to
// the columns, where the computed t can be far off) or a tiny |det| are tested against every
// column. Coordinates are bounded (|v| <= 1e6, checked in Python), so nothing overflows.
//
// Fill: a depth-first search of the empty cells 6-connected to an empty border cell, the fixed
// point that SoftRas's repeated voxelize_sub4 launches reach.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Coordinate order the kernel sees for the columns of each axis: (column "y", column "x", depth).
constexpr int kAxisOrder[3][3] = {{2, 1, 0}, {0, 2, 1}, {0, 1, 2}};
constexpr double kMaxConditioning = 1000.0;
constexpr double kMarginPerLength = 2e-3;
constexpr double kMinAbsDet = 1e-30;

// Integer columns in [lo, hi] (clamped to [0, r - 1]; empty when lo > hi) that a face whose
// corners have column coordinates a, b, c can hit, with a margin.
inline void candidate_range(float a, float b, float c, double margin, int r, int* lo, int* hi) {
  const double mn = std::max(std::min({double(a), double(b), double(c)}) - margin, 0.0);
  const double mx = std::min(std::max({double(a), double(b), double(c)}) + margin, double(r - 1));
  *lo = static_cast<int>(std::ceil(mn));
  *hi = static_cast<int>(std::floor(mx));
}

// voxelize_sub1_kernel for one mesh and one axis: marks the surface cells its columns hit.
void sweep_axis(const float* p, const int64_t* faces, int64_t nf, int axis, int r, bool* cells) {
  const int* ord = kAxisOrder[axis];
  const int64_t our_stride[3] = {int64_t(r) * r, r, 1};
  const int64_t sy = our_stride[ord[0]], sx = our_stride[ord[1]], sz = our_stride[ord[2]];
  for (int64_t f = 0; f < nf; ++f) {
    const float* A = p + 3 * faces[3 * f];
    const float* B = p + 3 * faces[3 * f + 1];
    const float* C = p + 3 * faces[3 * f + 2];
    const float ay = A[ord[0]], ax = A[ord[1]], az = A[ord[2]];
    const float y1d = B[ord[0]] - ay, x1d = B[ord[1]] - ax, z1d = B[ord[2]] - az;
    const float y2d = C[ord[0]] - ay, x2d = C[ord[1]] - ax, z2d = C[ord[2]] - az;
    const float det = x1d * y2d - x2d * y1d;
    if (det == 0) continue;
    int ylo = 0, yhi = r - 1, xlo = 0, xhi = r - 1;
    const double len = std::max({std::fabs(double(y1d)), std::fabs(double(x1d)), std::fabs(double(y2d)),
                                 std::fabs(double(x2d))});
    const double abs_det = std::fabs(double(det));
    if (abs_det >= kMinAbsDet && len * len <= kMaxConditioning * abs_det) {
      const double margin = kMarginPerLength * len;
      candidate_range(ay, B[ord[0]], C[ord[0]], margin, r, &ylo, &yhi);
      candidate_range(ax, B[ord[1]], C[ord[1]], margin, r, &xlo, &xhi);
    }
    for (int y = ylo; y <= yhi; ++y) {
      const float ypd = float(y) - ay;
      for (int x = xlo; x <= xhi; ++x) {
        const float xpd = float(x) - ax;
        const float t1 = (y2d * xpd - x2d * ypd) / det;
        const float t2 = (-y1d * xpd + x1d * ypd) / det;
        if (t1 < 0) continue;
        if (t2 < 0) continue;
        if (1 < t1 + t2) continue;
        const float depth = std::floor(t1 * z1d + t2 * z2d + az);
        if (!(depth >= 0 && depth < float(r))) continue;
        const int64_t z = int64_t(depth) * sz;
        // A column at integer (y, x) touches the cells (y or y - 1, x or x - 1).
        for (int dy = 0; dy < 2; ++dy) {
          for (int dx = 0; dx < 2; ++dx) {
            const int yi = y - dy, xi = x - dx;
            if (yi >= 0 && xi >= 0) cells[yi * sy + xi * sx + z] = true;
          }
        }
      }
    }
  }
}

// voxelize_sub2_kernel: the cell of every face corner.
void mark_corners(const float* p, const int64_t* faces, int64_t nf, int r, bool* cells) {
  for (int64_t n = 0; n < 3 * nf; ++n) {
    const float* v = p + 3 * faces[n];
    const float i = std::floor(v[0]), j = std::floor(v[1]), k = std::floor(v[2]);
    if (i >= 0 && i < float(r) && j >= 0 && j < float(r) && k >= 0 && k < float(r)) {
      cells[(int64_t(i) * r + int64_t(j)) * r + int64_t(k)] = true;
    }
  }
}

// voxelize_sub3/sub4: cells = surface in, occupancy (not reachable from the border) out.
// Works on a copy padded by one wall layer, so the search needs no bounds checks.
void fill_enclosed(bool* cells, int r, std::vector<uint8_t>& state, std::vector<int32_t>& stack) {
  enum : uint8_t { kEmpty = 0, kWall = 1, kOutside = 2 };
  const int32_t p = r + 2, pp = p * p;
  state.assign(size_t(pp) * p, kWall);
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < r; ++j) {
      const bool* row = cells + (int64_t(i) * r + j) * r;
      uint8_t* dst = state.data() + (i + 1) * pp + (j + 1) * p + 1;
      for (int k = 0; k < r; ++k) dst[k] = row[k] ? kWall : kEmpty;
    }
  stack.clear();
  auto visit = [&](int32_t m) {
    if (state[m] == kEmpty) {
      state[m] = kOutside;
      stack.push_back(m);
    }
  };
  // Seeds: the empty cells on the six faces of the grid.
  for (int a = 1; a <= r; ++a)
    for (int b = 1; b <= r; ++b) {
      visit(1 * pp + a * p + b);
      visit(r * pp + a * p + b);
      visit(a * pp + 1 * p + b);
      visit(a * pp + r * p + b);
      visit(a * pp + b * p + 1);
      visit(a * pp + b * p + r);
    }
  while (!stack.empty()) {
    const int32_t m = stack.back();
    stack.pop_back();
    visit(m - pp);
    visit(m + pp);
    visit(m - p);
    visit(m + p);
    visit(m - 1);
    visit(m + 1);
  }
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < r; ++j) {
      bool* row = cells + (int64_t(i) * r + j) * r;
      const uint8_t* src = state.data() + (i + 1) * pp + (j + 1) * p + 1;
      for (int k = 0; k < r; ++k) row[k] = src[k] != kOutside;
    }
}

// coords: (B, V, 3) float32 grid coordinates; faces: (F, 3) int64 -> (B, R, R, R) bool.
torch::Tensor voxelize(const torch::Tensor& coords, const torch::Tensor& faces, int64_t resolution) {
  TORCH_CHECK(coords.device().is_cpu() && faces.device().is_cpu(), "voxelize: CPU tensors expected");
  TORCH_CHECK(coords.dim() == 3 && coords.size(2) == 3 && coords.scalar_type() == torch::kFloat32 &&
                  coords.is_contiguous(), "voxelize: coords must be contiguous float32 (B, V, 3)");
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3 && faces.scalar_type() == torch::kInt64 &&
                  faces.is_contiguous(), "voxelize: faces must be contiguous int64 (F, 3)");
  TORCH_CHECK(resolution >= 2 && resolution <= 1000, "voxelize: resolution must be in [2, 1000]");
  const int64_t batch = coords.size(0), nv = coords.size(1), nf = faces.size(0);
  const int r = static_cast<int>(resolution);
  const int64_t* fp = faces.data_ptr<int64_t>();
  for (int64_t n = 0; n < 3 * nf; ++n) {
    TORCH_CHECK(fp[n] >= 0 && fp[n] < nv, "voxelize: face index out of range");
  }
  auto out = torch::zeros({batch, r, r, r}, torch::kBool);
  const float* pp = coords.data_ptr<float>();
  bool* op = out.data_ptr<bool>();
  const int64_t cells_per_mesh = int64_t(r) * r * r;
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> state;
    std::vector<int32_t> stack;
    for (int64_t b = begin; b < end; ++b) {
      const float* p = pp + b * nv * 3;
      bool* cells = op + b * cells_per_mesh;
      for (int axis = 0; axis < 3; ++axis) sweep_axis(p, fp, nf, axis, r, cells);
      mark_corners(p, fp, nf, r, cells);
      fill_enclosed(cells, r, state, stack);
    }
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "SoftRas 3D-IoU voxelization (see recon/protocols/softras_voxel.py)";
  m.def("voxelize", &voxelize, "(coords (B,V,3) float32 grid coordinates, faces (F,3) int64, resolution) -> "
        "(B,R,R,R) bool occupancy", py::arg("coords"), py::arg("faces"), py::arg("resolution"));
}
