// longsana-bench-metrics: the cost of recording a sample with server/metrics (issue 11,
// "ns per recorded sample") and of one scrape.
//
// Recording benchmarks run on one thread and on 2 threads hammering the same child (the
// contended case: every thread's atomic read-modify-write hits one cache line). With threads,
// Google Benchmark reports time per iteration of each thread, i.e. ns per call as the calling
// thread sees it. BM_MutexHistogramObserve is the mutex-guarded equivalent of Observe (what a
// prometheus-cpp 1.0 Histogram does), for scale. BM_FamilyLabels is the lookup a hot path
// avoids by keeping the reference. BM_Serialize scrapes a registry of 60 series and one shaped
// like the server's metric set (two tenants); its counters give the series (sample lines),
// families and bytes.
//
//   longsana-bench-metrics [--benchmark_repetitions=3] [--benchmark_filter=Observe] ...
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <string>
#include <vector>

#include "server/metrics/metrics.h"

namespace longsana::server::metrics {
namespace {

// Latencies in seconds spread over the buckets of kLatencyBuckets, cycled through by Observe.
const std::vector<double> kLatencyBuckets = ExponentialBuckets(0.005, 2, 12);  // 5 ms .. 10 s
constexpr std::array<double, 8> kSamples = {0.003, 0.011, 0.04, 0.09, 0.3, 0.8, 2.5, 12.0};

Registry& SharedRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

Counter& SharedCounter() {
  static Counter& c = SharedRegistry().AddCounter("bench_ops_total", "Ops.").Labels({});
  return c;
}

Gauge& SharedGauge() {
  static Gauge& g = SharedRegistry().AddGauge("bench_level", "Level.").Labels({});
  return g;
}

Histogram& SharedHistogram() {
  static Histogram& h = SharedRegistry()
                            .AddHistogram("bench_latency_seconds", "Latency.", kLatencyBuckets)
                            .Labels({});
  return h;
}

void BM_CounterIncrement(benchmark::State& state) {
  Counter& c = SharedCounter();
  for (auto _ : state) c.Increment();
}
BENCHMARK(BM_CounterIncrement)->Threads(1)->Threads(2);

void BM_GaugeSet(benchmark::State& state) {
  Gauge& g = SharedGauge();
  double v = 0;
  for (auto _ : state) g.Set(v += 1);
}
BENCHMARK(BM_GaugeSet)->Threads(1)->Threads(2);

void BM_GaugeAdd(benchmark::State& state) {
  Gauge& g = SharedGauge();
  for (auto _ : state) g.Add(1);
}
BENCHMARK(BM_GaugeAdd)->Threads(1)->Threads(2);

void BM_HistogramObserve(benchmark::State& state) {
  Histogram& h = SharedHistogram();
  size_t i = 0;
  for (auto _ : state) h.Observe(kSamples[i++ % kSamples.size()]);
}
BENCHMARK(BM_HistogramObserve)->Threads(1)->Threads(2);

// The same work as Histogram::Observe under a std::mutex.
class MutexHistogram {
 public:
  explicit MutexHistogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}
  void Observe(double v) {
    std::lock_guard lock(mu_);
    ++buckets_[std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin()];
    sum_ += v;
  }

 private:
  std::mutex mu_;
  const std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;
  double sum_ = 0;
};

void BM_MutexHistogramObserve(benchmark::State& state) {
  static MutexHistogram* h = new MutexHistogram(kLatencyBuckets);
  size_t i = 0;
  for (auto _ : state) h->Observe(kSamples[i++ % kSamples.size()]);
}
BENCHMARK(BM_MutexHistogramObserve)->Threads(1)->Threads(2);

void BM_FamilyLabels(benchmark::State& state) {
  static Family<Counter>& family = SharedRegistry().AddCounter(
      "bench_commands_total", "Commands by type and outcome.", {"type", "outcome"});
  for (const char* type : {"set_prompt", "pause", "resume", "stop"}) {
    for (const char* outcome : {"ok", "refused"}) family.Labels({type, outcome});
  }
  const LabelValues values = {"resume", "refused"};
  for (auto _ : state) benchmark::DoNotOptimize(&family.Labels(values));
}
BENCHMARK(BM_FamilyLabels)->Threads(1)->Threads(2);

// A registry shaped like the server's (issue 11), with two tenants and some recorded values.
void FillServerLikeRegistry(Registry& r) {
  const std::vector<std::string> tenants = {"alpha", "beta"};
  for (const char* name : {"longsana_sessions_running", "longsana_sessions_queued",
                           "longsana_sessions_admissible", "longsana_slot_bytes_in_use",
                           "longsana_slot_bytes_budget", "longsana_gpu_memory_allocated_bytes",
                           "longsana_gpu_memory_reserved_bytes", "longsana_real_time_factor"}) {
    r.AddGauge(name, "A gauge of the server.").Labels({}).Set(123456.75);
  }
  r.AddGauge("longsana_build_info", "Build information.", {"version", "revision"})
      .Labels({"0.1.0", "25ba659"})
      .Set(1);
  Family<Counter>& ended = r.AddCounter("longsana_sessions_ended_total",
                                        "Sessions ended by outcome.", {"tenant", "code"});
  Family<Counter>& rejected = r.AddCounter("longsana_rejections_total",
                                           "Requests rejected by reason.", {"tenant", "reason"});
  Family<Counter>& bytes =
      r.AddCounter("longsana_chunk_bytes_total", "Chunk bytes sent.", {"tenant"});
  Family<Histogram>& ttfc = r.AddHistogram("longsana_time_to_first_chunk_seconds",
                                           "Time to first chunk.", kLatencyBuckets, {"tenant"});
  Family<Histogram>& wait =
      r.AddHistogram("longsana_queue_wait_seconds", "Queue wait.", kLatencyBuckets, {"tenant"});
  for (const std::string& t : tenants) {
    for (const char* code : {"OK", "CANCELLED", "DEADLINE_EXCEEDED", "INTERNAL"}) {
      ended.Labels({t, code}).Increment(17);
    }
    for (const char* reason : {"invalid", "queue_full", "quota", "unauthenticated", "draining"}) {
      rejected.Labels({t, reason}).Increment(3);
    }
    bytes.Labels({t}).Increment(987654321);
    for (double v : kSamples) {
      ttfc.Labels({t}).Observe(v);
      wait.Labels({t}).Observe(v / 10);
    }
  }
  Family<Counter>& commands =
      r.AddCounter("longsana_commands_total", "Commands by type and outcome.", {"type", "outcome"});
  for (const char* type : {"set_prompt", "pause", "resume", "stop"}) {
    for (const char* outcome : {"ok", "refused"}) commands.Labels({type, outcome}).Increment(2);
  }
  Family<Histogram>& block = r.AddHistogram("longsana_block_seconds", "Block latency by stage.",
                                            kLatencyBuckets, {"stage"});
  for (const char* stage : {"dit", "decode", "encode"}) {
    for (double v : kSamples) block.Labels({stage}).Observe(v);
  }
  for (const char* name : {"longsana_inter_chunk_gap_seconds", "longsana_forward_seconds"}) {
    Histogram& h = r.AddHistogram(name, "A histogram.", kLatencyBuckets).Labels({});
    for (double v : kSamples) h.Observe(v);
  }
  r.AddHistogram("longsana_step_batch_size", "Sessions per step.", LinearBuckets(1, 1, 8))
      .Labels({})
      .Observe(3);
}

// 60 series: 30 labelled gauges, 15 labelled counters, one 12-bucket histogram (15 lines).
void FillSixtySeriesRegistry(Registry& r) {
  Family<Gauge>& gauges = r.AddGauge("bench_gauge", "Gauges.", {"id"});
  for (int i = 0; i < 30; ++i) gauges.Labels({std::to_string(i)}).Set(i * 1.25);
  Family<Counter>& counters = r.AddCounter("bench_events_total", "Counters.", {"kind"});
  for (int i = 0; i < 15; ++i) counters.Labels({"kind_" + std::to_string(i)}).Increment(i * 1000);
  Histogram& h = r.AddHistogram("bench_seconds", "A histogram.", kLatencyBuckets).Labels({});
  for (double v : kSamples) h.Observe(v);
}

void BM_Serialize(benchmark::State& state, void (*fill)(Registry&)) {
  Registry r;
  fill(r);
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = r.Serialize();
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  // Sample lines (Prometheus series; each bucket is one) and families.
  const std::string text = r.Serialize();
  const auto lines = std::count(text.begin(), text.end(), '\n');
  const auto families = std::count(text.begin(), text.end(), '#') / 2;
  state.counters["series"] = static_cast<double>(lines - 2 * families);
  state.counters["families"] = static_cast<double>(families);
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK_CAPTURE(BM_Serialize, sixty_series, FillSixtySeriesRegistry);
BENCHMARK_CAPTURE(BM_Serialize, server_like, FillServerLikeRegistry);

}  // namespace
}  // namespace longsana::server::metrics

BENCHMARK_MAIN();
