#include "engine/runner/engine_impl.h"

#include "engine/runner/engine_session.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/loader/checkpoint.h"
#include "engine/media/ffmpeg_util.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/wan_vae/wan_vae_params.h"
#include "engine/sampler/sampler_options.h"
#include "engine/text/utf8.h"

namespace longsana::engine {

using namespace runner_internal;

// ----------------------------------------------------------------------------------------

// ----------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineConfig& config) {
  auto engine = EngineImpl::Create(config);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(std::move(*engine));
}

EngineImpl::EngineImpl(const EngineConfig& config)
    : config_(config),
      device_(config.device == DeviceKind::kCuda ? at::Device(at::kCUDA) : at::Device(at::kCPU)),
      scheduler_(SchedulerLimits{config.max_sessions, config.memory_budget_bytes,
                                 config.queue_size, config.max_batch}) {}

absl::StatusOr<std::unique_ptr<EngineImpl>> EngineImpl::Create(const EngineConfig& config) {
  LONGSANA_RETURN_IF_ERROR(config.Validate());
  if (config.device == DeviceKind::kCuda && !at::hasCUDA()) {
    return absl::FailedPreconditionError("device: cuda requested but no CUDA device is available");
  }
  // Process-wide: the engine owns the process's compute. 0 means one thread per core
  // (LibTorch's own default is 1 on some builds).
  at::set_num_threads(config.threads > 0 ? config.threads
                                         : std::max(1u, std::thread::hardware_concurrency()));
  QuietFfmpegLogging();
  std::unique_ptr<EngineImpl> engine(new EngineImpl(config));
  LONGSANA_RETURN_IF_ERROR(engine->Load());
  LONGSANA_RETURN_IF_ERROR(engine->WarmUp());
  engine->text_worker_ = std::thread([e = engine.get()] { e->TextLoop(); });
  engine->runner_ = std::thread([e = engine.get()] { e->RunnerLoop(); });
  engine->media_ = std::thread([e = engine.get()] { e->MediaLoop(); });
  return engine;
}

absl::Status EngineImpl::Load() {
  const auto t0 = Clock::now();
  LONGSANA_ASSIGN_OR_RETURN(dir_, ModelDirectory::Open(config_.model_dir));
  spdlog::info("loading {} from {} onto {}", dir_.index.class_name, config_.model_dir,
               device_.str());
  spdlog::info("loading transformer ({} parameters)", CountParams(DitParamSpecs(dir_.transformer)));
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
  spdlog::info("loading VAE decoder ({} parameters)", CountParams(WanVaeDecoderParamSpecs(dir_.vae)));
  VaeOptions vae;
  vae.device = device_.is_cuda() ? "cuda" : "cpu";
  LONGSANA_ASSIGN_OR_RETURN(vae_, WanVaeDecoder::Load(dir_, vae));
  // RoPE covers rope_max_seq_len positions per axis (model.md §6): longer videos or larger
  // frames than that cannot be generated, so the limits never exceed it.
  const int64_t rope = dir_.transformer.rope_max_seq_len;
  const int64_t rope_frames = 1 + 4 * (rope - 1);
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
  // One forward of every model at the smallest size, so the first request pays no lazy
  // initialisation and readiness means the device works.
  const auto t0 = Clock::now();
  try {
    LONGSANA_ASSIGN_OR_RETURN(Caption caption, text_->Encode("warm-up"));
    const int64_t lh = config_.min_dimension / 8, lw = config_.min_dimension / 8;
    auto state = dit_->NewState(dit_->StateSpec(lh, lw, -1));
    DitWorkItem item;
    item.latent = at::zeros({dit_->config().in_channels, 1, lh, lw});
    item.timestep = 1000;
    item.caption = caption.embedding;
    item.caption_mask = caption.mask;
    item.state = state.get();
    at::Tensor v = dit_->Forward({&item, 1});
    LONGSANA_ASSIGN_OR_RETURN(auto cache, vae_->NewCache(lh, lw));
    at::Tensor video = vae_->DecodeBlock(v.slice(2, 0, 1), cache.get());
    if (!video.isfinite().all().item<bool>()) {
      return absl::InternalError("warm-up produced non-finite values");
    }
  } catch (const c10::Error& e) {
    return StatusFromTorch(e, "warm-up forward");
  }
  spdlog::info("warm-up forward done in {:.2f} s", Seconds(Clock::now() - t0));
  return absl::OkStatus();
}

EngineImpl::~EngineImpl() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  runner_cv_.notify_all();
  if (runner_.joinable()) runner_.join();
  text_jobs_.Close();
  if (text_worker_.joinable()) text_worker_.join();
  media_jobs_.Close();
  if (media_.joinable()) media_.join();
  // Whatever is left never completes: tell its clients.
  std::vector<std::shared_ptr<Session>> left;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) left.push_back(s);
    sessions_.clear();
  }
  for (auto& s : left) s->sink->Fail(absl::UnavailableError("the server is shutting down"));
}

// ----------------------------------------------------------------------------------------
// Requests

absl::Status EngineImpl::ValidateSpec(const SessionSpec& spec) const {
  auto bad = [](std::string_view field, const std::string& what) {
    return absl::InvalidArgumentError(StrCat(field, ": ", what));
  };
  if (spec.prompt.empty()) return bad("prompt", "must not be empty");
  if (spec.prompt.size() > kMaxPromptBytes) {
    return bad("prompt", StrCat("at most ", kMaxPromptBytes, " bytes, got ", spec.prompt.size()));
  }
  if (!IsValidUtf8(spec.prompt)) return bad("prompt", "must be valid UTF-8");
  for (auto [field, value] : {std::pair<std::string_view, int>{"width", spec.width},
                              {"height", spec.height}}) {
    if (value % 16 != 0 || value < config_.min_dimension || value > config_.max_dimension) {
      return bad(field, StrCat("must be a multiple of 16 in [", config_.min_dimension, ", ",
                               config_.max_dimension, "], got ", value));
    }
  }
  if (spec.num_frames < 1 || (spec.num_frames - 1) % 4 != 0 ||
      spec.num_frames > config_.max_num_frames) {
    return bad("num_frames", StrCat("must be 1 + 4k in [1, ", config_.max_num_frames, "], got ",
                                    spec.num_frames));
  }
  const SamplerOptions sampler = SamplerOptionsFor(spec);
  LONGSANA_RETURN_IF_ERROR(sampler.Validate());
  if (spec.motion_score < 1 || spec.motion_score > 100) {
    return bad("motion_score", StrCat("must be in [1, 100], got ", spec.motion_score));
  }
  const int64_t latent_frames = (spec.num_frames - 1) / 4 + 1;
  const int64_t blocks =
      static_cast<int64_t>(BlockBoundaries(latent_frames, sampler.block_frames).size()) - 1;
  int64_t previous = 0;
  for (const auto& change : spec.prompt_timeline) {
    if (change.block <= previous || change.block >= blocks) {
      return bad("prompt_timeline", StrCat("blocks must be strictly increasing in [1, ", blocks - 1,
                                           "] (this video has ", blocks, " blocks), got ",
                                           change.block));
    }
    if (change.prompt.empty() || change.prompt.size() > kMaxPromptBytes ||
        !IsValidUtf8(change.prompt)) {
      return bad("prompt_timeline", "prompts must be non-empty UTF-8 of at most 16 KiB");
    }
    previous = change.block;
  }
  absl::Status enc_status = EncoderSettingsFor(spec).Validate();
  if (!enc_status.ok()) return bad("output", std::string(enc_status.message()));
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

absl::StatusOr<SessionInfo> EngineImpl::Submit(SessionSpec spec, std::shared_ptr<ChunkSink> sink) {
  LONGSANA_RETURN_IF_ERROR(ValidateSpec(spec));
  if (!healthy_) return absl::UnavailableError("the engine is unhealthy (device error)");
  {
    std::lock_guard lock(mu_);
    if (draining_ || stopping_) return absl::UnavailableError("the server is draining");
  }
  if (spec.timesteps.empty()) spec.timesteps = SamplerOptions{}.timesteps;

  auto s = std::make_shared<Session>();
  s->spec = spec;
  s->sink = std::make_shared<SerializedSink>(std::move(sink));
  // The captions are encoded by the text worker; the session starts once they are ready.
  for (const auto& change : spec.prompt_timeline) {
    PendingSwitch timeline_switch;
    timeline_switch.prompt = change.prompt;
    s->switches[change.block] = std::move(timeline_switch);
  }
  LONGSANA_ASSIGN_OR_RETURN(s->slot_bytes, SlotBytes(spec));

  SessionInfo& info = s->info;
  info.width = spec.width;
  info.height = spec.height;
  s->latent_bounds =
      BlockBoundaries((spec.num_frames - 1) / 4 + 1, SamplerOptions{}.block_frames);
  RefreshLengthsLocked(*s);
  info.timesteps = spec.timesteps;
  info.num_cached_blocks = spec.num_cached_blocks;
  info.motion_score = spec.motion_score;
  info.fps = config_.fps;
  info.slot_bytes = s->slot_bytes;

  std::lock_guard lock(mu_);
  if (draining_ || stopping_) return absl::UnavailableError("the server is draining");
  s->id = next_id_++;
  info.id = s->id;
  if (spec.seed == 0) {
    const uint64_t base = config_.seed_base != 0
                              ? config_.seed_base
                              : static_cast<uint64_t>(std::random_device{}()) << 32 |
                                    static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    s->spec.seed = base + (++seed_counter_) * 0x9E3779B97F4A7C15ull;
    if (s->spec.seed == 0) s->spec.seed = 1;
  }
  info.seed = s->spec.seed;
  auto position = scheduler_.Submit({s->id, spec.priority, s->slot_bytes});
  if (!position.ok()) {
    ++counters_.rejected;
    return position.status();
  }
  info.queue_position = *position;
  s->last_queue_position = *position;
  s->stage = *position == 0 ? Session::Stage::kAdmitted : Session::Stage::kQueued;
  s->submit_time = Clock::now();
  s->visible = true;  // the runner may start it as soon as we unlock
  sessions_[s->id] = s;
  text_jobs_.Push({s, -1, 0, s->spec.prompt});
  spdlog::info("[session {}] submitted: {}x{}, {} frames, {} blocks, seed {}, {}", s->id,
               spec.width, spec.height, spec.num_frames, info.num_blocks, info.seed,
               *position == 0 ? std::string("admitted") : StrCat("queued at ", *position));
  runner_cv_.notify_all();
  return info;
}

void EngineImpl::Cancel(SessionId id, const absl::Status& reason) {
  Notification note;
  {
    std::lock_guard lock(mu_);
    auto s = FindLocked(id);
    if (!s || s->stage == Session::Stage::kFinished) return;
    if (s->in_flight) {
      // Dropped by the runner when the forward returns (the next step boundary).
      s->cancelled = true;
      s->cancel_reason = reason;
    } else {
      note = FinishLocked(s, reason);
    }
  }
  runner_cv_.notify_all();
  if (note) note();
}

void EngineImpl::RefreshLengthsLocked(Session& s) {
  SessionInfo& info = s.info;
  info.latent_frames = s.latent_bounds.back();
  info.num_frames = static_cast<int>(VideoFrames(0, info.latent_frames));
  info.num_blocks = static_cast<int64_t>(s.latent_bounds.size()) - 1;
  info.block_first_frames.clear();
  for (int64_t b = 0; b < info.num_blocks; ++b) {
    info.block_first_frames.push_back(FirstVideoFrame(s.latent_bounds[b]));
  }
}

void EngineImpl::TextLoop() {
  while (std::optional<TextJob> job = text_jobs_.Pop()) ProcessTextJob(*job);
}

void EngineImpl::ProcessTextJob(const TextJob& job) {
  Session& s = *job.session;
  {
    std::lock_guard lock(mu_);
    if (s.stage == Session::Stage::kFinished) return;
  }
  const int motion_score = s.spec.motion_score;
  Caption caption;
  std::map<int64_t, Caption> timeline;  // a new session's scheduled prompt changes
  auto encoded = text_->Encode(job.prompt, motion_score);
  absl::Status status = encoded.status();
  if (encoded.ok()) caption = *std::move(encoded);
  if (job.block < 0) {
    for (const auto& change : s.spec.prompt_timeline) {
      if (!status.ok()) break;
      auto c = text_->Encode(change.prompt, motion_score);
      status = c.status();
      if (c.ok()) timeline[change.block] = *std::move(c);
    }
  }
  Notification failure;
  {
    std::lock_guard lock(mu_);
    if (s.stage == Session::Stage::kFinished) return;
    if (!status.ok()) {
      failure = FinishLocked(job.session, status);
    } else if (job.block < 0) {
      s.caption = std::move(caption);
      for (auto& [block, c] : timeline) {
        auto it = s.switches.find(block);
        if (it != s.switches.end() && it->second.generation == 0) {
          it->second.caption = std::move(c);
          it->second.ready = true;
        }
      }
      s.captions_ready = true;
    } else {
      auto it = s.switches.find(job.block);
      if (it != s.switches.end() && it->second.generation == job.generation) {
        it->second.caption = std::move(caption);
        it->second.ready = true;
      }
    }
  }
  runner_cv_.notify_all();
  if (failure) failure();
}

void EngineImpl::PostAck(const std::shared_ptr<SerializedSink>& sink, const CommandAck& ack) {
  // Delivered by the runner thread, never from inside the caller: a command may come from a
  // sink callback, and the sink's calls must not nest.
  {
    std::lock_guard lock(mu_);
    posted_.push_back([sink, ack] { sink->Ack(ack); });
  }
  runner_cv_.notify_all();
}

std::shared_ptr<EngineImpl::Session> EngineImpl::FindLocked(SessionId id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

EngineImpl::Notification EngineImpl::FinishLocked(const std::shared_ptr<Session>& s,
                                                  const absl::Status& status) {
  if (s->stage == Session::Stage::kFinished) return {};
  s->stage = Session::Stage::kFinished;
  s->cancelled = true;  // pending media jobs are skipped
  scheduler_.Remove(s->id);
  sessions_.erase(s->id);
  if (status.ok()) {
    ++counters_.completed;
    const double total = Seconds(Clock::now() - s->start_time);
    avg_session_seconds_ = avg_session_seconds_ == 0 ? total : 0.8 * avg_session_seconds_ + 0.2 * total;
    return {};  // the media worker sends OnCompleted itself (it has the stats)
  }
  if (absl::IsCancelled(status) || absl::IsDeadlineExceeded(status)) {
    ++counters_.cancelled;
  } else {
    ++counters_.failed;
  }
  spdlog::info("[session {}] ended: {}", s->id, status.ToString());
  runner_cv_.notify_all();
  return [sink = s->sink, status] { sink->Fail(status); };
}

// ----------------------------------------------------------------------------------------
// Commands

absl::StatusOr<CommandAck> EngineImpl::Command(SessionId id, uint64_t command_id,
                                               absl::StatusOr<SessionCommand> command) {
  if (!command.ok()) return command.status();
  if (auto* sw = std::get_if<SwitchPromptCommand>(&*command)) {
    return SwitchPrompt(id, command_id, std::move(sw->prompt), sw->mode);
  }
  if (auto* ex = std::get_if<ExtendCommand>(&*command)) return Extend(id, command_id, ex->num_frames);
  return Stop(id, command_id);
}

absl::StatusOr<CommandAck> EngineImpl::SwitchPrompt(SessionId id, uint64_t command_id,
                                                    std::string prompt, PromptSwitchMode mode) {
  if (prompt.empty() || prompt.size() > kMaxPromptBytes || !IsValidUtf8(prompt)) {
    return absl::InvalidArgumentError("prompt: must be non-empty UTF-8 of at most 16 KiB");
  }
  CommandAck ack;
  std::shared_ptr<SerializedSink> sink;
  {
    std::lock_guard lock(mu_);
    auto s = FindLocked(id);
    if (!s) return absl::NotFoundError(StrCat("session ", id, " not found or finished"));
    if (s->dit_done || s->next_unstarted_block >= s->info.num_blocks) {
      return absl::FailedPreconditionError(
          "every block of this video has started: extend it first to switch the prompt");
    }
    if (mode == PromptSwitchMode::kRecache && !s->spec.interactive) {
      return absl::InvalidArgumentError("mode: RECACHE needs an interactive (Session) stream");
    }
    // The block cannot start before the caption is encoded, so the ack stays true.
    const int64_t block = s->next_unstarted_block;
    PendingSwitch pending;
    pending.prompt = prompt;
    pending.mode = mode;
    pending.generation = ++switch_generation_;
    s->switches[block] = pending;
    text_jobs_.Push({s, block, pending.generation, std::move(prompt)});
    ack.command_id = command_id;
    ack.effective_block = block;
    ack.num_frames = s->info.num_frames;
    ack.num_blocks = s->info.num_blocks;
    ack.detail = mode == PromptSwitchMode::kRecache && block > 0
                     ? StrCat("prompt switched at block ", block, " (block ", block - 1,
                              " re-cached with the new prompt)")
                     : StrCat("prompt switched at block ", block);
    sink = s->sink;
  }
  spdlog::debug("[session {}] prompt switch at block {}", id, ack.effective_block);
  PostAck(sink, ack);
  return ack;
}

absl::StatusOr<CommandAck> EngineImpl::Extend(SessionId id, uint64_t command_id, int num_frames) {
  if (num_frames < 4 || num_frames % 4 != 0) {
    return absl::InvalidArgumentError(
        StrCat("num_frames: must be a positive multiple of 4, got ", num_frames));
  }
  CommandAck ack;
  std::shared_ptr<SerializedSink> sink;
  {
    std::lock_guard lock(mu_);
    auto s = FindLocked(id);
    if (!s) return absl::NotFoundError(StrCat("session ", id, " not found or finished"));
    if (s->info.num_frames + num_frames > config_.max_num_frames) {
      return absl::InvalidArgumentError(
          StrCat("num_frames: the video would have ", s->info.num_frames + num_frames,
                 " frames, more than the limit of ", config_.max_num_frames));
    }
    // Bookkeeping now (so the media worker does not complete the session meanwhile); the
    // sampler gets the same blocks from the runner before its next forward.
    const int64_t added = num_frames / 4;
    const int64_t first_new = s->info.num_blocks;
    const int64_t target = s->latent_bounds.back() + added;
    while (s->latent_bounds.back() < target) {
      s->latent_bounds.push_back(
          std::min(target, s->latent_bounds.back() + SamplerOptions{}.block_frames));
    }
    RefreshLengthsLocked(*s);
    s->dit_done = false;
    s->pending_ops.push_back([added](SamplerSession& sampler) { sampler.Extend(added); });
    ack = {command_id, first_new,
           StrCat("extended by ", num_frames, " frames from block ", first_new),
           s->info.num_frames, s->info.num_blocks};
    sink = s->sink;
  }
  PostAck(sink, ack);
  return ack;
}

absl::StatusOr<CommandAck> EngineImpl::Stop(SessionId id, uint64_t command_id) {
  CommandAck ack;
  std::shared_ptr<SerializedSink> sink;
  {
    std::lock_guard lock(mu_);
    auto s = FindLocked(id);
    if (!s) return absl::NotFoundError(StrCat("session ", id, " not found or finished"));
    // The video ends with the block in progress (at least block 0).
    const int64_t last = std::max<int64_t>(0, s->next_unstarted_block - 1);
    if (last < s->info.num_blocks - 1) {
      s->latent_bounds.resize(last + 2);
      RefreshLengthsLocked(*s);
      s->pending_ops.push_back([last](SamplerSession& sampler) { sampler.StopAfterBlock(last); });
    }
    ack = {command_id, last, StrCat("the video ends after block ", last), s->info.num_frames,
           s->info.num_blocks};
    sink = s->sink;
  }
  PostAck(sink, ack);
  return ack;
}

// ----------------------------------------------------------------------------------------
// Introspection and drain

EngineStats EngineImpl::Stats() const {
  std::lock_guard lock(mu_);
  EngineStats st = counters_;
  st.running = scheduler_.running();
  st.queued = scheduler_.queued();
  SessionSpec defaults;
  auto bytes = SlotBytes(defaults);
  st.admissible = draining_ ? 0 : scheduler_.Admissible(bytes.ok() ? *bytes : 0);
  st.max_sessions = config_.max_sessions;
  st.slot_bytes_in_use = scheduler_.bytes_in_use();
  st.memory_budget_bytes = config_.memory_budget_bytes;
  st.draining = draining_;
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
  m.dtype = device_.is_cuda() ? "bfloat16" : "float32";
  m.fps = config_.fps;
  m.block_latent_frames = static_cast<int>(SamplerOptions{}.block_frames);
  m.min_dimension = config_.min_dimension;
  m.max_dimension = config_.max_dimension;
  m.max_num_frames = config_.max_num_frames;
  m.version = LONGSANA_VERSION;
  return m;
}

void EngineImpl::Drain(std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mu_);
    draining_ = true;
  }
  spdlog::info("draining: no new sessions; waiting up to {} ms for running ones", timeout.count());
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    {
      std::lock_guard lock(mu_);
      if (sessions_.empty()) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<SessionId> left;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) left.push_back(id);
  }
  for (SessionId id : left) {
    Cancel(id, absl::UnavailableError("the server is shutting down (drain timeout)"));
  }
}

}  // namespace longsana::engine
