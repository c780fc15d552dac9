// Helpers for the server tests (tests only): gRPC clients for LongSana, health and
// reflection; collecting a stream's events; a subprocess with its stdout lines; ffprobe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "longsana/v1/longsana.grpc.pb.h"

namespace longsana::testing {

namespace v1 = ::longsana::v1;

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const grpc::ChannelArguments& args = {});

struct StreamResult {
  std::vector<v1::GenerateEvent> events;
  grpc::Status status;

  // Events of one kind, in order.
  std::vector<v1::VideoChunk> Chunks() const;
  std::vector<v1::CommandAck> Acks() const;
  std::optional<v1::Accepted> accepted() const;
  std::optional<v1::Completed> completed() const;
  // The `data` of every chunk concatenated: the MP4 file.
  std::string Video() const;
};

// Runs Generate to the end.
StreamResult RunGenerate(v1::LongSana::Stub& stub, const v1::GenerateRequest& request,
                         std::optional<std::chrono::milliseconds> timeout = std::nullopt);

// A valid small request: 64x64, `frames` frames, seed 7.
v1::GenerateRequest SmallRequest(int frames = 81);

// grpc.health.v1.Health/Check: 1 SERVING, 2 NOT_SERVING (HealthCheckResponse.ServingStatus);
// the RPC's error otherwise.
absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service);
// Polls CheckHealth until it returns `want` or `timeout` passes; true on success.
bool WaitForHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                   int want, std::chrono::milliseconds timeout);

// The service names server reflection (grpc.reflection.v1alpha) lists.
absl::StatusOr<std::vector<std::string>> ListServicesByReflection(
    const std::shared_ptr<grpc::Channel>& channel);

// A child process with stdout piped (read line by line) and stderr to a log file.
class Subprocess {
 public:
  // argv[0] is the program path.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const std::string& stderr_path);
  ~Subprocess();  // SIGKILL + reap if still running
  // Reads stdout until a line starting with `prefix`; returns that line.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix,
                                          std::chrono::milliseconds timeout);
  void Signal(int sig);
  // Waits for exit; the exit code (128 + signal when killed), or DeadlineExceeded.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  int pid() const { return pid_; }
  // Everything read from stdout so far.
  const std::string& stdout_text() const { return stdout_; }

 private:
  int pid_ = -1;
  int stdout_fd_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::string stdout_;
  size_t scanned_ = 0;
};

// Runs a command, returns its stdout (and the exit code through `exit_code`).
std::string RunCommand(const std::string& command, int* exit_code);

struct ProbedVideo {
  int width = 0;
  int height = 0;
  int64_t frames = 0;
  std::string codec;
};
// ffprobe -count_frames on a file.
absl::StatusOr<ProbedVideo> FfprobeVideo(const std::string& path);

// Directory of the test binaries (where longsana-server, longsana land).
std::string BinaryDir();

// One HTTP/1.1 GET on a fresh connection (Connection: close), read to the end.
struct HttpReply {
  int status = 0;
  std::string headers;  // the raw header block, lower-cased names as sent
  std::string body;
  bool chunked = false;  // the body came with Transfer-Encoding: chunked (decoded here)
  std::optional<std::string> Header(std::string_view lower_name) const;
};
// `extra_headers`: "Name: value\r\n" lines. A chunked body is decoded (reply.chunked).
absl::StatusOr<HttpReply> HttpGet(const std::string& host_port, const std::string& path,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                  const std::string& extra_headers = "");

// The value of one series ("name{labels}", exactly as written) in a Prometheus text scrape;
// NaN when absent.
double ScrapeSample(const std::string& scrape, const std::string& series);

// A server program started by StartServerProcess; `process` is null when it did not start
// (the reason is printed on stderr).
struct RunningServer {
  std::unique_ptr<Subprocess> process;
  std::string address;       // "127.0.0.1:PORT" from its "listening on" line
  std::string http_address;  // the HTTP port (/metrics, /healthz, /readyz), from its
                             // "http listening on" line
};

// Starts BinaryDir()/binary --listen=127.0.0.1:0 --http_listen=127.0.0.1:0 `flags` with
// stderr to `log_path` and waits (up to 120 s) for its "listening on" and "http listening
// on" lines.
RunningServer StartServerProcess(const std::string& binary, const std::vector<std::string>& flags,
                                 const std::string& log_path);

// longsana-server-fake's flags for a model-less server with 20 ms steps, then `extra`.
std::vector<std::string> FakeFlags(std::vector<std::string> extra = {});

// A Generate call read incrementally from the test thread.
struct OpenStream {
  OpenStream(v1::LongSana::Stub& stub, const v1::GenerateRequest& request,
             std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    if (timeout.has_value()) context.set_deadline(std::chrono::system_clock::now() + *timeout);
    reader = stub.Generate(&context, request);
  }
  // Reads until an event satisfying `pred` (true) or the end of the stream (false).
  bool ReadUntil(const std::function<bool(const v1::GenerateEvent&)>& pred) {
    v1::GenerateEvent e;
    while (reader->Read(&e)) {
      events.push_back(e);
      if (pred(e)) return true;
    }
    return false;
  }
  grpc::Status Finish() {
    ReadUntil([](const v1::GenerateEvent&) { return false; });
    return reader->Finish();
  }
  engine::SessionId id() const { return std::stoull(events.at(0).accepted().session_id()); }

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader;
  std::vector<v1::GenerateEvent> events;
};

}  // namespace longsana::testing
