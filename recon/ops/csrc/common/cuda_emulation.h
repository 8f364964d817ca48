// A minimal CUDA execution model on CPU threads, for tests only: softras_cuda.cu compiled as plain
// C++ with RECON_CUDA_EMULATION (softras_cuda_emu.cpp) runs its kernels through ::cuda_emulation::run
// (blocks one after another, the threads of a block concurrently, __syncthreads a barrier, atomicAdd
// an atomic read-modify-write, __shared__ memory shared by the block). It checks the kernels' logic
// and host code on machines without a GPU; speed and GPU rounding are for the GPU check.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time, so a static is the block's shared memory

struct int4 {
  int x, y, z, w;
};
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}
template <typename T>
inline T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

namespace cuda_emulation {

struct Index {
  unsigned int x = 0, y = 0, z = 0;
};

inline thread_local Index thread_idx;
inline Index block_idx, block_dim;
inline std::barrier<>* block_barrier = nullptr;

inline std::vector<unsigned char>& shared_buffer() {
  static std::vector<unsigned char> buffer;
  return buffer;
}

// The block's dynamic shared memory (extern __shared__), zero-filled per launch.
inline unsigned char* dynamic_shared() { return shared_buffer().data(); }

// Runs `body` once per (block, thread) of a launch of `blocks` x `threads`.
inline void run(int64_t blocks, int threads, size_t shared_bytes, const std::function<void()>& body) {
  shared_buffer().assign(std::max<size_t>(shared_bytes, 16), 0);
  block_dim = Index{(unsigned int)threads, 1, 1};
  for (int64_t b = 0; b < blocks; ++b) {
    block_idx = Index{(unsigned int)b, 0, 0};
    std::barrier<> barrier(threads);
    block_barrier = &barrier;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&barrier, &body, t] {
        thread_idx = Index{(unsigned int)t, 0, 0};
        body();
        barrier.arrive_and_drop();  // a finished thread no longer holds the others at __syncthreads
      });
    }
    for (std::thread& th : pool) th.join();
  }
  block_barrier = nullptr;
}

}  // namespace cuda_emulation

#define threadIdx (::cuda_emulation::thread_idx)
#define blockIdx (::cuda_emulation::block_idx)
#define blockDim (::cuda_emulation::block_dim)

inline void __syncthreads() { ::cuda_emulation::block_barrier->arrive_and_wait(); }
