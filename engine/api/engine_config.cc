#include "engine/api/engine.h"

#include <string>

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
  if (max_num_frames < 1 || (max_num_frames - 1) % 4 != 0) {
    return Bad("max_num_frames", "must be 1 + 4k");
  }
  if (min_dimension < 16 || min_dimension % 16 != 0) {
    return Bad("min_dimension", "must be a multiple of 16, at least 16");
  }
  if (max_dimension < min_dimension || max_dimension % 16 != 0 || max_dimension > 8192) {
    return Bad("max_dimension", "must be a multiple of 16 in [min_dimension, 8192]");
  }
  if (caption_len < 2 || caption_len > 4096) return Bad("caption_len", "must be in [2, 4096]");
  if (fps < 1 || fps > 240) return Bad("fps", "must be in [1, 240]");
  if (encoder_threads < 0 || encoder_threads > 64) {
    return Bad("encoder_threads", "must be in [0, 64]");
  }
  return absl::OkStatus();
}

}  // namespace longsana::engine
