// Scheduler policies, table-driven, with a fake runner that advances sessions by forwards.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "engine/scheduler/scheduler.h"

namespace longsana::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

TEST(SchedulerAdmission, Table) {
  struct Row {
    uint64_t id;
    int priority;
    int64_t bytes;
    absl::StatusCode code;
    int result;  // 0 admitted, k queued at k
  };
  // max 2 sessions, 1000 bytes, queue of 2.
  const std::vector<Row> rows = {
      {1, 0, 400, absl::StatusCode::kOk, 0},
      {2, 0, 700, absl::StatusCode::kOk, 1},                 // over budget: queued
      {3, 0, 100, absl::StatusCode::kOk, 2},                 // fits, but never skips the head
      {4, 5, 100, absl::StatusCode::kResourceExhausted, 0},  // queue full
      {5, 0, 2000, absl::StatusCode::kInvalidArgument, 0},   // larger than the whole budget
      {1, 0, 10, absl::StatusCode::kAlreadyExists, 0},
  };
  Scheduler s({/*max_sessions=*/2, /*memory_budget_bytes=*/1000, /*queue_size=*/2, 8});
  for (const auto& r : rows) {
    auto got = s.Submit({r.id, r.priority, r.bytes});
    EXPECT_EQ(got.status().code(), r.code) << r.id;
    if (got.ok()) {
      EXPECT_EQ(*got, r.result) << r.id;
    }
  }
  EXPECT_EQ(s.running(), 1);
  EXPECT_EQ(s.queued(), 2);
  EXPECT_EQ(s.bytes_in_use(), 400);
  EXPECT_EQ(s.Admissible(100), 0);  // a queue exists: nothing jumps it
  // Session 1 finishes: 2 (700) then 3 (100) fit (800 <= 1000, 2 sessions).
  s.Remove(1);
  EXPECT_THAT(s.AdmitFromQueue(), ElementsAre(2, 3));
  EXPECT_EQ(s.bytes_in_use(), 800);
  EXPECT_EQ(s.Admissible(100), 0);  // max_sessions reached
  s.Remove(3);
  EXPECT_EQ(s.Admissible(100), 1);
  EXPECT_EQ(s.Admissible(400), 0);  // 700 + 400 > 1000
}

TEST(SchedulerAdmission, PriorityOrdersTheQueueFifoWithin) {
  Scheduler s({1, 0, 10, 8});
  ASSERT_EQ(*s.Submit({1, 0, 1}), 0);
  EXPECT_EQ(*s.Submit({2, 0, 1}), 1);
  EXPECT_EQ(*s.Submit({3, 1, 1}), 1);  // higher priority goes ahead
  EXPECT_EQ(*s.Submit({4, 0, 1}), 3);
  EXPECT_EQ(*s.Submit({5, 1, 1}), 2);
  EXPECT_THAT(s.queue(), ElementsAre(3, 5, 2, 4));
  s.Remove(5);  // cancelled while queued
  EXPECT_THAT(s.queue(), ElementsAre(3, 2, 4));
  EXPECT_EQ(s.QueuePosition(4), 3);
}

TEST(SchedulerPlan, Table) {
  struct Case {
    std::string name;
    std::vector<ReadySession> ready;
    std::vector<uint64_t> batch;
    int max_batch;
  };
  const std::vector<Case> cases = {
      {"empty", {}, {}, 8},
      {"earliest deadline picks the token count",
       {{1, 100, 5.0, 0}, {2, 200, 2.0, 0}, {3, 200, 9.0, 0}, {4, 100, 1.0, 0}},
       {4, 1},
       8},
      {"same token count batches by urgency",
       {{1, 100, 5.0, 0}, {2, 100, 2.0, 0}, {3, 100, 9.0, 0}},
       {2, 1, 3},
       8},
      {"max batch", {{1, 100, 5.0, 0}, {2, 100, 2.0, 0}, {3, 100, 9.0, 0}}, {2, 1}, 2},
      {"priority breaks deadline ties, then age",
       {{7, 100, 2.0, 0}, {8, 100, 2.0, 3}, {6, 100, 2.0, 0}},
       {8, 6, 7},
       8},
  };
  for (const auto& c : cases) {
    Scheduler s({8, 0, 8, c.max_batch});
    StepPlan plan = s.Plan(c.ready);
    EXPECT_THAT(plan.batch, ElementsAreArray(c.batch)) << c.name;
  }
}

// A fake runner: each session needs `blocks` blocks of 5 forwards with a token count per
// block; the scheduler's plans drive it until every session finished.
TEST(SchedulerSimulation, EverySessionFinishesWithValidBatches) {
  struct Fake {
    int64_t tokens_first, tokens_rest;
    int blocks;
    double start;
    int forwards_done = 0;
    bool admitted = false;
    int64_t Tokens() const { return forwards_done < 5 ? tokens_first : tokens_rest; }
    int Block() const { return forwards_done / 5; }
    bool Done() const { return forwards_done >= 5 * blocks; }
  };
  std::map<uint64_t, Fake> sessions = {
      {1, {11, 10, 3, 0.0}}, {2, {11, 10, 2, 0.0}}, {3, {10, 10, 4, 0.5}},
      {4, {11, 10, 1, 1.0}}, {5, {7, 7, 2, 1.0}},   {6, {11, 10, 2, 2.0}},
  };
  Scheduler s({/*max_sessions=*/3, 0, /*queue_size=*/8, /*max_batch=*/2});
  for (auto& [id, f] : sessions) {
    auto r = s.Submit({id, 0, 1});
    ASSERT_TRUE(r.ok());
    f.admitted = *r == 0;
  }
  EXPECT_EQ(s.running(), 3);
  std::set<uint64_t> finished;
  std::vector<uint64_t> admission_order = {1, 2, 3};
  for (int iter = 0; iter < 1000 && finished.size() < sessions.size(); ++iter) {
    std::vector<ReadySession> ready;
    for (auto& [id, f] : sessions) {
      if (f.admitted && !f.Done()) ready.push_back({id, f.Tokens(), f.start + 2.5 * f.Block(), 0});
    }
    StepPlan plan = s.Plan(ready);
    ASSERT_FALSE(plan.batch.empty()) << "stalled at iteration " << iter;
    ASSERT_LE(plan.batch.size(), 2u);
    // The most urgent ready session is always in the batch.
    const auto urgent = std::min_element(ready.begin(), ready.end(), [](auto& a, auto& b) {
      return a.deadline < b.deadline || (a.deadline == b.deadline && a.id < b.id);
    });
    EXPECT_EQ(plan.batch.front(), urgent->id);
    for (uint64_t id : plan.batch) {
      EXPECT_EQ(sessions[id].Tokens(), plan.token_count);
      ++sessions[id].forwards_done;
      if (sessions[id].Done()) {
        finished.insert(id);
        s.Remove(id);
        for (uint64_t a : s.AdmitFromQueue()) {
          sessions[a].admitted = true;
          admission_order.push_back(a);
        }
      }
    }
  }
  EXPECT_EQ(finished.size(), sessions.size());
  EXPECT_THAT(admission_order, ElementsAre(1, 2, 3, 4, 5, 6));  // FIFO admission
  EXPECT_EQ(s.running(), 0);
  EXPECT_EQ(s.bytes_in_use(), 0);
}

// --- Time budget (real-time sessions) ---

SessionTicket Realtime(uint64_t id, double cost = 1) {
  SessionTicket t{id, 0, 1};
  t.realtime = true;
  t.cost = cost;
  return t;
}

TEST(SchedulerTimeBudget, AConfiguredCapacityQueuesTheThirdRealTimeStream) {
  SchedulerLimits limits{/*max_sessions=*/8, 0, 16, 8};
  limits.realtime_capacity = 2;
  Scheduler s(limits);
  EXPECT_EQ(*s.Submit(Realtime(1)), 0);
  EXPECT_EQ(s.Admissible(1, /*realtime=*/true), 1);
  EXPECT_EQ(*s.Submit(Realtime(2)), 0);
  EXPECT_EQ(s.Admissible(1, true), 0);
  EXPECT_EQ(s.Admissible(1, /*realtime=*/false), 6);  // batch sessions need no time budget
  EXPECT_EQ(*s.Submit(Realtime(3)), 1);               // queued: two streams fill the budget
  EXPECT_TRUE(s.HeadWaitsForTime());
  EXPECT_TRUE(s.AdmitFromQueue().empty());
  EXPECT_NEAR(s.RealtimeLoad(), 0.9, 1e-9);
  s.Remove(1);
  EXPECT_THAT(s.AdmitFromQueue(), ElementsAre(3));
  EXPECT_FALSE(s.HeadWaitsForTime());
}

TEST(SchedulerTimeBudget, MeasuredLoadsScaleWithCost) {
  SchedulerLimits limits{8, 0, 16, 8};
  limits.realtime_utilization = 0.9;
  Scheduler s(limits);
  EXPECT_EQ(*s.Submit(Realtime(1, /*cost=*/100)), 0);  // nothing measured: it fits
  EXPECT_EQ(s.EstimateLoad(100), 0);
  s.SetLoad(1, 0.3);  // its blocks take 30% of their duration to make
  EXPECT_NEAR(s.EstimateLoad(100), 0.3, 1e-12);
  EXPECT_NEAR(s.EstimateLoad(200), 0.6, 1e-12);  // twice the tokens x steps
  EXPECT_EQ(*s.Submit(Realtime(2, 100)), 0);     // 0.3 + 0.3 <= 0.9
  EXPECT_EQ(*s.Submit(Realtime(3, 200)), 1);     // 0.6 (2 unmeasured at 0.3) + 0.6 > 0.9
  s.SetLoad(2, 0.1);                             // measured cheaper than estimated
  EXPECT_NEAR(s.RealtimeLoad(), 0.4, 1e-12);
  // Estimate per unit of cost now (0.3 + 0.1) / 200: 200 -> 0.4; 0.4 + 0.4 <= 0.9.
  EXPECT_THAT(s.AdmitFromQueue(), ElementsAre(3));
}

TEST(SchedulerTimeBudget, ABurstWaitsForTheFirstMeasurement) {
  Scheduler s({8, 0, 16, 8});
  EXPECT_EQ(*s.Submit(Realtime(1)), 0);
  EXPECT_EQ(*s.Submit(Realtime(2)), 1);  // nothing measured: one at a time
  EXPECT_EQ(*s.Submit(Realtime(3)), 2);
  EXPECT_TRUE(s.HeadWaitsForTime());
  EXPECT_TRUE(s.AdmitFromQueue().empty());
  s.SetLoad(1, 0.2);
  // 0.2 per session: 2 and 3 fit (0.6), and a fourth would too.
  EXPECT_THAT(s.AdmitFromQueue(), ElementsAre(2, 3));
  EXPECT_EQ(s.Admissible(1, true), 1);
}

TEST(SchedulerTimeBudget, ZeroUtilizationTurnsTheBudgetOff) {
  SchedulerLimits limits{8, 0, 16, 8};
  limits.realtime_utilization = 0;
  limits.realtime_capacity = 1;
  Scheduler s(limits);
  for (uint64_t id = 1; id <= 5; ++id) EXPECT_EQ(*s.Submit(Realtime(id)), 0);
}

}  // namespace
}  // namespace longsana::engine
