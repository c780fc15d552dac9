#include "engine/api/engine.h"

#include <string>

#include "engine/common/request_checks.h"

namespace longsana::engine {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(field + ": " + what);
}

}  // namespace

absl::Status EngineConfig::Validate() const {
  if (model_dir.empty()) return Bad("model_dir", "must name a model directory");
  if (threads < 0 || threads > 1024) return Bad("threads", "must be in [0, 1024]");
  if (max_sessions < 1 || max_sessions > 4096) return Bad("max_sessions", "must be in [1, 4096]");
  if (memory_budget_bytes < 0) return Bad("memory_budget_bytes", "must be >= 0");
  if (queue_size < 0 || queue_size > 1 << 20) return Bad("queue_size", "must be in [0, 1048576]");
  if (max_batch < 1 || max_batch > 256) return Bad("max_batch", "must be in [1, 256]");
  if (max_live_seconds < std::chrono::seconds(1) || max_live_seconds > std::chrono::hours(24)) {
    return Bad("max_live_seconds", "must be in [1 s, 24 h]");
  }
  if (max_num_frames < 1 || (max_num_frames - 1) % 4 != 0) {
    return Bad("max_num_frames", "must be 1 + 4k");
  }
  if (min_dimension < 16 || min_dimension % 16 != 0) {
    return Bad("min_dimension", "must be a multiple of 16, at least 16");
  }
  if (max_dimension < min_dimension || max_dimension % 16 != 0 || max_dimension > 8192) {
    return Bad("max_dimension", "must be a multiple of 16 in [min_dimension, 8192]");
  }
  if ((warmup_width == 0) != (warmup_height == 0)) {
    return Bad(warmup_width == 0 ? "warmup_width" : "warmup_height",
               "give warmup_width and warmup_height together (0 x 0: automatic)");
  }
  for (const auto& [field, value] :
       {std::pair{"warmup_width", warmup_width}, std::pair{"warmup_height", warmup_height}}) {
    if (value != 0 && (value % 16 != 0 || value < min_dimension || value > max_dimension)) {
      return Bad(field,
                 "must be 0 (automatic) or a multiple of 16 in [min_dimension, "
                 "max_dimension]");
    }
  }
  if (caption_len < 2 || caption_len > 4096) return Bad("caption_len", "must be in [2, 4096]");
  if (fps < 1 || fps > 240) return Bad("fps", "must be in [1, 240]");
  if (encoder_threads < 0 || encoder_threads > 64) {
    return Bad("encoder_threads", "must be in [0, 64]");
  }
  if (!(memory_budget_fraction > 0 && memory_budget_fraction <= 1)) {
    return Bad("memory_budget_fraction", "must be in (0, 1]");
  }
  if (media_workers < 0 || media_workers > 256) return Bad("media_workers", "must be in [0, 256]");
  if (stall_timeout.count() < 0) return Bad("stall_timeout", "must be >= 0");
  if (text_queue_size < 1 || text_queue_size > 1 << 16) {
    return Bad("text_queue_size", "must be in [1, 65536]");
  }
  if (max_pending_commands < 1 || max_pending_commands > 4096) {
    return Bad("max_pending_commands", "must be in [1, 4096]");
  }
  if (max_transition_blocks < 0 || max_transition_blocks > 1024) {
    return Bad("max_transition_blocks", "must be in [0, 1024]");
  }
  if (default_pacing == Pacing::kDefault) {
    return Bad("default_pacing", "must be real-time or as fast as possible");
  }
  // NaN fails every comparison below, so each check is written to be false for it.
  if (!(min_lookahead_seconds >= 0 && min_lookahead_seconds <= 3600)) {
    return Bad("min_lookahead_seconds", "must be in [0, 3600]");
  }
  if (!(max_lookahead_seconds >= min_lookahead_seconds && max_lookahead_seconds <= 3600)) {
    return Bad("max_lookahead_seconds", "must be in [min_lookahead_seconds, 3600]");
  }
  if (!(default_lookahead_seconds >= min_lookahead_seconds &&
        default_lookahead_seconds <= max_lookahead_seconds)) {
    return Bad("default_lookahead_seconds",
               "must be in [min_lookahead_seconds, max_lookahead_seconds]");
  }
  if (!(realtime_utilization >= 0 && realtime_utilization <= 1)) {
    return Bad("realtime_utilization", "must be in [0, 1] (0: no time budget)");
  }
  if (realtime_capacity < 0 || realtime_capacity > 4096) {
    return Bad("realtime_capacity", "must be in [0, 4096] (0: measured)");
  }
  return policy.Validate();
}

absl::Status SessionPolicy::Validate() const {
  if (max_steps < 1 || max_steps > 1000) return Bad("max_steps", "must be in [1, 1000]");
  if (max_cached_blocks < 1 || max_cached_blocks > 1024) {
    return Bad("max_cached_blocks", "must be in [1, 1024]");
  }
  if (max_pixels < 16 * 16) return Bad("max_pixels", "must be at least 256 (16 x 16)");
  if (presets.empty()) return Bad("allowed_presets", "must name at least one x264 preset");
  for (const std::string& preset : presets) {
    if (!IsX264Preset(preset)) {
      return Bad("allowed_presets", "unknown x264 preset \"" + preset +
                                        "\" (ultrafast, superfast, veryfast, faster, fast, "
                                        "medium, slow, slower, veryslow, placebo)");
    }
  }
  if (min_crf < 0 || min_crf > 51) return Bad("min_crf", "must be in [0, 51]");
  if (max_bitrate_bps < 10'000) return Bad("max_bitrate", "must be at least 10000 bit/s");
  if (max_chunk_bytes < 64 * 1024 || max_chunk_bytes > (int64_t{1} << 30)) {
    return Bad("max_chunk_bytes", "must be in [64 KiB, 1 GiB]");
  }
  return absl::OkStatus();
}

}  // namespace longsana::engine
