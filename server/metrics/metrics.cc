#include "server/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "fmt/format.h"
#include "fmt/ranges.h"

namespace longsana::server::metrics {
namespace {

// Registration mistakes are fixed in code; a server with a broken metric set must not start.
[[noreturn]] void Fail(const std::string& reason) {
  std::fprintf(stderr, "longsana metrics: %s\n", reason.c_str());
  std::fflush(stderr);
  std::abort();
}

template <typename Metric>
constexpr std::string_view kTypeName = "";
template <>
constexpr std::string_view kTypeName<Counter> = "counter";
template <>
constexpr std::string_view kTypeName<Gauge> = "gauge";
template <>
constexpr std::string_view kTypeName<Histogram> = "histogram";

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

// [a-zA-Z_][a-zA-Z0-9_]*: the metric name regex without ':' (recording rules only) and the
// label name regex.
bool IsName(std::string_view s) {
  return !s.empty() && IsNameStart(s.front()) && std::all_of(s.begin(), s.end(), IsNameChar);
}

void CheckFamily(std::string_view type, const std::string& name, const std::string& help,
                 const std::vector<std::string>& label_names) {
  if (!IsName(name)) {
    Fail(fmt::format("{} name '{}' does not match [a-zA-Z_][a-zA-Z0-9_]*", type, name));
  }
  const bool is_counter = type == kTypeName<Counter>;
  if (is_counter != name.ends_with("_total")) {
    Fail(fmt::format("{} name '{}' must {}end in _total", type, name, is_counter ? "" : "not "));
  }
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.ends_with(suffix)) {
      Fail(fmt::format("{} name '{}' ends in {}, reserved for histogram series", type, name,
                       suffix));
    }
  }
  if (help.empty()) Fail(fmt::format("{} '{}' has no help text", type, name));
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!IsName(label)) {
      Fail(fmt::format("{}: label name '{}' does not match [a-zA-Z_][a-zA-Z0-9_]*", name, label));
    }
    if (label.starts_with("__") || label == "le" || label == "quantile") {
      Fail(fmt::format("{}: label name '{}' is reserved", name, label));
    }
    if (std::find(label_names.begin(), label_names.begin() + i, label) != label_names.begin() + i) {
      Fail(fmt::format("{}: label name '{}' appears twice", name, label));
    }
  }
}

void CheckBounds(const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
      Fail(fmt::format("histogram bucket bounds [{}] are not finite and strictly increasing",
                       fmt::join(bounds, ", ")));
    }
  }
}

// Shortest text that parses back to the same double (std::to_chars), but integral values in
// fixed notation (12, not 1.2e+01) up to 1e17, so counts and byte totals read naturally.
// Equivalent to %.17g in what it round-trips, without its noise (0.1, not
// 0.10000000000000001).
void AppendValue(double v, std::string* out) {
  if (std::isnan(v)) {
    out->append("NaN");
    return;
  }
  if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buf[64];
  const bool integral = v == std::trunc(v) && std::fabs(v) < 1e17;
  const std::to_chars_result r =
      integral ? std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed)
               : std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

void AppendValue(uint64_t v, std::string* out) {
  char buf[24];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

// HELP text escapes backslash and newline; label values also the double quote.
void AppendEscaped(std::string_view s, bool escape_quote, std::string* out) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && escape_quote) {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

// `name``suffix`{labels...[,le="<le>"]} <value>\n; `le` empty: no le label.
template <typename Value>
void AppendSample(std::string_view name, std::string_view suffix,
                  const std::vector<std::string>& label_names, const LabelValues& values,
                  std::string_view le, Value value, std::string* out) {
  out->append(name);
  out->append(suffix);
  if (!label_names.empty() || !le.empty()) {
    out->push_back('{');
    for (size_t i = 0; i < label_names.size(); ++i) {
      if (i > 0) out->push_back(',');
      out->append(label_names[i]);
      out->append("=\"");
      AppendEscaped(values[i], /*escape_quote=*/true, out);
      out->push_back('"');
    }
    if (!le.empty()) {
      if (!label_names.empty()) out->push_back(',');
      out->append("le=\"");
      out->append(le);
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
  AppendValue(value, out);
  out->push_back('\n');
}

}  // namespace

namespace internal {
void FailNegativeIncrement(double by) {
  Fail(fmt::format("Counter::Increment({}): counters only go up", by));
}
}  // namespace internal

Histogram::Histogram(std::vector<double> bucket_bounds)
    : bounds_(std::move(bucket_bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  CheckBounds(bounds_);
}

void Histogram::Observe(double v) {
  // First bound >= v (le semantics); NaN compares false with every bound: the +Inf bucket.
  const size_t bucket = std::isnan(v)
                            ? bounds_.size()
                            : std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative_counts.resize(bounds_.size() + 1);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative_counts[i] = cumulative;
  }
  s.count = cumulative;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

template <typename Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bucket_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bucket_bounds_(std::move(bucket_bounds)) {
  if (label_names_.empty()) Labels({});
}

template <typename Metric>
Metric& Family<Metric>::Labels(const LabelValues& values) {
  if (values.size() != label_names_.size()) {
    Fail(fmt::format("{}: {} label values [{}] for label names [{}]", name_, values.size(),
                     fmt::join(values, ", "), fmt::join(label_names_, ", ")));
  }
  std::lock_guard lock(mu_);
  if (auto it = index_.find(values); it != index_.end()) return *it->second;
  Child* child;
  if constexpr (std::is_same_v<Metric, Histogram>) {
    child = &children_.emplace_back(values, bucket_bounds_);
  } else {
    child = &children_.emplace_back(values);
  }
  index_.emplace(values, &child->metric);
  return child->metric;
}

template <typename Metric>
void Family<Metric>::AppendText(std::string* out) const {
  std::lock_guard lock(mu_);
  if (children_.empty()) return;
  out->append("# HELP ");
  out->append(name_);
  out->push_back(' ');
  AppendEscaped(help_, /*escape_quote=*/false, out);
  out->append("\n# TYPE ");
  out->append(name_);
  out->push_back(' ');
  out->append(kTypeName<Metric>);
  out->push_back('\n');
  for (const Child& child : children_) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      const Histogram::Snapshot s = child.metric.Read();
      std::string le;
      for (size_t i = 0; i < s.cumulative_counts.size(); ++i) {
        le.clear();
        if (i < s.bounds.size()) {
          AppendValue(s.bounds[i], &le);
        } else {
          le = "+Inf";
        }
        AppendSample(name_, "_bucket", label_names_, child.values, le, s.cumulative_counts[i], out);
      }
      AppendSample(name_, "_sum", label_names_, child.values, "", s.sum, out);
      AppendSample(name_, "_count", label_names_, child.values, "", s.count, out);
    } else {
      AppendSample(name_, "", label_names_, child.values, "", child.metric.Value(), out);
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <typename Metric>
Family<Metric>& Registry::Add(std::string name, std::string help,
                              std::vector<std::string> label_names,
                              std::vector<double> bucket_bounds) {
  CheckFamily(kTypeName<Metric>, name, help, label_names);
  CheckBounds(bucket_bounds);
  std::lock_guard lock(mu_);
  if (!names_.insert(name).second) Fail(fmt::format("metric family '{}' registered twice", name));
  // Family's constructor is private to the Registry, so no std::make_unique.
  auto* family = new Family<Metric>(std::move(name), std::move(help), std::move(label_names),
                                    std::move(bucket_bounds));
  families_.emplace_back(family);
  return *family;
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  return Add<Counter>(std::move(name), std::move(help), std::move(label_names), {});
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  return Add<Gauge>(std::move(name), std::move(help), std::move(label_names), {});
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<double> bucket_bounds,
                                          std::vector<std::string> label_names) {
  return Add<Histogram>(std::move(name), std::move(help), std::move(label_names),
                        std::move(bucket_bounds));
}

void Registry::AddScrapeHook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::Serialize() const {
  // Hooks run on a copy, unlocked: they may record into, or even register, metrics.
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(mu_);
    hooks = hooks_;
  }
  for (const std::function<void()>& hook : hooks) hook();

  std::string out;
  std::lock_guard lock(mu_);
  for (const std::unique_ptr<internal::FamilyBase>& family : families_) family->AppendText(&out);
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    Fail(fmt::format("ExponentialBuckets({}, {}, {}): needs start > 0, factor > 1, count >= 1",
                     start, factor, count));
  }
  std::vector<double> bounds(count);
  bounds[0] = start;
  for (int i = 1; i < count; ++i) bounds[i] = bounds[i - 1] * factor;
  CheckBounds(bounds);
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  if (!(width > 0) || count < 1) {
    Fail(
        fmt::format("LinearBuckets({}, {}, {}): needs width > 0, count >= 1", start, width, count));
  }
  std::vector<double> bounds(count);
  // start + i * width, not repeated addition: no accumulated rounding.
  for (int i = 0; i < count; ++i) bounds[i] = start + i * width;
  CheckBounds(bounds);
  return bounds;
}

}  // namespace longsana::server::metrics
