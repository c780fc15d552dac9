// The metrics registry (server/metrics/metrics.h): exposition text, bucket semantics, child
// stability, scrape hooks, concurrent recording, registration errors, and promtool's verdict.
#include "server/metrics/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/common/temp_dir.h"

namespace longsana::server::metrics {
namespace {

// The value of the sample line `series` (name with its labels, as printed), or "" if absent.
std::string SampleValue(const std::string& text, const std::string& series) {
  const std::string key = series + " ";
  size_t pos = text.starts_with(key) ? 0 : text.find("\n" + key);
  if (pos == std::string::npos) return "";
  if (pos != 0) ++pos;
  const size_t start = pos + key.size();
  return text.substr(start, text.find('\n', start) - start);
}

TEST(SerializeTest, UnlabelledCounterExportsZeroFromRegistration) {
  Registry registry;
  Family<Counter>& requests = registry.AddCounter("app_requests_total", "Requests served.");
  EXPECT_EQ(registry.Serialize(),
            "# HELP app_requests_total Requests served.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total 0\n");
  requests.Labels({}).Increment();
  requests.Labels({}).Increment(2.5);
  EXPECT_EQ(requests.Labels({}).Value(), 3.5);
  EXPECT_EQ(SampleValue(registry.Serialize(), "app_requests_total"), "3.5");
}

TEST(SerializeTest, LabelledGaugeChildrenInCreationOrder) {
  Registry registry;
  Family<Gauge>& sessions =
      registry.AddGauge("app_sessions", "Sessions by tenant and state.", {"tenant", "state"});
  // A labelled family has no series until its first child.
  EXPECT_EQ(registry.Serialize(), "");
  sessions.Labels({"zeta", "running"}).Set(3);
  sessions.Labels({"alpha", "queued"}).Add(2);
  sessions.Labels({"alpha", "queued"}).Add(-0.5);
  EXPECT_EQ(registry.Serialize(),
            "# HELP app_sessions Sessions by tenant and state.\n"
            "# TYPE app_sessions gauge\n"
            "app_sessions{tenant=\"zeta\",state=\"running\"} 3\n"
            "app_sessions{tenant=\"alpha\",state=\"queued\"} 1.5\n");
}

TEST(SerializeTest, HistogramWithoutLabels) {
  Registry registry;
  Histogram& h =
      registry.AddHistogram("app_latency_seconds", "Latency.", {0.25, 1, 2.5}).Labels({});
  h.Observe(0.1);
  h.Observe(1);
  h.Observe(7);
  EXPECT_EQ(registry.Serialize(),
            "# HELP app_latency_seconds Latency.\n"
            "# TYPE app_latency_seconds histogram\n"
            "app_latency_seconds_bucket{le=\"0.25\"} 1\n"
            "app_latency_seconds_bucket{le=\"1\"} 2\n"
            "app_latency_seconds_bucket{le=\"2.5\"} 2\n"
            "app_latency_seconds_bucket{le=\"+Inf\"} 3\n"
            "app_latency_seconds_sum 8.1\n"
            "app_latency_seconds_count 3\n");
}

TEST(SerializeTest, HistogramWithLabelsPutsLeLast) {
  Registry registry;
  Family<Histogram>& family =
      registry.AddHistogram("app_block_seconds", "Block latency by stage.", {0.5}, {"stage"});
  family.Labels({"dit"}).Observe(0.5);
  family.Labels({"decode"});
  EXPECT_EQ(registry.Serialize(),
            "# HELP app_block_seconds Block latency by stage.\n"
            "# TYPE app_block_seconds histogram\n"
            "app_block_seconds_bucket{stage=\"dit\",le=\"0.5\"} 1\n"
            "app_block_seconds_bucket{stage=\"dit\",le=\"+Inf\"} 1\n"
            "app_block_seconds_sum{stage=\"dit\"} 0.5\n"
            "app_block_seconds_count{stage=\"dit\"} 1\n"
            "app_block_seconds_bucket{stage=\"decode\",le=\"0.5\"} 0\n"
            "app_block_seconds_bucket{stage=\"decode\",le=\"+Inf\"} 0\n"
            "app_block_seconds_sum{stage=\"decode\"} 0\n"
            "app_block_seconds_count{stage=\"decode\"} 0\n");
}

TEST(SerializeTest, EscapesHelpAndLabelValues) {
  Registry registry;
  Family<Counter>& family = registry.AddCounter(
      "app_errors_total", "Errors \"quoted\", a back\\slash\nand a newline.", {"message"});
  family.Labels({"say \"hi\"\\n\nnext"}).Increment();
  EXPECT_EQ(registry.Serialize(),
            // HELP escapes only \ and newline; label values also ".
            "# HELP app_errors_total Errors \"quoted\", a back\\\\slash\\nand a newline.\n"
            "# TYPE app_errors_total counter\n"
            "app_errors_total{message=\"say \\\"hi\\\"\\\\n\\nnext\"} 1\n");
}

TEST(SerializeTest, FamiliesInRegistrationOrder) {
  Registry registry;
  registry.AddGauge("b_gauge", "B.");
  registry.AddCounter("a_total", "A.", {"x"});  // no child yet: left out
  registry.AddCounter("c_total", "C.");
  EXPECT_EQ(registry.Serialize(),
            "# HELP b_gauge B.\n# TYPE b_gauge gauge\nb_gauge 0\n"
            "# HELP c_total C.\n# TYPE c_total counter\nc_total 0\n");
}

TEST(SerializeTest, ValueFormatting) {
  Registry registry;
  Family<Gauge>& g = registry.AddGauge("v", "Values.", {"case"});
  const std::vector<std::pair<double, std::string>> cases = {
      {12, "12"},
      {0.25, "0.25"},
      {0.1, "0.1"},
      {-3, "-3"},
      {1e6, "1000000"},
      {123456789012.0, "123456789012"},
      {1.5e-7, "1.5e-07"},
      {1e20, "1e+20"},
      {0.30000000000000004, "0.30000000000000004"},
      {std::numeric_limits<double>::infinity(), "+Inf"},
      {-std::numeric_limits<double>::infinity(), "-Inf"},
      {std::numeric_limits<double>::quiet_NaN(), "NaN"},
  };
  for (size_t i = 0; i < cases.size(); ++i) g.Labels({std::to_string(i)}).Set(cases[i].first);
  const std::string text = registry.Serialize();
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(SampleValue(text, "v{case=\"" + std::to_string(i) + "\"}"), cases[i].second)
        << cases[i].second;
    // Round trip: what Prometheus parses back is the value recorded.
    if (!std::isnan(cases[i].first)) {
      EXPECT_EQ(std::strtod(cases[i].second.c_str(), nullptr), cases[i].first);
    }
  }
}

TEST(HistogramTest, ValueEqualToABoundLandsInThatBucket) {
  Histogram h({1, 2, 4});
  for (double v : {-5.0, 1.0, 1.0000001, 2.0, 4.0, 4.5}) h.Observe(v);
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.bounds, (std::vector<double>{1, 2, 4}));
  // <= 1: -5, 1. <= 2: + 1.0000001, 2. <= 4: + 4. +Inf: + 4.5.
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{2, 4, 5, 6}));
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.sum, -5 + 1 + 1.0000001 + 2 + 4 + 4.5);
}

TEST(HistogramTest, NanCountsInTheInfBucketOnly) {
  Histogram h({1});
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(s.count, 1u);
  EXPECT_TRUE(std::isnan(s.sum));
}

TEST(HistogramTest, NoBoundsLeavesOnlyInf) {
  Histogram h({});
  h.Observe(3);
  EXPECT_EQ(h.Read().cumulative_counts, (std::vector<uint64_t>{1}));
}

TEST(BucketsTest, ExponentialAndLinear) {
  EXPECT_EQ(ExponentialBuckets(0.001, 2, 4), (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
  EXPECT_EQ(LinearBuckets(1, 2.5, 3), (std::vector<double>{1, 3.5, 6}));
  EXPECT_EQ(ExponentialBuckets(0.005, 2, 12).size(), 12u);
}

TEST(FamilyTest, ChildReferencesStayValidAfterCreatingMore) {
  Registry registry;
  Family<Counter>& counters = registry.AddCounter("c_total", "C.", {"id"});
  Family<Histogram>& histograms = registry.AddHistogram("h_seconds", "H.", {1, 2}, {"id"});
  Counter& first = counters.Labels({"first"});
  Histogram& first_h = histograms.Labels({"first"});
  first.Increment(7);
  first_h.Observe(1.5);
  for (int i = 0; i < 1000; ++i) {
    counters.Labels({std::to_string(i)}).Increment();
    histograms.Labels({std::to_string(i)}).Observe(i);
  }
  EXPECT_EQ(&counters.Labels({"first"}), &first);
  EXPECT_EQ(&histograms.Labels({"first"}), &first_h);
  first.Increment();
  EXPECT_EQ(first.Value(), 8);
  EXPECT_EQ(first_h.Read().cumulative_counts, (std::vector<uint64_t>{0, 1, 1}));
  const std::string text = registry.Serialize();
  EXPECT_EQ(SampleValue(text, "c_total{id=\"first\"}"), "8");
  EXPECT_EQ(SampleValue(text, "c_total{id=\"999\"}"), "1");
  EXPECT_EQ(SampleValue(text, "h_seconds_count{id=\"999\"}"), "1");
}

TEST(RegistryTest, ScrapeHooksRunInOrderBeforeEachSerialize) {
  Registry registry;
  Gauge& copied = registry.AddGauge("engine_queued", "Copied from the engine.").Labels({});
  std::vector<int> calls;
  int engine_value = 5;
  registry.AddScrapeHook([&] {
    calls.push_back(1);
    copied.Set(engine_value);
  });
  registry.AddScrapeHook([&] { calls.push_back(2); });
  EXPECT_EQ(SampleValue(registry.Serialize(), "engine_queued"), "5");
  engine_value = 9;
  EXPECT_EQ(SampleValue(registry.Serialize(), "engine_queued"), "9");
  EXPECT_EQ(calls, (std::vector<int>{1, 2, 1, 2}));
}

TEST(RegistryTest, HookMayCreateChildrenAndRegister) {
  // Hooks run under no lock: creating a child or a family from one does not deadlock.
  Registry registry;
  Family<Gauge>& per_device = registry.AddGauge("device_bytes", "Per device.", {"device"});
  bool registered = false;
  registry.AddScrapeHook([&] {
    per_device.Labels({"cuda:0"}).Set(42);
    if (!registered) registry.AddGauge("late_gauge", "Registered by a hook.");
    registered = true;
  });
  const std::string text = registry.Serialize();
  EXPECT_EQ(SampleValue(text, "device_bytes{device=\"cuda:0\"}"), "42");
  EXPECT_EQ(SampleValue(text, "late_gauge"), "0");
}

TEST(ConcurrencyTest, RecordersAndASerializerFinalTotalsExact) {
  Registry registry;
  Counter& counter = registry.AddCounter("ops_total", "Ops.").Labels({});
  Gauge& gauge = registry.AddGauge("level", "Level.").Labels({});
  Family<Counter>& by_thread = registry.AddCounter("by_thread_total", "Per thread.", {"t"});
  Histogram& h = registry.AddHistogram("obs_seconds", "Obs.", {0.5, 1, 2}).Labels({});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200000;

  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::string failure;
  std::thread serializer([&] {
    uint64_t last_count = 0;
    while (!done.load() && failure.empty()) {
      const std::string text = registry.Serialize();
      ++scrapes;
      const std::string count = SampleValue(text, "obs_seconds_count");
      const std::string inf = SampleValue(text, "obs_seconds_bucket{le=\"+Inf\"}");
      const uint64_t n = std::stoull(count);
      if (count != inf) failure = "count " + count + " != +Inf bucket " + inf;
      if (n < last_count) failure = "count went down: " + count;
      last_count = n;
    }
  });
  std::vector<std::thread> recorders;
  for (int t = 0; t < kThreads; ++t) {
    recorders.emplace_back([&, t] {
      while (scrapes.load() == 0) std::this_thread::yield();  // recording overlaps scrapes
      // Child creation races with the serializer too.
      Counter& mine = by_thread.Labels({std::to_string(t)});
      for (int i = 0; i < kPerThread; ++i) {
        counter.Increment();
        gauge.Add(i % 2 == 0 ? 2 : -1);
        mine.Increment(0.5);
        h.Observe(0.5 * (i % 4));  // 0, 0.5, 1, 1.5: exact in binary
      }
    });
  }
  for (std::thread& r : recorders) r.join();
  done = true;
  serializer.join();
  EXPECT_EQ(failure, "");
  EXPECT_GT(scrapes.load(), 0);

  constexpr double kTotal = double{kThreads} * kPerThread;
  EXPECT_EQ(counter.Value(), kTotal);
  EXPECT_EQ(gauge.Value(), kTotal / 2);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(by_thread.Labels({std::to_string(t)}).Value(), kPerThread * 0.5);
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kTotal));
  // Per thread and 4 values: 0 and 0.5 <= 0.5, 1 <= 1, 1.5 <= 2.
  const uint64_t quarter = static_cast<uint64_t>(kTotal / 4);
  EXPECT_EQ(s.cumulative_counts,
            (std::vector<uint64_t>{2 * quarter, 3 * quarter, 4 * quarter, 4 * quarter}));
  EXPECT_EQ(s.sum, quarter * (0 + 0.5 + 1 + 1.5));
}

// Registration and label mistakes abort with the reason on stderr.
class RegistryDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  Registry registry_;
};

TEST_F(RegistryDeathTest, BadMetricName) {
  EXPECT_DEATH(registry_.AddGauge("9lives", "Bad."), "'9lives' does not match");
  EXPECT_DEATH(registry_.AddGauge("with-dash", "Bad."), "does not match");
  EXPECT_DEATH(registry_.AddGauge("recording:rule", "Bad."), "does not match");
  EXPECT_DEATH(registry_.AddGauge("", "Bad."), "does not match");
}

TEST_F(RegistryDeathTest, CounterWithoutTotal) {
  EXPECT_DEATH(registry_.AddCounter("requests", "Bad."), "'requests' must end in _total");
  EXPECT_DEATH(registry_.AddGauge("requests_total", "Bad."), "must not end in _total");
  EXPECT_DEATH(registry_.AddHistogram("h_total", "Bad.", {1}), "must not end in _total");
}

TEST_F(RegistryDeathTest, WrongLabelArity) {
  Family<Counter>& family = registry_.AddCounter("c_total", "C.", {"a", "b"});
  EXPECT_DEATH(family.Labels({"x"}), "c_total: 1 label values \\[x\\] for label names \\[a, b\\]");
  Family<Gauge>& unlabelled = registry_.AddGauge("g", "G.");
  EXPECT_DEATH(unlabelled.Labels({"x"}), "1 label values");
}

TEST_F(RegistryDeathTest, BadLabelNames) {
  EXPECT_DEATH(registry_.AddHistogram("h", "H.", {1}, {"le"}), "'le' is reserved");
  EXPECT_DEATH(registry_.AddGauge("g", "G.", {"quantile"}), "'quantile' is reserved");
  EXPECT_DEATH(registry_.AddGauge("g", "G.", {"__name"}), "'__name' is reserved");
  EXPECT_DEATH(registry_.AddGauge("g", "G.", {"a b"}), "does not match");
  EXPECT_DEATH(registry_.AddGauge("g", "G.", {"a", "a"}), "'a' appears twice");
}

TEST_F(RegistryDeathTest, ReservedSuffixesEmptyHelpAndDuplicates) {
  EXPECT_DEATH(registry_.AddGauge("x_count", "Bad."), "reserved for histogram series");
  EXPECT_DEATH(registry_.AddGauge("x_bucket", "Bad."), "reserved for histogram series");
  EXPECT_DEATH(registry_.AddGauge("x", ""), "has no help text");
  registry_.AddGauge("x", "X.");
  EXPECT_DEATH(registry_.AddCounter("x", "Again."), "'x' must end in _total");
  EXPECT_DEATH(registry_.AddGauge("x", "Again."), "'x' registered twice");
}

TEST_F(RegistryDeathTest, BadBucketBounds) {
  EXPECT_DEATH(registry_.AddHistogram("h", "H.", {1, 1}), "not finite and strictly increasing");
  EXPECT_DEATH(registry_.AddHistogram("h", "H.", {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry_.AddHistogram("h", "H.", {1, std::numeric_limits<double>::infinity()}),
               "not finite");
  EXPECT_DEATH(Histogram({std::numeric_limits<double>::quiet_NaN()}), "not finite");
  EXPECT_DEATH(ExponentialBuckets(0, 2, 3), "needs start > 0");
  EXPECT_DEATH(LinearBuckets(0, 0, 3), "needs width > 0");
}

TEST_F(RegistryDeathTest, NegativeIncrement) {
  Counter& c = registry_.AddCounter("c_total", "C.").Labels({});
  EXPECT_DEATH(c.Increment(-1), "counters only go up");
  EXPECT_DEATH(c.Increment(std::numeric_limits<double>::quiet_NaN()), "counters only go up");
}

// promtool (Debian package `prometheus`) parses and lints a scrape of every kind of family.
TEST(PromtoolTest, ScrapeOfEveryKindLintsClean) {
  ASSERT_EQ(std::system("command -v promtool >/dev/null 2>&1"), 0)
      << "promtool is not on PATH: install the Debian package `prometheus` (scripts/deps.sh "
         "does); this test checks the exposition format with it and must not be skipped";

  Registry registry;
  registry.AddCounter("longsana_chunk_bytes_total", "Bytes of video chunks sent.")
      .Labels({})
      .Increment(123456789);
  Family<Counter>& ended = registry.AddCounter("longsana_sessions_ended_total",
                                               "Sessions ended, by gRPC code.", {"code"});
  ended.Labels({"OK"}).Increment(3);
  ended.Labels({"CANCELLED"}).Increment();
  registry.AddGauge("longsana_sessions_running", "Sessions running now.").Labels({}).Set(2);
  registry
      .AddGauge("longsana_build_info", "Build information; the value is 1.", {"version", "note"})
      .Labels({"0.1.0", "quote \" backslash \\ newline \n end"})
      .Set(1);
  registry
      .AddHistogram("longsana_time_to_first_chunk_seconds",
                    "Time from Generate to the first chunk.\nSecond help line \\ here.",
                    ExponentialBuckets(0.05, 2, 12))
      .Labels({})
      .Observe(0.7);
  Family<Histogram>& blocks = registry.AddHistogram(
      "longsana_block_seconds", "Block latency by stage.", LinearBuckets(0.1, 0.1, 5), {"stage"});
  blocks.Labels({"dit"}).Observe(0.3);
  blocks.Labels({"decode"}).Observe(std::numeric_limits<double>::infinity());
  registry.AddGauge("longsana_unused_labelled", "No child: not exported.", {"x"});

  testing::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.File("scrape.prom");
  const std::string text = registry.Serialize();
  testing::WriteFile(file, text);

  const std::string command = "promtool check metrics < '" + file + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), pipe)) > 0;) output.append(buf.data(), n);
  const int status = pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << output << "\n--- scrape ---\n" << text;
  EXPECT_EQ(output, "") << "--- scrape ---\n" << text;
}

}  // namespace
}  // namespace longsana::server::metrics
