// CUDA soft rasterizer, tiled: faces are binned into kTile x kTile pixel tiles by their cutoff
// windows (bin_faces, softras_tiles.h), so each pixel only visits the faces whose window can reach
// its tile and the work is proportional to the pixel-face pairs that matter.
//
// forward: one block per (batch item, tile), one thread per pixel. The tile's faces are staged in
//   shared memory in chunks; every pixel sums log(1 - D) over them in ascending face order (the
//   order of the CPU kernel and the reference), so the forward is deterministic.
// backward: one block per (batch item, tile); each thread takes (face, tile) entries and walks the
//   face's window inside the tile in row-major order, accumulating the face's six x/y vertex
//   gradients. Then either
//   * atomic: atomicAdd them onto grad_verts (order of float additions varies run to run), or
//   * deterministic: write them per entry, sum each face's entries in tile order, then each
//     vertex's faces in ascending (face, corner) order: no float atomics, bitwise reproducible.
// Same per-pair maths as the CPU kernel (softras_math.h).
//
// With RECON_CUDA_EMULATION defined (tests only, see softras_cuda_emu.cpp) this file compiles as
// plain C++ and runs every kernel on CPU threads, one block at a time, so the kernels and their host
// code are executed and checked against the torch reference on machines without a GPU.
#include "softras.h"
#include "cuda_common.cuh"
#include "softras_math.h"
#include "softras_tiles.h"

namespace recon_softras {
namespace {

constexpr int kPixelsPerTile = kTile * kTile;
constexpr int kBackwardThreads = 128;

// Pixel rectangle of tile `t` (row-major tiles, `side` per row), clipped to the image.
struct TileRect {
  int c0, c1, r0, r1;
};

__device__ __forceinline__ TileRect tile_rect(int64_t t, int side, int S) {
  const int ty = (int)(t / side), tx = (int)(t % side);
  const int c0 = tx * kTile, r0 = ty * kTile;
  return TileRect{c0, min(c0 + kTile, S) - 1, r0, min(r0 + kTile, S) - 1};
}

template <typename T>
__global__ void __launch_bounds__(kPixelsPerTile)
    forward_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces, const int4* __restrict__ windows,
                   const int64_t* __restrict__ tile_offsets, const int32_t* __restrict__ tile_faces, int64_t V,
                   int64_t F, int S, int side, T inv_sigma, T cut, T* __restrict__ log_sum, T* __restrict__ sil) {
  SR_DYNAMIC_SHARED(smem);
  Face<T>* face_s = reinterpret_cast<Face<T>*>(smem);
  const int64_t tiles = (int64_t)side * side;
  const int64_t b = blockIdx.x / tiles, t = blockIdx.x % tiles;
  const TileRect rect = tile_rect(t, side, S);
  const int c = rect.c0 + (int)(threadIdx.x % kTile), r = rect.r0 + (int)(threadIdx.x / kTile);
  const bool live = c <= rect.c1 && r <= rect.r1;
  const T px = pixel_x<T>(c, S), py = pixel_y<T>(r, S);
  const T* vb = verts + b * V * 3;
  const int64_t begin = tile_offsets[blockIdx.x], end = tile_offsets[blockIdx.x + 1];
  T acc = T(0);
  for (int64_t chunk = begin; chunk < end; chunk += kPixelsPerTile) {
    const int n = (int)min((int64_t)kPixelsPerTile, end - chunk);
    if ((int)threadIdx.x < n) {
      const int64_t f = tile_faces[chunk + threadIdx.x];
      Face<T> face = load_face(vb, faces + 3 * f);
      const int4 w = windows[b * F + f];
      face.win = Window{w.x, w.y, w.z, w.w};
      face_s[threadIdx.x] = face;
    }
    __syncthreads();
    if (live) {
      for (int k = 0; k < n; ++k) {
        const Face<T>& face = face_s[k];
        if (c < face.win.c0 || c > face.win.c1 || r < face.win.r0 || r > face.win.r1) continue;
        const Pair<T> p = eval_pair(face, px, py);
        if (p.inside || p.d2 < cut) acc += log_sigmoid(log_not_arg(p, inv_sigma));
      }
    }
    __syncthreads();
  }
  if (live) {
    const int64_t i = b * S * S + (int64_t)r * S + c;
    log_sum[i] = acc;
    sil[i] = -sr_expm1(acc);
  }
}

// Gradient of one (face, tile) entry: d/d(x, y) of the face's three vertices, summed over the
// face's window pixels inside the tile (row-major), from the tile's dLoss/dlog_sum in `glog_s`.
template <typename T>
__device__ void entry_gradient(const Face<T>& face, const Window& w, const TileRect& rect, const T* glog_s, int S,
                               T inv_sigma, T cut, T g[6]) {
  for (int k = 0; k < 6; ++k) g[k] = T(0);
  const int c0 = max(w.c0, rect.c0), c1 = min(w.c1, rect.c1), r0 = max(w.r0, rect.r0), r1 = min(w.r1, rect.r1);
  for (int r = r0; r <= r1; ++r) {
    const T py = pixel_y<T>(r, S);
    for (int c = c0; c <= c1; ++c) {
      const T glog = glog_s[(r - rect.r0) * kTile + (c - rect.c0)];
      if (glog == T(0)) continue;  // e.g. covered pixels where exp(log_sum) underflows
      const T px = pixel_x<T>(c, S);
      const Pair<T> p = eval_pair(face, px, py);
      if (!(p.inside || p.d2 < cut)) continue;
      // log(1 - D) = logsigmoid(a d^2), a = -sign / sigma; d logsigmoid(x) / dx = sigmoid(-x).
      const T a = p.inside ? -inv_sigma : inv_sigma;
      const T coef = glog * sigmoid(-a * p.d2) * a;  // dLoss / d(d^2)
      // d^2 = |p - q|^2, q = A + t (B - A): d/dA = -2 (1 - t) (p - q), d/dB = -2 t (p - q).
      const int e = p.edge, e1 = e == 2 ? 0 : e + 1;
      const T dx = (px - face.ax[e]) - p.t * face.ex[e];
      const T dy = (py - face.ay[e]) - p.t * face.ey[e];
      const T wa = T(-2) * coef * (T(1) - p.t), wb = T(-2) * coef * p.t;
      g[2 * e] += wa * dx;
      g[2 * e + 1] += wa * dy;
      g[2 * e1] += wb * dx;
      g[2 * e1 + 1] += wb * dy;
    }
  }
}

// DETERMINISTIC: entry_grad (P, 6) in tile_faces order; otherwise atomicAdd into grad_verts.
template <typename T, bool DETERMINISTIC>
__global__ void __launch_bounds__(kBackwardThreads)
    backward_tiles_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                          const int4* __restrict__ windows, const int64_t* __restrict__ tile_offsets,
                          const int32_t* __restrict__ tile_faces, const T* __restrict__ grad_log, int64_t V,
                          int64_t F, int S, int side, T inv_sigma, T cut, T* __restrict__ entry_grad,
                          T* __restrict__ grad_verts) {
  __shared__ T glog_s[kPixelsPerTile];
  const int64_t tiles = (int64_t)side * side;
  const int64_t b = blockIdx.x / tiles, t = blockIdx.x % tiles;
  const int64_t begin = tile_offsets[blockIdx.x], end = tile_offsets[blockIdx.x + 1];
  if (begin == end) return;
  const TileRect rect = tile_rect(t, side, S);
  for (int i = threadIdx.x; i < kPixelsPerTile; i += blockDim.x) {
    const int c = rect.c0 + i % kTile, r = rect.r0 + i / kTile;
    glog_s[i] = (c <= rect.c1 && r <= rect.r1) ? grad_log[b * S * S + (int64_t)r * S + c] : T(0);
  }
  __syncthreads();
  const T* vb = verts + b * V * 3;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t f = tile_faces[e];
    const int64_t* idx = faces + 3 * f;
    const Face<T> face = load_face(vb, idx);
    const int4 w4 = windows[b * F + f];
    T g[6];
    entry_gradient(face, Window{w4.x, w4.y, w4.z, w4.w}, rect, glog_s, S, inv_sigma, cut, g);
    if (DETERMINISTIC) {
      for (int k = 0; k < 6; ++k) entry_grad[6 * e + k] = g[k];
    } else {
      T* gv = grad_verts + b * V * 3;
      for (int k = 0; k < 3; ++k) {
        if (g[2 * k] != T(0)) atomicAdd(gv + 3 * idx[k], g[2 * k]);
        if (g[2 * k + 1] != T(0)) atomicAdd(gv + 3 * idx[k] + 1, g[2 * k + 1]);
      }
    }
  }
}

// face_grad (B * F, 6): each face's entries summed in tile order (fixed).
template <typename T>
__global__ void reduce_entries_kernel(const T* __restrict__ entry_grad, const int64_t* __restrict__ face_pair_offsets,
                                      const int64_t* __restrict__ pair_slot, int64_t n, T* __restrict__ face_grad) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T g[6] = {T(0), T(0), T(0), T(0), T(0), T(0)};
  for (int64_t j = face_pair_offsets[i]; j < face_pair_offsets[i + 1]; ++j) {
    const T* src = entry_grad + 6 * pair_slot[j];
    for (int k = 0; k < 6; ++k) g[k] += src[k];
  }
  for (int k = 0; k < 6; ++k) face_grad[6 * i + k] = g[k];
}

// grad_verts (B, V, 3): each vertex sums its (face, corner) slots in ascending order (fixed).
template <typename T>
__global__ void reduce_faces_kernel(const T* __restrict__ face_grad, const int64_t* __restrict__ vert_offsets,
                                    const int64_t* __restrict__ vert_corners, int64_t B, int64_t V, int64_t F,
                                    T* __restrict__ grad_verts) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * V) return;
  const int64_t b = i / V, v = i % V;
  T gx = T(0), gy = T(0);
  for (int64_t j = vert_offsets[v]; j < vert_offsets[v + 1]; ++j) {
    const int64_t corner = vert_corners[j];  // 3 * f + k
    const T* src = face_grad + (b * F + corner / 3) * 6 + 2 * (corner % 3);
    gx += src[0];
    gy += src[1];
  }
  grad_verts[3 * i] = gx;
  grad_verts[3 * i + 1] = gy;
  grad_verts[3 * i + 2] = T(0);
}

}  // namespace

at::Tensor face_windows_cuda(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size, double radius) {
  return launch_face_windows(verts, faces, image_size, radius);
}

std::vector<at::Tensor> forward_cuda(const at::Tensor& verts, const at::Tensor& faces, int64_t image_size,
                                     double sigma, double cutoff_sq) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor log_sum = at::empty({B, image_size, image_size}, verts.options());
  at::Tensor sil = at::empty_like(log_sum);
  std::vector<at::Tensor> bins = bin_faces(verts, faces, image_size, cutoff_sq, kTile);
  const int side = tiles_per_side((int)image_size, kTile);
  const int64_t blocks = B * side * side;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "softras: batch x tiles too large for one launch (", blocks, ")");
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_forward_cuda", [&] {
    launch(forward_kernel<scalar_t>, blocks, kPixelsPerTile, kPixelsPerTile * sizeof(Face<scalar_t>),
           verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(),
           as_int4(bins[0]), bins[1].data_ptr<int64_t>(),
           bins[2].data_ptr<int32_t>(), V, F, (int)image_size, side,
           scalar_t(1.0 / sigma), scalar_t(cutoff_sq), log_sum.data_ptr<scalar_t>(), sil.data_ptr<scalar_t>());
  });
  std::vector<at::Tensor> out{sil, log_sum};
  out.insert(out.end(), bins.begin(), bins.end());
  return out;
}

at::Tensor backward_cuda(const at::Tensor& grad_sil, const at::Tensor& verts, const at::Tensor& faces,
                         const at::Tensor& log_sum, int64_t image_size, double sigma, double cutoff_sq,
                         bool deterministic, const std::vector<at::Tensor>& saved_bins) {
  SR_DEVICE_GUARD(verts);
  const int64_t B = verts.size(0), V = verts.size(1), F = faces.size(0);
  at::Tensor grad_verts = at::zeros_like(verts);
  if (log_sum.numel() == 0 || F == 0) return grad_verts;
  const std::vector<at::Tensor> bins =
      saved_bins.empty() ? bin_faces(verts, faces, image_size, cutoff_sq, kTile) : saved_bins;
  TORCH_CHECK(bins.size() == 5, "softras: backward expects the 5 bin tensors returned by forward, got ", bins.size());
  const at::Tensor grad_log = (-grad_sil * at::exp(log_sum)).contiguous();
  const int side = tiles_per_side((int)image_size, kTile);
  const int64_t blocks = B * side * side, P = bins[2].numel();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "softras_backward_cuda", [&] {
    const scalar_t inv_sigma = scalar_t(1.0 / sigma), cut = scalar_t(cutoff_sq);
    const int4* windows = as_int4(bins[0]);
    if (!deterministic) {
      launch(backward_tiles_kernel<scalar_t, false>, blocks, kBackwardThreads, 0, verts.data_ptr<scalar_t>(),
             faces.data_ptr<int64_t>(), windows, bins[1].data_ptr<int64_t>(), bins[2].data_ptr<int32_t>(),
             grad_log.data_ptr<scalar_t>(), V, F, (int)image_size, side, inv_sigma, cut, (scalar_t*)nullptr,
             grad_verts.data_ptr<scalar_t>());
      return;
    }
    at::Tensor entry_grad = at::empty({P, 6}, verts.options());
    at::Tensor face_grad = at::empty({B * F, 6}, verts.options());
    // Vertex -> (face, corner) slots, ascending: a stable sort of the flattened face table.
    const auto by_vertex = at::sort(faces.reshape({-1}), /*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor vert_offsets = at::searchsorted(std::get<0>(by_vertex), at::arange(V + 1, faces.options()));
    const at::Tensor& vert_corners = std::get<1>(by_vertex);
    if (P > 0) {
      launch(backward_tiles_kernel<scalar_t, true>, blocks, kBackwardThreads, 0, verts.data_ptr<scalar_t>(),
             faces.data_ptr<int64_t>(), windows, bins[1].data_ptr<int64_t>(), bins[2].data_ptr<int32_t>(),
             grad_log.data_ptr<scalar_t>(), V, F, (int)image_size, side, inv_sigma, cut,
             entry_grad.data_ptr<scalar_t>(), (scalar_t*)nullptr);
    }
    launch(reduce_entries_kernel<scalar_t>, num_blocks(B * F), kThreads, 0,
           (const scalar_t*)entry_grad.data_ptr<scalar_t>(), bins[3].data_ptr<int64_t>(), bins[4].data_ptr<int64_t>(),
           B * F, face_grad.data_ptr<scalar_t>());
    launch(reduce_faces_kernel<scalar_t>, num_blocks(B * V), kThreads, 0, (const scalar_t*)face_grad.data_ptr<scalar_t>(),
           vert_offsets.data_ptr<int64_t>(), vert_corners.data_ptr<int64_t>(), B, V, F,
           grad_verts.data_ptr<scalar_t>());
  });
  return grad_verts;
}

}  // namespace recon_softras
