#include "engine/models/longsana_dit/dit_flops.h"

#include <cmath>

namespace longsana::engine {

DitFlops CountDitForwardFlops(const DitConfig& c, int64_t latent_frames, int64_t latent_h,
                              int64_t latent_w, int64_t caption_len) {
  const auto& p = c.patch_size;
  const double n = static_cast<double>(latent_frames / p[0]) *
                   static_cast<double>(latent_h / p[1]) *
                   static_cast<double>(latent_w / p[2]);  // video tokens
  const double l = static_cast<double>(caption_len);
  const double d = static_cast<double>(c.num_attention_heads * c.attention_head_dim);  // D
  const double head = static_cast<double>(c.attention_head_dim);
  const double cross =
      static_cast<double>(c.num_cross_attention_heads * c.cross_attention_head_dim);
  const double hidden = std::floor(c.mlp_ratio * d);  // the FFN's hidden width (6720)
  const double layers = static_cast<double>(c.num_layers);
  const double patch = static_cast<double>(c.in_channels * p[0] * p[1] * p[2]);
  const double out = static_cast<double>(c.out_channels * p[0] * p[1] * p[2]);

  DitFlops f;
  f.patch_embed = 2 * n * patch * d;
  // Timestep: sinusoid 256 -> D -> D, then t_block D -> 6D; caption: Cc -> D -> D per token.
  f.conditioning = 2 * (256 * d + d * d + d * 6 * d) +
                   2 * l * (static_cast<double>(c.caption_channels) * d + d * d);
  f.self_attn = layers * (2 * n * d * 3 * d + 2 * n * d * d);
  // Per head: S_cur (d x d from N tokens), S q for every token, and the normaliser z^T phi(q).
  f.linear_attn = layers * (2 * n * d * head + 2 * n * d * head + 2 * n * d);
  f.cross_attn = layers * (2 * n * d * cross + 2 * l * d * 2 * cross  // q; k and v
                           + 2 * n * l * cross * 2                    // q k^T and p v
                           + 2 * n * cross * d);                      // output projection
  f.ffn = layers * (2 * n * d * 2 * hidden                            // inverted conv, GLU-doubled
                    + 2 * n * 2 * hidden * 9                          // depthwise 3x3
                    + 2 * n * hidden * d                              // point conv
                    + 2 * n * d * d * 3);                             // temporal conv, 3 taps
  f.final_layer = 2 * n * d * out;
  return f;
}

}  // namespace longsana::engine
