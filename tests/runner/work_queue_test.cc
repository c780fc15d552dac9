// The runner's worker-thread job queue: FIFO order, batches, and shutdown.
#include "engine/runner/work_queue.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>

namespace longsana::engine {
namespace {

TEST(WorkQueue, PopsInPushOrderAcrossSinglesAndBatches) {
  WorkQueue<std::unique_ptr<int>> q;  // move-only jobs work
  q.Push(std::make_unique<int>(1));
  std::vector<std::unique_ptr<int>> batch;
  batch.push_back(std::make_unique<int>(2));
  batch.push_back(std::make_unique<int>(3));
  q.PushAll(std::move(batch));
  q.PushAll({});
  q.Push(std::make_unique<int>(4));
  for (int want = 1; want <= 4; ++want) {
    auto job = q.Pop();
    ASSERT_TRUE(job.has_value());
    EXPECT_EQ(**job, want);
  }
}

TEST(WorkQueue, AWaitingWorkerGetsAJobPushedLater) {
  WorkQueue<int> q;
  std::optional<int> got;
  std::thread worker([&] { got = q.Pop(); });
  q.Push(7);
  worker.join();
  EXPECT_EQ(got, 7);
}

TEST(WorkQueue, CloseEndsTheWorkerLoopAndDropsWhatIsLeft) {
  WorkQueue<int> q;
  int processed = 0;
  std::thread worker([&] {
    while (std::optional<int> job = q.Pop()) processed += *job;
  });
  q.Close();
  worker.join();
  EXPECT_EQ(processed, 0);
  q.Push(5);
  EXPECT_EQ(q.Pop(), std::nullopt);
}

}  // namespace
}  // namespace longsana::engine
