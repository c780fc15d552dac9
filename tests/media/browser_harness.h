// Test-only harness for driving a real browser: a tiny HTTP/1.1 server on 127.0.0.1 (random
// port) and a headless Chromium process.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace longsana::testing {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // request target without the query string
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

// Serves each connection on its own thread and closes it after one response
// (Connection: close). The handler is called concurrently from several threads and must be
// thread-safe. Connections idle for more than 10 s are dropped (Chromium opens speculative
// connections that never send a request).
class HttpTestServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  explicit HttpTestServer(Handler handler);
  ~HttpTestServer();
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  // Binds 127.0.0.1 on a port chosen by the kernel and starts accepting.
  absl::Status Start();
  int port() const { return port_; }
  // Stops accepting, aborts open connections and joins every thread. Idempotent.
  void Stop();

 private:
  void AcceptLoop();
  void Serve(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> connection_threads_;  // guarded by mu_
  std::set<int> open_fds_;                       // guarded by mu_
};

// A headless Chromium started in its own process group, with its stdout/stderr written to a
// log file. The destructor terminates the whole group (SIGTERM, then SIGKILL after 5 s).
class ChromiumProcess {
 public:
  // Starts `binary` (e.g. /usr/bin/chromium) on `url` with a fresh profile in
  // `user_data_dir`, autoplay allowed and everything that could reach the network or add
  // flakiness (sync, component updates, background networking, QUIC, GPU) disabled.
  static absl::StatusOr<std::unique_ptr<ChromiumProcess>> Launch(const std::string& binary,
                                                                 const std::string& url,
                                                                 const std::string& user_data_dir,
                                                                 const std::string& log_path);
  ~ChromiumProcess();
  ChromiumProcess(const ChromiumProcess&) = delete;
  ChromiumProcess& operator=(const ChromiumProcess&) = delete;

  // True once the browser process has exited (reaped); *description says how.
  bool Exited(std::string* description);
  // Terminates the process group once; later calls do nothing.
  void Terminate();

 private:
  explicit ChromiumProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool reaped_ = false;
  bool terminated_ = false;
};

// The last `max_bytes` bytes of a file (for failure messages).
std::string FileTail(const std::string& path, size_t max_bytes);

}  // namespace longsana::testing
