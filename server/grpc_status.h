// The single absl::Status -> grpc::Status mapping of the server. Canonical codes map one to
// one (absl and gRPC share the google.rpc.Code numbering); the message is kept, truncated to
// kMaxStatusMessageBytes so it always fits the client's trailing-metadata limit.
#pragma once

#include <grpcpp/support/status.h>

#include <cstddef>

#include "absl/status/status.h"

namespace longsana::server {

inline constexpr size_t kMaxStatusMessageBytes = 2048;

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace longsana::server
