// A small typed Prometheus metrics registry: counters, gauges and histograms in labelled
// families, exported in the text exposition format 0.0.4.
//
// Why our own: the metrics library Debian 12 ships (prometheus-cpp 1.0) takes a std::mutex in
// Histogram::Observe, and issue 11 requires lock-free recording on the engine's hot path.
// Here recording (Counter::Increment, Gauge::Set/Add, Histogram::Observe) is a few relaxed
// atomic operations and never takes a lock; only registration, child creation
// (Family::Labels) and Serialize do.
//
// Usage: register every family once at startup, look up the children a hot path needs once
// and keep the references:
//
//   Registry registry;
//   Family<Counter>& ended = registry.AddCounter(
//       "longsana_sessions_ended_total", "Sessions ended, by gRPC code.", {"code"});
//   Counter& ended_ok = ended.Labels({"OK"});
//   ended_ok.Increment();
//   std::string body = registry.Serialize();  // served with Registry::kContentType
//
// Programming errors abort: a name, label set or bucket layout that breaks the rules below,
// or a wrong number of label values, prints the reason to stderr and calls std::abort(). They
// are fixed in code, never caused by a request, and a server with a broken metric set must
// not start.
//
// Name rules, checked at registration (they mirror `promtool check metrics` lint, so a
// registry that registers cleanly also lints cleanly, naming style and units aside):
//  - metric names match [a-zA-Z_][a-zA-Z0-9_]* (the Prometheus regex without ':', which is
//    reserved for recording rules); label names match [a-zA-Z_][a-zA-Z0-9_]* and do not start
//    with "__"; no label name repeats within a family;
//  - counters end in "_total", gauges and histograms do not; no family name ends in "_bucket",
//    "_sum" or "_count" (those are histogram series); "le" and "quantile" are not label names
//    (they belong to histogram buckets and summaries);
//  - help text is not empty; no two families share a name;
//  - histogram bucket bounds are finite and strictly increasing (the +Inf bucket is implicit;
//    an empty list leaves only it).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace longsana::server::metrics {

// Recording must not fall back to libatomic's lock table.
static_assert(std::atomic<double>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

namespace internal {
[[noreturn]] void FailNegativeIncrement(double by);

// What the Registry needs of a family of any metric type.
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  // Appends the family's HELP, TYPE and sample lines (nothing while it has no children).
  virtual void AppendText(std::string* out) const = 0;
};
}  // namespace internal

// A monotonically increasing value (events, bytes, seconds). Thread-safe, lock-free.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `by` (>= 0; a negative or NaN `by` is a programming error and aborts).
  void Increment(double by = 1.0) {
    if (!(by >= 0.0)) [[unlikely]] {
      internal::FailNegativeIncrement(by);
    }
    value_.fetch_add(by, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (sessions running, bytes in use). Thread-safe, lock-free.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted in buckets with upper bounds (Prometheus `le`: a value equal to a bound
// lands in that bound's bucket), plus their sum and count. Thread-safe; Observe is lock-free.
class Histogram {
 public:
  struct Snapshot {
    std::vector<double> bounds;
    // Cumulative: observations <= bounds[i], one per bound, then +Inf (bounds.size() + 1).
    std::vector<uint64_t> cumulative_counts;
    double sum = 0;
    uint64_t count = 0;
  };

  // `bucket_bounds`: finite, strictly increasing (else aborts); the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> bucket_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // NaN counts in the +Inf bucket only (and makes the sum NaN), as in the Go client.
  void Observe(double v);

  // Consistency under concurrent Observe: `count` always equals the +Inf cumulative count (it
  // is derived from the buckets), cumulative counts never decrease along the buckets, and
  // each bucket (so `count`) never decreases from one Read to the next. `sum` is a separate
  // atomic: it may include or miss the observations in flight during the Read. Once the
  // observing threads are joined, everything is exact.
  Snapshot Read() const;

 private:
  const std::vector<double> bounds_;
  // Non-cumulative: buckets_[i] counts (bounds_[i-1], bounds_[i]]; the last one (bounds_.back(),
  // +Inf] and NaN.
  const std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0.0};
};

using LabelValues = std::vector<std::string>;

// The metrics of one name, one child per distinct set of label values. Created and owned by a
// Registry. Thread-safe.
template <typename Metric>
class Family final : public internal::FamilyBase {
 public:
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child with these label values (in the order of the family's label names), created on
  // first use under the family's mutex; the reference stays valid as long as the Registry.
  // Callers on hot paths look children up once and keep the reference. A wrong number of
  // values is a programming error and aborts. A family without labels has its one child
  // (Labels({})) from registration on.
  Metric& Labels(const LabelValues& values);

 private:
  friend class Registry;

  struct Child {
    template <typename... Args>
    explicit Child(LabelValues v, Args&&... args)
        : values(std::move(v)), metric(std::forward<Args>(args)...) {}
    const LabelValues values;
    Metric metric;
  };

  // `bucket_bounds` is used by Family<Histogram> only.
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bucket_bounds);

  void AppendText(std::string* out) const override;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bucket_bounds_;

  mutable std::mutex mu_;
  std::deque<Child> children_;            // Guarded by mu_; creation order; never moves an element.
  std::map<LabelValues, Metric*> index_;  // Guarded by mu_.
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Owns the families. All methods are thread-safe. Families and children live as long as the
// Registry; it is neither copyable nor movable, so references into it stay valid.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Register a family (see the name rules at the top; a violation aborts).
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<double> bucket_bounds,
                                  std::vector<std::string> label_names = {});

  // Hooks run (in order, under no metric lock) at the start of every Serialize, e.g. to copy
  // engine stats into gauges. They run on the serializing thread, possibly on several threads
  // at once if Serialize is called concurrently; they must not throw.
  void AddScrapeHook(std::function<void()> hook);

  // Prometheus text exposition format 0.0.4: # HELP / # TYPE per family, families in
  // registration order, children in creation order, histograms as _bucket{le=...} (cumulative,
  // +Inf last), _sum, _count. A labelled family with no children yet is left out (as the Go
  // client does). Values print as the shortest text that parses back to the same double,
  // integral ones without exponent: 12, 0.25, 0.1, 1.5e-07, +Inf, -Inf, NaN. Thread-safe against
  // concurrent recording and child creation; each value is read once, so a scrape is not one atomic
  // snapshot across series (see Histogram::Read for what holds within a histogram).
  std::string Serialize() const;

  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  // Checks the rules, then, under mu_, reserves the name and appends the family.
  template <typename Metric>
  Family<Metric>& Add(std::string name, std::string help, std::vector<std::string> label_names,
                      std::vector<double> bucket_bounds);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<internal::FamilyBase>> families_;  // Guarded by mu_.
  std::set<std::string, std::less<>> names_;                     // Guarded by mu_.
  std::vector<std::function<void()>> hooks_;                     // Guarded by mu_.
};

// `count` bounds start, start * factor, start * factor^2, ... (start > 0, factor > 1,
// count >= 1; else aborts).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// `count` bounds start, start + width, start + 2 * width, ... (width > 0, count >= 1; else
// aborts).
std::vector<double> LinearBuckets(double start, double width, int count);

}  // namespace longsana::server::metrics
