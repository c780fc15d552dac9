// ConfigFromFlags (server/server_main.h): the new flags' defaults come from the config structs,
// their values reach the config, and a bad value is an error naming the flag. Also: the
// framing margin the CLI uses agrees with the engine's default chunk bound.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "engine/api/engine.h"
#include "proto/wire_limits.h"
#include "server/server_config.h"
#include "server/server_main.h"

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
ABSL_DECLARE_FLAG(double, stall_timeout);
ABSL_DECLARE_FLAG(int, text_queue_size);
ABSL_DECLARE_FLAG(int, max_pending_commands);
ABSL_DECLARE_FLAG(double, memory_budget_fraction);
ABSL_DECLARE_FLAG(double, keepalive_time);
ABSL_DECLARE_FLAG(double, keepalive_timeout);
ABSL_DECLARE_FLAG(double, max_connection_idle);
ABSL_DECLARE_FLAG(double, max_connection_age);
ABSL_DECLARE_FLAG(int, max_concurrent_streams);
ABSL_DECLARE_FLAG(int, max_sessions_per_peer);
ABSL_DECLARE_FLAG(double, command_rate);
ABSL_DECLARE_FLAG(int, command_burst);

namespace longsana::server {
namespace {

using namespace std::chrono_literals;

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
      {"stall_timeout", [] { absl::SetFlag(&FLAGS_stall_timeout, -1.0); }},
      {"text_queue_size", [] { absl::SetFlag(&FLAGS_text_queue_size, 0); }},
      {"max_pending_commands", [] { absl::SetFlag(&FLAGS_max_pending_commands, 0); }},
      {"memory_budget_fraction", [] { absl::SetFlag(&FLAGS_memory_budget_fraction, 1.5); }},
      {"drain_timeout", [] { absl::SetFlag(&FLAGS_drain_timeout, -3.0); }},
      {"keepalive_time", [] { absl::SetFlag(&FLAGS_keepalive_time, 1e9); }},
      {"keepalive_timeout", [] { absl::SetFlag(&FLAGS_keepalive_timeout, 0.0); }},
      {"max_connection_idle", [] { absl::SetFlag(&FLAGS_max_connection_idle, -1.0); }},
      {"max_concurrent_streams", [] { absl::SetFlag(&FLAGS_max_concurrent_streams, 0); }},
      {"max_sessions_per_peer", [] { absl::SetFlag(&FLAGS_max_sessions_per_peer, -1); }},
      {"command_rate", [] { absl::SetFlag(&FLAGS_command_rate, -1.0); }},
      {"command_burst", [] { absl::SetFlag(&FLAGS_command_burst, 0); }},
  };
  for (const Case& c : cases) {
    absl::FlagSaver saver;
    c.set();
    const std::string error = Error();
    EXPECT_TRUE(error.starts_with("--" + c.flag + ":")) << c.flag << ": '" << error << "'";
  }
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
