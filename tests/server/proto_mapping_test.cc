// Request validation and mapping (server/proto_mapping), flag parsing (server/server_config,
// server/server_main) without a gRPC server.
#include "server/proto_mapping.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <variant>

#include "server/server_config.h"
#include "server/server_main.h"

namespace longsana::server {
namespace {

v1::GenerateRequest Valid() {
  v1::GenerateRequest r;
  r.set_prompt("a lighthouse at dusk, waves crashing");
  return r;
}

TEST(ToSessionSpec, FillsTheReferenceDefaults) {
  const RequestLimits limits;
  auto spec = ToSessionSpec(Valid(), limits, /*interactive=*/false);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->width, 832);
  EXPECT_EQ(spec->height, 480);
  EXPECT_EQ(spec->num_frames, 81);
  EXPECT_EQ(spec->seed, 0u);
  EXPECT_TRUE(spec->timesteps.empty());
  EXPECT_EQ(spec->num_cached_blocks, -1);
  EXPECT_EQ(spec->motion_score, 10);
  EXPECT_FALSE(spec->encode.crf.has_value());
  EXPECT_FALSE(spec->encode.bitrate_bps.has_value());
  EXPECT_EQ(spec->encode.preset, "veryfast");
  EXPECT_FALSE(spec->interactive);
}

TEST(ToSessionSpec, MapsEveryField) {
  RequestLimits limits;
  v1::GenerateRequest r = Valid();
  r.set_width(96);
  r.set_height(64);
  r.set_num_frames(161);  // 41 latent frames: 4 blocks
  r.set_seed(42);
  r.add_timesteps(1000);
  r.add_timesteps(500);
  r.set_num_cached_blocks(3);
  r.set_motion_score(55);
  r.mutable_output()->set_crf(30);
  r.mutable_output()->set_preset("ultrafast");
  r.set_priority(-5);
  auto* seg = r.add_prompt_timeline();
  seg->set_block(2);
  seg->set_prompt("the storm arrives");
  auto spec = ToSessionSpec(r, limits, /*interactive=*/true);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->width, 96);
  EXPECT_EQ(spec->height, 64);
  EXPECT_EQ(spec->num_frames, 161);
  EXPECT_EQ(spec->seed, 42u);
  EXPECT_EQ(spec->timesteps, (std::vector<double>{1000, 500}));
  EXPECT_EQ(spec->num_cached_blocks, 3);
  EXPECT_EQ(spec->motion_score, 55);
  EXPECT_EQ(spec->encode.crf, 30);
  EXPECT_EQ(spec->encode.preset, "ultrafast");
  EXPECT_EQ(spec->priority, -5);
  ASSERT_EQ(spec->prompt_timeline.size(), 1u);
  EXPECT_EQ(spec->prompt_timeline[0].block, 2);
  EXPECT_EQ(spec->prompt_timeline[0].prompt, "the storm arrives");
  EXPECT_TRUE(spec->interactive);
}

TEST(ToSessionSpec, DurationSecondsRoundsToOnePlusFourK) {
  struct Case {
    double seconds;
    int frames;
  };
  // round(16 s) + 1, then to the nearest 1 + 4k.
  for (const Case c : {Case{5.0, 81}, Case{2.5, 41}, Case{2.55, 41}, Case{2.6, 45}, Case{0.01, 1},
                       Case{0.06, 1}, Case{0.125, 5}, Case{0.2, 5}, Case{60.0, 961}}) {
    v1::GenerateRequest r = Valid();
    r.set_duration_seconds(c.seconds);
    auto spec = ToSessionSpec(r, RequestLimits{}, false);
    ASSERT_TRUE(spec.ok()) << c.seconds << ": " << spec.status();
    EXPECT_EQ(spec->num_frames, c.frames) << c.seconds << " s";
  }
}

TEST(ToSessionSpec, NumBlocksFollowsTheFirstBlockRemainderRule) {
  EXPECT_EQ(NumBlocks(81, 10), 2);    // T = 21: [0, 11, 21]
  EXPECT_EQ(NumBlocks(41, 10), 1);    // T = 11
  EXPECT_EQ(NumBlocks(9, 10), 1);     // T = 3 < 10
  EXPECT_EQ(NumBlocks(961, 10), 24);  // T = 241
}

TEST(ValidatePrompt, RejectsBadPrompts) {
  EXPECT_TRUE(ValidatePrompt("prompt", "ok").ok());
  EXPECT_TRUE(ValidatePrompt("prompt", "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\x8e\xac").ok());
  EXPECT_TRUE(ValidatePrompt("prompt", std::string(kMaxPromptBytes, 'a')).ok());
  for (const std::string& bad : {
           std::string(""), std::string(" \t\n"), std::string(kMaxPromptBytes + 1, 'a'),
           std::string("a\xff"),
           std::string("\xc3"),             // truncated
           std::string("\xc0\xaf"),         // overlong '/'
           std::string("\xed\xa0\x80"),     // UTF-16 surrogate
           std::string("\xf4\x90\x80\x80")  // beyond U+10FFFF
       }) {
    const absl::Status s = ValidatePrompt("prompt", bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad.size();
    EXPECT_TRUE(std::string(s.message()).starts_with("prompt:")) << s;
  }
}

TEST(ValidateCommands, SwitchPromptAndExtend) {
  v1::SwitchPrompt sp;
  sp.set_prompt("now at night");
  EXPECT_TRUE(ValidateSwitchPrompt(sp).ok());
  sp.set_mode(static_cast<v1::SwitchPrompt::Mode>(9));
  EXPECT_NE(std::string(ValidateSwitchPrompt(sp).message()).find("switch_prompt.mode"),
            std::string::npos);
  sp.set_mode(v1::SwitchPrompt::MODE_RECACHE);
  EXPECT_EQ(ToPromptSwitchMode(sp.mode()), engine::PromptSwitchMode::kRecache);
  EXPECT_EQ(ToPromptSwitchMode(v1::SwitchPrompt::MODE_UNSPECIFIED),
            engine::PromptSwitchMode::kImmediate);
  sp.set_prompt("");
  EXPECT_NE(std::string(ValidateSwitchPrompt(sp).message()).find("switch_prompt.prompt"),
            std::string::npos);

  v1::Extend ex;
  for (uint32_t ok : {4u, 40u, 960u}) {
    ex.set_num_frames(ok);
    EXPECT_TRUE(ValidateExtend(ex, RequestLimits{}).ok()) << ok;
  }
  for (uint32_t bad : {0u, 3u, 41u, 964u}) {
    ex.set_num_frames(bad);
    const absl::Status s = ValidateExtend(ex, RequestLimits{});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(std::string(s.message()).starts_with("extend.num_frames:")) << s;
  }
}

TEST(EngineToProto, AcceptedChunkAckCompletedServerInfo) {
  engine::SessionInfo info;
  info.id = 17;
  info.seed = 99;
  info.width = 96;
  info.height = 64;
  info.num_frames = 81;
  info.num_blocks = 2;
  info.block_first_frames = {0, 41};
  info.timesteps = {1000, 960, 889, 727};
  info.queue_position = 3;
  const v1::Accepted a = ToAccepted(info);
  EXPECT_EQ(a.session_id(), "17");
  EXPECT_EQ(a.seed(), 99u);
  EXPECT_EQ(a.num_blocks(), 2u);
  EXPECT_EQ(a.queue_position(), 3u);
  ASSERT_EQ(a.block_first_frames_size(), 2);
  EXPECT_EQ(a.block_first_frames(1), 41u);
  EXPECT_EQ(a.timesteps_size(), 4);

  engine::VideoChunk chunk;
  chunk.sequence = 2;
  chunk.block_index = 1;
  chunk.first_frame = 41;
  chunk.num_frames = 40;
  chunk.bytes = "moofmdat";
  v1::VideoChunk pc;
  ToProto(std::move(chunk), &pc);
  EXPECT_EQ(pc.sequence(), 2u);
  EXPECT_EQ(pc.block_index(), 1);
  EXPECT_EQ(pc.data(), "moofmdat");

  const v1::CommandAck err = ErrorAck(5, absl::InvalidArgumentError("extend.num_frames: x"));
  EXPECT_EQ(err.command_id(), 5u);
  EXPECT_EQ(err.code(), 3);
  EXPECT_EQ(err.error_message(), "extend.num_frames: x");

  engine::CompletionStats st;
  st.frames = 81;
  st.blocks = 2;
  st.block_timings.push_back({1, 0.5, 0.1, 0.02, 0.7});
  const v1::Completed c = ToProto(st);
  EXPECT_EQ(c.frames(), 81u);
  ASSERT_EQ(c.block_timings_size(), 1);
  EXPECT_DOUBLE_EQ(c.block_timings(0).ready_seconds(), 0.7);

  engine::ModelInfo mi;
  mi.dtype = mi.transformer_dtype = "bfloat16";
  mi.text_encoder_dtype = "bfloat16";
  mi.vae_dtype = "float32";
  mi.tf32 = true;
  mi.warmup_width = 832;
  mi.warmup_height = 480;
  mi.warmup_seconds = 1.5;
  engine::EngineStats es;
  es.running = 2;
  es.queued = 1;
  es.draining = true;
  const v1::ServerInfo si = ToServerInfo(mi, es, "build");
  EXPECT_EQ(si.limits().block_frames(), 40u);
  EXPECT_EQ(si.limits().max_prompt_bytes(), kMaxPromptBytes);
  EXPECT_EQ(si.capacity().running(), 2u);
  EXPECT_TRUE(si.capacity().draining());
  EXPECT_EQ(si.model().dtype(), "bfloat16");
  EXPECT_EQ(si.model().transformer_dtype(), "bfloat16");
  EXPECT_EQ(si.model().text_encoder_dtype(), "bfloat16");
  EXPECT_EQ(si.model().vae_dtype(), "float32");
  EXPECT_TRUE(si.model().tf32());
  EXPECT_EQ(si.model().warmup_width(), 832u);
  EXPECT_EQ(si.model().warmup_height(), 480u);
  EXPECT_DOUBLE_EQ(si.model().warmup_seconds(), 1.5);
}

TEST(ToSessionSpec, PacingAndLookahead) {
  const RequestLimits limits;
  v1::GenerateRequest r = Valid();
  auto spec = ToSessionSpec(r, limits, false);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->pacing, engine::Pacing::kDefault);  // the server's --default_pacing
  EXPECT_EQ(spec->lookahead_seconds, 0);
  r.set_pacing(v1::GenerateRequest::PACING_REALTIME);
  r.set_lookahead_seconds(2.5);
  spec = ToSessionSpec(r, limits, false);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->pacing, engine::Pacing::kRealTime);
  EXPECT_EQ(spec->lookahead_seconds, 2.5);
  r.set_pacing(v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE);
  auto bad = ToSessionSpec(r, limits, false);  // a lookahead means nothing unpaced
  EXPECT_TRUE(std::string(bad.status().message()).starts_with("lookahead_seconds:"))
      << bad.status();
  r.set_lookahead_seconds(0);
  spec = ToSessionSpec(r, limits, false);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->pacing, engine::Pacing::kAsFastAsPossible);
  r.set_pacing(static_cast<v1::GenerateRequest::Pacing>(7));
  bad = ToSessionSpec(r, limits, false);
  EXPECT_TRUE(std::string(bad.status().message()).starts_with("pacing:")) << bad.status();
}

TEST(ToSessionSpec, Fragments) {
  v1::GenerateRequest r = Valid();
  EXPECT_FALSE(ToSessionSpec(r, RequestLimits{}, false)->encode.fragment_per_latent_frame);
  r.mutable_output()->set_fragments(v1::OutputOptions::FRAGMENTS_PER_LATENT_FRAME);
  EXPECT_TRUE(ToSessionSpec(r, RequestLimits{}, false)->encode.fragment_per_latent_frame);
  r.mutable_output()->set_fragments(v1::OutputOptions::FRAGMENTS_PER_BLOCK);
  EXPECT_FALSE(ToSessionSpec(r, RequestLimits{}, false)->encode.fragment_per_latent_frame);
  r.mutable_output()->set_fragments(static_cast<v1::OutputOptions::Fragments>(5));
  auto bad = ToSessionSpec(r, RequestLimits{}, false);
  EXPECT_TRUE(std::string(bad.status().message()).starts_with("output.fragments:")) << bad.status();
}

TEST(ToEngineCommand, PositionAndTransition) {
  v1::SessionCommand c;
  c.set_command_id(4);
  c.mutable_position()->set_seconds(12.5);
  c.mutable_position()->set_paused(true);
  auto cmd = ToEngineCommand(c, RequestLimits{});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  const auto* position = std::get_if<engine::PositionCommand>(&*cmd);
  ASSERT_NE(position, nullptr);
  EXPECT_EQ(position->seconds, 12.5);
  EXPECT_TRUE(position->paused);
  c.mutable_switch_prompt()->set_prompt("dusk");
  c.mutable_switch_prompt()->set_transition_blocks(3);
  cmd = ToEngineCommand(c, RequestLimits{});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(std::get<engine::SwitchPromptCommand>(*cmd).transition_blocks, 3);
}

TEST(EngineToProto, PacingPromptAndSwitchVisibleFields) {
  engine::SessionInfo info;
  info.paced = true;
  info.lookahead_seconds = 5;
  const v1::Accepted a = ToAccepted(info);
  EXPECT_EQ(a.pacing(), v1::GenerateRequest::PACING_REALTIME);
  EXPECT_EQ(a.lookahead_seconds(), 5);
  info.paced = false;
  EXPECT_EQ(ToAccepted(info).pacing(), v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE);

  engine::VideoChunk chunk;
  chunk.block_index = 3;
  chunk.prompt_command_id = 9;
  chunk.prompt_weight = 0.5;
  chunk.switch_visible = engine::VideoChunk::SwitchVisible{9, 1.25, 3.5};
  v1::VideoChunk pc;
  ToProto(chunk, &pc);
  EXPECT_EQ(pc.prompt_command_id(), 9u);
  EXPECT_EQ(pc.prompt_weight(), 0.5);
  ASSERT_TRUE(pc.has_switch_visible());
  EXPECT_EQ(pc.switch_visible().command_id(), 9u);
  EXPECT_EQ(pc.switch_visible().latency_seconds(), 1.25);
  EXPECT_EQ(pc.switch_visible().playback_delay_seconds(), 3.5);

  engine::ModelInfo mi;
  mi.default_lookahead_seconds = 4;
  mi.max_transition_blocks = 8;
  engine::EngineStats es;
  es.realtime_load = 0.45;
  const v1::ServerInfo si = ToServerInfo(mi, es, "build");
  EXPECT_EQ(si.limits().default_pacing(), v1::GenerateRequest::PACING_REALTIME);
  EXPECT_EQ(si.limits().default_lookahead_seconds(), 4);
  EXPECT_EQ(si.limits().max_transition_blocks(), 8u);
  EXPECT_EQ(si.capacity().realtime_load(), 0.45);
}

TEST(ServerConfig, ParsesByteSizesDevicesLevelsAndAddresses) {
  EXPECT_EQ(*ParseByteSize("b", "8G"), 8LL << 30);
  EXPECT_EQ(*ParseByteSize("b", "512M"), 512LL << 20);
  EXPECT_EQ(*ParseByteSize("b", "64k"), 64LL << 10);
  EXPECT_EQ(*ParseByteSize("b", "1.5GiB"), 3LL << 29);
  EXPECT_EQ(*ParseByteSize("b", "1073741824"), 1LL << 30);
  EXPECT_EQ(*ParseByteSize("b", "0"), 0);
  for (const char* bad : {"", "G", "-1G", "8X", "abc", "1e30"}) {
    auto r = ParseByteSize("--memory_budget", bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_TRUE(std::string(r.status().message()).starts_with("--memory_budget:"));
    }
  }
  EXPECT_EQ(*ParseDevice("d", "CUDA"), engine::DeviceKind::kCuda);
  EXPECT_FALSE(ParseDevice("d", "tpu").ok());
  EXPECT_EQ(*ParseVaeDtype("v", "BF16"), engine::VaeDtype::kBFloat16);
  EXPECT_EQ(*ParseVaeDtype("v", "fp32"), engine::VaeDtype::kFloat32);
  EXPECT_TRUE(std::string(ParseVaeDtype("--vae_dtype", "fp16").status().message())
                  .starts_with("--vae_dtype:"));
  EXPECT_EQ(*ParseLogLevel("l", "debug"), LogLevel::kDebug);
  EXPECT_FALSE(ParseLogLevel("l", "loud").ok());

  auto hp = ParseHostPort("listen", "127.0.0.1:0");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 0);
  hp = ParseHostPort("listen", "[::1]:50051");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "[::1]");
  EXPECT_EQ(hp->port, 50051);
  for (const char* bad : {"localhost", ":80", "host:", "host:99999", "host:8x", "[::1]80"}) {
    EXPECT_FALSE(ParseHostPort("listen", bad).ok()) << bad;
  }

  ServerOptions options;
  EXPECT_TRUE(options.Validate().ok());
  options.outbox_chunks = 0;
  EXPECT_NE(std::string(options.Validate().message()).find("outbox_chunks"), std::string::npos);
}

TEST(ServerMain, FlagDashesBecomeUnderscores) {
  std::string a0 = "longsana-server", a1 = "--model-dir=/m/x-y", a2 = "--max-sessions", a3 = "4",
              a4 = "-log-level=debug", a5 = "--", a6 = "--not-a-flag";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), a5.data(), a6.data()};
  NormalizeFlagDashes(7, argv);
  EXPECT_STREQ(argv[0], "longsana-server");
  EXPECT_STREQ(argv[1], "--model_dir=/m/x-y");  // the value keeps its dashes
  EXPECT_STREQ(argv[2], "--max_sessions");
  EXPECT_STREQ(argv[4], "-log_level=debug");
  EXPECT_STREQ(argv[6], "--not-a-flag");  // after "--": positional
}

}  // namespace
}  // namespace longsana::server
