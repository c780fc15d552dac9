// The server's log output: one line per record on stderr, as text or as JSON.
//
//   text: 2026-12-02T01:02:03.456 info [session=58123 tenant=acme request_id=4f1c] started ...
//   json: {"time":"2026-12-02T01:02:03.456Z","level":"info","logger":"longsana-server",
//          "session_id":"58123","tenant":"acme","request_id":"4f1c","msg":"started ..."}
//
// Session-scoped lines (engine and server alike) start with the tag of engine/api/log_tag.h;
// the JSON format lifts its fields into keys (session_id is a string: it does not fit a
// JavaScript number). gRPC's own log lines (gpr_log) go through the same sink and format with
// logger "grpc". Prompts and tokens are never logged at INFO (see the callers).
//
// Not thread-safe against concurrent logging: call once at start, before other threads log.
#pragma once

#include <spdlog/common.h>
#include <spdlog/formatter.h>

#include <memory>

#include "server/server_config.h"

namespace longsana::server {

// Makes the default logger ("longsana-server", flushed at info) writing to `sink` (null:
// stderr), and a logger "grpc" on the same sink that gRPC's logging is routed to.
void ConfigureLogging(LogLevel level, LogFormat format, spdlog::sink_ptr sink = nullptr);

// The formatter of one format (exposed for tests).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

spdlog::level::level_enum ToSpdlogLevel(LogLevel level);

}  // namespace longsana::server
