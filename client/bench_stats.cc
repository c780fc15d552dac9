#include "client/bench_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace longsana::client {
namespace {

using nlohmann::json;

json Percentiles(const std::vector<double>& v) {
  json j;
  j["count"] = v.size();
  j["p50"] = Percentile(v, 0.5);
  j["p90"] = Percentile(v, 0.9);
  j["p99"] = Percentile(v, 0.99);
  return j;
}

// Counts, latencies and viewer results of `records`.
json Totals(const std::vector<const SessionRecord*>& records) {
  json j;
  int completed = 0, rejected = 0, failed = 0, stalls = 0;
  double stall_seconds = 0, attained = 0;
  int played = 0;
  std::map<std::string, int> rejections, failures;
  std::vector<double> ttfc, gaps, switches, rtf;
  for (const SessionRecord* r : records) {
    if (r->completed()) ++completed;
    if (r->rejected()) ++rejections[r->code], ++rejected;
    if (r->failed()) ++failures[r->code], ++failed;
    if (r->ttfc >= 0) ttfc.push_back(r->ttfc);
    gaps.insert(gaps.end(), r->gaps.begin(), r->gaps.end());
    switches.insert(switches.end(), r->switch_latency.begin(), r->switch_latency.end());
    if (r->completed() && r->wall_seconds > 0) rtf.push_back(r->video_seconds / r->wall_seconds);
    if (r->viewer.played) {
      ++played;
      stalls += r->viewer.stalls;
      stall_seconds += r->viewer.stall_seconds;
      attained += r->viewer.deadline_attainment;
    }
  }
  j["sessions"] = records.size();
  j["completed"] = completed;
  j["rejected"] = rejected;
  j["failed"] = failed;
  j["rejections_by_code"] = rejections;
  j["failures_by_code"] = failures;
  j["ttfc_seconds"] = Percentiles(ttfc);
  j["inter_chunk_gap_seconds"] = Percentiles(gaps);
  j["switch_visible_seconds"] = Percentiles(switches);
  double rtf_sum = 0;
  for (double x : rtf) rtf_sum += x;
  j["realtime_factor"] = {{"mean", rtf.empty() ? 0 : rtf_sum / rtf.size()},
                          {"p50", Percentile(rtf, 0.5)},
                          {"min", rtf.empty() ? 0 : *std::min_element(rtf.begin(), rtf.end())}};
  j["viewer"] = {{"played", played},
                 {"stalls", stalls},
                 {"stall_seconds", stall_seconds},
                 {"deadline_attainment", played > 0 ? attained / played : 1.0}};
  return j;
}

}  // namespace

ViewerResult SimulateViewer(const std::vector<FragmentArrival>& fragments, double start_buffer) {
  ViewerResult v;
  if (fragments.empty()) return v;
  v.played = true;
  // Playback starts when start_buffer seconds have arrived, or with the last fragment.
  size_t start_index = fragments.size() - 1;
  double buffered = 0;
  for (size_t i = 0; i < fragments.size(); ++i) {
    buffered += fragments[i].duration;
    if (buffered >= start_buffer - 1e-9) {
      start_index = i;
      break;
    }
  }
  v.play_start = fragments[start_index].arrival;
  const double origin = fragments.front().presentation;
  double clock = v.play_start;  // when the player reaches `position`
  double position = origin;
  int on_time = 0;
  for (const FragmentArrival& f : fragments) {
    const double due = clock + (f.presentation - position);  // when the player needs it
    if (f.arrival <= v.play_start + (f.presentation - origin) + 1e-9) ++on_time;
    if (f.arrival > due + 1e-9) {
      ++v.stalls;
      v.stall_seconds += f.arrival - due;
      clock = f.arrival;
    } else {
      clock = due;
    }
    position = f.presentation;
  }
  v.deadline_attainment = static_cast<double>(on_time) / fragments.size();
  return v;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(std::clamp(p, 0.0, 1.0) * static_cast<double>(values.size()));
  const size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(i, values.size() - 1)];
}

json Summarize(const std::vector<SessionRecord>& records, const BenchSummaryOptions& options) {
  std::vector<const SessionRecord*> all;
  for (const auto& r : records) all.push_back(&r);
  json j = Totals(all);
  j["wall_seconds"] = options.wall_seconds;
  j["start_buffer_seconds"] = options.start_buffer;
  j["client_cpu_seconds"] = options.client_cpu_seconds;
  j["client_cpu_seconds_per_session"] =
      records.empty() ? 0.0 : options.client_cpu_seconds / records.size();
  json servers = json::object();
  for (const std::string& server : options.servers) {
    std::vector<const SessionRecord*> mine;
    for (const auto& r : records) {
      if (r.server == server) mine.push_back(&r);
    }
    servers[server] = Totals(mine);
  }
  j["servers"] = servers;
  json kinds = json::object();
  for (const auto& r : records) kinds[r.kind] = kinds.value(r.kind, 0) + 1;
  j["kinds"] = kinds;
  return j;
}

std::string FormatTable(const json& s) {
  auto p = [&](const char* key) {
    const json& x = s[key];
    return fmt::format("{:.3f} / {:.3f} / {:.3f} s ({} samples)", x["p50"].get<double>(),
                       x["p90"].get<double>(), x["p99"].get<double>(), x["count"].get<int64_t>());
  };
  std::string out;
  out +=
      fmt::format("sessions {}: {} completed, {} rejected, {} failed in {:.1f} s\n",
                  s["sessions"].get<int64_t>(), s["completed"].get<int>(), s["rejected"].get<int>(),
                  s["failed"].get<int>(), s["wall_seconds"].get<double>());
  for (const char* by : {"rejections_by_code", "failures_by_code"}) {
    for (const auto& [code, n] : s[by].items()) {
      out += fmt::format("  {} {}: {}\n", by[0] == 'r' ? "rejected" : "failed", code, n.get<int>());
    }
  }
  out += fmt::format("time to first chunk  p50/p90/p99 {}\n", p("ttfc_seconds"));
  out += fmt::format("inter-chunk gap      p50/p90/p99 {}\n", p("inter_chunk_gap_seconds"));
  out += fmt::format("switch to visible    p50/p90/p99 {}\n", p("switch_visible_seconds"));
  const json& rtf = s["realtime_factor"];
  out += fmt::format("real-time factor     mean {:.2f}, p50 {:.2f}, min {:.2f}\n",
                     rtf["mean"].get<double>(), rtf["p50"].get<double>(), rtf["min"].get<double>());
  const json& v = s["viewer"];
  out += fmt::format(
      "viewers ({:.1f} s start buffer): {} stalls, {:.2f} s stalled, deadline attainment "
      "{:.1f}%\n",
      s["start_buffer_seconds"].get<double>(), v["stalls"].get<int>(),
      v["stall_seconds"].get<double>(), 100 * v["deadline_attainment"].get<double>());
  out += fmt::format("client CPU: {:.3f} s per session\n",
                     s["client_cpu_seconds_per_session"].get<double>());
  for (const auto& [server, t] : s["servers"].items()) {
    out += fmt::format(
        "  {}: {} sessions, {} completed, {} rejected, {} failed, TTFC p50 {:.3f} s\n", server,
        t["sessions"].get<int64_t>(), t["completed"].get<int>(), t["rejected"].get<int>(),
        t["failed"].get<int>(), t["ttfc_seconds"]["p50"].get<double>());
  }
  return out;
}

std::string ChartSvg(const std::vector<SessionRecord>& records) {
  // Two panels, time of the run on x: TTFC per session (at its start) and every gap (at the
  // fragment's arrival), y on a common seconds axis per panel.
  constexpr int kWidth = 800, kPanel = 260, kMargin = 50;
  double t_max = 1e-3, ttfc_max = 1e-3, gap_max = 1e-3;
  for (const auto& r : records) {
    t_max = std::max(t_max, r.start + r.wall_seconds);
    ttfc_max = std::max(ttfc_max, r.ttfc);
    for (double g : r.gaps) gap_max = std::max(gap_max, g);
  }
  auto x = [&](double t) { return kMargin + (kWidth - 2 * kMargin) * t / t_max; };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n",
      kWidth, 2 * kPanel + 2 * kMargin);
  auto panel = [&](int top, const std::string& title, double y_max) {
    svg += fmt::format(
        "<text x=\"{}\" y=\"{}\">{} (0 to {:.3f} s) over the run (0 to {:.1f} s)</text>\n"
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n",
        kMargin, top - 8, title, y_max, t_max, kMargin, top, kWidth - 2 * kMargin, kPanel);
  };
  const int top1 = kMargin, top2 = 2 * kMargin + kPanel;
  panel(top1, "time to first chunk per session", ttfc_max);
  panel(top2, "inter-chunk gaps", gap_max);
  for (const auto& r : records) {
    if (r.ttfc >= 0) {
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", x(r.start),
                         top1 + kPanel - kPanel * r.ttfc / ttfc_max,
                         r.completed() ? "#1f77b4" : "#d62728");
    }
    double t = r.start + std::max(0.0, r.ttfc);
    for (double g : r.gaps) {
      t += g;
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2\" fill=\"#ff7f0e\"/>\n", x(t),
                         top2 + kPanel - kPanel * g / gap_max);
    }
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace longsana::client
