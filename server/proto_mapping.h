// Wire <-> engine conversions: request validation (proto -> engine::SessionSpec) and the
// engine's results and events -> proto messages. The one place that knows both vocabularies.
//
// Every function is pure and thread-safe. Validation errors are InvalidArgument whose
// message starts with the proto field path and states the allowed values, e.g.
// "width: 100 is not a multiple of 16 in [32, 1280]".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "longsana/v1/longsana.pb.h"

namespace longsana::server {

namespace v1 = ::longsana::v1;

using engine::kMaxPromptBytes;
inline constexpr int kMaxDenoisingSteps = 50;
inline constexpr int kMaxTimelineSegments = 1024;
inline constexpr int kMinPriority = -1000;
inline constexpr int kMaxPriority = 1000;
inline constexpr int kVideoFramesPerLatentFrame = 4;  // the Wan VAE's temporal stride

// What a request may ask for; from the loaded model and the engine's configuration.
struct RequestLimits {
  int default_width = 832;
  int default_height = 480;
  int min_dimension = 32;
  int max_dimension = 1280;
  int dimension_multiple = 16;
  int max_num_frames = 961;
  int max_live_frames = 3841;
  int fps = 16;
  int block_latent_frames = 10;

  static RequestLimits FromModelInfo(const engine::ModelInfo& info);
};

// The one block partition and prompt check (engine/common/request_checks.h).
using engine::NumBlocks;
using engine::ValidatePrompt;

// round(fps * seconds) + 1 rounded to the nearest 1 + 4k (ties up).
int64_t FramesForDuration(double seconds, int fps);

// Validates every field of `request` against `limits` and maps it onto a SessionSpec with
// the defaults filled in (seed 0 and empty timesteps are left for the engine to resolve).
// `interactive` is set for Session streams. InvalidArgument naming the field otherwise.
absl::StatusOr<engine::SessionSpec> ToSessionSpec(const v1::GenerateRequest& request,
                                                  const RequestLimits& limits, bool interactive);

// Session commands (after `start`): the values the server can check without the engine.
absl::Status ValidateSwitchPrompt(const v1::SwitchPrompt& command);
absl::Status ValidateExtend(const v1::Extend& command, const RequestLimits& limits);
engine::PromptSwitchMode ToPromptSwitchMode(v1::SwitchPrompt::Mode mode);
// A later command (not `start`) as the engine's typed command; InvalidArgument naming the
// field (`switch_prompt.prompt`, `extend.num_frames`, `command`) otherwise.
absl::StatusOr<engine::SessionCommand> ToEngineCommand(const v1::SessionCommand& command,
                                                       const RequestLimits& limits);

// Engine -> wire.
v1::Accepted ToAccepted(const engine::SessionInfo& info);
void ToProto(const engine::VideoChunk& chunk, v1::VideoChunk* out);  // moves nothing; copies bytes
void ToProto(engine::VideoChunk&& chunk, v1::VideoChunk* out);       // moves the bytes
v1::CommandAck ToProto(const engine::CommandAck& ack);
// An ack for a command the server or the engine refused (code != 0).
v1::CommandAck ErrorAck(uint64_t command_id, const absl::Status& status);
v1::Completed ToProto(const engine::CompletionStats& stats);
v1::ServerInfo ToServerInfo(const engine::ModelInfo& info, const engine::EngineStats& stats,
                            std::string_view build);

}  // namespace longsana::server
