// SessionEvents: per-session sink calls in push order, never overlapping, never nested
// (also when the sink calls back into the engine from a callback), one terminal event.
// Run from many threads at once; in the tsan build also under ThreadSanitizer.
#include "engine/runner/session_events.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace longsana::engine {
namespace {

// Records acks; fails the test on overlapping calls or on events after the terminal one.
class CheckingSink final : public ChunkSink {
 public:
  void OnQueued(int, double) override { Enter(); Leave(); }
  void OnStarted() override { Enter(); Leave(); }
  void OnProgress(int64_t, int, int) override { Enter(); Leave(); }
  void OnChunk(VideoChunk) override { Enter(); Leave(); }
  void OnCommandAck(const CommandAck& ack) override {
    Enter();
    acks.push_back(ack.command_id);
    if (on_ack) on_ack(ack);
    Leave();
  }
  void OnCompleted(const CompletionStats&) override {
    Enter();
    ++terminal;
    Leave();
  }
  void OnFailed(const absl::Status&) override {
    Enter();
    ++terminal;
    Leave();
  }

  std::vector<uint64_t> acks;  // only touched inside callbacks, which never overlap
  int terminal = 0;
  std::function<void(const CommandAck&)> on_ack;
  std::atomic<int> overlaps{0};
  std::atomic<int> after_terminal{0};

 private:
  void Enter() {
    if (inside_.exchange(true)) ++overlaps;
    if (terminal > 0) ++after_terminal;
  }
  void Leave() { inside_.store(false); }
  std::atomic<bool> inside_{false};
};

TEST(SessionEvents, ManyProducersDeliverInTheirOrderWithoutOverlap) {
  auto sink = std::make_shared<CheckingSink>();
  SessionEvents events(sink);
  constexpr int kThreads = 4, kPerThread = 2000;
  std::mutex order_mu;  // stands in for the registry lock: pushes are ordered under it
  std::vector<uint64_t> pushed;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        {
          std::lock_guard lock(order_mu);
          CommandAck ack;
          ack.command_id = static_cast<uint64_t>(t) * kPerThread + i + 1;
          pushed.push_back(ack.command_id);
          events.Ack(ack);
          events.Progress(i, 0, 4);
        }
        events.Flush();
      }
    });
  }
  for (auto& t : threads) t.join();
  events.Fail(absl::CancelledError("done"));
  events.Ack(CommandAck{});  // after the terminal event: dropped
  events.Flush();
  EXPECT_EQ(sink->overlaps.load(), 0);
  EXPECT_EQ(sink->after_terminal.load(), 0);
  EXPECT_EQ(sink->terminal, 1);
  EXPECT_EQ(sink->acks, pushed);
}

TEST(SessionEvents, ASinkThatPushesFromACallbackGetsTheEventAfterItReturns) {
  auto sink = std::make_shared<CheckingSink>();
  SessionEvents events(sink);
  sink->on_ack = [&](const CommandAck& ack) {
    if (ack.command_id == 1) {  // e.g. a Cancel or a command from inside the callback
      CommandAck next;
      next.command_id = 2;
      events.Ack(next);
      events.Flush();  // returns at once: the outer Flush delivers it
      events.Fail(absl::CancelledError("from the callback"));
      events.Flush();
    }
  };
  CommandAck first;
  first.command_id = 1;
  events.Ack(first);
  events.Flush();
  EXPECT_EQ(sink->overlaps.load(), 0);
  EXPECT_EQ(sink->acks, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(sink->terminal, 1);
  EXPECT_TRUE(events.terminal());
}

}  // namespace
}  // namespace longsana::engine
