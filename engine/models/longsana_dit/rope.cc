#include "engine/models/longsana_dit/rope.h"

namespace longsana::engine {
namespace {

// get_1d_rotary_pos_embed(dim, max_seq_len, theta) in float64: angle[p, j] = p / theta^(2j/dim).
at::Tensor AxisAngles(int64_t dim, int64_t max_seq_len, double theta) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor exponents = at::arange(0, dim, 2, f64).slice(0, 0, dim / 2) / static_cast<double>(dim);
  at::Tensor inv_freq = at::reciprocal(at::pow(theta, exponents));
  at::Tensor positions = at::arange(max_seq_len, f64);
  return at::outer(positions, inv_freq);  // [max_seq_len, dim/2]
}

}  // namespace

Rope3d::Rope3d(int64_t head_dim, int64_t max_seq_len, double theta, const at::Device& device)
    : head_dim_(head_dim), max_seq_len_(max_seq_len) {
  const int64_t h_dim = 2 * (head_dim / 6);
  const int64_t w_dim = h_dim;
  const int64_t t_dim = head_dim - h_dim - w_dim;
  t_angles_ = AxisAngles(t_dim, max_seq_len, theta).to(device);
  h_angles_ = AxisAngles(h_dim, max_seq_len, theta).to(device);
  w_angles_ = AxisAngles(w_dim, max_seq_len, theta).to(device);
}

std::pair<at::Tensor, at::Tensor> Rope3d::Table(int64_t frame_offset, int64_t frames, int64_t h,
                                                int64_t w) const {
  TORCH_CHECK(frame_offset >= 0 && frame_offset + frames <= max_seq_len_,
              "RoPE: latent frames [", frame_offset, ", ", frame_offset + frames,
              ") exceed rope_max_seq_len ", max_seq_len_);
  TORCH_CHECK(h <= max_seq_len_ && w <= max_seq_len_, "RoPE: grid ", h, "x", w,
              " exceeds rope_max_seq_len ", max_seq_len_);
  const int64_t tp = t_angles_.size(1), hp = h_angles_.size(1), wp = w_angles_.size(1);
  // [F, 1, 1, tp], [1, h, 1, hp], [1, 1, w, wp] broadcast to [F, h, w, *] and concatenated.
  at::Tensor t = t_angles_.slice(0, frame_offset, frame_offset + frames).view({frames, 1, 1, tp});
  at::Tensor r = h_angles_.slice(0, 0, h).view({1, h, 1, hp});
  at::Tensor c = w_angles_.slice(0, 0, w).view({1, 1, w, wp});
  at::Tensor angles = at::cat({t.expand({frames, h, w, tp}), r.expand({frames, h, w, hp}),
                               c.expand({frames, h, w, wp})},
                              /*dim=*/3)
                          .reshape({frames * h * w, tp + hp + wp});
  return {at::cos(angles), at::sin(angles)};
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const auto sizes = x.sizes();  // [B, N, H, d]
  TORCH_CHECK(x.dim() == 4 && sizes[3] % 2 == 0, "ApplyRope expects [B, N, H, d], got ", sizes);
  at::Tensor xp = x.to(cos.scalar_type()).view({sizes[0], sizes[1], sizes[2], sizes[3] / 2, 2});
  at::Tensor x0 = xp.select(4, 0), x1 = xp.select(4, 1);  // [B, N, H, d/2]
  at::Tensor c = cos.unsqueeze(2), s = sin.unsqueeze(2);   // [B, N, 1, d/2]
  at::Tensor out = at::stack({x0 * c - x1 * s, x0 * s + x1 * c}, /*dim=*/4);  // [B,N,H,d/2,2]
  return out.view(sizes).to(x.scalar_type());
}

}  // namespace longsana::engine
