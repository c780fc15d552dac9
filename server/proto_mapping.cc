#include "server/proto_mapping.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <utility>

#include "server/http/http_router.h"

namespace longsana::server {
namespace {

using engine::kMaxPromptBytes;
using engine::kX264Presets;
constexpr int64_t kMinBitrate = 10'000;
constexpr int64_t kMaxBitrate = 1'000'000'000;

absl::Status Bad(std::string_view field, const std::string& what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", field, what));
}

absl::Status ValidateDimension(std::string_view field, uint32_t value,
                               const RequestLimits& limits) {
  if (value % limits.dimension_multiple == 0 &&
      value >= static_cast<uint32_t>(limits.min_dimension) &&
      value <= static_cast<uint32_t>(limits.max_dimension)) {
    return absl::OkStatus();
  }
  return Bad(field,
             fmt::format("{} is not a multiple of {} in [{}, {}] (0 = default {})", value,
                         limits.dimension_multiple, limits.min_dimension, limits.max_dimension,
                         field == "width" ? limits.default_width : limits.default_height));
}

absl::StatusOr<int> ResolveNumFrames(const v1::GenerateRequest& request,
                                     const RequestLimits& limits) {
  switch (request.length_case()) {
    case v1::GenerateRequest::LENGTH_NOT_SET:
      return std::min(81, limits.max_num_frames);
    case v1::GenerateRequest::kLive:
      if (!request.live()) return Bad("live", "false is not a length: leave the oneof unset");
      return limits.max_live_frames;  // the longest it may grow; the engine starts smaller
    case v1::GenerateRequest::kNumFrames: {
      const uint32_t n = request.num_frames();
      if (n >= 1 && (n - 1) % kVideoFramesPerLatentFrame == 0 &&
          n <= static_cast<uint32_t>(limits.max_num_frames)) {
        return static_cast<int>(n);
      }
      return Bad("num_frames", fmt::format("{} is not 1 + 4k in [1, {}] (e.g. 41, 81, 161)", n,
                                           limits.max_num_frames));
    }
    case v1::GenerateRequest::kDurationSeconds: {
      const double s = request.duration_seconds();
      const double max_seconds =
          static_cast<double>(limits.max_num_frames - 1) / static_cast<double>(limits.fps);
      if (!std::isfinite(s) || s <= 0) {
        return Bad("duration_seconds",
                   fmt::format("{} must be > 0 and at most {:.4g} s", s, max_seconds));
      }
      const int64_t n = FramesForDuration(s, limits.fps);
      if (n > limits.max_num_frames) {
        return Bad("duration_seconds",
                   fmt::format("{} s gives {} frames, more than the limit of {} ({:.4g} s)", s, n,
                               limits.max_num_frames, max_seconds));
      }
      return static_cast<int>(n);
    }
  }
  return Bad("length", "unknown oneof case");
}

absl::Status ValidateTimesteps(const v1::GenerateRequest& request) {
  const auto& t = request.timesteps();
  if (t.size() > kMaxDenoisingSteps) {
    return Bad("timesteps", fmt::format("{} values; at most {} (empty = [1000, 960, 889, 727])",
                                        t.size(), kMaxDenoisingSteps));
  }
  for (int i = 0; i < t.size(); ++i) {
    if (!std::isfinite(t[i]) || t[i] <= 0 || t[i] > 1000) {
      return Bad(fmt::format("timesteps[{}]", i), fmt::format("{} is not in (0, 1000]", t[i]));
    }
    if (i > 0 && t[i] >= t[i - 1]) {
      return Bad(fmt::format("timesteps[{}]", i),
                 fmt::format("{} is not below timesteps[{}] = {}; timesteps must be strictly "
                             "decreasing",
                             t[i], i - 1, t[i - 1]));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::EncodeOptions> ToEncodeOptions(const v1::OutputOptions& output) {
  engine::EncodeOptions enc;
  if (output.codec() != v1::OutputOptions::CODEC_UNSPECIFIED &&
      output.codec() != v1::OutputOptions::CODEC_H264) {
    return Bad("output.codec",
               fmt::format("{} is not supported; allowed: CODEC_UNSPECIFIED, CODEC_H264",
                           static_cast<int>(output.codec())));
  }
  if (output.container() != v1::OutputOptions::CONTAINER_UNSPECIFIED &&
      output.container() != v1::OutputOptions::CONTAINER_FMP4) {
    return Bad("output.container",
               fmt::format("{} is not supported; allowed: CONTAINER_UNSPECIFIED, CONTAINER_FMP4",
                           static_cast<int>(output.container())));
  }
  if (output.has_crf() && output.bitrate_bps() != 0) {
    return Bad("output.crf", "set either crf or bitrate_bps, not both");
  }
  if (output.has_crf()) {
    // x264 encodes crf 0 losslessly, which needs the High 4:4:4 Predictive profile: browsers
    // cannot play it and the encoder's High profile refuses it.
    if (output.crf() < 1 || output.crf() > 51) {
      return Bad("output.crf",
                 fmt::format("{} is not in [1, 51] (0, lossless, is not supported)", output.crf()));
    }
    enc.crf = static_cast<int>(output.crf());
  }
  if (output.bitrate_bps() != 0) {
    if (output.bitrate_bps() < static_cast<uint64_t>(kMinBitrate) ||
        output.bitrate_bps() > static_cast<uint64_t>(kMaxBitrate)) {
      return Bad("output.bitrate_bps", fmt::format("{} is not in [{}, {}] (0 = unset)",
                                                   output.bitrate_bps(), kMinBitrate, kMaxBitrate));
    }
    enc.bitrate_bps = static_cast<int64_t>(output.bitrate_bps());
  }
  if (!output.preset().empty()) {
    bool known = false;
    for (auto p : kX264Presets) known = known || output.preset() == p;
    if (!known) {
      return Bad("output.preset",
                 fmt::format("'{}' is not an x264 preset; allowed: {} (empty = veryfast)",
                             output.preset().substr(0, 64), fmt::join(kX264Presets, ", ")));
    }
    enc.preset = output.preset();
  }
  switch (output.fragments()) {
    case v1::OutputOptions::FRAGMENTS_UNSPECIFIED:
    case v1::OutputOptions::FRAGMENTS_PER_BLOCK:
      break;
    case v1::OutputOptions::FRAGMENTS_PER_LATENT_FRAME:
      enc.fragment_per_latent_frame = true;
      break;
    default:
      return Bad("output.fragments",
                 fmt::format("{} is not one of FRAGMENTS_UNSPECIFIED, FRAGMENTS_PER_BLOCK, "
                             "FRAGMENTS_PER_LATENT_FRAME",
                             static_cast<int>(output.fragments())));
  }
  return enc;
}

}  // namespace

RequestLimits RequestLimits::FromModelInfo(const engine::ModelInfo& info) {
  RequestLimits l;
  l.default_width = info.default_width;
  l.default_height = info.default_height;
  l.min_dimension = info.min_dimension;
  l.max_dimension = info.max_dimension;
  l.dimension_multiple = info.dimension_multiple > 0 ? info.dimension_multiple : 16;
  l.max_num_frames = info.max_num_frames;
  l.max_live_frames = info.max_live_frames;
  l.fps = info.fps;
  l.block_latent_frames = info.block_latent_frames > 0 ? info.block_latent_frames : 10;
  return l;
}

int64_t FramesForDuration(double seconds, int fps) {
  const double raw = std::round(seconds * fps);
  if (raw > 1e9) return static_cast<int64_t>(1e9);
  const int64_t k = static_cast<int64_t>(std::floor(raw / kVideoFramesPerLatentFrame + 0.5));
  return 1 + kVideoFramesPerLatentFrame * k;
}


absl::StatusOr<engine::SessionSpec> ToSessionSpec(const v1::GenerateRequest& request,
                                                  const RequestLimits& limits, bool interactive) {
  engine::SessionSpec spec;
  spec.interactive = interactive;
  if (auto s = ValidatePrompt("prompt", request.prompt()); !s.ok()) return s;
  spec.prompt = request.prompt();

  spec.width = limits.default_width;
  spec.height = limits.default_height;
  if (request.width() != 0) {
    if (auto s = ValidateDimension("width", request.width(), limits); !s.ok()) return s;
    spec.width = static_cast<int>(request.width());
  }
  if (request.height() != 0) {
    if (auto s = ValidateDimension("height", request.height(), limits); !s.ok()) return s;
    spec.height = static_cast<int>(request.height());
  }

  auto frames = ResolveNumFrames(request, limits);
  if (!frames.ok()) return frames.status();
  spec.num_frames = *frames;
  spec.live = request.length_case() == v1::GenerateRequest::kLive;

  const int64_t num_blocks = NumBlocks(spec.num_frames, limits.block_latent_frames);
  if (request.prompt_timeline_size() > kMaxTimelineSegments) {
    return Bad("prompt_timeline",
               fmt::format("{} segments; at most {}", request.prompt_timeline_size(),
                           kMaxTimelineSegments));
  }
  for (int i = 0; i < request.prompt_timeline_size(); ++i) {
    const auto& seg = request.prompt_timeline(i);
    const std::string field = fmt::format("prompt_timeline[{}].block", i);
    if (seg.block() < 1 || seg.block() >= num_blocks) {
      return Bad(field, fmt::format("{} is not in [1, {}] (the video has {} blocks)", seg.block(),
                                    num_blocks - 1, num_blocks));
    }
    if (i > 0 && seg.block() <= request.prompt_timeline(i - 1).block()) {
      return Bad(field, fmt::format("{} is not above prompt_timeline[{}].block = {}; blocks must "
                                    "be strictly increasing",
                                    seg.block(), i - 1, request.prompt_timeline(i - 1).block()));
    }
    if (auto s = ValidatePrompt(fmt::format("prompt_timeline[{}].prompt", i), seg.prompt());
        !s.ok()) {
      return s;
    }
    spec.prompt_timeline.push_back({static_cast<int64_t>(seg.block()), seg.prompt()});
  }

  spec.seed = request.seed();
  if (auto s = ValidateTimesteps(request); !s.ok()) return s;
  spec.timesteps.assign(request.timesteps().begin(), request.timesteps().end());

  if (request.has_num_cached_blocks()) {
    const int k = request.num_cached_blocks();
    if (k != -1 && k <= 0) {
      return Bad("num_cached_blocks",
                 fmt::format("{} is not -1 (all previous blocks) or K > 0 (the last K)", k));
    }
    spec.num_cached_blocks = k;
  }
  if (request.has_motion_score()) {
    const int m = request.motion_score();
    if (m < 1 || m > 100) return Bad("motion_score", fmt::format("{} is not in [1, 100]", m));
    spec.motion_score = m;
  }
  auto enc = ToEncodeOptions(request.output());
  if (!enc.ok()) return enc.status();
  spec.encode = std::move(*enc);

  if (request.priority() < kMinPriority || request.priority() > kMaxPriority) {
    return Bad("priority", fmt::format("{} is not in [{}, {}]", request.priority(), kMinPriority,
                                       kMaxPriority));
  }
  spec.priority = request.priority();

  switch (request.pacing()) {
    case v1::GenerateRequest::PACING_UNSPECIFIED:
      spec.pacing = engine::Pacing::kDefault;
      break;
    case v1::GenerateRequest::PACING_REALTIME:
      spec.pacing = engine::Pacing::kRealTime;
      break;
    case v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE:
      spec.pacing = engine::Pacing::kAsFastAsPossible;
      break;
    default:
      return Bad("pacing", fmt::format("{} is not one of PACING_UNSPECIFIED, PACING_REALTIME, "
                                       "PACING_AS_FAST_AS_POSSIBLE",
                                       static_cast<int>(request.pacing())));
  }
  // Bounds are the engine's (ValidateSpec names the flags); a NaN is refused there too.
  spec.lookahead_seconds = request.lookahead_seconds();
  if (spec.pacing == engine::Pacing::kAsFastAsPossible && spec.lookahead_seconds != 0) {
    return Bad("lookahead_seconds", "applies to PACING_REALTIME only; leave it 0");
  }
  return spec;
}

absl::Status ValidateSwitchPrompt(const v1::SwitchPrompt& command) {
  if (auto s = ValidatePrompt("switch_prompt.prompt", command.prompt()); !s.ok()) return s;
  if (!v1::SwitchPrompt::Mode_IsValid(command.mode())) {
    return Bad("switch_prompt.mode",
               fmt::format("{} is not one of MODE_UNSPECIFIED, MODE_IMMEDIATE, MODE_RECACHE",
                           static_cast<int>(command.mode())));
  }
  return absl::OkStatus();
}

absl::Status ValidateExtend(const v1::Extend& command, const RequestLimits& limits) {
  const uint32_t n = command.num_frames();
  if (n == 0 || n % kVideoFramesPerLatentFrame != 0 ||
      n > static_cast<uint32_t>(limits.max_num_frames)) {
    return Bad("extend.num_frames", fmt::format("{} is not a positive multiple of 4 up to {}", n,
                                                limits.max_num_frames - 1));
  }
  return absl::OkStatus();
}

engine::PromptSwitchMode ToPromptSwitchMode(v1::SwitchPrompt::Mode mode) {
  return mode == v1::SwitchPrompt::MODE_RECACHE ? engine::PromptSwitchMode::kRecache
                                                : engine::PromptSwitchMode::kImmediate;
}

absl::StatusOr<engine::SessionCommand> ToEngineCommand(const v1::SessionCommand& command,
                                                       const RequestLimits& limits) {
  switch (command.command_case()) {
    case v1::SessionCommand::kSwitchPrompt: {
      if (auto s = ValidateSwitchPrompt(command.switch_prompt()); !s.ok()) return s;
      return engine::SwitchPromptCommand{
          command.switch_prompt().prompt(), ToPromptSwitchMode(command.switch_prompt().mode()),
          static_cast<int>(
              std::min<uint32_t>(command.switch_prompt().transition_blocks(), 1u << 20))};
    }
    case v1::SessionCommand::kExtend: {
      if (auto s = ValidateExtend(command.extend(), limits); !s.ok()) return s;
      return engine::ExtendCommand{static_cast<int>(command.extend().num_frames())};
    }
    case v1::SessionCommand::kStop:
      return engine::StopCommand{};
    case v1::SessionCommand::kPosition:
      return engine::PositionCommand{command.position().seconds(), command.position().paused()};
    case v1::SessionCommand::kStart:
    case v1::SessionCommand::COMMAND_NOT_SET:
      break;
  }
  return Bad("command", "none set; later commands are switch_prompt, extend, stop or position");
}

v1::Accepted ToAccepted(const engine::SessionInfo& info) {
  v1::Accepted a;
  a.set_session_id(std::to_string(info.id));
  a.set_seed(info.seed);
  a.set_width(static_cast<uint32_t>(info.width));
  a.set_height(static_cast<uint32_t>(info.height));
  a.set_num_frames(static_cast<uint32_t>(info.num_frames));
  a.set_num_blocks(static_cast<uint32_t>(info.num_blocks));
  a.set_fps(static_cast<uint32_t>(info.fps));
  for (double t : info.timesteps) a.add_timesteps(t);
  a.set_num_cached_blocks(info.num_cached_blocks);
  a.set_motion_score(info.motion_score);
  a.set_queue_position(static_cast<uint32_t>(std::max(0, info.queue_position)));
  a.set_live(info.live);
  a.set_pacing(info.paced ? v1::GenerateRequest::PACING_REALTIME
                          : v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE);
  a.set_lookahead_seconds(info.lookahead_seconds);
  for (int64_t f : info.block_first_frames) a.add_block_first_frames(static_cast<uint32_t>(f));
  return a;
}

namespace {
void ChunkFields(const engine::VideoChunk& chunk, v1::VideoChunk* out) {
  out->set_sequence(static_cast<uint64_t>(chunk.sequence));
  out->set_block_index(static_cast<int32_t>(chunk.block_index));
  out->set_first_frame(static_cast<uint32_t>(chunk.first_frame));
  out->set_num_frames(static_cast<uint32_t>(chunk.num_frames));
  out->set_presentation_seconds(chunk.presentation_seconds);
  out->set_duration_seconds(chunk.duration_seconds);
  out->set_mime_type(chunk.mime_type);
  out->set_keyframe(chunk.keyframe);
  if (chunk.block_index >= 0) {
    out->set_prompt_command_id(chunk.prompt_command_id);
    out->set_prompt_weight(chunk.prompt_weight);
  }
  if (chunk.switch_visible) {
    v1::SwitchVisible* v = out->mutable_switch_visible();
    v->set_command_id(chunk.switch_visible->command_id);
    v->set_latency_seconds(chunk.switch_visible->latency_seconds);
    v->set_playback_delay_seconds(chunk.switch_visible->playback_delay_seconds);
  }
}
}  // namespace

void ToProto(const engine::VideoChunk& chunk, v1::VideoChunk* out) {
  ChunkFields(chunk, out);
  out->set_data(chunk.bytes);
}

void ToProto(engine::VideoChunk&& chunk, v1::VideoChunk* out) {
  ChunkFields(chunk, out);
  out->set_data(std::move(chunk.bytes));
}

v1::CommandAck ToProto(const engine::CommandAck& ack) {
  v1::CommandAck out;
  out.set_command_id(ack.command_id);
  out.set_effective_block(static_cast<uint32_t>(std::max<int64_t>(0, ack.effective_block)));
  out.set_detail(ack.detail);
  out.set_num_frames(static_cast<uint32_t>(std::max(0, ack.num_frames)));
  out.set_num_blocks(static_cast<uint32_t>(std::max<int64_t>(0, ack.num_blocks)));
  return out;
}

v1::CommandAck ErrorAck(uint64_t command_id, const absl::Status& status) {
  v1::CommandAck out;
  out.set_command_id(command_id);
  out.set_code(static_cast<int32_t>(status.code()));
  out.set_error_message(std::string(status.message()));
  return out;
}

v1::Completed ToProto(const engine::CompletionStats& stats) {
  v1::Completed c;
  c.set_frames(static_cast<uint32_t>(stats.frames));
  c.set_blocks(static_cast<uint32_t>(stats.blocks));
  c.set_time_to_first_chunk_seconds(stats.time_to_first_chunk_seconds);
  c.set_queue_seconds(stats.queue_seconds);
  c.set_total_seconds(stats.total_seconds);
  c.set_generation_fps(stats.generation_fps);
  c.set_detail(stats.detail);
  for (const auto& b : stats.block_timings) {
    auto* t = c.add_block_timings();
    t->set_block(static_cast<uint32_t>(b.block));
    t->set_dit_seconds(b.dit_seconds);
    t->set_decode_seconds(b.decode_seconds);
    t->set_encode_seconds(b.encode_seconds);
    t->set_ready_seconds(b.ready_seconds);
  }
  return c;
}

v1::ServerInfo ToServerInfo(const engine::ModelInfo& info, const engine::EngineStats& stats,
                            std::string_view build) {
  v1::ServerInfo out;
  out.set_version(info.version);
  out.set_build(std::string(build));
  auto* m = out.mutable_model();
  m->set_pipeline_class(info.pipeline_class);
  m->set_transformer_class(info.transformer_class);
  m->set_vae_class(info.vae_class);
  m->set_text_encoder_class(info.text_encoder_class);
  m->set_transformer_params(static_cast<uint64_t>(info.transformer_params));
  m->set_text_encoder_params(static_cast<uint64_t>(info.text_encoder_params));
  m->set_vae_params(static_cast<uint64_t>(info.vae_params));
  m->set_device(info.device);
  m->set_dtype(info.dtype);
  m->set_transformer_dtype(info.transformer_dtype);
  m->set_text_encoder_dtype(info.text_encoder_dtype);
  m->set_vae_dtype(info.vae_dtype);
  m->set_tf32(info.tf32);
  m->set_warmup_width(static_cast<uint32_t>(info.warmup_width));
  m->set_warmup_height(static_cast<uint32_t>(info.warmup_height));
  m->set_warmup_seconds(info.warmup_seconds);
  // The base name only: the filesystem path is the operator's business.
  std::string_view name = info.model_dir;
  while (name.size() > 1 && name.back() == '/') name.remove_suffix(1);
  if (const size_t slash = name.rfind('/'); slash != std::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  m->set_model_name(std::string(name));
  auto* l = out.mutable_limits();
  l->set_default_width(static_cast<uint32_t>(info.default_width));
  l->set_default_height(static_cast<uint32_t>(info.default_height));
  l->set_min_dimension(static_cast<uint32_t>(info.min_dimension));
  l->set_max_dimension(static_cast<uint32_t>(info.max_dimension));
  l->set_dimension_multiple(static_cast<uint32_t>(info.dimension_multiple));
  l->set_max_num_frames(static_cast<uint32_t>(info.max_num_frames));
  l->set_max_live_frames(static_cast<uint32_t>(info.max_live_frames));
  l->set_default_pacing(info.default_pacing == engine::Pacing::kAsFastAsPossible
                            ? v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE
                            : v1::GenerateRequest::PACING_REALTIME);
  l->set_default_lookahead_seconds(info.default_lookahead_seconds);
  l->set_min_lookahead_seconds(info.min_lookahead_seconds);
  l->set_max_lookahead_seconds(info.max_lookahead_seconds);
  l->set_max_transition_blocks(static_cast<uint32_t>(info.max_transition_blocks));
  l->set_fps(static_cast<uint32_t>(info.fps));
  l->set_block_frames(static_cast<uint32_t>(info.block_latent_frames * kVideoFramesPerLatentFrame));
  l->set_max_prompt_bytes(static_cast<uint32_t>(kMaxPromptBytes));
  l->set_max_denoising_steps(kMaxDenoisingSteps);
  auto* c = out.mutable_capacity();
  c->set_running(static_cast<uint32_t>(stats.running));
  c->set_queued(static_cast<uint32_t>(stats.queued));
  c->set_admissible(static_cast<uint32_t>(stats.admissible));
  c->set_max_sessions(static_cast<uint32_t>(stats.max_sessions));
  c->set_slot_bytes_in_use(static_cast<uint64_t>(stats.slot_bytes_in_use));
  c->set_memory_budget_bytes(static_cast<uint64_t>(stats.memory_budget_bytes));
  c->set_draining(stats.draining);
  c->set_completed(stats.completed);
  c->set_failed(stats.failed);
  c->set_cancelled(stats.cancelled);
  c->set_rejected(stats.rejected);
  c->set_realtime_load(stats.realtime_load);
  return out;
}

}  // namespace longsana::server
