// The engine facade: everything the server needs, and nothing of LibTorch.
//
// An Engine keeps the models resident, admits generation sessions into fixed-size state
// slots (or queues them), batches their DiT forwards, decodes and encodes each finished
// block on a separate worker, and hands the encoded chunks to the session's ChunkSink.
// Errors are absl::Status with canonical codes; nothing throws across this API.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/common/request_checks.h"  // part of the API: the shared request checks

namespace longsana::engine {

// Random 64-bit values, never 0: unique across restarts and replicas (not 1, 2, 3 per
// process), so logs and metrics of many servers can be joined on them.
using SessionId = uint64_t;

enum class DeviceKind { kCpu, kCuda };
// The VAE decoder's compute dtype: its weights, activations and every session's decoder cache.
enum class VaeDtype { kFloat32, kBFloat16 };
enum class PromptSwitchMode {
  kImmediate,  // the next block that has not started uses the new caption
  kRecache,    // first re-run the previous block's cache pass with it (model.md §7.5)
};

// How a session's generation is paced (serving.md §3, engine/scheduler/pacing.h).
enum class Pacing {
  kDefault,           // EngineConfig::default_pacing
  kRealTime,          // at most `lookahead` seconds of video ahead of the viewer's clock
  kAsFastAsPossible,  // batch rendering: as fast as the device allows
};

struct EncodeOptions {
  std::optional<int> crf;              // H.264 constant quality [0, 51] (default 23)
  std::optional<int64_t> bitrate_bps;  // or an average bitrate; not both
  std::string preset = "veryfast";     // x264 preset
  // One fragment per latent frame (4 video frames; the first of the video: 1) instead of one
  // per block: the first pixels leave after one latent frame's decode. Keyframes stay at
  // block starts (only a block's first fragment is a join point).
  bool fragment_per_latent_frame = false;
};

struct PromptChange {
  int64_t block = 0;   // first block that uses `prompt` (>= 1)
  std::string prompt;
};

// A generation request, as validated by Engine::ValidateSpec.
struct SessionSpec {
  std::string prompt;
  std::vector<PromptChange> prompt_timeline;  // strictly increasing blocks
  int width = 832;                            // pixels, multiple of 16
  int height = 480;
  int num_frames = 81;                        // 1 + 4k video frames (16 fps: 16 s + 1)
  // Open-ended: num_frames is ignored; the video grows block by block until a stop, a
  // cancel, or the live limit (EngineConfig::max_live_seconds, never past the model's RoPE
  // coverage: ModelInfo::max_live_frames), where it completes.
  bool live = false;
  uint64_t seed = 0;                          // 0: the engine picks one and reports it
  std::vector<double> timesteps;              // empty: {1000, 960, 889, 727}
  int num_cached_blocks = -1;                 // -1 global context, K > 0 last K blocks
  int motion_score = 10;
  EncodeOptions encode;
  int priority = 0;                           // higher wins among equal deadlines
  bool interactive = false;                   // allows RECACHE switches (more state memory)
  Pacing pacing = Pacing::kDefault;
  // Real-time pacing: how far (seconds of video) generation may run ahead of the viewer's
  // playback clock. 0: EngineConfig::default_lookahead_seconds; else within
  // [min_lookahead_seconds, max_lookahead_seconds].
  double lookahead_seconds = 0;
  // For log lines only (see engine/api/log_tag.h): who asked, and the client's request id.
  std::string tenant;
  std::string request_id;
};

struct SessionInfo {
  SessionId id = 0;
  uint64_t seed = 0;
  int width = 0, height = 0;
  int num_frames = 0;           // video frames
  int64_t latent_frames = 0;
  int64_t num_blocks = 0;
  std::vector<int64_t> block_first_frames;  // first video frame of each block
  std::vector<double> timesteps;
  int num_cached_blocks = -1;
  int motion_score = 10;
  int fps = 16;
  int queue_position = 0;       // 0: admitted and running; k > 0: k-th in the queue
  bool live = false;            // open-ended: the lengths above grow
  int64_t slot_bytes = 0;       // state + decoder cache + caption bytes reserved
  bool paced = false;           // real-time pacing (else as fast as possible)
  double lookahead_seconds = 0;  // paced: the lookahead in effect
};

struct BlockTiming {
  int64_t block = 0;
  double dit_seconds = 0;  // sum of this block's forwards (batched time, shared)
  double decode_seconds = 0;
  double encode_seconds = 0;
  double ready_seconds = 0;  // since the session started, when the chunk was handed over
};

struct VideoChunk {
  int64_t sequence = 0;         // 0 is the init segment, then one per fragment in order
  int64_t block_index = -1;     // -1 for the init segment
  int64_t first_frame = 0;      // index of the chunk's first video frame
  int num_frames = 0;
  double presentation_seconds = 0;  // first_frame / fps
  double duration_seconds = 0;
  std::string mime_type;        // e.g. video/mp4; codecs="avc1.64001e"
  std::string bytes;            // init segment (ftyp+moov) or one moof+mdat fragment
  // The fragment starts with a keyframe and decodes after the init segment alone (a join
  // point for a late viewer); false for the init segment.
  bool keyframe = false;
  // The last fragment of its block (always, with one fragment per block): `timing` is the
  // block's; zero on earlier fragments and the init segment.
  bool last_in_block = true;
  BlockTiming timing;  // how the block was made
  // The prompt this block was made with: the command id of the switch_prompt that set it
  // (0: the request's prompt or timeline) and its weight in the block's caption (1, or
  // less during a transition_blocks blend with the previous caption).
  uint64_t prompt_command_id = 0;
  double prompt_weight = 1;
  // The first chunk made with a switch's prompt carries how long that took.
  struct SwitchVisible {
    uint64_t command_id = 0;
    double latency_seconds = 0;  // from the command's arrival to this chunk's hand-over
    // This chunk's presentation time minus the viewer's playback position when the
    // command arrived: how much later, in the viewer's video, the new prompt shows.
    double playback_delay_seconds = 0;
  };
  std::optional<SwitchVisible> switch_visible;
};

// Interactive commands of a running session, as typed values.
struct SwitchPromptCommand {
  std::string prompt;
  PromptSwitchMode mode = PromptSwitchMode::kImmediate;
  // 0: the effective block uses the new caption. N > 0: blocks b, ..., b+N-1 blend the
  // previous caption c0 with the new one c1 as (1 - a) c0 + a c1 with a = (i+1)/(N+1) for
  // block b+i (elementwise over the padded embeddings, masks united), then c1 from b+N.
  // At most EngineConfig::max_transition_blocks.
  int transition_blocks = 0;
};
struct ExtendCommand {
  int num_frames = 0;  // video frames to add: a positive multiple of 4
};
struct StopCommand {};
// The viewer's player is at `seconds` of the video (paused or playing): re-anchors the
// session's playback clock. Accepted after a stop too (it changes nothing in the video).
struct PositionCommand {
  double seconds = 0;
  bool paused = false;
};
using SessionCommand =
    std::variant<SwitchPromptCommand, ExtendCommand, StopCommand, PositionCommand>;

// The answer to one command. Every command of a session gets exactly one, through the
// session's sink, in the order the commands were given (accepted or refused alike).
struct CommandAck {
  uint64_t command_id = 0;
  absl::Status status;          // OK: accepted; else why it was refused
  int64_t effective_block = 0;  // accepted: the block at which the command takes effect
  std::string detail;
  int num_frames = 0;           // the video's length after the command
  int64_t num_blocks = 0;
};

struct CompletionStats {
  int64_t frames = 0;
  int64_t blocks = 0;
  double time_to_first_chunk_seconds = 0;  // from start (admission) to the first fragment
  double queue_seconds = 0;
  double total_seconds = 0;                // from start to the last chunk
  double generation_fps = 0;               // frames / total_seconds
  std::vector<BlockTiming> block_timings;
  std::string detail;                      // why a live session ended here ("" otherwise)
};

// Receives one session's events. Implemented by the server (and by tests).
// Calls for one session never overlap and arrive in this order: OnQueued* while waiting,
// OnStarted, then OnProgress / OnChunk / OnCommandAck interleaved, then exactly one of
// OnCompleted or OnFailed, after which nothing more. Calls come from engine threads or from
// inside an Engine call made by the sink's owner: keep them short and non-blocking. A sink
// may call back into the Engine (Cancel, Command) from inside a callback: such calls never
// deadlock, and the events they cause are delivered after the current callback returns.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  virtual void OnQueued(int position, double estimated_start_seconds) = 0;
  virtual void OnStarted() = 0;
  virtual void OnProgress(int64_t block, int step, int num_steps) = 0;
  virtual void OnChunk(VideoChunk chunk) = 0;
  virtual void OnCommandAck(const CommandAck& ack) = 0;
  virtual void OnCompleted(const CompletionStats& stats) = 0;
  virtual void OnFailed(const absl::Status& status) = 0;
  // Backpressure: while true the engine schedules no new forwards for this session, so a
  // slow reader buffers at most its outbox plus the blocks already in the pipeline, and
  // other sessions are unaffected. A session congested for longer than the stall budget
  // (EngineConfig::stall_timeout) ends with DeadlineExceeded and frees its slot.
  // Thread-safe; polled by the scheduler.
  virtual bool Congested() const { return false; }
};

// One DiT forward as the runner ran it, for metrics.
struct ForwardSample {
  int items = 0;                // work items (sessions) in the batch
  int64_t tokens_per_item = 0;  // DiT tokens of each item
  double seconds = 0;           // wall time of the forward, the one-by-one retries included
  bool failed = false;          // the batched forward threw (its items were then retried alone)
  // Times the step (forward and sampler update) asked the host to wait for the device
  // (engine/common/device_ops.h): 0 by design, so forwards queue back to back on a GPU.
  int64_t step_host_waits = 0;
};

// Measurements the engine reports as they happen; implemented by the server's metrics.
// Called from engine threads (the runner's for OnForward): implementations must be quick,
// thread-safe and must not call back into the Engine.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnForward(const ForwardSample& sample) = 0;
};

// Cost caps: server policy over what one request may ask for. A request over a cap is
// refused with InvalidArgument naming the field, the cap and the server flag that sets it.
struct SessionPolicy {
  int max_steps = 8;                    // --max-steps: denoising timesteps per block
  int max_cached_blocks = 16;           // --max-cached-blocks: K of a num_cached_blocks window
  int64_t max_pixels = 1280 * 720;      // --max-pixels: width x height
  std::vector<std::string> presets = {  // --allowed-presets: x264 presets a request may name
      "ultrafast", "superfast", "veryfast", "faster", "fast", "medium"};
  int min_crf = 10;                     // --min-crf: lowest (most costly) CRF allowed
  int64_t max_bitrate_bps = 20'000'000;     // --max-bitrate
  int64_t max_chunk_bytes = 16 << 20;  // --max-chunk-bytes: a larger fragment fails its session
  absl::Status Validate() const;
};

struct EngineConfig {
  std::string model_dir;
  DeviceKind device = DeviceKind::kCpu;
  int threads = 0;                  // CPU intra-op threads; 0: one per core
  int max_sessions = 4;             // admitted (running) sessions
  // Bytes of session slots. 0: on CUDA memory_budget_fraction of the device memory left
  // after loading; on CPU only max_sessions limits.
  int64_t memory_budget_bytes = 0;
  double memory_budget_fraction = 0.8;
  int queue_size = 16;              // waiting sessions beyond which Submit fails
  int max_batch = 8;                // work items per DiT forward
  int max_num_frames = 961;         // per session, extensions included
  // CUDA: TF32 for cuBLAS matmuls and cuDNN convolutions (faster fp32 on Ampere+, but the
  // fp32 parity tolerances no longer hold: GOLDENS.md §5). Off by default, explicitly (LibTorch
  // itself turns it on for cuDNN). No effect on CPU.
  bool allow_tf32 = false;
  // --vae_dtype. fp32 (the reference's; GOLDENS.md §5 parity) or bf16: half the decoder cache
  // per session and bf16 convolutions, within the bf16 tolerances of engine/parity/
  // tolerances.h (relative RMS error ~2% of the video, ~10 of 255 levels at worst on the tiny
  // model). The DiT and Gemma are bf16 on CUDA and fp32 on CPU whatever this says.
  VaeDtype vae_dtype = VaeDtype::kFloat32;
  // Before readiness, one first block (SamplerOptions::block_frames + 1 latent frames) goes
  // through the DiT and the VAE at warmup_width x warmup_height, so that readiness means a
  // session of that size runs (and on CUDA fits in memory), and the first request pays no
  // lazy initialisation. 0 x 0: the default request size (ModelInfo::default_width/height,
  // 832x480) on CUDA, and min_dimension x min_dimension on CPU, where a 480p block takes
  // minutes. Both or neither; multiples of 16 in [min_dimension, max_dimension].
  int warmup_width = 0, warmup_height = 0;
  // A live session completes when its video reaches this length (and at the latest where
  // the model's RoPE table ends).
  std::chrono::milliseconds max_live_seconds{240'000};
  int min_dimension = 32;           // width/height limits in pixels (multiples of 16)
  int max_dimension = 1280;
  int caption_len = 300;            // caption tokens (BOS + L-1)
  bool text_softcap = false;        // Gemma-2 attention soft-cap (binding decision 1)
  bool exact_timesteps = false;     // binding decision 2 (default: bf16-rounded)
  int fps = 16;
  int encoder_threads = 0;          // x264 threads per session encoder; 0: automatic
  int media_workers = 0;            // decode + encode threads; 0: from the core count
  uint64_t seed_base = 0;           // seeds for seed=0 requests: 0 = from the clock
  // A session whose client has read nothing (its sink Congested()) for this long ends with
  // DeadlineExceeded and frees its slot. 0 disables the budget.
  std::chrono::milliseconds stall_timeout{10'000};
  int text_queue_size = 64;         // prompt encodings waiting; beyond: ResourceExhausted
  int max_pending_commands = 16;    // per session, not yet applied; beyond: ResourceExhausted
  int max_transition_blocks = 16;   // SwitchPromptCommand::transition_blocks
  // Pacing (engine/scheduler/pacing.h): what a request without one gets, and the bounds.
  Pacing default_pacing = Pacing::kRealTime;
  double default_lookahead_seconds = 5.0;
  double min_lookahead_seconds = 0.5;
  double max_lookahead_seconds = 60.0;
  // Time budget for real-time sessions (engine/scheduler/scheduler.h): the share of the
  // device's time they may use together (0: no time budget), and how many real-time
  // streams fit (0: measured from the per-block cost of what runs).
  double realtime_utilization = 0.9;
  int realtime_capacity = 0;
  SessionPolicy policy;
  // Optional measurements sink (not a setting: Validate ignores it).
  std::shared_ptr<EngineObserver> observer;
  absl::Status Validate() const;    // InvalidArgument naming the field
};

struct EngineStats {
  int running = 0;
  int queued = 0;
  int admissible = 0;               // more sessions that fit now (slots and budget)
  int max_sessions = 0;
  int64_t slot_bytes_in_use = 0;
  int64_t memory_budget_bytes = 0;
  uint64_t completed = 0, failed = 0, cancelled = 0, rejected = 0;
  uint64_t forwards = 0, forward_items = 0;  // DiT forwards run and work items in them
  bool draining = false;
  double realtime_load = 0;  // the real-time sessions' share of the time budget
  // CUDA caching allocator: bytes in tensors and bytes held from the device; -1 on CPU.
  int64_t device_memory_allocated_bytes = -1;
  int64_t device_memory_reserved_bytes = -1;
};

struct ModelInfo {
  std::string model_dir;
  std::string pipeline_class, transformer_class, vae_class, text_encoder_class;
  int64_t transformer_params = 0, text_encoder_params = 0, vae_params = 0;
  std::string device;               // "cpu", "cuda"
  std::string dtype;                // the transformer's: "float32", "bfloat16"
  // Each component's compute dtype, and whether TF32 is on (CUDA and allow_tf32).
  std::string transformer_dtype, text_encoder_dtype, vae_dtype;
  bool tf32 = false;
  // The warm-up that ran before readiness (EngineConfig::warmup_width): size and seconds.
  int warmup_width = 0, warmup_height = 0;
  double warmup_seconds = 0;
  int fps = 16;
  int block_latent_frames = 10;
  int default_width = 832, default_height = 480;
  int min_dimension = 32, max_dimension = 1280, dimension_multiple = 16;
  int max_num_frames = 961;
  int max_live_frames = 3841;       // a live session's longest video (limit and RoPE)
  Pacing default_pacing = Pacing::kRealTime;
  double default_lookahead_seconds = 5, min_lookahead_seconds = 0.5, max_lookahead_seconds = 60;
  int max_transition_blocks = 16;
  std::string version;              // longsana-serve version
};

class Engine {
 public:
  virtual ~Engine() = default;

  // Checks a request against the model and the limits: InvalidArgument naming the field
  // and the allowed values. Fills defaults is the caller's job (see SessionSpec).
  virtual absl::Status ValidateSpec(const SessionSpec& spec) const = 0;
  // Validates, then admits the session or queues it (SessionInfo::queue_position > 0).
  // ResourceExhausted when the queue is full; Unavailable while draining or unhealthy.
  // Returns without running any model: prompts are encoded on an engine thread, so API
  // threads (gRPC callbacks) never wait on the GPU. Events go to `sink` (also the OnFailed
  // for a later failure).
  virtual absl::StatusOr<SessionInfo> Submit(SessionSpec spec,
                                             std::shared_ptr<ChunkSink> sink) = 0;
  // Drops a queued or running session at the next step boundary and frees its slot; the
  // sink gets OnFailed(reason) unless the session already ended. Unknown ids are ignored.
  virtual void Cancel(SessionId id, const absl::Status& reason) = 0;

  // An interactive command. Returns its ack (status OK: the block where it takes effect)
  // without waiting for model work, and delivers the same ack through the sink, in command
  // order: refusals too, including a front end's own (pass its error as `command`, so that
  // it cannot overtake the acks of earlier commands). Refusals: InvalidArgument for bad
  // values or a command_id not greater than every earlier one of the session;
  // FailedPrecondition for any command after an accepted stop, or a switch when every
  // block has started; ResourceExhausted when too many commands or prompt encodings are
  // pending. NotFound (returned, no ack) for an unknown or finished session.
  virtual absl::StatusOr<CommandAck> Command(SessionId id, uint64_t command_id,
                                             absl::StatusOr<SessionCommand> command) = 0;

  virtual EngineStats Stats() const = 0;
  virtual ModelInfo Info() const = 0;
  // False after an unrecoverable device error (the server then reports NOT_SERVING).
  virtual bool Healthy() const = 0;

  // Stops admitting (Submit returns Unavailable), hands queued sessions back at once with
  // Unavailable, waits up to `timeout` for running sessions to finish, then ends what is
  // left with Unavailable; a block decode in progress stops at its next latent frame.
  // Returns within timeout plus one DiT forward. Idempotent.
  virtual void Drain(std::chrono::milliseconds timeout) = 0;
};

// Loads every model from config.model_dir onto the device and runs one warm-up forward;
// returns when the engine is ready to serve. InvalidArgument for a bad config, NotFound /
// InvalidArgument for a bad model directory (naming the file and field or key),
// FailedPrecondition when the device is unavailable.
absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineConfig& config);

}  // namespace longsana::engine
