// ConfigFromFlags (server/server_main.h): the new flags' defaults come from the config structs,
// their values reach the config, and a bad value is an error naming the flag. The config file
// (server/config_file.h): every flag round-trips through it, the command line overrides it,
// and bad files fail naming the key. Also: the framing margin the CLI uses agrees with the
// engine's default chunk bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "engine/api/engine.h"
#include "proto/wire_limits.h"
#include "server/config_file.h"
#include "server/server_config.h"
#include "server/server_main.h"
#include "tests/common/temp_dir.h"

ABSL_DECLARE_FLAG(std::string, model_dir);
ABSL_DECLARE_FLAG(double, drain_timeout);
ABSL_DECLARE_FLAG(double, shutdown_grace);
ABSL_DECLARE_FLAG(int, max_steps);
ABSL_DECLARE_FLAG(int, max_cached_blocks);
ABSL_DECLARE_FLAG(int64_t, max_pixels);
ABSL_DECLARE_FLAG(std::vector<std::string>, allowed_presets);
ABSL_DECLARE_FLAG(int, min_crf);
ABSL_DECLARE_FLAG(std::string, max_bitrate);
ABSL_DECLARE_FLAG(std::string, max_chunk_bytes);
ABSL_DECLARE_FLAG(int, media_workers);
ABSL_DECLARE_FLAG(int, warmup_width);
ABSL_DECLARE_FLAG(int, warmup_height);
ABSL_DECLARE_FLAG(double, stall_timeout);
ABSL_DECLARE_FLAG(int, text_queue_size);
ABSL_DECLARE_FLAG(int, max_pending_commands);
ABSL_DECLARE_FLAG(int, max_transition_blocks);
ABSL_DECLARE_FLAG(std::string, default_pacing);
ABSL_DECLARE_FLAG(double, default_lookahead_seconds);
ABSL_DECLARE_FLAG(double, min_lookahead_seconds);
ABSL_DECLARE_FLAG(double, max_lookahead_seconds);
ABSL_DECLARE_FLAG(double, realtime_utilization);
ABSL_DECLARE_FLAG(int, realtime_capacity);
ABSL_DECLARE_FLAG(double, memory_budget_fraction);
ABSL_DECLARE_FLAG(double, keepalive_time);
ABSL_DECLARE_FLAG(double, keepalive_timeout);
ABSL_DECLARE_FLAG(double, max_connection_idle);
ABSL_DECLARE_FLAG(double, max_connection_age);
ABSL_DECLARE_FLAG(int, max_concurrent_streams);
ABSL_DECLARE_FLAG(int, max_sessions_per_peer);
ABSL_DECLARE_FLAG(int, watch_buffer_chunks);
ABSL_DECLARE_FLAG(int, max_watchers_per_session);
ABSL_DECLARE_FLAG(double, command_rate);
ABSL_DECLARE_FLAG(int, command_burst);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(std::string, http_listen);
ABSL_DECLARE_FLAG(std::string, auth_tokens);
ABSL_DECLARE_FLAG(std::string, log_format);
ABSL_DECLARE_FLAG(int, max_sessions);
ABSL_DECLARE_FLAG(int, queue_size);

namespace longsana::server {
namespace {

using namespace std::chrono_literals;
using ::longsana::testing::TempDir;
using ::longsana::testing::WriteFile;

class ServerFlags : public ::testing::Test {
 protected:
  void SetUp() override { absl::SetFlag(&FLAGS_model_dir, "/models/fake"); }
  // The error of ConfigFromFlags; empty when it succeeded.
  static std::string Error() {
    auto c = ConfigFromFlags();
    return c.ok() ? "" : std::string(c.status().message());
  }
  absl::FlagSaver saver_;
};

TEST_F(ServerFlags, DefaultsAreTheConfigStructsDefaults) {
  auto c = ConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  const engine::EngineConfig e;
  const engine::SessionPolicy& p = e.policy;
  EXPECT_EQ(c->engine.policy.max_steps, p.max_steps);
  EXPECT_EQ(c->engine.policy.max_cached_blocks, p.max_cached_blocks);
  EXPECT_EQ(c->engine.policy.max_pixels, p.max_pixels);
  EXPECT_EQ(c->engine.policy.presets, p.presets);
  EXPECT_EQ(c->engine.policy.min_crf, p.min_crf);
  EXPECT_EQ(c->engine.policy.max_bitrate_bps, p.max_bitrate_bps);
  EXPECT_EQ(c->engine.policy.max_chunk_bytes, p.max_chunk_bytes);
  EXPECT_EQ(c->engine.media_workers, e.media_workers);
  EXPECT_EQ(c->engine.stall_timeout, e.stall_timeout);
  EXPECT_EQ(c->engine.text_queue_size, e.text_queue_size);
  EXPECT_EQ(c->engine.max_pending_commands, e.max_pending_commands);
  EXPECT_EQ(c->engine.max_transition_blocks, e.max_transition_blocks);
  EXPECT_EQ(c->engine.default_pacing, e.default_pacing);
  EXPECT_EQ(c->engine.default_lookahead_seconds, e.default_lookahead_seconds);
  EXPECT_EQ(c->engine.min_lookahead_seconds, e.min_lookahead_seconds);
  EXPECT_EQ(c->engine.max_lookahead_seconds, e.max_lookahead_seconds);
  EXPECT_EQ(c->engine.realtime_utilization, e.realtime_utilization);
  EXPECT_EQ(c->engine.realtime_capacity, e.realtime_capacity);
  EXPECT_DOUBLE_EQ(c->engine.memory_budget_fraction, e.memory_budget_fraction);
  EXPECT_EQ(c->engine.max_sessions, e.max_sessions);
  EXPECT_EQ(c->engine.max_num_frames, e.max_num_frames);

  const ServerOptions s;
  EXPECT_EQ(c->server.drain_timeout, s.drain_timeout);
  EXPECT_EQ(c->server.drain_timeout, 20s);  // + 5 s grace + 5 s watchdog = Kubernetes' 30 s
  EXPECT_EQ(c->server.shutdown_grace, 5s);
  EXPECT_EQ(c->server.keepalive_time, s.keepalive_time);
  EXPECT_EQ(c->server.keepalive_timeout, s.keepalive_timeout);
  EXPECT_EQ(c->server.min_client_ping_interval, s.min_client_ping_interval);
  EXPECT_EQ(c->server.permit_keepalive_without_calls, s.permit_keepalive_without_calls);
  EXPECT_EQ(c->server.max_connection_idle, s.max_connection_idle);
  EXPECT_EQ(c->server.max_connection_age, s.max_connection_age);
  EXPECT_EQ(c->server.max_connection_age_grace, s.max_connection_age_grace);
  EXPECT_EQ(c->server.max_concurrent_streams, s.max_concurrent_streams);
  EXPECT_EQ(c->server.max_sessions_per_peer, s.max_sessions_per_peer);
  EXPECT_DOUBLE_EQ(c->server.command_rate, s.command_rate);
  EXPECT_EQ(c->server.command_burst, s.command_burst);
  // The send limit carries the largest chunk the engine lets through, and the default is
  // what the CLI accepts by default.
  EXPECT_EQ(c->server.max_send_message_bytes, p.max_chunk_bytes + wire::kChunkFramingMarginBytes);
  EXPECT_EQ(c->server.max_send_message_bytes, wire::kDefaultMaxReceiveBytes);
  EXPECT_EQ(s.max_send_message_bytes, wire::kDefaultMaxReceiveBytes);
}

TEST_F(ServerFlags, ValuesReachTheConfig) {
  absl::SetFlag(&FLAGS_max_steps, 4);
  absl::SetFlag(&FLAGS_max_cached_blocks, 3);
  absl::SetFlag(&FLAGS_max_pixels, int64_t{640 * 480});
  absl::SetFlag(&FLAGS_allowed_presets, std::vector<std::string>{"ultrafast", "veryfast"});
  absl::SetFlag(&FLAGS_min_crf, 18);
  absl::SetFlag(&FLAGS_max_bitrate, std::string("2.5M"));
  absl::SetFlag(&FLAGS_max_chunk_bytes, std::string("4M"));
  absl::SetFlag(&FLAGS_media_workers, 3);
  absl::SetFlag(&FLAGS_stall_timeout, 2.5);
  absl::SetFlag(&FLAGS_text_queue_size, 7);
  absl::SetFlag(&FLAGS_max_pending_commands, 5);
  absl::SetFlag(&FLAGS_memory_budget_fraction, 0.5);
  absl::SetFlag(&FLAGS_keepalive_time, 30.0);
  absl::SetFlag(&FLAGS_max_connection_age, 0.0);
  absl::SetFlag(&FLAGS_max_sessions_per_peer, 0);
  absl::SetFlag(&FLAGS_command_rate, 2.0);
  absl::SetFlag(&FLAGS_command_burst, 4);
  auto c = ConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.policy.max_steps, 4);
  EXPECT_EQ(c->engine.policy.max_cached_blocks, 3);
  EXPECT_EQ(c->engine.policy.max_pixels, 640 * 480);
  EXPECT_EQ(c->engine.policy.presets, (std::vector<std::string>{"ultrafast", "veryfast"}));
  EXPECT_EQ(c->engine.policy.min_crf, 18);
  EXPECT_EQ(c->engine.policy.max_bitrate_bps, 2'500'000);
  EXPECT_EQ(c->engine.policy.max_chunk_bytes, 4 << 20);
  EXPECT_EQ(c->server.max_send_message_bytes, (4 << 20) + wire::kChunkFramingMarginBytes);
  EXPECT_EQ(c->engine.media_workers, 3);
  EXPECT_EQ(c->engine.stall_timeout, 2500ms);
  EXPECT_EQ(c->engine.text_queue_size, 7);
  EXPECT_EQ(c->engine.max_pending_commands, 5);
  EXPECT_DOUBLE_EQ(c->engine.memory_budget_fraction, 0.5);
  EXPECT_EQ(c->server.keepalive_time, 30s);
  EXPECT_EQ(c->server.max_connection_age, 0ms);
  EXPECT_EQ(c->server.max_sessions_per_peer, 0);
  EXPECT_DOUBLE_EQ(c->server.command_rate, 2.0);
  EXPECT_EQ(c->server.command_burst, 4);
}

// Each bad value: the error starts with the flag's name.
TEST_F(ServerFlags, BadValuesNameTheFlag) {
  struct Case {
    std::string flag;
    std::function<void()> set;
  };
  const std::vector<Case> cases = {
      {"max_steps", [] { absl::SetFlag(&FLAGS_max_steps, 0); }},
      {"max_cached_blocks", [] { absl::SetFlag(&FLAGS_max_cached_blocks, 0); }},
      {"max_pixels", [] { absl::SetFlag(&FLAGS_max_pixels, int64_t{10}); }},
      {"allowed_presets",
       [] { absl::SetFlag(&FLAGS_allowed_presets, std::vector<std::string>{"warp9"}); }},
      {"allowed_presets",
       [] { absl::SetFlag(&FLAGS_allowed_presets, std::vector<std::string>{}); }},
      {"min_crf", [] { absl::SetFlag(&FLAGS_min_crf, 52); }},
      {"max_bitrate", [] { absl::SetFlag(&FLAGS_max_bitrate, std::string("fast")); }},
      {"max_bitrate", [] { absl::SetFlag(&FLAGS_max_bitrate, std::string("20X")); }},
      {"max_bitrate", [] { absl::SetFlag(&FLAGS_max_bitrate, std::string("10")); }},
      {"max_chunk_bytes", [] { absl::SetFlag(&FLAGS_max_chunk_bytes, std::string("1k")); }},
      {"max_chunk_bytes", [] { absl::SetFlag(&FLAGS_max_chunk_bytes, std::string("lots")); }},
      {"media_workers", [] { absl::SetFlag(&FLAGS_media_workers, -1); }},
      {"warmup_width", [] { absl::SetFlag(&FLAGS_warmup_height, 64); }},  // one without the other
      {"warmup_width",
       [] {
         absl::SetFlag(&FLAGS_warmup_width, 20);
         absl::SetFlag(&FLAGS_warmup_height, 64);
       }},
      {"warmup_height",
       [] {
         absl::SetFlag(&FLAGS_warmup_width, 64);
         absl::SetFlag(&FLAGS_warmup_height, 100000);
       }},
      {"stall_timeout", [] { absl::SetFlag(&FLAGS_stall_timeout, -1.0); }},
      {"text_queue_size", [] { absl::SetFlag(&FLAGS_text_queue_size, 0); }},
      {"max_pending_commands", [] { absl::SetFlag(&FLAGS_max_pending_commands, 0); }},
      {"max_transition_blocks", [] { absl::SetFlag(&FLAGS_max_transition_blocks, -1); }},
      {"default_pacing", [] { absl::SetFlag(&FLAGS_default_pacing, std::string("slow")); }},
      {"default_lookahead_seconds",
       [] { absl::SetFlag(&FLAGS_default_lookahead_seconds, 1000.0); }},
      {"min_lookahead_seconds", [] { absl::SetFlag(&FLAGS_min_lookahead_seconds, -1.0); }},
      {"max_lookahead_seconds", [] { absl::SetFlag(&FLAGS_max_lookahead_seconds, 0.1); }},
      {"realtime_utilization", [] { absl::SetFlag(&FLAGS_realtime_utilization, 1.5); }},
      {"realtime_capacity", [] { absl::SetFlag(&FLAGS_realtime_capacity, -2); }},
      {"memory_budget_fraction", [] { absl::SetFlag(&FLAGS_memory_budget_fraction, 1.5); }},
      {"drain_timeout", [] { absl::SetFlag(&FLAGS_drain_timeout, -3.0); }},
      {"keepalive_time", [] { absl::SetFlag(&FLAGS_keepalive_time, 1e9); }},
      {"keepalive_timeout", [] { absl::SetFlag(&FLAGS_keepalive_timeout, 0.0); }},
      {"max_connection_idle", [] { absl::SetFlag(&FLAGS_max_connection_idle, -1.0); }},
      {"max_concurrent_streams", [] { absl::SetFlag(&FLAGS_max_concurrent_streams, 0); }},
      {"max_sessions_per_peer", [] { absl::SetFlag(&FLAGS_max_sessions_per_peer, -1); }},
      {"command_rate", [] { absl::SetFlag(&FLAGS_command_rate, -1.0); }},
      {"command_burst", [] { absl::SetFlag(&FLAGS_command_burst, 0); }},
      {"watch_buffer_chunks", [] { absl::SetFlag(&FLAGS_watch_buffer_chunks, 0); }},
      {"max_watchers_per_session", [] { absl::SetFlag(&FLAGS_max_watchers_per_session, 0); }},
      {"log_format", [] { absl::SetFlag(&FLAGS_log_format, std::string("xml")); }},
      {"http_listen", [] { absl::SetFlag(&FLAGS_http_listen, std::string("localhost")); }},
      {"tls_key", [] { absl::SetFlag(&FLAGS_tls_cert, std::string("/c.pem")); }},
      {"tls_cert", [] { absl::SetFlag(&FLAGS_tls_key, std::string("/k.pem")); }},
      {"tls_client_ca", [] { absl::SetFlag(&FLAGS_tls_client_ca, std::string("/ca.pem")); }},
  };
  for (const Case& c : cases) {
    absl::FlagSaver saver;
    c.set();
    const std::string error = Error();
    EXPECT_TRUE(error.starts_with("--" + c.flag + ":")) << c.flag << ": '" << error << "'";
  }
}

TEST_F(ServerFlags, OperationsFlagsReachTheirFields) {
  {
    auto c = ConfigFromFlags();
    ASSERT_TRUE(c.ok()) << c.status();
    const ServerOptions s;
    EXPECT_EQ(c->server.http_listen, s.http_listen);
    EXPECT_EQ(c->server.log_format, LogFormat::kText);
    EXPECT_EQ(c->server.tls_cert_file, "");  // plaintext by default
    EXPECT_EQ(c->server.auth_tokens_file, "");
  }
  absl::SetFlag(&FLAGS_tls_cert, std::string("/etc/tls/server.pem"));
  absl::SetFlag(&FLAGS_tls_key, std::string("/etc/tls/server.key"));
  absl::SetFlag(&FLAGS_tls_client_ca, std::string("/etc/tls/clients.pem"));
  absl::SetFlag(&FLAGS_http_listen, std::string("127.0.0.1:9090"));
  absl::SetFlag(&FLAGS_auth_tokens, std::string("/etc/longsana/tokens.yaml"));
  absl::SetFlag(&FLAGS_log_format, std::string("json"));
  auto c = ConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.tls_cert_file, "/etc/tls/server.pem");
  EXPECT_EQ(c->server.tls_key_file, "/etc/tls/server.key");
  EXPECT_EQ(c->server.tls_client_ca_file, "/etc/tls/clients.pem");
  EXPECT_EQ(c->server.http_listen, "127.0.0.1:9090");
  EXPECT_EQ(c->server.auth_tokens_file, "/etc/longsana/tokens.yaml");
  EXPECT_EQ(c->server.log_format, LogFormat::kJson);

  absl::SetFlag(&FLAGS_http_listen, std::string(""));  // no HTTP port
  c = ConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.http_listen, "");
}

// ---------------------------------------------------------------------------------------
// The config file.

// A non-default value for every flag of ours, as written in YAML and as the flag prints it
// afterwards (CommandLineFlag::CurrentValue). A flag added without a row here fails
// EveryFlagHasASample, so that nobody forgets to check that the file can set it.
struct Sample {
  std::string yaml;
  std::string current;  // empty: same as yaml
};
const std::map<std::string, Sample>& Samples() {
  static const std::map<std::string, Sample> kSamples = {
      {"allowed_presets", {"[ultrafast, veryfast]", "ultrafast,veryfast"}},
      {"auth_tokens", {"/etc/longsana/tokens.yaml"}},
      {"caption_len", {"24"}},
      {"command_burst", {"7"}},
      {"command_rate", {"2.5"}},
      {"cors_allowed_origins",
       {"[\"https://app.example.com\", \"http://localhost:3000\"]",
        "https://app.example.com,http://localhost:3000"}},
      {"device", {"cuda"}},
      {"drain_timeout", {"12.5"}},
      {"encoder_threads", {"2"}},
      {"exact_timesteps", {"true"}},
      {"http_listen", {"'127.0.0.1:9090'", "127.0.0.1:9090"}},
      {"keepalive_time", {"30"}},
      {"keepalive_timeout", {"5"}},
      {"listen", {"\"[::1]:6000\"", "[::1]:6000"}},
      {"log_format", {"json"}},
      {"log_level", {"debug"}},
      {"max_batch", {"4"}},
      {"max_bitrate", {"8M"}},
      {"max_cached_blocks", {"2"}},
      {"max_chunk_bytes", {"8M"}},
      {"max_concurrent_streams", {"50"}},
      {"max_connection_age", {"600"}},
      {"max_connection_age_grace", {"1200"}},
      {"max_connection_idle", {"60"}},
      {"max_dimension", {"512"}},
      {"max_frames", {"481"}},
      {"max_pending_commands", {"3"}},
      {"max_transition_blocks", {"4"}},
      {"default_pacing", {"fast"}},
      {"default_lookahead_seconds", {"7.5"}},
      {"min_lookahead_seconds", {"1"}},
      {"max_lookahead_seconds", {"30"}},
      {"realtime_utilization", {"0.75"}},
      {"realtime_capacity", {"6"}},
      {"max_pixels", {"262144"}},
      {"max_sessions", {"2"}},
      {"max_sessions_per_peer", {"3"}},
      {"max_steps", {"3"}},
      {"max_live_seconds", {"60"}},
      {"max_watchers_per_session", {"5"}},
      {"media_workers", {"2"}},
      {"memory_budget", {"2G"}},
      {"memory_budget_fraction", {"0.5"}},
      {"min_client_ping_interval", {"20"}},
      {"min_crf", {"12"}},
      {"min_dimension", {"64"}},
      {"model_dir", {"/models/longsana"}},
      {"outbox_chunks", {"6"}},
      {"permit_keepalive_without_calls", {"false"}},
      {"queue_size", {"5"}},
      {"shutdown_grace", {"2"}},
      {"stall_timeout", {"30"}},
      {"text_queue_size", {"9"}},
      {"text_softcap", {"true"}},
      {"allow_tf32", {"true"}},
      {"vae_dtype", {"bf16"}},
      {"warmup_width", {"64"}},
      {"warmup_height", {"80"}},
      {"threads", {"3"}},
      {"tls_cert", {"/etc/tls/server.pem"}},
      {"tls_client_ca", {"/etc/tls/clients.pem"}},
      {"tls_key", {"/etc/tls/server.key"}},
      {"watch_buffer_chunks", {"8"}},
  };
  return kSamples;
}

class ConfigFile : public ::testing::Test {
 protected:
  // Writes `yaml` to a file and applies it.
  absl::StatusOr<AppliedSettings> Apply(const std::string& yaml) {
    WriteFile(path(), yaml);
    return ApplyConfigFile(path());
  }
  std::string Error(const std::string& yaml) {
    auto applied = Apply(yaml);
    return applied.ok() ? "" : std::string(applied.status().message());
  }
  std::string path() const { return dir_.File("longsana.yaml"); }
  static std::string Current(const std::string& flag) {
    return absl::FindCommandLineFlag(flag)->CurrentValue();
  }
  absl::FlagSaver saver_;
  TempDir dir_;
};

TEST_F(ConfigFile, EveryFlagHasASample) {
  std::set<std::string> ours;
  for (const absl::CommandLineFlag* flag : ProgramFlags()) {
    const std::string name(flag->Name());
    // `config` names the file and `check_config` is an action: neither is settable inside it.
    if (name == "config" || name == "check_config") continue;
    ours.insert(name);
    EXPECT_TRUE(Samples().contains(name))
        << "--" << name << " has no sample in Samples(): add a non-default value";
  }
  for (const auto& [name, sample] : Samples()) {
    EXPECT_TRUE(ours.contains(name)) << name << " is not a flag of ours";
  }
  EXPECT_TRUE(ours.contains("model_dir"));
  EXPECT_FALSE(ours.contains("flagfile"));  // Abseil's own flags are not settings
}

TEST_F(ConfigFile, EveryFlagRoundTrips) {
  std::string yaml = "# every flag of ours, dashes and underscores alternating\n";
  bool dashes = false;
  for (const auto& [name, sample] : Samples()) {
    std::string key = name;
    if (dashes) std::replace(key.begin(), key.end(), '_', '-');
    dashes = !dashes;
    yaml += key + ": " + sample.yaml + "\n";
  }
  auto applied = Apply(yaml);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->size(), Samples().size());
  for (const auto& [name, sample] : Samples()) {
    const std::string want = sample.current.empty() ? sample.yaml : sample.current;
    EXPECT_EQ(Current(name), want) << name;
    EXPECT_NE(Current(name), absl::FindCommandLineFlag(name)->DefaultValue())
        << name << ": the sample must differ from the default to show that it was applied";
    EXPECT_EQ(applied->at(name), want) << name;
  }
  // The samples are one valid configuration, and reach the fields.
  auto c = ConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.model_dir, "/models/longsana");
  EXPECT_EQ(c->engine.max_sessions, 2);
  EXPECT_EQ(c->engine.policy.presets, (std::vector<std::string>{"ultrafast", "veryfast"}));
  EXPECT_EQ(c->engine.memory_budget_bytes, int64_t{2} << 30);
  EXPECT_EQ(c->server.listen, "[::1]:6000");
  EXPECT_EQ(c->server.drain_timeout, 12500ms);
  EXPECT_FALSE(c->server.permit_keepalive_without_calls);
  EXPECT_EQ(c->server.log_format, LogFormat::kJson);
  EXPECT_EQ(c->server.log_level, LogLevel::kDebug);
  EXPECT_EQ(c->server.tls_client_ca_file, "/etc/tls/clients.pem");
  EXPECT_EQ(c->server.auth_tokens_file, "/etc/longsana/tokens.yaml");
  EXPECT_EQ(c->server.cors_allowed_origins,
            (std::vector<std::string>{"https://app.example.com", "http://localhost:3000"}));
}

TEST_F(ConfigFile, ListFlagsTakeASequenceOrCommasAndEmptyValuesAreEmpty) {
  ASSERT_TRUE(Apply("allowed_presets:\n  - fast\n  - medium\nhttp_listen:\n").ok());
  EXPECT_EQ(Current("allowed_presets"), "fast,medium");
  EXPECT_EQ(Current("http_listen"), "");
  ASSERT_TRUE(Apply("allowed_presets: ultrafast,fast\nhttp-listen: ''\n").ok());
  EXPECT_EQ(Current("allowed_presets"), "ultrafast,fast");
  EXPECT_EQ(Current("http_listen"), "");
  auto empty = Apply("# nothing set\n");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

// ServerMain's order: the file, then the command line, which wins.
TEST_F(ConfigFile, TheCommandLineOverridesTheFile) {
  ASSERT_TRUE(Apply("max_sessions: 3\nqueue_size: 5\n").ok());
  std::vector<std::string> args = {"longsana-server", "--config", path(), "--max_sessions=2"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  EXPECT_EQ(ConfigFileArgument(static_cast<int>(argv.size()), argv.data()), path());
  absl::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(absl::GetFlag(FLAGS_max_sessions), 2);
  EXPECT_EQ(absl::GetFlag(FLAGS_queue_size), 5);
}

TEST(ConfigFileArgument, FindsTheFileInEitherSpelling) {
  const auto find = [](std::vector<std::string> args) {
    args.insert(args.begin(), "prog");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return ConfigFileArgument(static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_EQ(find({"--config=/a.yaml"}), "/a.yaml");
  EXPECT_EQ(find({"--listen=x", "-config", "/b.yaml"}), "/b.yaml");
  EXPECT_EQ(find({"--config=/a.yaml", "--config", "/c.yaml"}), "/c.yaml");  // the last wins
  EXPECT_EQ(find({"--configuration=/a.yaml"}), "");
  EXPECT_EQ(find({"--", "--config=/a.yaml"}), "");
  EXPECT_EQ(find({}), "");
}

// Each bad file: the error names the file, the line and what is wrong with which key.
TEST_F(ConfigFile, BadFilesFailNamingTheKey) {
  struct Case {
    std::string yaml;
    std::vector<std::string> expected;  // substrings of the error
  };
  const std::vector<Case> cases = {
      {"max_sessions: 2\nmax_sesions: 3\n",
       {"line 2", "unknown key 'max_sesions'", "did you mean max_sessions?"}},
      {"flagfile: /etc/flags\n", {"unknown key 'flagfile'"}},
      {"max_sessions: many\n", {"line 1", "max_sessions", "'many'"}},
      {"permit_keepalive_without_calls: perhaps\n",
       {"permit_keepalive_without_calls", "'perhaps'"}},
      {"engine:\n  max_sessions: 2\n", {"engine", "nested mappings are not supported"}},
      {"max_sessions: 2\nmax-sessions: 3\n", {"line 2", "max-sessions: given twice"}},
      {"config: other.yaml\n", {"config", "cannot name another"}},
      {"check-config: true\n", {"check_config", "not a setting"}},
      {"max_sessions: [1, 2]\n", {"max_sessions", "not a list"}},
      {"allowed_presets: [fast, [medium]]\n", {"allowed_presets", "list items"}},
      {"- max_sessions\n", {"must be a mapping"}},
      {"max_sessions: [2\n", {"not YAML"}},
  };
  for (const Case& c : cases) {
    absl::FlagSaver saver;
    const std::string error = Error(c.yaml);
    EXPECT_TRUE(error.starts_with("--config " + path() + ": ")) << c.yaml << " -> " << error;
    for (const std::string& part : c.expected) {
      EXPECT_NE(error.find(part), std::string::npos) << c.yaml << " -> '" << error << "'";
    }
  }
  auto missing = ApplyConfigFile(dir_.File("absent.yaml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("No such file or directory"),
            std::string::npos)
      << missing.status();
}

// A value the flag's parser accepts but the Config refuses fails in ConfigFromFlags, as the
// same value on the command line would.
TEST_F(ConfigFile, ValuesAreValidatedLikeFlags) {
  ASSERT_TRUE(Apply("model_dir: /m\noutbox_chunks: 0\n").ok());
  auto c = ConfigFromFlags();
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(std::string(c.status().message()).starts_with("--outbox_chunks:")) << c.status();
}

TEST(WireLimits, TheCliDefaultMatchesTheEngineDefaultChunkBound) {
  EXPECT_EQ(wire::kDefaultMaxChunkBytes, engine::SessionPolicy{}.max_chunk_bytes);
  EXPECT_EQ(wire::kDefaultMaxReceiveBytes,
            engine::SessionPolicy{}.max_chunk_bytes + wire::kChunkFramingMarginBytes);
}

TEST(ByteSizes, FormatAndParseRoundTrip) {
  EXPECT_EQ(FormatByteSize(16 << 20), "16M");
  EXPECT_EQ(FormatByteSize(1536), "1536");
  EXPECT_EQ(FormatByteSize(0), "0");
  EXPECT_EQ(*ParseByteSize("x", FormatByteSize(16 << 20)), 16 << 20);
  EXPECT_EQ(*ParseBitRate("x", "20M"), 20'000'000);
  EXPECT_EQ(*ParseBitRate("x", "800k"), 800'000);
  EXPECT_EQ(*ParseBitRate("x", "1234"), 1234);
  EXPECT_FALSE(ParseBitRate("x", "-1").ok());
}

}  // namespace
}  // namespace longsana::server
