#include "engine/models/longsana_dit/dit_config.h"

#include "engine/common/str_util.h"
#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"

namespace longsana::engine {

absl::StatusOr<DitConfig> DitConfig::FromJson(const nlohmann::json& json,
                                              const std::string& source) {
  JsonFields f(source, json);
  DitConfig c;
  LONGSANA_RETURN_IF_ERROR(f.Optional("_class_name", &c.class_name));
  LONGSANA_RETURN_IF_ERROR(f.Required("in_channels", &c.in_channels));
  LONGSANA_RETURN_IF_ERROR(f.Required("out_channels", &c.out_channels));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_attention_heads", &c.num_attention_heads));
  LONGSANA_RETURN_IF_ERROR(f.Required("attention_head_dim", &c.attention_head_dim));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_layers", &c.num_layers));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_cross_attention_heads", &c.num_cross_attention_heads));
  LONGSANA_RETURN_IF_ERROR(f.Required("cross_attention_head_dim", &c.cross_attention_head_dim));
  LONGSANA_RETURN_IF_ERROR(f.Required("cross_attention_dim", &c.cross_attention_dim));
  LONGSANA_RETURN_IF_ERROR(f.Required("caption_channels", &c.caption_channels));
  LONGSANA_RETURN_IF_ERROR(f.Required("mlp_ratio", &c.mlp_ratio));
  LONGSANA_RETURN_IF_ERROR(f.Required("patch_size", &c.patch_size));
  LONGSANA_RETURN_IF_ERROR(f.Optional("norm_eps", &c.norm_eps));
  LONGSANA_RETURN_IF_ERROR(f.Optional("norm_elementwise_affine", &c.norm_elementwise_affine));
  LONGSANA_RETURN_IF_ERROR(f.Optional("attention_bias", &c.attention_bias));
  LONGSANA_RETURN_IF_ERROR(f.Optional("qk_norm", &c.qk_norm));
  LONGSANA_RETURN_IF_ERROR(f.Optional("rope_max_seq_len", &c.rope_max_seq_len));
  LONGSANA_RETURN_IF_ERROR(f.Optional("guidance_embeds", &c.guidance_embeds));
  LONGSANA_RETURN_IF_ERROR(f.Optional("sample_size", &c.sample_size));
  return Validated(std::move(c), source);
}

absl::StatusOr<DitConfig> DitConfig::FromFile(const std::string& path) {
  return ConfigFromFile<DitConfig>(path);
}

absl::Status DitConfig::Validate() const {
  auto bad = [](std::string_view field, std::string_view what) {
    return absl::InvalidArgumentError(StrCat("field '", field, "': ", what));
  };
  constexpr int64_t kMaxDim = 1 << 20;
  auto positive = [&](std::string_view field, int64_t v) -> absl::Status {
    if (v <= 0 || v > kMaxDim) return bad(field, StrCat("must be in [1, ", kMaxDim, "], got ", v));
    return absl::OkStatus();
  };
  LONGSANA_RETURN_IF_ERROR(positive("in_channels", in_channels));
  LONGSANA_RETURN_IF_ERROR(positive("out_channels", out_channels));
  LONGSANA_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  LONGSANA_RETURN_IF_ERROR(positive("attention_head_dim", attention_head_dim));
  LONGSANA_RETURN_IF_ERROR(positive("num_layers", num_layers));
  LONGSANA_RETURN_IF_ERROR(positive("num_cross_attention_heads", num_cross_attention_heads));
  LONGSANA_RETURN_IF_ERROR(positive("cross_attention_head_dim", cross_attention_head_dim));
  LONGSANA_RETURN_IF_ERROR(positive("cross_attention_dim", cross_attention_dim));
  LONGSANA_RETURN_IF_ERROR(positive("caption_channels", caption_channels));
  LONGSANA_RETURN_IF_ERROR(positive("rope_max_seq_len", rope_max_seq_len));
  if (hidden_size() > kMaxDim) return bad("num_attention_heads", "hidden size too large");
  if (!(mlp_ratio > 0.0 && mlp_ratio <= 64.0) || ffn_hidden() <= 0) {
    return bad("mlp_ratio", StrCat("must be in (0, 64], got ", mlp_ratio));
  }
  if (patch_size.size() != 3) {
    return bad("patch_size", StrCat("expected 3 entries (t, h, w), got ", patch_size.size()));
  }
  if (patch_size[0] != 1) {
    return bad("patch_size", "a temporal patch size other than 1 is not supported");
  }
  for (int64_t p : patch_size) {
    if (p <= 0 || p > 16) return bad("patch_size", "entries must be in [1, 16]");
  }
  if (num_cross_attention_heads * cross_attention_head_dim != hidden_size()) {
    return bad("num_cross_attention_heads",
               StrCat("num_cross_attention_heads x cross_attention_head_dim (",
                            num_cross_attention_heads * cross_attention_head_dim,
                            ") must equal the hidden size ", hidden_size()));
  }
  if (cross_attention_dim != hidden_size()) {
    return bad("cross_attention_dim", StrCat("must equal the hidden size ", hidden_size(),
                                                   ", got ", cross_attention_dim));
  }
  if (attention_head_dim < 6 || attention_head_dim % 2 != 0) {
    return bad("attention_head_dim", "must be even and at least 6 (3-D RoPE pairs)");
  }
  if (qk_norm != "rms_norm_across_heads") {
    return bad("qk_norm", StrCat("only 'rms_norm_across_heads' is supported, got '",
                                       qk_norm, "'"));
  }
  if (attention_bias) return bad("attention_bias", "self-attention biases are not supported");
  if (norm_elementwise_affine) {
    return bad("norm_elementwise_affine", "affine block LayerNorms are not supported");
  }
  if (guidance_embeds) return bad("guidance_embeds", "guidance embedding is not supported");
  if (!(norm_eps > 0.0)) return bad("norm_eps", "must be positive");
  return absl::OkStatus();
}

}  // namespace longsana::engine
