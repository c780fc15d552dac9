// longsana: command-line client of longsana-serve.
//
//   longsana generate PROMPT -o out.mp4 [--server HOST:PORT] [--width W --height H]
//            [--frames N | --duration S] [--seed S] [--timeout S] ...
//   longsana session [PROMPT] -o out.mp4 ...   (stdin: a line switches the prompt;
//                                               /recache PROMPT, /blend N PROMPT,
//                                               /extend N, /pause, /play, /stop, /quit)
//   longsana watch SESSION_ID -o out.mp4       (another viewer of a running session)
//   longsana info [--json]
//   longsana health [--service NAME]          (grpc-health-probe's exit codes)
//   longsana bench [PROMPT] --server A,B --sessions N | --rate R --bench_duration S
//            [--mix generate:2,session:1,live:1] [--json] [--chart out.svg]  (load test)
// Every command: --tls, --ca FILE, --cert FILE --key FILE, --server_name NAME, --token TOKEN
// (or $LONGSANA_TOKEN).
//
// Flags may be written with dashes or underscores. Exit codes: see client/commands.h.
#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "client/commands.h"

ABSL_FLAG(std::string, server, "localhost:50051",
          "Server HOST:PORT; several as A:P,B:Q (one channel balanced round-robin over all, a "
          "refused start retried on the next) or a gRPC target such as dns:///NAME:PORT "
          "(every address of NAME, re-resolved).");
ABSL_FLAG(bool, balanced, false,
          "bench: send every session through one channel balanced over all of --server "
          "(refusals retried on another), instead of assigning sessions to servers in turn.");
ABSL_FLAG(double, timeout, 0,
          "Deadline for the whole call in seconds; 0 = none. health: for the connection and for "
          "the check, each; 0 = 5 s.");
ABSL_FLAG(std::string, o, "", "Output MP4 file ('-' = stdout); same as --output.");
ABSL_FLAG(std::string, output, "", "Output MP4 file ('-' = stdout).");
ABSL_FLAG(int, width, 0, "Frame width in pixels (multiple of 16); 0 = server default.");
ABSL_FLAG(int, height, 0, "Frame height in pixels (multiple of 16); 0 = server default.");
ABSL_FLAG(int, frames, 0, "Video frames (1 + 4k); 0 = server default (81).");
ABSL_FLAG(double, duration, 0, "Length in seconds instead of --frames.");
ABSL_FLAG(bool, live, false,
          "Open-ended video: grows until `stop` (session), Ctrl-C, or the server's live limit.");
ABSL_FLAG(uint64_t, seed, 0, "Seed; 0 = the server picks one (and reports it).");
ABSL_FLAG(std::vector<std::string>, timesteps, {},
          "Denoising timesteps, comma-separated, strictly decreasing in (0, 1000].");
ABSL_FLAG(int, num_cached_blocks, 0, "Context blocks (-1 = all); 0 = server default.");
ABSL_FLAG(int, motion_score, 0, "Motion score 1..100; 0 = server default (10).");
ABSL_FLAG(int, crf, -1, "H.264 constant quality 1..51; -1 = server default (23).");
ABSL_FLAG(int64_t, bitrate, 0, "Average bitrate in bits/s instead of --crf.");
ABSL_FLAG(std::string, preset, "", "x264 preset (ultrafast .. placebo).");
ABSL_FLAG(int, priority, 0, "Scheduling priority.");
ABSL_FLAG(std::string, pacing, "",
          "realtime | fast | server: realtime paces generation to the viewer (at most "
          "--lookahead ahead), fast renders as fast as possible, server leaves it to the "
          "server's default. Default: fast for generate (a file), server for session.");
ABSL_FLAG(bool, latent_fragments, false,
          "One fragment per latent frame (4 video frames) instead of one per block: the first "
          "pixels arrive sooner; keyframes stay at block starts.");
ABSL_FLAG(int, sessions, 1, "bench: concurrent sessions (closed loop).");
ABSL_FLAG(double, rate, 0, "bench: arrivals per second (open loop, for --bench_duration).");
ABSL_FLAG(double, bench_duration, 0,
          "bench: seconds to keep starting sessions (closed loop: 0 = one per --sessions).");
ABSL_FLAG(std::vector<std::string>, mix, std::vector<std::string>({"generate"}),
          "bench: request kinds with optional weights, e.g. generate:2,session:1,live:1.");
ABSL_FLAG(int, switch_every, 2, "bench: session kind: a switch_prompt every K blocks.");
ABSL_FLAG(double, live_seconds, 10, "bench: live kind: stop after this many seconds.");
ABSL_FLAG(double, start_buffer, 1, "bench: seconds of video the simulated viewer waits for.");
ABSL_FLAG(std::string, chart, "", "bench: write an SVG of TTFC and gaps over time here.");
ABSL_FLAG(double, lookahead, 0,
          "realtime pacing: seconds of video generation may run ahead of the viewer; 0 = the "
          "server's default.");
ABSL_FLAG(bool, json, false, "info: print JSON.");
ABSL_FLAG(std::string, service, "", "health: the service to check; empty = the whole server.");
ABSL_FLAG(bool, tls, false,
          "Connect with TLS; the server's certificate must chain to the system's CAs (or --ca).");
ABSL_FLAG(std::string, ca, "",
          "PEM file of the CAs the server's certificate must chain to; implies --tls.");
ABSL_FLAG(std::string, cert, "",
          "PEM client certificate (chain) for servers that require one (mTLS), with --key; "
          "implies --tls.");
ABSL_FLAG(std::string, key, "", "PEM private key of --cert.");
ABSL_FLAG(std::string, server_name, "",
          "TLS: the name the server's certificate must carry, instead of the host of --server.");
ABSL_FLAG(std::string, token, "",
          "Bearer token, sent as 'authorization: Bearer TOKEN' on every call; default: the "
          "environment variable LONGSANA_TOKEN. Prefer the variable: flags show in ps.");
ABSL_FLAG(std::string, max_receive_bytes, std::to_string(longsana::wire::kDefaultMaxReceiveBytes),
          "Largest message accepted from the server, bytes with an optional k/M/G suffix "
          "(powers of 1024). The default fits a default server (--max_chunk_bytes 16M plus "
          "64 KiB of framing); raise it with the server's --max_chunk_bytes.");

namespace {

using longsana::client::kExitUsage;

void NormalizeFlagDashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-' || arg[1] == '\0') continue;
    char* name = arg + (arg[1] == '-' ? 2 : 1);
    for (char* p = name; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

// "16M", "64k", "1G", "16842752" -> bytes; -1 when malformed or outside [1 KiB, 2 GiB).
int64_t ParseReceiveBytes(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || !std::isfinite(value) || value <= 0) return -1;
  const std::string suffix(end);
  double scale = 1;
  if (suffix == "k" || suffix == "K")
    scale = 1024.0;
  else if (suffix == "m" || suffix == "M")
    scale = 1024.0 * 1024;
  else if (suffix == "g" || suffix == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (!suffix.empty())
    return -1;
  const double bytes = value * scale;
  if (bytes < 1024 || bytes >= 2147483648.0) return -1;
  return static_cast<int64_t>(bytes);
}

int Usage(const std::string& message, int exit_code = kExitUsage) {
  fmt::print(stderr, "longsana: {}\n{}", message, std::string(absl::ProgramUsageMessage()));
  return exit_code;
}

// The contents of a PEM file named by `flag`; false (and `error` set) when unreadable or
// empty.
bool ReadPemFile(const std::string& flag, const std::string& path, std::string* pem,
                 std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = fmt::format("--{}: cannot read {}: {}", flag, path, std::strerror(errno));
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  *pem = std::move(text).str();
  if (pem->empty()) {
    *error = fmt::format("--{}: {} is empty", flag, path);
    return false;
  }
  return true;
}

// --tls, --ca, --cert, --key, --server_name, --token (or $LONGSANA_TOKEN) into `c`; false
// (and `error` set) on a usage error. The CLI is an edge program: the environment is read
// here, in main, and nowhere below.
bool SecurityOptions(longsana::client::ConnectionOptions* c, std::string* error) {
  const std::string ca = absl::GetFlag(FLAGS_ca);
  const std::string cert = absl::GetFlag(FLAGS_cert);
  const std::string key = absl::GetFlag(FLAGS_key);
  if (cert.empty() != key.empty()) {
    *error = "--cert and --key go together";
    return false;
  }
  c->tls = absl::GetFlag(FLAGS_tls) || !ca.empty() || !cert.empty();
  if (!ca.empty() && !ReadPemFile("ca", ca, &c->ca_pem, error)) return false;
  if (!cert.empty() && (!ReadPemFile("cert", cert, &c->cert_pem, error) ||
                        !ReadPemFile("key", key, &c->key_pem, error))) {
    return false;
  }
  c->server_name = absl::GetFlag(FLAGS_server_name);
  if (!c->server_name.empty() && !c->tls) {
    *error = "--server_name needs TLS (--tls or --ca)";
    return false;
  }
  c->token = absl::GetFlag(FLAGS_token);
  if (c->token.empty()) {
    if (const char* env = std::getenv("LONGSANA_TOKEN"); env != nullptr) c->token = env;
  }
  // A header value: visible ASCII. (The token itself is never printed.)
  for (const char ch : c->token) {
    if (ch < 0x21 || ch > 0x7e) {
      *error = "the token (--token or LONGSANA_TOKEN) must be printable ASCII without spaces";
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "usage:\n"
      "  longsana generate PROMPT -o OUT.mp4 [--server HOST:PORT] [--width W --height H]\n"
      "                   [--frames N | --duration S] [--seed S] [--timeout S] [...]\n"
      "  longsana session [PROMPT] -o OUT.mp4 [...]   then, on stdin: a new prompt per line,\n"
      "                   /recache PROMPT, /extend N, /stop, /quit\n"
      "  longsana watch SESSION_ID -o OUT.mp4 [...]  another viewer of a running session\n"
      "                   (its Accepted.session_id); the file ends when the session does\n"
      "  longsana info [--json]\n"
      "  longsana health [--service NAME] [--timeout S]\n"
      "  longsana bench [PROMPT] --server A[,B..] [--sessions N | --rate R --bench_duration S]\n"
      "                 [--mix generate:W,session:W,live:W] [--switch_every K] [--live_seconds S]\n"
      "                 [--start_buffer S] [--json] [--chart FILE.svg]\n"
      "every command: --server HOST:PORT, --tls, --ca CA.pem, --cert CERT.pem --key KEY.pem,\n"
      "               --server_name NAME, --token TOKEN (default: $LONGSANA_TOKEN)\n"
      "exit codes: 0 ok, 2 usage, 3 output file error, 10 + gRPC status code when the server\n"
      "ends the call with an error (e.g. 13 INVALID_ARGUMENT, 24 UNAVAILABLE)\n"
      "health (grpc-health-probe's codes): 0 SERVING, 1 usage, 2 no connection, 3 the check\n"
      "failed, 4 not serving (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN)\n");
  NormalizeFlagDashes(argc, argv);
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Usage("missing command");
  const std::string command = args[1];
  const int usage_exit = command == "health" ? longsana::client::kExitHealthUsage : kExitUsage;

  longsana::client::ConnectionOptions connection;
  connection.server = absl::GetFlag(FLAGS_server);
  connection.timeout_seconds = absl::GetFlag(FLAGS_timeout);
  if (!std::isfinite(connection.timeout_seconds) || connection.timeout_seconds < 0) {
    return Usage("--timeout must be >= 0 seconds", usage_exit);
  }
  connection.max_receive_bytes = ParseReceiveBytes(absl::GetFlag(FLAGS_max_receive_bytes));
  if (connection.max_receive_bytes < 0) {
    return Usage("--max_receive_bytes must be a byte size in [1k, 2G), e.g. 17M", usage_exit);
  }
  if (std::string error; !SecurityOptions(&connection, &error)) return Usage(error, usage_exit);
  // bench resolves each of its targets itself (a list there is one target per server unless
  // --balanced).
  if (command != "bench") {
    if (absl::Status s = longsana::client::ResolveServer(&connection); !s.ok()) {
      return Usage(std::string(s.message()), usage_exit);
    }
  }

  if (command == "health") {
    if (args.size() > 2) return Usage("health takes no arguments", usage_exit);
    return longsana::client::Health(connection, absl::GetFlag(FLAGS_service));
  }

  if (command == "info") {
    if (args.size() > 2) return Usage("info takes no arguments");
    return longsana::client::Info(connection, absl::GetFlag(FLAGS_json));
  }
  if (command != "generate" && command != "session" && command != "watch" && command != "bench") {
    return Usage(fmt::format("unknown command '{}'", command));
  }

  longsana::client::RequestOptions request;
  request.width = absl::GetFlag(FLAGS_width);
  request.height = absl::GetFlag(FLAGS_height);
  request.frames = absl::GetFlag(FLAGS_frames);
  request.duration_seconds = absl::GetFlag(FLAGS_duration);
  request.live = absl::GetFlag(FLAGS_live);
  request.seed = absl::GetFlag(FLAGS_seed);
  for (const auto& t : absl::GetFlag(FLAGS_timesteps)) {
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || *end != '\0')
      return Usage(fmt::format("--timesteps: '{}' is not a number", t));
    request.timesteps.push_back(v);
  }
  if (const int k = absl::GetFlag(FLAGS_num_cached_blocks); k != 0) request.num_cached_blocks = k;
  if (const int m = absl::GetFlag(FLAGS_motion_score); m != 0) request.motion_score = m;
  if (const int crf = absl::GetFlag(FLAGS_crf); crf >= 0) request.crf = crf;
  request.bitrate_bps = absl::GetFlag(FLAGS_bitrate);
  request.preset = absl::GetFlag(FLAGS_preset);
  request.priority = absl::GetFlag(FLAGS_priority);
  request.pacing = absl::GetFlag(FLAGS_pacing);
  if (request.pacing.empty()) request.pacing = command == "generate" ? "fast" : "server";
  if (request.pacing != "realtime" && request.pacing != "fast" && request.pacing != "server") {
    return Usage(
        fmt::format("--pacing must be realtime, fast or server, got '{}'", request.pacing));
  }
  request.latent_fragments = absl::GetFlag(FLAGS_latent_fragments);
  request.lookahead_seconds = absl::GetFlag(FLAGS_lookahead);
  if (!std::isfinite(request.lookahead_seconds) || request.lookahead_seconds < 0) {
    return Usage("--lookahead must be >= 0 seconds");
  }
  if (request.lookahead_seconds > 0 && request.pacing == "fast") {
    return Usage("--lookahead needs --pacing realtime (or server)");
  }
  if (request.width < 0 || request.height < 0 || request.frames < 0 ||
      request.duration_seconds < 0 || request.bitrate_bps < 0) {
    return Usage("--width, --height, --frames, --duration and --bitrate must be >= 0");
  }
  if (request.frames > 0 && request.duration_seconds > 0) {
    return Usage("give --frames or --duration, not both");
  }

  if (command == "bench") {
    if (args.size() > 3) return Usage("bench takes at most one PROMPT argument (quote it)");
    longsana::client::BenchOptions bench;
    if (args.size() == 3) bench.prompt = args[2];
    if (absl::GetFlag(FLAGS_balanced)) {
      bench.servers.push_back(absl::GetFlag(FLAGS_server));  // one balanced target
    } else {
      for (const std::string& server :
           std::vector<std::string>(absl::StrSplit(absl::GetFlag(FLAGS_server), ','))) {
        if (!server.empty()) bench.servers.push_back(server);
      }
    }
    if (bench.servers.empty()) return Usage("--server: name at least one HOST:PORT");
    bench.sessions = absl::GetFlag(FLAGS_sessions);
    bench.rate = absl::GetFlag(FLAGS_rate);
    bench.duration_seconds = absl::GetFlag(FLAGS_bench_duration);
    bench.switch_every = absl::GetFlag(FLAGS_switch_every);
    bench.live_seconds = absl::GetFlag(FLAGS_live_seconds);
    bench.start_buffer_seconds = absl::GetFlag(FLAGS_start_buffer);
    bench.json = absl::GetFlag(FLAGS_json);
    bench.chart = absl::GetFlag(FLAGS_chart);
    if (bench.sessions < 1 || bench.sessions > 4096)
      return Usage("--sessions must be in [1, 4096]");
    if (!(bench.rate >= 0 && bench.rate <= 1000)) return Usage("--rate must be in [0, 1000]");
    if (!(bench.duration_seconds >= 0 && bench.duration_seconds <= 86400)) {
      return Usage("--bench_duration must be in [0, 86400] seconds");
    }
    if (bench.rate > 0 && bench.duration_seconds <= 0) {
      return Usage("--rate needs --bench_duration");
    }
    if (!(bench.start_buffer_seconds >= 0) || !(bench.live_seconds > 0) || bench.switch_every < 0) {
      return Usage("--start_buffer >= 0, --live_seconds > 0 and --switch_every >= 0");
    }
    bench.mix.clear();
    for (const std::string& item : absl::GetFlag(FLAGS_mix)) {
      const size_t colon = item.find(':');
      const std::string kind = item.substr(0, colon);
      int weight = 1;
      if (colon != std::string::npos) {
        char* end = nullptr;
        weight = static_cast<int>(std::strtol(item.c_str() + colon + 1, &end, 10));
        if (*end != '\0' || weight < 1 || weight > 1000) {
          return Usage(fmt::format("--mix: '{}' needs a weight in [1, 1000]", item));
        }
      }
      if (kind != "generate" && kind != "session" && kind != "live") {
        return Usage(fmt::format("--mix: '{}' is not generate, session or live", kind));
      }
      bench.mix.emplace_back(kind, weight);
    }
    if (bench.mix.empty()) return Usage("--mix: name at least one kind");
    return longsana::client::Bench(connection, request, bench);
  }

  std::string output = absl::GetFlag(FLAGS_output);
  if (output.empty()) output = absl::GetFlag(FLAGS_o);
  if (output.empty()) return Usage("-o OUT.mp4 is required");

  if (command == "watch") {
    if (args.size() != 3) return Usage("watch takes one SESSION_ID argument");
    return longsana::client::Watch(connection, args[2], output);
  }
  if (command == "generate") {
    if (args.size() != 3) return Usage("generate takes one PROMPT argument (quote it)");
    return longsana::client::Generate(connection, args[2], request, output);
  }
  if (args.size() > 3) return Usage("session takes at most one PROMPT argument (quote it)");
  return longsana::client::Session(connection, args.size() == 3 ? args[2] : "", request, output);
}
