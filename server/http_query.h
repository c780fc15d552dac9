// The browser API's query strings (GET /v1/generate?...) as wire requests: parsed here, then
// validated by proto_mapping's ToSessionSpec like any gRPC request.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "longsana/v1/longsana.pb.h"

namespace longsana::server {

// The browser API's query string (GET /v1/generate?prompt=...&width=...) as a
// GenerateRequest, which ToSessionSpec then validates like any other. Parameters (the proto's
// field names; values percent-decoded, '+' a space): prompt, width, height, num_frames (or
// frames), duration_seconds, live (true/false/1/0), seed, num_cached_blocks, motion_score,
// priority, crf, bitrate_bps, preset, pacing (realtime | fast), lookahead_seconds, fragments
// (block | latent_frame); access_token (the route's credential) is skipped. InvalidArgument naming
// the parameter for an unknown one, a repeated one, or a value that is not of its type.
absl::StatusOr<v1::GenerateRequest> GenerateRequestFromQuery(std::string_view query);

}  // namespace longsana::server
