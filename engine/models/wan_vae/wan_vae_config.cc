#include "engine/models/wan_vae/wan_vae_config.h"

#include <cmath>

#include "engine/common/str_util.h"
#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"

namespace longsana::engine {

std::vector<int64_t> WanVaeConfig::decoder_dims() const {
  std::vector<int64_t> dims;
  if (dim_mult.empty()) return dims;
  dims.push_back(base_dim * dim_mult.back());
  for (auto it = dim_mult.rbegin(); it != dim_mult.rend(); ++it) dims.push_back(base_dim * *it);
  return dims;
}

std::vector<bool> WanVaeConfig::temperal_upsample() const {
  return std::vector<bool>(temperal_downsample.rbegin(), temperal_downsample.rend());
}

int64_t WanVaeConfig::temporal_stride() const {
  int64_t s = 1;
  for (bool t : temperal_downsample) s *= t ? 2 : 1;
  return s;
}

int64_t WanVaeConfig::spatial_stride() const {
  return dim_mult.empty() ? 1 : int64_t{1} << (dim_mult.size() - 1);
}

absl::StatusOr<WanVaeConfig> WanVaeConfig::FromJson(const nlohmann::json& json,
                                                    const std::string& source) {
  JsonFields f(source, json);
  WanVaeConfig c;
  LONGSANA_RETURN_IF_ERROR(f.Optional("_class_name", &c.class_name));
  LONGSANA_RETURN_IF_ERROR(f.Required("base_dim", &c.base_dim));
  LONGSANA_RETURN_IF_ERROR(f.Required("z_dim", &c.z_dim));
  LONGSANA_RETURN_IF_ERROR(f.Required("dim_mult", &c.dim_mult));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_res_blocks", &c.num_res_blocks));
  LONGSANA_RETURN_IF_ERROR(f.Optional("attn_scales", &c.attn_scales));
  LONGSANA_RETURN_IF_ERROR(f.Required("temperal_downsample", &c.temperal_downsample));
  LONGSANA_RETURN_IF_ERROR(f.Required("latents_mean", &c.latents_mean));
  LONGSANA_RETURN_IF_ERROR(f.Required("latents_std", &c.latents_std));
  LONGSANA_RETURN_IF_ERROR(f.Optional("dropout", &c.dropout));
  return Validated(std::move(c), source);
}

absl::StatusOr<WanVaeConfig> WanVaeConfig::FromFile(const std::string& path) {
  return ConfigFromFile<WanVaeConfig>(path);
}

absl::Status WanVaeConfig::Validate() const {
  auto bad = [](std::string_view field, std::string_view what) {
    return absl::InvalidArgumentError(StrCat("field '", field, "': ", what));
  };
  if (base_dim <= 0 || base_dim > 4096) return bad("base_dim", "must be in [1, 4096]");
  if (z_dim <= 0 || z_dim > 1024) return bad("z_dim", "must be in [1, 1024]");
  if (dim_mult.size() < 2 || dim_mult.size() > 8) {
    return bad("dim_mult", StrCat("expected 2 to 8 entries, got ", dim_mult.size()));
  }
  for (int64_t m : dim_mult) {
    if (m <= 0 || m > 64) return bad("dim_mult", "entries must be in [1, 64]");
  }
  for (int64_t d : decoder_dims()) {
    if (d % 2 != 0) return bad("base_dim", "every decoder stage needs an even channel count");
  }
  if (num_res_blocks < 0 || num_res_blocks > 16) return bad("num_res_blocks", "must be in [0, 16]");
  if (!attn_scales.empty()) {
    return bad("attn_scales", "per-scale attention blocks are not supported (Wan2.1 uses [])");
  }
  if (temperal_downsample.size() != dim_mult.size() - 1) {
    return bad("temperal_downsample",
               StrCat("expected ", dim_mult.size() - 1, " entries (one per downsample), got ",
                            temperal_downsample.size()));
  }
  if (latents_mean.size() != static_cast<size_t>(z_dim)) {
    return bad("latents_mean", StrCat("expected z_dim = ", z_dim, " values, got ",
                                            latents_mean.size()));
  }
  if (latents_std.size() != static_cast<size_t>(z_dim)) {
    return bad("latents_std", StrCat("expected z_dim = ", z_dim, " values, got ",
                                           latents_std.size()));
  }
  for (double s : latents_std) {
    if (!(s > 0.0) || !std::isfinite(s)) return bad("latents_std", "values must be positive");
  }
  for (double m : latents_mean) {
    if (!std::isfinite(m)) return bad("latents_mean", "values must be finite");
  }
  return absl::OkStatus();
}

}  // namespace longsana::engine
