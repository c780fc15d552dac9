#include "tests/server/fake_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

extern "C" {
#include <libavutil/log.h>
}

#include "engine/media/fmp4_encoder.h"
#include "engine/media/test_pattern.h"

namespace longsana::testing {

using Clock = std::chrono::steady_clock;

struct FakeEngine::Session {
  engine::SessionId id = 0;
  engine::SessionSpec spec;
  std::shared_ptr<engine::ChunkSink> sink;
  std::vector<int64_t> block_latents;  // latent frames of each block
  int64_t num_blocks = 0;              // blocks to generate (Stop may lower it)
  uint64_t last_command_id = 0;        // command ids must increase
  int64_t block = 0;                   // block being generated
  int step = 0;                        // forwards done in the current block
  int num_steps = 4;
  int64_t next_frame = 0;                         // first video frame of the current block
  std::map<int64_t, std::string> prompt_changes;  // block -> prompt from that block on
  std::optional<absl::Status> cancel;
  bool stopping = false;
  bool ended = false;
  std::unique_ptr<engine::Fmp4Encoder> encoder;
  int64_t sequence = 0;
  Clock::time_point submitted, started, first_chunk;
  Clock::time_point block_started;
  std::vector<engine::BlockTiming> timings;
};

namespace {

// The first block absorbs the remainder (model.md §7.2); fewer than `block` frames: one block.
std::vector<int64_t> SplitLatents(int64_t latents, int64_t block) {
  const int64_t n = std::max<int64_t>(1, latents / block);
  std::vector<int64_t> out(static_cast<size_t>(n), block);
  out[0] = latents - (n - 1) * block;
  return out;
}

int VideoFrames(const std::vector<int64_t>& block_latents, int64_t j) {
  return static_cast<int>(j == 0 ? 1 + 4 * (block_latents[0] - 1) : 4 * block_latents[j]);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

FakeEngine::FakeEngine(FakeEngineOptions options) : options_(options) {
  av_log_set_level(AV_LOG_ERROR);  // keep x264's per-encoder statistics out of test logs
  counters_.max_sessions = options_.max_sessions;
  loop_ = std::thread([this] { Loop(); });
}

FakeEngine::~FakeEngine() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  loop_.join();
  std::lock_guard lock(mu_);
  for (auto& [id, s] : sessions_) {
    if (!s->ended) EndLocked(*s, absl::UnavailableError("the engine was destroyed"));
  }
}

absl::Status FakeEngine::ValidateSpec(const engine::SessionSpec& spec) const {
  auto dim_ok = [&](int v) {
    return v % 16 == 0 && v >= options_.min_dimension && v <= options_.max_dimension;
  };
  if (!dim_ok(spec.width)) return absl::InvalidArgumentError("width: out of the fake's range");
  if (!dim_ok(spec.height)) return absl::InvalidArgumentError("height: out of the fake's range");
  if (static_cast<int64_t>(spec.width) * spec.height > options_.max_pixels) {
    return absl::InvalidArgumentError(
        fmt::format("width x height: {}x{} exceeds the model's {} pixels", spec.width, spec.height,
                    options_.max_pixels));
  }
  if (spec.num_frames < 1 || (spec.num_frames - 1) % 4 != 0 ||
      spec.num_frames > options_.max_num_frames) {
    return absl::InvalidArgumentError("num_frames: out of the fake's range");
  }
  if (spec.prompt.empty()) return absl::InvalidArgumentError("prompt: empty");
  return absl::OkStatus();
}

absl::StatusOr<engine::SessionInfo> FakeEngine::Submit(engine::SessionSpec spec,
                                                       std::shared_ptr<engine::ChunkSink> sink) {
  std::unique_lock lock(mu_);
  if (draining_) return absl::UnavailableError("draining: no new sessions");
  if (!healthy_) return absl::UnavailableError("unhealthy");
  if (auto s = ValidateSpec(spec); !s.ok()) return s;
  const bool run_now = static_cast<int>(running_.size()) < options_.max_sessions && queue_.empty();
  if (!run_now && static_cast<int>(queue_.size()) >= options_.queue_size) {
    ++counters_.rejected;
    return absl::ResourceExhaustedError(
        fmt::format("queue_size: all {} session slots are busy and {} sessions are queued",
                    options_.max_sessions, queue_.size()));
  }
  auto s = std::make_unique<Session>();
  s->id = next_id_++;
  if (spec.seed == 0) spec.seed = 1000 + s->id;
  if (spec.timesteps.empty()) spec.timesteps = {1000, 960, 889, 727};
  s->num_steps = static_cast<int>(spec.timesteps.size());
  const int64_t latents = (spec.num_frames - 1) / 4 + 1;
  s->block_latents = SplitLatents(latents, options_.block_latent_frames);
  s->num_blocks = static_cast<int64_t>(s->block_latents.size());
  s->prompt_changes[0] = spec.prompt;
  for (const auto& c : spec.prompt_timeline) s->prompt_changes[c.block] = c.prompt;
  s->sink = std::move(sink);
  s->submitted = Clock::now();
  s->spec = std::move(spec);

  engine::SessionInfo info;
  info.id = s->id;
  info.seed = s->spec.seed;
  info.width = s->spec.width;
  info.height = s->spec.height;
  info.num_frames = s->spec.num_frames;
  info.latent_frames = latents;
  info.num_blocks = s->num_blocks;
  int64_t first = 0;
  for (int64_t j = 0; j < s->num_blocks; ++j) {
    info.block_first_frames.push_back(first);
    first += VideoFrames(s->block_latents, j);
  }
  info.timesteps = s->spec.timesteps;
  info.num_cached_blocks = s->spec.num_cached_blocks;
  info.motion_score = s->spec.motion_score;
  info.fps = options_.fps;
  info.slot_bytes = 1 << 20;

  Record rec;
  rec.spec = s->spec;
  const engine::SessionId id = s->id;
  Session* raw = s.get();
  sessions_[id] = std::move(s);
  if (run_now) {
    info.queue_position = 0;
    rec.info = info;
    records_[id] = rec;
    queue_.push_front(id);
    AdmitLocked();
  } else {
    queue_.push_back(id);
    info.queue_position = static_cast<int>(queue_.size());
    rec.info = info;
    records_[id] = rec;
    raw->sink->OnQueued(info.queue_position, 0.0);
  }
  cv_.notify_all();
  return info;
}

void FakeEngine::Cancel(engine::SessionId id, const absl::Status& reason) {
  std::lock_guard lock(mu_);
  Session* s = FindLocked(id);
  if (s == nullptr || s->ended) return;
  const auto q = std::find(queue_.begin(), queue_.end(), id);
  if (q != queue_.end()) {
    queue_.erase(q);
    EndLocked(*s, reason);
    RemoveEndedLocked();
    int position = 0;
    for (auto qid : queue_) sessions_[qid]->sink->OnQueued(++position, 0.0);
  } else {
    s->cancel = reason;  // dropped by the loop at the next step boundary
  }
  cv_.notify_all();
}

absl::StatusOr<engine::CommandAck> FakeEngine::Command(
    engine::SessionId id, uint64_t command_id, absl::StatusOr<engine::SessionCommand> command) {
  std::lock_guard lock(mu_);
  Session* s = FindLocked(id);
  if (s == nullptr || s->ended) return absl::NotFoundError(fmt::format("session {}", id));
  absl::StatusOr<engine::CommandAck> ack = absl::UnknownError("unreachable");
  if (!command.ok()) {
    ack = command.status();
  } else if (command_id <= s->last_command_id) {
    ack = absl::InvalidArgumentError(fmt::format(
        "command_id: {} is not greater than the previous command's {}", command_id,
        s->last_command_id));
  } else if (s->stopping) {
    ack = absl::FailedPreconditionError("the session is stopping: no commands after stop");
  } else {
    s->last_command_id = command_id;
    if (auto* sw = std::get_if<engine::SwitchPromptCommand>(&*command)) {
      ack = SwitchPromptLocked(*s, command_id, std::move(*sw));
    } else if (auto* ex = std::get_if<engine::ExtendCommand>(&*command)) {
      ack = ExtendLocked(*s, command_id, *ex);
    } else if (std::holds_alternative<engine::PositionCommand>(*command)) {
      // The fake does not pace: a position report is acknowledged and changes nothing.
      engine::CommandAck position;
      position.command_id = command_id;
      position.detail = "playback position (the fake engine does not pace)";
      ack = position;
    } else {
      ack = StopLocked(*s, command_id);
    }
  }
  engine::CommandAck sent;
  if (ack.ok()) {
    sent = *ack;
  } else {
    sent.command_id = command_id;
    sent.status = ack.status();
  }
  s->sink->OnCommandAck(sent);
  return ack;
}

absl::StatusOr<engine::CommandAck> FakeEngine::SwitchPromptLocked(Session& s,
                                                                  uint64_t command_id,
                                                                  engine::SwitchPromptCommand c) {
  if (c.mode == engine::PromptSwitchMode::kRecache && !s.spec.interactive) {
    return absl::FailedPreconditionError("RECACHE needs an interactive session");
  }
  const int64_t effective = s.step > 0 ? s.block + 1 : s.block;
  if (effective >= s.num_blocks) {
    return absl::FailedPreconditionError(fmt::format(
        "switch_prompt: no block left (the video ends with block {})", s.num_blocks - 1));
  }
  s.prompt_changes[effective] = std::move(c.prompt);
  // Later timeline entries would override the switch; a switch replaces them.
  s.prompt_changes.erase(s.prompt_changes.upper_bound(effective), s.prompt_changes.end());
  engine::CommandAck ack;
  ack.command_id = command_id;
  ack.effective_block = effective;
  ack.detail = c.mode == engine::PromptSwitchMode::kRecache ? "recache" : "immediate";
  return ack;
}

absl::StatusOr<engine::CommandAck> FakeEngine::ExtendLocked(Session& s, uint64_t command_id,
                                                            engine::ExtendCommand c) {
  const int num_frames = c.num_frames;
  if (num_frames <= 0 || num_frames % 4 != 0 ||
      s.spec.num_frames + num_frames > options_.max_num_frames) {
    return absl::InvalidArgumentError(fmt::format(
        "extend.num_frames: {} more frames exceed the limit of {}", num_frames, options_.max_num_frames));
  }
  const int64_t effective = s.num_blocks;
  for (int64_t b : SplitLatents(num_frames / 4, options_.block_latent_frames)) {
    s.block_latents.push_back(b);
  }
  s.num_blocks = static_cast<int64_t>(s.block_latents.size());
  s.spec.num_frames += num_frames;
  engine::CommandAck ack;
  ack.command_id = command_id;
  ack.effective_block = effective;
  ack.detail = fmt::format("+{} frames", num_frames);
  return ack;
}

absl::StatusOr<engine::CommandAck> FakeEngine::StopLocked(Session& s, uint64_t command_id) {
  s.stopping = true;
  s.num_blocks = std::min(s.num_blocks, s.block + 1);
  engine::CommandAck ack;
  ack.command_id = command_id;
  ack.effective_block = s.num_blocks - 1;
  ack.detail = "the video ends after this block";
  return ack;
}

engine::EngineStats FakeEngine::Stats() const {
  std::lock_guard lock(mu_);
  engine::EngineStats st = counters_;
  st.running = static_cast<int>(running_.size());
  st.queued = static_cast<int>(queue_.size());
  st.admissible = queue_.empty() ? options_.max_sessions - st.running : 0;
  st.draining = draining_;
  return st;
}

engine::ModelInfo FakeEngine::Info() const {
  engine::ModelInfo info;
  info.model_dir = "/models/fake-model";  // a path GetServerInfo must not disclose
  info.pipeline_class = "FakePipeline";
  info.transformer_class = "FakeTransformer";
  info.vae_class = "FakeVae";
  info.text_encoder_class = "FakeTextEncoder";
  info.device = "cpu";
  info.dtype = info.transformer_dtype = info.text_encoder_dtype = info.vae_dtype = "float32";
  info.fps = options_.fps;
  info.block_latent_frames = options_.block_latent_frames;
  info.default_width = options_.default_width;
  info.default_height = options_.default_height;
  info.min_dimension = options_.min_dimension;
  info.max_dimension = options_.max_dimension;
  info.dimension_multiple = 16;
  info.max_num_frames = options_.max_num_frames;
  info.version = "fake";
  return info;
}

bool FakeEngine::Healthy() const {
  std::lock_guard lock(mu_);
  return healthy_;
}

void FakeEngine::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  draining_ = true;
  cv_.wait_for(lock, timeout, [&] { return sessions_.empty(); });
  for (auto& [id, s] : sessions_) {
    if (!s->ended) EndLocked(*s, absl::UnavailableError("draining: the drain timeout passed"));
  }
  queue_.clear();
  RemoveEndedLocked();
}

void FakeEngine::SetHealthy(bool healthy) {
  std::lock_guard lock(mu_);
  healthy_ = healthy;
}

void FakeEngine::SetPaused(bool paused) {
  {
    std::lock_guard lock(mu_);
    paused_ = paused;
  }
  cv_.notify_all();
}

std::optional<FakeEngine::Record> FakeEngine::GetRecord(engine::SessionId id) const {
  std::lock_guard lock(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::vector<engine::SessionId> FakeEngine::SessionIds() const {
  std::lock_guard lock(mu_);
  std::vector<engine::SessionId> ids;
  for (const auto& [id, r] : records_) ids.push_back(id);
  return ids;
}

bool FakeEngine::WaitEnded(engine::SessionId id, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    auto it = records_.find(id);
    return it != records_.end() && it->second.ended;
  });
}

void FakeEngine::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    bool worked = false;
    const std::vector<engine::SessionId> running = running_;
    for (engine::SessionId id : running) {
      Session& s = *sessions_.at(id);
      if (s.ended) continue;
      if (s.cancel.has_value()) {
        EndLocked(s, *s.cancel);
        continue;
      }
      if (paused_) continue;
      if (s.sink->Congested()) {
        ++records_[id].congested_iterations;
        continue;
      }
      StepLocked(s);
      worked = true;
    }
    RemoveEndedLocked();
    AdmitLocked();
    if (worked) {
      lock.unlock();
      std::this_thread::sleep_for(options_.step_time);
      lock.lock();
    } else {
      cv_.wait_for(lock, options_.step_time);
    }
  }
}

bool FakeEngine::StepLocked(Session& s) {
  Record& rec = records_[s.id];
  if (s.step == 0) {
    auto it = s.prompt_changes.upper_bound(s.block);
    rec.block_prompts.push_back(std::prev(it)->second);
    s.block_started = Clock::now();
  }
  ++s.step;
  ++rec.forwards;
  ++counters_.forwards;
  ++counters_.forward_items;
  if (s.step <= s.num_steps) {
    s.sink->OnProgress(s.block, s.step, s.num_steps);
    return false;
  }
  // The cache pass ran: the block is done; decode (the test pattern) and encode it.
  const int frames = VideoFrames(s.block_latents, s.block);
  const auto encode_start = Clock::now();
  const std::vector<uint8_t> rgb = engine::RenderTestPatternBlock(
      s.spec.width, s.spec.height, s.next_frame + static_cast<int64_t>(s.spec.seed % 997), frames);
  auto fragment = s.encoder->EncodeBlock(rgb, frames);
  if (!fragment.ok()) {
    EndLocked(s, fragment.status());
    return true;
  }
  const auto now = Clock::now();
  if (s.sequence == 0) {
    engine::VideoChunk init;
    init.sequence = s.sequence++;
    init.block_index = -1;
    init.mime_type = s.encoder->mime_type();
    init.bytes = s.encoder->init_segment();
    s.sink->OnChunk(std::move(init));
    s.first_chunk = now;
  }
  engine::VideoChunk chunk;
  chunk.sequence = s.sequence++;
  chunk.block_index = s.block;
  chunk.first_frame = s.next_frame;
  chunk.num_frames = frames;
  chunk.presentation_seconds = static_cast<double>(s.next_frame) / options_.fps;
  chunk.duration_seconds = static_cast<double>(frames) / options_.fps;
  chunk.mime_type = s.encoder->mime_type();
  chunk.keyframe = true;  // every block starts with an IDR frame (one fragment per block)
  chunk.bytes = std::move(fragment->bytes);
  s.sink->OnChunk(std::move(chunk));
  s.timings.push_back({s.block, Seconds(encode_start - s.block_started), 0.0,
                       Seconds(now - encode_start), Seconds(now - s.started)});
  ++rec.blocks_done;
  s.next_frame += frames;
  ++s.block;
  s.step = 0;
  if (s.block >= s.num_blocks) {
    EndLocked(s, absl::OkStatus());
    return true;
  }
  return false;
}

void FakeEngine::EndLocked(Session& s, const absl::Status& status) {
  if (s.ended) return;
  s.ended = true;
  Record& rec = records_[s.id];
  rec.ended = true;
  rec.end_status = status;
  if (status.ok()) {
    engine::CompletionStats st;
    st.frames = s.next_frame;
    st.blocks = s.block;
    const auto now = Clock::now();
    st.time_to_first_chunk_seconds = Seconds(s.first_chunk - s.started);
    st.queue_seconds = Seconds(s.started - s.submitted);
    st.total_seconds = Seconds(now - s.started);
    st.generation_fps =
        st.total_seconds > 0 ? static_cast<double>(st.frames) / st.total_seconds : 0;
    st.block_timings = s.timings;
    ++counters_.completed;
    s.sink->OnCompleted(st);
  } else {
    if (status.code() == absl::StatusCode::kCancelled ||
        status.code() == absl::StatusCode::kDeadlineExceeded ||
        status.code() == absl::StatusCode::kUnavailable) {
      ++counters_.cancelled;
    } else {
      ++counters_.failed;
    }
    s.sink->OnFailed(status);
  }
  cv_.notify_all();
}

void FakeEngine::AdmitLocked() {
  bool admitted = false;
  while (static_cast<int>(running_.size()) < options_.max_sessions && !queue_.empty()) {
    const engine::SessionId id = queue_.front();
    queue_.pop_front();
    Session& s = *sessions_.at(id);
    engine::EncoderSettings settings;
    settings.width = s.spec.width;
    settings.height = s.spec.height;
    settings.fps = options_.fps;
    settings.crf = s.spec.encode.crf;
    settings.bitrate_bps = s.spec.encode.bitrate_bps;
    settings.preset = s.spec.encode.preset;
    settings.threads = 1;
    auto encoder = engine::Fmp4Encoder::Create(settings);
    s.started = Clock::now();
    if (!encoder.ok()) {
      EndLocked(s, encoder.status());
      continue;
    }
    s.encoder = std::move(*encoder);
    running_.push_back(id);
    records_[id].admitted = true;
    s.sink->OnStarted();
    admitted = true;
  }
  if (admitted) {
    int position = 0;
    for (auto qid : queue_) sessions_.at(qid)->sink->OnQueued(++position, 0.0);
  }
}

void FakeEngine::RemoveEndedLocked() {
  std::erase_if(running_, [&](engine::SessionId id) { return sessions_.at(id)->ended; });
  std::erase_if(queue_, [&](engine::SessionId id) { return sessions_.at(id)->ended; });
  std::erase_if(sessions_, [](const auto& kv) { return kv.second->ended; });
}

FakeEngine::Session* FakeEngine::FindLocked(engine::SessionId id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

}  // namespace longsana::testing
