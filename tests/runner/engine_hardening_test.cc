// The real engine on the tiny checkpoint, against what must not break a session it does not
// own: faults inside a batched forward or a decode, clients that stop reading, bursts of
// commands, command races, drain, cost caps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "tests/runner/engine_test_util.h"
#include "tests/runner/recording_sink.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::RecordingSink;
using ::testing::HasSubstr;

// The video a spec makes alone on a fresh engine.
std::string SoloVideo(Engine& engine, const SessionSpec& spec) {
  auto sink = std::make_shared<RecordingSink>();
  EXPECT_TRUE(engine.Submit(spec, sink).ok());
  EXPECT_TRUE(sink->WaitDone());
  EXPECT_TRUE(sink->status.ok()) << sink->status;
  return sink->Video();
}

// Submits `specs` held back (congested sinks, so no forward runs), lets `arm` see their ids,
// then releases them together so that they share batches.
std::vector<std::shared_ptr<RecordingSink>> RunTogether(
    Engine& engine, const std::vector<SessionSpec>& specs,
    const std::function<void(const std::vector<SessionId>&)>& arm) {
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  std::vector<SessionId> ids;
  for (const auto& spec : specs) {
    auto sink = std::make_shared<RecordingSink>();
    sink->congested = true;
    auto info = engine.Submit(spec, sink);
    EXPECT_TRUE(info.ok()) << info.status();
    ids.push_back(info.ok() ? info->id : 0);
    sinks.push_back(sink);
  }
  arm(ids);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // captions encoded, set up
  for (auto& s : sinks) s->congested = false;
  for (auto& s : sinks) EXPECT_TRUE(s->WaitDone());
  return sinks;
}

std::vector<SessionSpec> FourSpecs() {
  std::vector<SessionSpec> specs;
  for (uint64_t seed : {42, 7, 8, 43}) specs.push_back(Spec(81, seed));
  return specs;
}

// The bug this guards: a batched cache-pass forward that threw after its first layer had
// already committed every batch member's state, and the one-by-one retry committed it again.
TEST(EngineFaults, AFaultBetweenLayersOfABatchedCachePassLeavesTheOthersByteIdentical) {
  FaultInjectionReset reset;
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  std::vector<std::string> solo;
  for (const auto& spec : FourSpecs()) solo.push_back(SoloVideo(*engine, spec));
  const EngineStats before = engine->Stats();

  auto sinks = RunTogether(*engine, FourSpecs(), [](const std::vector<SessionId>& ids) {
    fault_injection::FailSession(fault_injection::kDitCachePass, ids[1]);
  });
  EXPECT_EQ(sinks[1]->status.code(), absl::StatusCode::kInternal) << sinks[1]->status;
  EXPECT_THAT(sinks[1]->status.message(), HasSubstr("injected fault after layer 0"));
  for (int i : {0, 2, 3}) {
    ASSERT_TRUE(sinks[i]->status.ok()) << i << ": " << sinks[i]->status;
    EXPECT_EQ(sinks[i]->Video(), solo[i]) << "session " << i;
  }
  const EngineStats after = IdleStats(*engine);
  EXPECT_GT(after.forward_items - before.forward_items, after.forwards - before.forwards)
      << "the sessions were never batched";
  EXPECT_EQ(after.failed - before.failed, 1u);
  EXPECT_EQ(after.slot_bytes_in_use, 0);
  EXPECT_TRUE(engine->Healthy());
}

// A transient fault (the batch fails once, the retries succeed): every session, the one
// whose forward failed included, makes exactly its solo video.
TEST(EngineFaults, ATransientFaultChangesNoSessionsVideo) {
  FaultInjectionReset reset;
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  std::vector<std::string> solo;
  for (const auto& spec : FourSpecs()) solo.push_back(SoloVideo(*engine, spec));
  for (auto point : {fault_injection::kDitCachePass, fault_injection::kDitForward}) {
    auto sinks = RunTogether(*engine, FourSpecs(), [&](const std::vector<SessionId>& ids) {
      fault_injection::FailSession(point, ids[2], /*times=*/1);
    });
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(sinks[i]->status.ok()) << point << " " << i << ": " << sinks[i]->status;
      EXPECT_EQ(sinks[i]->Video(), solo[i]) << point << " session " << i;
    }
  }
}

TEST(EngineFaults, AFaultInTheMiddleOfADecodeEndsOnlyThatSession) {
  FaultInjectionReset reset;
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  std::vector<std::string> solo;
  for (const auto& spec : FourSpecs()) solo.push_back(SoloVideo(*engine, spec));
  auto sinks = RunTogether(*engine, FourSpecs(), [](const std::vector<SessionId>& ids) {
    fault_injection::FailSession(fault_injection::kMediaDecode, ids[3]);
  });
  EXPECT_EQ(sinks[3]->status.code(), absl::StatusCode::kInternal) << sinks[3]->status;
  EXPECT_THAT(sinks[3]->status.message(), HasSubstr("middle of the VAE decode"));
  EXPECT_TRUE(sinks[3]->chunks.empty());
  for (int i : {0, 1, 2}) {
    ASSERT_TRUE(sinks[i]->status.ok()) << sinks[i]->status;
    EXPECT_EQ(sinks[i]->Video(), solo[i]) << "session " << i;
  }
  // Nothing lingers: the failed session's spec runs again.
  fault_injection::Reset();
  EXPECT_EQ(SoloVideo(*engine, FourSpecs()[3]), solo[3]);
}

TEST(EngineBounds, AClientThatReadsNothingEndsAfterTheStallBudgetAndFreesItsSlot) {
  EngineConfig config = TinyConfig();
  config.max_sessions = 2;
  config.stall_timeout = std::chrono::milliseconds(500);
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  std::vector<std::shared_ptr<RecordingSink>> stuck;
  for (int i = 0; i < 4; ++i) {
    stuck.push_back(std::make_shared<RecordingSink>());
    stuck.back()->congested = true;  // never reads
    ASSERT_TRUE(engine->Submit(Spec(161, 10 + i), stuck.back()).ok());
  }
  auto normal = std::make_shared<RecordingSink>();
  auto info = engine->Submit(Spec(41, 99), normal);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->queue_position, 3);
  ASSERT_TRUE(normal->WaitDone());
  EXPECT_TRUE(normal->status.ok()) << normal->status;
  for (auto& s : stuck) {
    ASSERT_TRUE(s->WaitDone());
    EXPECT_EQ(s->status.code(), absl::StatusCode::kDeadlineExceeded) << s->status;
    EXPECT_THAT(s->status.message(), HasSubstr("--stall-timeout"));
  }
  EXPECT_EQ(IdleStats(*engine).slot_bytes_in_use, 0);
}

// 2,000 switches before block 0 starts: every one is acknowledged in order, only the latest
// prompt is used (the video equals a request made with it), and other sessions go on.
TEST(EngineBounds, ABurstOfSwitchesIsCoalescedAndTheLastOneWins) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  SessionSpec last = Spec(81, 5);
  last.prompt = "switch number 1999";
  last.interactive = true;
  const std::string expected = SoloVideo(*engine, last);

  auto other = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(Spec(161, 6), other).ok());
  auto sink = std::make_shared<RecordingSink>();
  sink->congested = true;
  SessionSpec spec = Spec(81, 5);
  spec.interactive = true;
  auto info = engine->Submit(spec, sink);
  ASSERT_TRUE(info.ok());
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    auto ack = Switch(*engine, info->id, i + 1, "switch number " + std::to_string(i));
    if (!ack.ok()) ++refused;
  }
  EXPECT_EQ(refused, 0);
  sink->congested = false;
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  const auto acks = sink->Acks();
  ASSERT_EQ(acks.size(), 2000u);
  for (size_t i = 0; i < acks.size(); ++i) {
    EXPECT_EQ(acks[i].command_id, i + 1);
    EXPECT_EQ(acks[i].effective_block, 0);
  }
  EXPECT_EQ(sink->Video(), expected);
  ASSERT_TRUE(other->WaitDone());
  EXPECT_TRUE(other->status.ok()) << other->status;
}

TEST(EngineRaces, AcksComeInCommandOrderWithRefusalsInPlace) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<RecordingSink>();
  sink->congested = true;
  SessionSpec spec = Spec(161, 3);
  spec.interactive = true;
  auto info = engine->Submit(spec, sink);
  ASSERT_TRUE(info.ok());
  const SessionId id = info->id;
  using C = absl::StatusCode;
  EXPECT_TRUE(Switch(*engine, id, 1, "a calm lake").ok());
  EXPECT_EQ(Switch(*engine, id, 2, "").status().code(), C::kInvalidArgument);
  EXPECT_TRUE(Extend(*engine, id, 3, 40).ok());
  EXPECT_EQ(engine->Command(id, 4, absl::InvalidArgumentError("command: none set")).status().code(),
            C::kInvalidArgument);
  EXPECT_EQ(Extend(*engine, id, 4, 40).status().code(), C::kInvalidArgument);  // duplicate id
  EXPECT_EQ(Extend(*engine, id, 2, 40).status().code(), C::kInvalidArgument);  // smaller id
  EXPECT_TRUE(Stop(*engine, id, 5).ok());
  EXPECT_EQ(Extend(*engine, id, 6, 40).status().code(), C::kFailedPrecondition);
  EXPECT_EQ(Switch(*engine, id, 7, "after stop").status().code(), C::kFailedPrecondition);
  sink->congested = false;
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  const auto acks = sink->Acks();
  const std::vector<std::pair<uint64_t, C>> expected = {{1, C::kOk},
                                                        {2, C::kInvalidArgument},
                                                        {3, C::kOk},
                                                        {4, C::kInvalidArgument},
                                                        {4, C::kInvalidArgument},
                                                        {2, C::kInvalidArgument},
                                                        {5, C::kOk},
                                                        {6, C::kFailedPrecondition},
                                                        {7, C::kFailedPrecondition}};
  ASSERT_EQ(acks.size(), expected.size());
  for (size_t i = 0; i < acks.size(); ++i) {
    EXPECT_EQ(acks[i].command_id, expected[i].first) << i;
    EXPECT_EQ(acks[i].status.code(), expected[i].second) << i << ": " << acks[i].status;
  }
  EXPECT_THAT(acks[4].status.message(), HasSubstr("command_id"));
  EXPECT_THAT(acks[7].status.message(), HasSubstr("stop"));
  // The stop came before block 0 started: the video is that one block.
  EXPECT_EQ(sink->stats.blocks, 1);
}

// Contract (proto): an extend is either acknowledged before Completed, which then reports
// the longer video, or, once the last chunk was produced, answered NotFound with no ack.
TEST(EngineRaces, ExtendRacingCompletionIsEitherAckedAndHonouredOrNotFound) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  for (int64_t at_block : {0, 1}) {
    auto sink = std::make_shared<RecordingSink>();
    SessionSpec spec = Spec(81, 11);
    spec.interactive = true;
    auto info = engine->Submit(spec, sink);
    ASSERT_TRUE(info.ok());
    absl::StatusCode code = absl::StatusCode::kUnknown;
    sink->SetOnChunk([&, id = info->id](const VideoChunk& c) {
      if (c.block_index == at_block) code = Extend(*engine, id, 1, 40).status().code();
    });
    ASSERT_TRUE(sink->WaitDone());
    ASSERT_TRUE(sink->status.ok()) << sink->status;
    const auto acks = sink->Acks();
    if (code == absl::StatusCode::kOk) {
      ASSERT_EQ(acks.size(), 1u);
      EXPECT_EQ(sink->stats.frames, 121);
    } else {
      EXPECT_EQ(code, absl::StatusCode::kNotFound);
      EXPECT_TRUE(acks.empty());
      EXPECT_EQ(sink->stats.frames, 81);
    }
    if (at_block == 1) {
      EXPECT_EQ(code, absl::StatusCode::kNotFound);  // after the last chunk
    }
  }
}

TEST(EngineRaces, CancelFromInsideASinkCallbackDoesNotDeadlock) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(Spec(161, 12), sink);
  ASSERT_TRUE(info.ok());
  sink->SetOnChunk([&, id = info->id](const VideoChunk& c) {
    if (c.block_index == 0) engine->Cancel(id, absl::CancelledError("from the sink"));
  });
  ASSERT_TRUE(sink->WaitDone(std::chrono::seconds(60)));
  EXPECT_EQ(sink->status.code(), absl::StatusCode::kCancelled);
  EXPECT_LE(sink->NumChunks(), 3u);
  // The engine goes on.
  EXPECT_FALSE(SoloVideo(*engine, Spec(41, 12)).empty());
}

TEST(EngineDrain, QueuedSessionsAreHandedBackAtOnceAndRunningOnesFinish) {
  EngineConfig config = TinyConfig();
  config.max_sessions = 1;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  auto running = std::make_shared<RecordingSink>();
  auto queued = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(Spec(81, 1), running).ok());
  ASSERT_TRUE(engine->Submit(Spec(81, 2), queued).ok());
  std::thread drain([&] { engine->Drain(std::chrono::seconds(60)); });
  ASSERT_TRUE(queued->WaitDone());
  EXPECT_EQ(queued->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(queued->status.message(), HasSubstr("another replica"));
  drain.join();
  ASSERT_TRUE(running->WaitDone());
  EXPECT_TRUE(running->status.ok()) << running->status;
}

TEST(EnginePolicy, EachCostCapNamesTheFlagThatSetsIt) {
  EngineConfig config = TinyConfig();
  config.policy.max_steps = 4;
  config.policy.max_cached_blocks = 2;
  config.policy.max_pixels = 64 * 64;
  config.policy.min_crf = 18;
  config.policy.max_bitrate_bps = 1'000'000;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  struct Case {
    std::function<void(SessionSpec&)> edit;
    std::string field, flag;
  };
  const std::vector<Case> cases = {
      {[](SessionSpec& s) {
         s.timesteps = {1000, 960, 889, 727, 500};
       },
       "timesteps", "--max-steps"},
      {[](SessionSpec& s) { s.num_cached_blocks = 3; }, "num_cached_blocks", "--max-cached-blocks"},
      {[](SessionSpec& s) { s.width = 80; }, "width", "--max-pixels"},
      {[](SessionSpec& s) { s.encode.preset = "placebo"; }, "output.preset", "--allowed-presets"},
      {[](SessionSpec& s) { s.encode.crf = 1; }, "output.crf", "--min-crf"},
      {[](SessionSpec& s) { s.encode.bitrate_bps = 50'000'000; }, "output.bitrate_bps",
       "--max-bitrate"},
  };
  for (const auto& c : cases) {
    SessionSpec spec = Spec();
    c.edit(spec);
    auto r = engine->Submit(spec, std::make_shared<RecordingSink>());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.field)) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.flag)) << r.status();
  }
  // A chunk over --max-chunk-bytes ends its session, naming the flag.
  config.policy.max_chunk_bytes = 64 * 1024;
  config.policy.min_crf = 1;
  auto small = MakeEngine(config);
  ASSERT_TRUE(small);
  SessionSpec big = Spec(41, 3);
  big.encode.crf = 1;
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(small->Submit(big, sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  if (!sink->status.ok()) {  // a 64x64 block at crf 1 may or may not exceed 64 KiB
    EXPECT_EQ(sink->status.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(sink->status.message(), HasSubstr("--max-chunk-bytes"));
  }
}

TEST(EngineIds, SessionIdsAreRandomAndDistinct) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  std::set<SessionId> ids;
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 8; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    sinks.back()->congested = true;
    auto info = engine->Submit(Spec(41, 1 + i), sinks.back());
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_NE(info->id, 0u);
    ids.insert(info->id);
    engine->Cancel(info->id, absl::CancelledError("done"));
  }
  EXPECT_EQ(ids.size(), 8u);
  // Not a per-process counter.
  EXPECT_GT(*ids.rbegin() - *ids.begin(), 1000u);
}

}  // namespace
}  // namespace longsana::engine
