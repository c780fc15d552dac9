// 3-D rotary position embedding of the LongSANA self-attention (model.md §6): Wan-style
// split of a head into temporal / height / width frequency pairs, interleaved pairing, and
// ABSOLUTE temporal positions (a block starting at latent frame f0 uses positions f0, f0+1, ...).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

namespace longsana::engine {

class Rope3d {
 public:
  // Precomputes the float64 angle tables for positions 0 .. max_seq_len-1 of each axis (on
  // the CPU, once) and keeps them on `device`.
  Rope3d(int64_t head_dim, int64_t max_seq_len, double theta, const at::Device& device = at::kCPU);

  // cos and sin, each [frames*h*w, head_dim/2] float64 on the tables' device, for a block
  // whose first latent frame is `frame_offset`; computed there, so a forward copies nothing
  // from the host. Token index = f*h*w + row*w + col. Throws c10::Error when a position
  // exceeds max_seq_len.
  std::pair<at::Tensor, at::Tensor> Table(int64_t frame_offset, int64_t frames, int64_t h,
                                          int64_t w) const;

  int64_t head_dim() const { return head_dim_; }

 private:
  int64_t head_dim_;
  int64_t max_seq_len_;
  at::Tensor t_angles_;  // [max_seq_len, t_dim/2] float64
  at::Tensor h_angles_;  // [max_seq_len, h_dim/2]
  at::Tensor w_angles_;  // [max_seq_len, w_dim/2]
};

// Rotates interleaved pairs (2i, 2i+1) of x [B, N, H, d] by the angles whose cos/sin are
// [B, N, d/2] (broadcast over heads). The arithmetic runs in cos.scalar_type() (float64
// reproduces the reference's complex128 rotation bit for bit in fp32) and the result is
// cast back to x's dtype.
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace longsana::engine
