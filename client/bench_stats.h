// `longsana bench`: what one session measured, a simulated viewer, and the report (table,
// JSON, SVG chart). Plain data; no gRPC (the runs are in bench.cc).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace longsana::client {

// One video fragment as the client received it. Seconds: `arrival` since the session's
// request was sent; presentation and duration in video time.
struct FragmentArrival {
  double arrival = 0;
  double presentation = 0;
  double duration = 0;
};

// A player that starts once `start_buffer` seconds of video have arrived (or the stream
// ended), plays in real time, and stalls whenever the next fragment is not there yet.
struct ViewerResult {
  bool played = false;    // at least one fragment
  double play_start = 0;  // seconds since the request
  int stalls = 0;
  double stall_seconds = 0;
  // Fragments that arrived before the player, playing without stalls from play_start, needed
  // them (1 when all did).
  double deadline_attainment = 1;
};
ViewerResult SimulateViewer(const std::vector<FragmentArrival>& fragments, double start_buffer);

struct SessionRecord {
  std::string server;
  std::string kind;                    // generate | session | live
  double start = 0;                    // seconds since the bench started
  bool accepted = false;               // got Accepted
  std::string code = "OK";             // final gRPC status code name
  std::string error;                   // its message when not OK
  double ttfc = -1;                    // request -> first video fragment; < 0: none
  std::vector<double> gaps;            // between consecutive fragments
  std::vector<double> switch_latency;  // switch sent -> first fragment with its prompt (client)
  double video_seconds = 0;
  double wall_seconds = 0;  // request -> end of the stream
  ViewerResult viewer;

  // completed: OK; rejected: ended before Accepted; failed: ended with an error after it.
  bool completed() const { return code == "OK"; }
  bool rejected() const { return !completed() && !accepted; }
  bool failed() const { return !completed() && accepted; }
};

// p in [0, 1], nearest rank; 0 for an empty sample.
double Percentile(std::vector<double> values, double p);

struct BenchSummaryOptions {
  std::vector<std::string> servers;
  double wall_seconds = 0;
  double client_cpu_seconds = 0;
  double start_buffer = 1;
};

// Every number of the run: counts (sessions = completed + rejected + failed), rejections and
// failures by code, TTFC / gap / switch latency p50 p90 p99, real-time factor, deadline
// attainment, stalls, the client's own CPU, and the same per server.
nlohmann::json Summarize(const std::vector<SessionRecord>& records,
                         const BenchSummaryOptions& options);
// The summary as a human-readable table.
std::string FormatTable(const nlohmann::json& summary);
// An SVG with time to first chunk and inter-chunk gaps over the run's time (one dot each).
std::string ChartSvg(const std::vector<SessionRecord>& records);

}  // namespace longsana::client
