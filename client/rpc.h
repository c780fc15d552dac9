// The CLI's gRPC plumbing shared by its commands (commands.cc) and the load tester
// (bench.cc): channels with the connection's TLS and limits, per-call deadline and token,
// requests from the command-line options.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "client/commands.h"
#include "longsana/v1/longsana.grpc.pb.h"

namespace longsana::client {

// "RESOURCE_EXHAUSTED" etc.
const char* CodeName(grpc::StatusCode code);

// The gRPC service config of every channel, client/service_config.json (the Python and Node
// examples read the same file): round_robin over the target's addresses, and a call refused
// before its first response message (UNAVAILABLE: draining, not ready, gone;
// RESOURCE_EXHAUSTED: slots and queue full) retried, up to 5 attempts in all, on the next
// replica; Watch also on NOT_FOUND (the session lives on another replica). A call that has
// received anything is never retried (gRPC commits it).
std::string_view ServiceConfigJson();

std::shared_ptr<grpc::Channel> MakeChannel(const ConnectionOptions& c);
std::unique_ptr<v1::LongSana::Stub> Connect(const ConnectionOptions& c);
std::chrono::system_clock::time_point After(double seconds);
// The deadline and the token of every call.
void PrepareContext(grpc::ClientContext& context, const ConnectionOptions& c);
v1::GenerateRequest BuildRequest(const std::string& prompt, const RequestOptions& o);

}  // namespace longsana::client
