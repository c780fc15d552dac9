// The batch-invariance scenario shared by the CPU and the CUDA engine tests: a session alone,
// then the same request (seed 42) as one of four sessions with other seeds and prompts.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/api/engine.h"
#include "tests/runner/engine_test_util.h"
#include "tests/runner/recording_sink.h"

namespace longsana::engine {

// Expects the same video bytes alone and batched, different bytes for another seed, and that
// the four really shared forwards.
inline void ExpectSameBytesAloneAndBatched(Engine& engine) {
  using ::longsana::testing::RecordingSink;
  auto alone = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine.Submit(Spec(81, 42), alone).ok());
  ASSERT_TRUE(alone->WaitDone());
  ASSERT_TRUE(alone->status.ok()) << alone->status;
  const EngineStats before = engine.Stats();

  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 4; ++i) sinks.push_back(std::make_shared<RecordingSink>());
  for (int i = 0; i < 4; ++i) {
    SessionSpec spec = Spec(81, i == 2 ? 42 : 100 + i);
    if (i != 2) spec.prompt = "another prompt " + std::to_string(i);
    ASSERT_TRUE(engine.Submit(spec, sinks[i]).ok());
  }
  for (auto& s : sinks) {
    ASSERT_TRUE(s->WaitDone());
    EXPECT_TRUE(s->status.ok()) << s->status;
  }
  EXPECT_EQ(sinks[2]->Video(), alone->Video()) << "batched, the same request's bytes changed";
  EXPECT_NE(sinks[1]->Video(), alone->Video());
  const EngineStats after = engine.Stats();
  EXPECT_GT(after.forward_items - before.forward_items, after.forwards - before.forwards)
      << "the sessions were never batched";
}

}  // namespace longsana::engine
