// libFuzzer target on the untrusted surface of a Session stream: arbitrary bytes as the
// GenerateRequest of `start` and a sequence of later SessionCommands, through the server's
// validation and mapping onto the engine's types (server/proto_mapping).
//
// Input: records of [u16 little-endian length][bytes]; the first record is the request, the
// rest are commands. Properties checked on every input: nothing crashes (ASan/UBSan), every
// refusal is InvalidArgument naming a field ("field: why"), and every accepted value is
// within the limits the engine relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/common/request_checks.h"
#include "server/proto_mapping.h"

namespace {

using longsana::server::RequestLimits;
namespace engine = longsana::engine;
namespace v1 = longsana::v1;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckRefusal(const absl::Status& status) {
  Check(status.code() == absl::StatusCode::kInvalidArgument);
  const std::string_view message(status.message().data(), status.message().size());
  const size_t colon = message.find(": ");
  Check(colon != std::string_view::npos && colon > 0);  // names the field
}

void CheckSpec(const engine::SessionSpec& spec, const RequestLimits& limits) {
  Check(engine::ValidatePrompt("prompt", spec.prompt).ok());
  for (int d : {spec.width, spec.height}) {
    Check(d >= limits.min_dimension && d <= limits.max_dimension &&
          d % limits.dimension_multiple == 0);
  }
  // A live request carries the longest it may grow (the live limit), a finite one its length.
  Check(spec.num_frames >= 1 && (spec.num_frames - 1) % 4 == 0 &&
        spec.num_frames <= (spec.live ? limits.max_live_frames : limits.max_num_frames));
  Check(spec.timesteps.size() <= 1000);
  int64_t previous = 0;
  for (const auto& change : spec.prompt_timeline) {
    Check(change.block > previous);
    Check(engine::ValidatePrompt("timeline", change.prompt).ok());
    previous = change.block;
  }
  Check(engine::IsX264Preset(spec.encode.preset));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const RequestLimits limits;
  size_t at = 0;
  bool first = true;
  while (at + 2 <= size) {
    const size_t length = std::min<size_t>(size - at - 2, data[at] | (data[at + 1] << 8));
    const uint8_t* bytes = data + at + 2;
    at += 2 + length;
    if (first) {
      first = false;
      v1::GenerateRequest request;
      if (!request.ParseFromArray(bytes, static_cast<int>(length))) continue;
      for (bool interactive : {false, true}) {
        auto spec = longsana::server::ToSessionSpec(request, limits, interactive);
        if (spec.ok()) {
          CheckSpec(*spec, limits);
        } else {
          CheckRefusal(spec.status());
        }
      }
      continue;
    }
    v1::SessionCommand command;
    if (!command.ParseFromArray(bytes, static_cast<int>(length))) continue;
    if (command.has_start()) continue;  // the server ends the stream: a protocol error
    auto mapped = longsana::server::ToEngineCommand(command, limits);
    if (!mapped.ok()) {
      CheckRefusal(mapped.status());
      continue;
    }
    if (auto* sw = std::get_if<engine::SwitchPromptCommand>(&*mapped)) {
      Check(engine::ValidatePrompt("switch_prompt.prompt", sw->prompt).ok());
    } else if (auto* ex = std::get_if<engine::ExtendCommand>(&*mapped)) {
      Check(ex->num_frames > 0 && ex->num_frames % 4 == 0 &&
            ex->num_frames <= limits.max_num_frames);
    }
  }
  return 0;
}
