#include "engine/runner/engine_impl.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/loader/checkpoint.h"
#include "engine/media/ffmpeg_util.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/wan_vae/wan_vae_params.h"
#include "engine/runner/status_from_exception.h"
#include "engine/sampler/sampler_options.h"
#if LONGSANA_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace longsana::engine {
namespace {

absl::Status Bad(std::string_view field, const std::string& what) {
  return absl::InvalidArgumentError(StrCat(field, ": ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineConfig& config) {
  auto engine = EngineImpl::Create(config);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(std::move(*engine));
}

EngineImpl::EngineImpl(const EngineConfig& config)
    : config_(config),
      device_(config.device == DeviceKind::kCuda ? at::Device(at::kCUDA) : at::Device(at::kCPU)),
      registry_(SchedulerLimits{config.max_sessions, config.memory_budget_bytes, config.queue_size,
                                config.max_batch, config.realtime_utilization,
                                config.realtime_capacity}) {}

absl::StatusOr<std::unique_ptr<EngineImpl>> EngineImpl::Create(const EngineConfig& config) {
  LONGSANA_RETURN_IF_ERROR(config.Validate());
  c10::InferenceMode inference;
  try {
    if (config.device == DeviceKind::kCuda && !at::hasCUDA()) {
      return absl::FailedPreconditionError(
          "device: cuda requested but no CUDA device is available");
    }
    // Process-wide: the engine owns the process's compute. 0 means one thread per core
    // (LibTorch's own default is 1 on some builds).
    at::set_num_threads(config.threads > 0 ? config.threads
                                           : std::max(1u, std::thread::hardware_concurrency()));
    QuietFfmpegLogging();
    std::unique_ptr<EngineImpl> engine(new EngineImpl(config));
    LONGSANA_RETURN_IF_ERROR(engine->Load());
    LONGSANA_RETURN_IF_ERROR(engine->WarmUp());
    engine->Start();
    return engine;
  } catch (...) {
    // E.g. out of device memory while moving the weights.
    return StatusFromCurrentException("loading the models");
  }
}

void EngineImpl::Start() {
  int64_t budget = config_.memory_budget_bytes;
#if LONGSANA_TORCH_CUDA
  if (budget == 0 && device_.is_cuda()) {
    // After the warm-up: the caching allocator keeps the activations of its first block,
    // which serving needs again, so the slots get a share of what is free beside them.
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      budget =
          static_cast<int64_t>(config_.memory_budget_fraction * static_cast<double>(free_bytes));
      spdlog::info("memory budget for session slots: {:.2f} GiB ({:.0f}% of the {:.2f} GiB free)",
                   budget / 1073741824.0, 100 * config_.memory_budget_fraction,
                   free_bytes / 1073741824.0);
    }
  }
#endif
  auto default_bytes = SlotBytes(SessionSpec{});
  default_slot_bytes_ = default_bytes.ok() ? *default_bytes : 0;
  {
    SessionRegistry::Lock lock(registry_);
    registry_.scheduler().set_memory_budget(budget);
  }
  text_worker_ = std::make_unique<TextWorker>(registry_, *text_, config_.text_queue_size);
  MediaPipelineOptions media;
  media.workers = config_.media_workers > 0
                      ? config_.media_workers
                      : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  media.max_chunk_bytes = config_.policy.max_chunk_bytes;
  media.cuda = device_.is_cuda();
  media.after_failure = [this] { MarkUnhealthyIfDeviceBroken(); };
  media_ = std::make_unique<MediaPipeline>(registry_, *vae_, media);
  RunnerOptions runner;
  runner.fps = config_.fps;
  runner.stall_timeout = config_.stall_timeout;
  runner.after_failure = [this] { MarkUnhealthyIfDeviceBroken(); };
  runner.observer = config_.observer;
  runner_ = std::make_unique<Runner>(registry_, *dit_, *vae_, *media_, runner);
  text_worker_->Start();
  media_->Start();
  runner_->Start();
  spdlog::info("engine started: {} media workers, stall budget {:.1f} s", media.workers,
               std::chrono::duration<double>(config_.stall_timeout).count());
}

absl::Status EngineImpl::Load() {
  const auto t0 = Clock::now();
  LONGSANA_ASSIGN_OR_RETURN(dir_, ModelDirectory::Open(config_.model_dir));
  spdlog::info("loading {} from {} onto {}", dir_.index.class_name, config_.model_dir,
               device_.str());
  spdlog::info("loading transformer ({} parameters)", CountParams(DitParamSpecs(dir_.transformer)));
  if (device_.is_cuda()) {
    // Both ways and explicitly: LibTorch's own default has cuDNN's TF32 on.
    at::globalContext().setAllowTF32CuBLAS(config_.allow_tf32);
    at::globalContext().setAllowTF32CuDNN(config_.allow_tf32);
    spdlog::info("TF32 {} (--allow_tf32)", config_.allow_tf32 ? "on" : "off");
    // Batch invariance on CUDA (README "Batch invariance"): every DiT GEMM already runs per
    // item with a solo run's shapes, so cuBLAS picks the same kernel alone or batched; cuDNN
    // must not choose its convolution algorithms by timing (benchmark mode) nor use the
    // non-deterministic ones, or the same decode could round differently run to run.
    at::globalContext().setBenchmarkCuDNN(false);
    at::globalContext().setDeterministicCuDNN(true);
  }
  DitOptions dit;
  dit.device = device_;
  dit.dtype = device_.is_cuda() ? at::kBFloat16 : at::kFloat;
  LONGSANA_ASSIGN_OR_RETURN(dit_, DitModel::Load(dir_, dit));
  spdlog::info("loading text encoder ({} parameters) and tokenizer",
               CountParams(Gemma2ParamSpecs(dir_.text_encoder)));
  TextEncoderOptions text;
  text.device = device_;
  text.softcap = config_.text_softcap;
  text.caption_len = config_.caption_len;
  LONGSANA_ASSIGN_OR_RETURN(text_, TextEncoder::Load(dir_, text));
  spdlog::info("loading VAE decoder ({} parameters)",
               CountParams(WanVaeDecoderParamSpecs(dir_.vae)));
  VaeOptions vae;
  vae.device = device_.is_cuda() ? "cuda" : "cpu";
  vae.dtype = config_.vae_dtype == VaeDtype::kBFloat16 ? at::kBFloat16 : at::kFloat;
  LONGSANA_ASSIGN_OR_RETURN(vae_, WanVaeDecoder::Load(dir_, vae));
  // RoPE covers rope_max_seq_len positions per axis (model.md §6): longer videos or larger
  // frames than that cannot be generated, so the limits never exceed it.
  const int64_t rope = dir_.transformer.rope_max_seq_len;
  const int64_t rope_frames = 1 + 4 * (rope - 1);
  const double live_seconds = std::chrono::duration<double>(config_.max_live_seconds).count();
  const int64_t live_frames = 1 + 4 * static_cast<int64_t>(config_.fps * live_seconds / 4.0);
  live_limit_frames_ = static_cast<int>(std::min(live_frames, rope_frames));
  if (live_frames > rope_frames) {
    spdlog::warn(
        "max_live_seconds {:.0f} s lowered to {:.1f} s: the model's RoPE covers {} latent frames",
        live_seconds, static_cast<double>(rope_frames - 1) / config_.fps, rope);
  }
  if (config_.max_num_frames > rope_frames) {
    spdlog::warn("max_num_frames {} lowered to {}: the model's RoPE covers {} latent frames",
                 config_.max_num_frames, rope_frames, rope);
    config_.max_num_frames = static_cast<int>(rope_frames);
  }
  const int64_t rope_pixels = rope * 8 * dir_.transformer.patch_size[1] / 16 * 16;
  if (config_.max_dimension > rope_pixels) {
    spdlog::warn("max_dimension {} lowered to {}: the model's RoPE covers {} patches per axis",
                 config_.max_dimension, rope_pixels, rope);
    config_.max_dimension = static_cast<int>(rope_pixels);
  }
  if (dir_.vae.temporal_stride() != 4 || dir_.vae.spatial_stride() != 8) {
    return absl::InvalidArgumentError(StrCat(
        dir_.root, "/vae/config.json: the server expects Wan2.1 strides (4 in time, 8 in space)"));
  }
  spdlog::info("models loaded from {} on {} in {:.1f} s", config_.model_dir, device_.str(),
               Seconds(Clock::now() - t0));
  return absl::OkStatus();
}

absl::Status EngineImpl::WarmUp() {
  // One first block of a session through every model, at the default request size on CUDA
  // (readiness then means such a session runs and fits) or the smallest size on CPU.
  const auto t0 = Clock::now();
  int width = config_.warmup_width, height = config_.warmup_height;
  if (width == 0) {
    const ModelInfo defaults;
    width = device_.is_cuda() ? defaults.default_width : config_.min_dimension;
    height = device_.is_cuda() ? defaults.default_height : config_.min_dimension;
  }
  const int64_t frames = SamplerOptions{}.block_frames + 1;  // a video's first block
  try {
    LONGSANA_ASSIGN_OR_RETURN(Caption caption, text_->Encode("warm-up"));
    const int64_t lh = height / 8, lw = width / 8;
    auto state = dit_->NewState(dit_->StateSpec(lh, lw, -1));
    DitWorkItem item;
    item.latent = at::zeros({dit_->config().in_channels, frames, lh, lw});
    item.timestep = 1000;
    item.caption = caption.embedding;
    item.caption_mask = caption.mask;
    item.state = state.get();
    at::Tensor v = dit_->Forward({&item, 1});
    LONGSANA_ASSIGN_OR_RETURN(auto cache, vae_->NewCache(lh, lw));
    at::Tensor video = vae_->DecodeBlock(v, cache.get());
    if (!device::ToHost(video.isfinite().all()).item<bool>()) {
      return absl::InternalError("warm-up produced non-finite values");
    }
  } catch (...) {
    return StatusFromCurrentException(StrCat("warm-up forward at ", width, "x", height));
  }
  warmup_width_ = width;
  warmup_height_ = height;
  warmup_seconds_ = Seconds(Clock::now() - t0);
  spdlog::info(
      "warm-up: one first block ({} latent frames) at {}x{} through the DiT and the "
      "VAE in {:.2f} s",
      frames, width, height, warmup_seconds_);
  return absl::OkStatus();
}

EngineImpl::~EngineImpl() {
  {
    SessionRegistry::Lock lock(registry_);
    registry_.draining = true;
    registry_.stopping = true;
    for (const auto& [id, s] : registry_.SessionsLocked()) s->abort_decode.store(true);
  }
  if (runner_) runner_->Stop();
  if (media_) media_->Stop();
  if (text_worker_) text_worker_->Stop();
  // Whatever is left never completes: tell its clients.
  SessionRegistry::Lock lock(registry_);
  std::vector<std::shared_ptr<Session>> left;
  for (const auto& [id, s] : registry_.SessionsLocked()) left.push_back(s);
  for (const auto& s : left) {
    registry_.EndLocked(lock, *s, absl::UnavailableError("the server is shutting down"));
  }
}

void EngineImpl::MarkUnhealthyIfDeviceBroken() {
  if (!device_.is_cuda()) return;
  try {
    (void)device::ToHost(at::ones({1}, at::TensorOptions().device(device_)).sum()).item<float>();
  } catch (...) {
    spdlog::error("device unusable after an error ({}); reporting unhealthy",
                  StatusFromCurrentException("device check").ToString());
    healthy_ = false;
  }
}

// ----------------------------------------------------------------------------------------
// Requests

absl::Status EngineImpl::ValidateSpec(const SessionSpec& spec) const {
  const SessionPolicy& policy = config_.policy;
  LONGSANA_RETURN_IF_ERROR(ValidatePrompt("prompt", spec.prompt));
  for (auto [field, value] :
       {std::pair<std::string_view, int>{"width", spec.width}, {"height", spec.height}}) {
    if (value % 16 != 0 || value < config_.min_dimension || value > config_.max_dimension) {
      return Bad(field, StrCat("must be a multiple of 16 in [", config_.min_dimension, ", ",
                               config_.max_dimension, "], got ", value));
    }
  }
  const int64_t pixels = int64_t{spec.width} * spec.height;
  if (pixels > policy.max_pixels) {
    return Bad("width", StrCat(spec.width, "x", spec.height, " is ", pixels,
                               " pixels, more than this server allows (", policy.max_pixels,
                               ", --max-pixels)"));
  }
  if (!spec.live && (spec.num_frames < 1 || (spec.num_frames - 1) % 4 != 0 ||
                     spec.num_frames > config_.max_num_frames)) {
    return Bad("num_frames", StrCat("must be 1 + 4k in [1, ", config_.max_num_frames, "], got ",
                                    spec.num_frames));
  }
  const SamplerOptions sampler = SamplerOptionsFor(spec);
  if (static_cast<int>(sampler.timesteps.size()) > policy.max_steps) {
    return Bad("timesteps",
               StrCat(sampler.timesteps.size(), " steps, more than this server allows (",
                      policy.max_steps, ", --max-steps)"));
  }
  if (spec.num_cached_blocks > policy.max_cached_blocks) {
    return Bad("num_cached_blocks",
               StrCat(spec.num_cached_blocks, " is more than this server allows (",
                      policy.max_cached_blocks,
                      ", --max-cached-blocks; -1 keeps the whole "
                      "context at the same cost)"));
  }
  LONGSANA_RETURN_IF_ERROR(sampler.Validate());
  if (spec.lookahead_seconds != 0 && !(spec.lookahead_seconds >= config_.min_lookahead_seconds &&
                                       spec.lookahead_seconds <= config_.max_lookahead_seconds)) {
    return Bad(
        "lookahead_seconds",
        StrCat("must be 0 (the server's default, ", config_.default_lookahead_seconds,
               " s) or in [", config_.min_lookahead_seconds, ", ", config_.max_lookahead_seconds,
               "] seconds (--min-lookahead-seconds, --max-lookahead-seconds), got ",
               spec.lookahead_seconds));
  }
  if (spec.motion_score < 1 || spec.motion_score > 100) {
    return Bad("motion_score", StrCat("must be in [1, 100], got ", spec.motion_score));
  }
  // A live video may grow to the live limit: its timeline may name any block up to there.
  const int64_t latent_frames = ((spec.live ? live_limit_frames_ : spec.num_frames) - 1) / 4 + 1;
  const int64_t blocks =
      static_cast<int64_t>(BlockBoundaries(latent_frames, sampler.block_frames).size()) - 1;
  int64_t previous = 0;
  for (const auto& change : spec.prompt_timeline) {
    if (change.block <= previous || change.block >= blocks) {
      return Bad("prompt_timeline",
                 StrCat("blocks must be strictly increasing in [1, ", blocks - 1,
                        "] (this video has ", blocks, " blocks), got ", change.block));
    }
    LONGSANA_RETURN_IF_ERROR(ValidatePrompt("prompt_timeline.prompt", change.prompt));
    previous = change.block;
  }
  const EncodeOptions& enc = spec.encode;
  if (std::find(policy.presets.begin(), policy.presets.end(), enc.preset) == policy.presets.end()) {
    std::string allowed;
    for (const auto& p : policy.presets) allowed += (allowed.empty() ? "" : ", ") + p;
    return Bad("output.preset", StrCat("\"", enc.preset, "\" is not allowed by this server (",
                                       allowed, "; --allowed-presets)"));
  }
  if (enc.crf && *enc.crf < policy.min_crf) {
    return Bad("output.crf", StrCat(*enc.crf, " is below this server's minimum of ", policy.min_crf,
                                    " (--min-crf)"));
  }
  if (enc.bitrate_bps && *enc.bitrate_bps > policy.max_bitrate_bps) {
    return Bad("output.bitrate_bps",
               StrCat(*enc.bitrate_bps, " bit/s is more than this server allows (",
                      policy.max_bitrate_bps, ", --max-bitrate)"));
  }
  absl::Status enc_status = EncoderSettingsFor(spec).Validate();
  if (!enc_status.ok()) return Bad("output", std::string(enc_status.message()));
  return absl::OkStatus();
}

SamplerOptions EngineImpl::SamplerOptionsFor(const SessionSpec& spec) const {
  SamplerOptions options;
  if (!spec.timesteps.empty()) options.timesteps = spec.timesteps;
  options.timestep_mode =
      config_.exact_timesteps ? TimestepMode::kExact : TimestepMode::kBf16Rounded;
  options.num_cached_blocks = spec.num_cached_blocks;
  return options;
}

EncoderSettings EngineImpl::EncoderSettingsFor(const SessionSpec& spec) const {
  EncoderSettings enc;
  enc.width = spec.width;
  enc.height = spec.height;
  enc.fps = config_.fps;
  enc.crf = spec.encode.crf;
  enc.bitrate_bps = spec.encode.bitrate_bps;
  enc.preset = spec.encode.preset;
  enc.threads = config_.encoder_threads;
  return enc;
}

absl::StatusOr<int64_t> EngineImpl::SlotBytes(const SessionSpec& spec) const {
  const int64_t lh = spec.height / 8, lw = spec.width / 8;
  const int64_t dit = dit_->StateSpec(lh, lw, spec.num_cached_blocks, spec.interactive).bytes();
  LONGSANA_ASSIGN_OR_RETURN(int64_t vae, vae_->CacheBytes(lh, lw));
  const int64_t caption_bytes =
      config_.caption_len * (text_->hidden_size() * (device_.is_cuda() ? 2 : 4) + 8);
  const int64_t captions = static_cast<int64_t>(1 + spec.prompt_timeline.size());
  return dit + vae + captions * caption_bytes;
}

double EngineImpl::BlockCost(const SessionSpec& spec) const {
  // DiT tokens per latent frame times denoising steps: what a block costs relative to
  // another (the VAE's share grows with the same pixel count).
  const size_t steps =
      spec.timesteps.empty() ? SamplerOptions{}.timesteps.size() : spec.timesteps.size();
  return static_cast<double>(spec.height / 16) * (spec.width / 16) * static_cast<double>(steps);
}

absl::StatusOr<SessionInfo> EngineImpl::Submit(SessionSpec spec, std::shared_ptr<ChunkSink> sink) {
  LONGSANA_RETURN_IF_ERROR(ValidateSpec(spec));
  if (!healthy_) return absl::UnavailableError("the engine is unhealthy (device error)");
  if (spec.timesteps.empty()) spec.timesteps = SamplerOptions{}.timesteps;
  // A window at least as long as the video never drops a block: the same result with
  // fewer slots. Only a Session stream can grow its video later.
  auto s = std::make_shared<Session>();
  s->sampler_options = SamplerOptionsFor(spec);
  int64_t latent_frames = (spec.num_frames - 1) / 4 + 1;
  if (spec.live) {
    // Two blocks to start with; the runner appends one whenever only one is left unstarted.
    s->live_limit_latent_frames = (live_limit_frames_ - 1) / 4 + 1;
    latent_frames =
        std::min<int64_t>(2 * s->sampler_options.block_frames, s->live_limit_latent_frames);
    spec.num_frames = static_cast<int>(FirstVideoFrame(latent_frames));
  }
  s->latent_bounds = BlockBoundaries(latent_frames, s->sampler_options.block_frames);
  if (!spec.interactive && !spec.live && spec.num_cached_blocks > 0) {
    spec.num_cached_blocks =
        static_cast<int>(std::min<int64_t>(spec.num_cached_blocks, s->num_blocks()));
    s->sampler_options.num_cached_blocks = spec.num_cached_blocks;
  }
  s->encoder_settings = EncoderSettingsFor(spec);
  LONGSANA_ASSIGN_OR_RETURN(s->slot_bytes, SlotBytes(spec));
  const Pacing pacing = spec.pacing == Pacing::kDefault ? config_.default_pacing : spec.pacing;
  if (pacing == Pacing::kRealTime) {
    s->lookahead_seconds =
        spec.lookahead_seconds > 0 ? spec.lookahead_seconds : config_.default_lookahead_seconds;
  }
  s->cost = BlockCost(spec);
  s->events = std::make_shared<SessionEvents>(std::move(sink));
  for (const auto& change : spec.prompt_timeline) {
    PendingSwitch timeline_switch;
    timeline_switch.prompt = change.prompt;
    s->switches[change.block] = std::move(timeline_switch);
  }
  SessionInfo& info = s->info;
  info.width = spec.width;
  info.height = spec.height;
  info.timesteps = spec.timesteps;
  info.num_cached_blocks = spec.num_cached_blocks;
  info.motion_score = spec.motion_score;
  info.fps = config_.fps;
  info.slot_bytes = s->slot_bytes;
  info.live = spec.live;
  info.paced = s->lookahead_seconds >= 0;
  info.lookahead_seconds = std::max(0.0, s->lookahead_seconds);
  s->spec = std::move(spec);
  s->RefreshLengths();  // not shared yet

  SessionRegistry::Lock lock(registry_);
  if (registry_.draining || registry_.stopping) {
    ++registry_.counters().rejected;
    return absl::UnavailableError("the server is draining: retry on another replica");
  }
  LONGSANA_RETURN_IF_ERROR(text_worker_->CheckRoomLocked());
  if (s->spec.seed == 0) {
    const uint64_t base = config_.seed_base != 0
                              ? config_.seed_base
                              : static_cast<uint64_t>(std::random_device{}()) << 32 |
                                    static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    s->spec.seed = base + (++seed_counter_) * 0x9E3779B97F4A7C15ull;
    if (s->spec.seed == 0) s->spec.seed = 1;
  }
  info.seed = s->spec.seed;
  s->submit_time = Clock::now();
  LONGSANA_ASSIGN_OR_RETURN(const int position, registry_.AddLocked(lock, s));
  text_worker_->RequestLocked(lock, s).IgnoreError();  // room checked above, under this lock
  spdlog::info("{} submitted: {}x{}, {} frames, {} blocks, seed {}, {}", s->log_tag, s->spec.width,
               s->spec.height, s->spec.num_frames, info.num_blocks, info.seed,
               position == 0 ? std::string("admitted") : StrCat("queued at ", position));
  return info;
}

void EngineImpl::Cancel(SessionId id, const absl::Status& reason) {
  SessionRegistry::Lock lock(registry_);
  if (auto s = registry_.FindLocked(id)) registry_.EndLocked(lock, *s, reason);
}

// ----------------------------------------------------------------------------------------
// Commands

absl::StatusOr<CommandAck> EngineImpl::Command(SessionId id, uint64_t command_id,
                                               absl::StatusOr<SessionCommand> command) {
  SessionRegistry::Lock lock(registry_);
  std::shared_ptr<Session> s = registry_.FindLocked(id);
  if (!s || s->ended()) {
    return absl::NotFoundError(StrCat("session ", id, " not found or already ended"));
  }
  absl::StatusOr<CommandAck> result = absl::UnknownError("unreachable");
  if (!command.ok()) {
    result = command.status();
  } else {
    if (command_id <= s->last_command_id) {
      result = Bad("command_id",
                   StrCat(command_id,
                          " is not greater than the session's previous "
                          "command_id ",
                          s->last_command_id, " (ids must increase; duplicates are refused)"));
    } else if (auto* position = std::get_if<PositionCommand>(&*command)) {
      result = PositionLocked(*s, *position);
    } else if (s->stopped) {
      result = absl::FailedPreconditionError(
          "the session was stopped: no commands are accepted after stop");
    } else if (static_cast<int>(s->pending_ops.size()) >= config_.max_pending_commands) {
      result = absl::ResourceExhaustedError(
          StrCat("too many commands pending (", s->pending_ops.size(),
                 ", --max-pending-commands): retry after the next acknowledgement"));
    } else if (auto* sw = std::get_if<SwitchPromptCommand>(&*command)) {
      result = SwitchPromptLocked(lock, s, command_id, std::move(*sw));
    } else if (auto* ex = std::get_if<ExtendCommand>(&*command)) {
      result = ExtendLocked(*s, *ex);
    } else {
      result = StopLocked(*s);
    }
  }
  if (command_id > s->last_command_id) s->last_command_id = command_id;
  CommandAck ack;
  if (result.ok()) {
    ack = *result;
  } else {
    ack.status = result.status();
  }
  ack.command_id = command_id;
  if (result.ok()) result->command_id = command_id;
  s->events->Ack(ack);
  lock.Notify(s->events);
  registry_.Wake();
  return result;
}

absl::StatusOr<CommandAck> EngineImpl::SwitchPromptLocked(SessionRegistry::Lock& lock,
                                                          const std::shared_ptr<Session>& s,
                                                          uint64_t command_id,
                                                          SwitchPromptCommand command) {
  LONGSANA_RETURN_IF_ERROR(ValidatePrompt("switch_prompt.prompt", command.prompt));
  if (command.transition_blocks < 0 || command.transition_blocks > config_.max_transition_blocks) {
    return Bad("switch_prompt.transition_blocks",
               StrCat("must be in [0, ", config_.max_transition_blocks,
                      "] (--max-transition-blocks), got ", command.transition_blocks));
  }
  if (command.mode == PromptSwitchMode::kRecache && !s->spec.interactive) {
    return Bad("switch_prompt.mode", "RECACHE needs an interactive (Session) stream");
  }
  const int64_t block = s->next_unstarted_block;
  if (block >= s->num_blocks()) {
    return absl::FailedPreconditionError(
        "switch_prompt: every block of this video has started: extend it first");
  }
  // The block cannot start before the caption is encoded, so the ack stays true. Only the
  // latest switch is encoded (TextWorker coalesces); a superseded one is simply replaced.
  LONGSANA_RETURN_IF_ERROR(text_worker_->RequestLocked(lock, s));
  PendingSwitch pending;
  pending.prompt = std::move(command.prompt);
  pending.mode = command.mode;
  pending.transition_blocks = command.transition_blocks;
  pending.command_id = command_id;
  pending.received = Clock::now();
  pending.position_at_receipt = s->clock.Position(pending.received);
  pending.generation = ++switch_generation_;
  s->text_switch = std::make_pair(block, pending.generation);
  s->switches[block] = std::move(pending);
  CommandAck ack;
  ack.effective_block = block;
  ack.num_frames = s->info.num_frames;
  ack.num_blocks = s->info.num_blocks;
  ack.detail = command.mode == PromptSwitchMode::kRecache && block > 0
                   ? StrCat("prompt switched at block ", block, " (block ", block - 1,
                            " re-cached with the new prompt)")
                   : StrCat("prompt switched at block ", block);
  if (command.transition_blocks > 0) {
    ack.detail += StrCat(", blended with the previous prompt over ", command.transition_blocks,
                         command.transition_blocks == 1 ? " block" : " blocks");
  }
  spdlog::debug("{} prompt switch at block {}", s->log_tag, block);
  return ack;
}

absl::StatusOr<CommandAck> EngineImpl::ExtendLocked(Session& s, const ExtendCommand& command) {
  if (s.spec.live) {
    return absl::FailedPreconditionError(
        "extend: a live session grows by itself until it is stopped");
  }
  const int num_frames = command.num_frames;
  if (num_frames < 4 || num_frames % 4 != 0) {
    return Bad("extend.num_frames", StrCat("must be a positive multiple of 4, got ", num_frames));
  }
  if (s.info.num_frames + num_frames > config_.max_num_frames) {
    return Bad("extend.num_frames",
               StrCat("the video would have ", s.info.num_frames + num_frames,
                      " frames, more than the limit of ", config_.max_num_frames));
  }
  // Bookkeeping now (so the session cannot complete meanwhile); the runner gives the
  // sampler the same blocks before its next forward.
  const int64_t added = num_frames / 4;
  const int64_t first_new = s.num_blocks();
  s.AppendLatentFrames(added);
  s.dit_done = false;
  s.pending_ops.push_back(ExtendOp{added});
  CommandAck ack;
  ack.effective_block = first_new;
  ack.detail = StrCat("extended by ", num_frames, " frames from block ", first_new);
  ack.num_frames = s.info.num_frames;
  ack.num_blocks = s.info.num_blocks;
  return ack;
}

absl::StatusOr<CommandAck> EngineImpl::PositionLocked(Session& s, const PositionCommand& command) {
  if (!(command.seconds >= 0 && command.seconds <= 1e7)) {
    return Bad("position.seconds",
               StrCat("must be a playback position in [0, 1e7] seconds, got ", command.seconds));
  }
  s.clock.Report(Clock::now(), command.seconds, command.paused);
  // The block the viewer is in.
  int64_t block = 0;
  while (block + 1 < s.num_blocks() &&
         s.BlockStartSeconds(block + 1, config_.fps) <= command.seconds) {
    ++block;
  }
  CommandAck ack;
  ack.effective_block = block;
  ack.detail =
      StrCat("playback position ", command.seconds, " s", command.paused ? " (paused)" : "",
             s.lookahead_seconds < 0 ? "; this session is not paced" : "");
  ack.num_frames = s.info.num_frames;
  ack.num_blocks = s.info.num_blocks;
  return ack;
}

absl::StatusOr<CommandAck> EngineImpl::StopLocked(Session& s) {
  // The video ends with the block in progress (at least block 0).
  const int64_t last = std::max<int64_t>(0, s.next_unstarted_block - 1);
  if (last < s.num_blocks() - 1) {
    s.latent_bounds.resize(last + 2);
    s.RefreshLengths();
    s.pending_ops.push_back(StopAfterOp{last});
  }
  s.stopped = true;
  CommandAck ack;
  ack.effective_block = last;
  ack.detail = StrCat("the video ends after block ", last);
  ack.num_frames = s.info.num_frames;
  ack.num_blocks = s.info.num_blocks;
  return ack;
}

// ----------------------------------------------------------------------------------------
// Introspection and drain

EngineStats EngineImpl::Stats() const {
  SessionRegistry::Lock lock(registry_);
  EngineStats st = registry_.counters();
  const Scheduler& scheduler = registry_.scheduler();
  st.running = scheduler.running();
  st.queued = scheduler.queued();
  st.admissible =
      registry_.draining
          ? 0
          : scheduler.Admissible(default_slot_bytes_, config_.default_pacing == Pacing::kRealTime,
                                 BlockCost(SessionSpec{}));
  st.realtime_load = scheduler.RealtimeLoad();
  st.max_sessions = config_.max_sessions;
  st.slot_bytes_in_use = scheduler.bytes_in_use();
  st.memory_budget_bytes = scheduler.limits().memory_budget_bytes;
  st.draining = registry_.draining;
#if LONGSANA_TORCH_CUDA
  if (device_.is_cuda()) {
    const auto index = device_.has_index() ? device_.index() : c10::cuda::current_device();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    // Index 0 is StatType::AGGREGATE in LibTorch 1.13 and 2.x alike (the enum moved between
    // namespaces, the array layout did not).
    st.device_memory_allocated_bytes = stats.allocated_bytes[0].current;
    st.device_memory_reserved_bytes = stats.reserved_bytes[0].current;
  }
#endif
  return st;
}

ModelInfo EngineImpl::Info() const {
  ModelInfo m;
  m.model_dir = config_.model_dir;
  m.pipeline_class = dir_.index.class_name;
  auto cls = [&](const char* name) {
    auto it = dir_.index.components.find(name);
    return it == dir_.index.components.end() ? std::string() : it->second.class_name;
  };
  m.transformer_class = cls("transformer");
  m.vae_class = cls("vae");
  m.text_encoder_class = cls("text_encoder");
  m.transformer_params = CountParams(DitParamSpecs(dir_.transformer));
  m.text_encoder_params = CountParams(Gemma2ParamSpecs(dir_.text_encoder));
  m.vae_params = CountParams(WanVaeDecoderParamSpecs(dir_.vae));
  m.device = device_.is_cuda() ? "cuda" : "cpu";
  const auto name = [](at::ScalarType t) {
    return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : "float32";
  };
  m.transformer_dtype = name(dit_->options().dtype);
  m.text_encoder_dtype = name(text_->encoder().dtype());
  m.vae_dtype = name(vae_->options().dtype);
  m.dtype = m.transformer_dtype;
  m.tf32 = device_.is_cuda() && config_.allow_tf32;
  m.warmup_width = warmup_width_;
  m.warmup_height = warmup_height_;
  m.warmup_seconds = warmup_seconds_;
  m.fps = config_.fps;
  m.block_latent_frames = static_cast<int>(SamplerOptions{}.block_frames);
  m.min_dimension = config_.min_dimension;
  m.max_dimension = config_.max_dimension;
  m.max_num_frames = config_.max_num_frames;
  m.max_live_frames = live_limit_frames_;
  m.default_pacing = config_.default_pacing;
  m.default_lookahead_seconds = config_.default_lookahead_seconds;
  m.min_lookahead_seconds = config_.min_lookahead_seconds;
  m.max_lookahead_seconds = config_.max_lookahead_seconds;
  m.max_transition_blocks = config_.max_transition_blocks;
  m.version = LONGSANA_VERSION;
  return m;
}

void EngineImpl::Drain(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  SessionRegistry::Lock lock(registry_);
  if (!registry_.draining) {
    registry_.draining = true;
    // Queued sessions are handed back at once: another replica can start them now.
    std::vector<std::shared_ptr<Session>> queued;
    for (const auto& [id, s] : registry_.SessionsLocked()) {
      if (s->stage == Session::Stage::kQueued) queued.push_back(s);
    }
    for (const auto& s : queued) {
      registry_.EndLocked(lock, *s,
                          absl::UnavailableError("the server is draining: this queued session "
                                                 "was handed back; retry on another replica"));
    }
    spdlog::info("draining: no new sessions, {} queued handed back; {} running get {} ms",
                 queued.size(), registry_.SessionsLocked().size(), timeout.count());
  }
  while (!registry_.SessionsLocked().empty() && Clock::now() < deadline) {
    lock.Sync();
    registry_.changed().wait_until(lock.raw(), deadline);
  }
  std::vector<std::shared_ptr<Session>> left;
  for (const auto& [id, s] : registry_.SessionsLocked()) left.push_back(s);
  for (const auto& s : left) {
    registry_.EndLocked(lock, *s,
                        absl::UnavailableError("the server is shutting down (drain timeout)"));
  }
}

}  // namespace longsana::engine
