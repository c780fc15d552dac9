// longsana bench's statistics (client/bench_stats.h): the simulated viewer, percentiles and
// the summary's counts, on hand-made arrivals.
#include "client/bench_stats.h"

#include <gtest/gtest.h>

namespace longsana::client {
namespace {

TEST(SimulateViewer, NoStallsWhenEveryFragmentArrivesBeforeItIsNeeded) {
  // 2.5 s blocks arriving every 2 s after a first one at 0.5 s.
  const std::vector<FragmentArrival> f = {{0.5, 0, 2.5}, {2.5, 2.5, 2.5}, {4.5, 5, 2.5}};
  const ViewerResult v = SimulateViewer(f, 1.0);
  EXPECT_TRUE(v.played);
  EXPECT_DOUBLE_EQ(v.play_start, 0.5);
  EXPECT_EQ(v.stalls, 0);
  EXPECT_EQ(v.stall_seconds, 0);
  EXPECT_EQ(v.deadline_attainment, 1.0);
}

TEST(SimulateViewer, CountsStallsAndTheirSecondsAndMissedDeadlines) {
  // Blocks of 2.5 s arrive every 3.5 s: each later block is 1 s late, and the wait shifts
  // the schedule, so the next one is late by 1 s again.
  const std::vector<FragmentArrival> f = {{3.5, 0, 2.5}, {7.0, 2.5, 2.5}, {10.5, 5, 2.5}};
  const ViewerResult v = SimulateViewer(f, 1.0);
  EXPECT_DOUBLE_EQ(v.play_start, 3.5);
  EXPECT_EQ(v.stalls, 2);
  EXPECT_NEAR(v.stall_seconds, 2.0, 1e-9);
  EXPECT_NEAR(v.deadline_attainment, 1.0 / 3, 1e-9);
}

TEST(SimulateViewer, WaitsForTheStartBufferOrTheEnd) {
  const std::vector<FragmentArrival> small = {{0.1, 0, 0.25}, {0.2, 0.25, 0.25}, {0.9, 0.5, 0.25}};
  EXPECT_DOUBLE_EQ(SimulateViewer(small, 0.5).play_start, 0.2);   // 0.5 s buffered
  EXPECT_DOUBLE_EQ(SimulateViewer(small, 10.0).play_start, 0.9);  // the stream ended first
  EXPECT_FALSE(SimulateViewer({}, 1.0).played);
}

TEST(Percentile, NearestRank) {
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_EQ(Percentile({3, 1, 2}, 0.5), 2);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 0.99), 4);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 0.0), 1);
}

TEST(Summarize, CountsAddUpPerServerAndByCode) {
  std::vector<SessionRecord> r(4);
  r[0].server = "a:1", r[0].kind = "generate", r[0].accepted = true, r[0].ttfc = 0.2;
  r[0].video_seconds = 5, r[0].wall_seconds = 2.5;
  r[1].server = "b:1", r[1].kind = "generate", r[1].code = "RESOURCE_EXHAUSTED";
  r[2].server = "b:1", r[2].kind = "session", r[2].accepted = true, r[2].code = "INTERNAL";
  r[3].server = "a:1", r[3].kind = "live", r[3].accepted = true, r[3].ttfc = 0.4;
  r[3].switch_latency = {1.0, 2.0};
  const auto s = Summarize(r, {{"a:1", "b:1"}, 10, 0.2, 1});
  EXPECT_EQ(s["sessions"], 4);
  EXPECT_EQ(s["completed"], 2);
  EXPECT_EQ(s["rejected"], 1);
  EXPECT_EQ(s["failed"], 1);
  EXPECT_EQ(s["rejections_by_code"]["RESOURCE_EXHAUSTED"], 1);
  EXPECT_EQ(s["failures_by_code"]["INTERNAL"], 1);
  EXPECT_EQ(s["servers"]["a:1"]["completed"], 2);
  EXPECT_EQ(s["servers"]["b:1"]["sessions"], 2);
  EXPECT_EQ(s["switch_visible_seconds"]["count"], 2);
  EXPECT_DOUBLE_EQ(s["client_cpu_seconds_per_session"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(s["realtime_factor"]["mean"].get<double>(), 2.0);
  EXPECT_NE(FormatTable(s).find("rejected RESOURCE_EXHAUSTED: 1"), std::string::npos);
  EXPECT_TRUE(ChartSvg(r).starts_with("<svg"));
}

}  // namespace
}  // namespace longsana::client
