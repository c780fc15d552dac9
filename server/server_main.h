// The longsana-server program: flags -> Config (validated once), logging, the gRPC server,
// model loading on a thread, and SIGTERM/SIGINT -> drain -> exit 0.
//
// Lifecycle: the gRPC server starts first (health NOT_SERVING, RPCs UNAVAILABLE "loading")
// and prints "listening on HOST:PORT" as one line on stdout (with the picked port when the
// flag says port 0); the engine factory loads the models and runs the warm-up on a thread;
// then health is SERVING. On SIGTERM or SIGINT the server drains (see Server::Drain) for
// --drain_timeout seconds, gives streams --shutdown_grace to flush, stops and returns 0. A
// watchdog started with the signal guarantees the exit: drain + grace + 5 s after it, the
// process logs (error level) what it was still waiting for and _exit(0)s without running
// destructors. Exit codes: 0 after a signal, 1 when the server cannot listen or the models
// fail to load (the reason logged), 2 for a configuration error (the reason on stderr,
// naming the flag): a bad flag, a bad --config file (server/config_file.h), or a TLS file
// (--tls_cert, --tls_key, --tls_client_ca) or tenant tokens file (--auth_tokens) that cannot
// be read or parsed. With --http_listen it prints "http listening on HOST:PORT" next.
//
// Flags may be written with dashes or underscores (--model-dir or --model_dir); --config FILE
// sets them from a YAML file, and flags on the command line win over it. --help lists the
// program's flags with their defaults.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "server/server_config.h"

namespace longsana::server {

using EngineFactory =
    std::function<absl::StatusOr<std::unique_ptr<engine::Engine>>(const engine::EngineConfig&)>;

// Runs the server program; returns the process exit code.
int ServerMain(int argc, char** argv, const EngineFactory& create_engine);

// The Config the parsed flags describe, validated (InvalidArgument naming the flag).
absl::StatusOr<Config> ConfigFromFlags();

// Rewrites "--foo-bar[=v]" to "--foo_bar[=v]" in place (flag names only, up to a bare "--"),
// so that Abseil flags accept the dashed spelling.
void NormalizeFlagDashes(int argc, char** argv);

}  // namespace longsana::server
