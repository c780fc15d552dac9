#include "server/server.h"

#include <fmt/format.h>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "server/auth/tenants.h"
#include "server/http/http_router.h"
#include "server/http/http_server.h"
#include "server/playground/playground_page.h"
#include "server/service.h"
#include "server/tls_files.h"

namespace longsana::server {
namespace {

constexpr const char* kServiceName = "longsana.v1.LongSana";
constexpr const char* kLivenessService = "liveness";

// gRPC's "never" for its millisecond arguments.
int MillisOrNever(std::chrono::milliseconds d) {
  return d.count() == 0 ? std::numeric_limits<int>::max() : static_cast<int>(d.count());
}

// The HTTP/2 connection bounds of ServerOptions (validated: every duration fits an int).
void SetConnectionBounds(const ServerOptions& o, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, MillisOrNever(o.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(o.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(o.min_client_ping_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             o.permit_keepalive_without_calls ? 1 : 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, MillisOrNever(o.max_connection_idle));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, MillisOrNever(o.max_connection_age));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             MillisOrNever(o.max_connection_age_grace));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams);
}

// The gRPC port's credentials: plaintext, TLS, or TLS requiring a client certificate that
// chains to the client CA (mTLS); `mode` says which for the start log line.
std::shared_ptr<grpc::ServerCredentials> Credentials(const std::optional<TlsMaterial>& tls,
                                                     std::string* mode) {
  if (!tls.has_value()) {
    *mode = "plaintext";
    return grpc::InsecureServerCredentials();
  }
  const bool mtls = !tls->client_ca.empty();
  grpc::SslServerCredentialsOptions ssl(
      mtls ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_root_certs = tls->client_ca;
  ssl.pem_key_cert_pairs.push_back({tls->private_key, tls->cert_chain});
  *mode = fmt::format("{} (certificate {}, valid until {})",
                      mtls ? "mTLS: client certificates required" : "TLS", tls->subject,
                      tls->not_after);
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  HostPort host_port;
  std::shared_ptr<ServerMetrics> metrics;
  std::optional<TenantDirectory> tenants;
  // Declared before grpc_server: the service must outlive the server that calls it.
  std::unique_ptr<LongSanaService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::shared_ptr<engine::Engine> engine;

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool shut_down = false;
  bool drain_started = false;
  std::thread monitor;
  // Declared last: destroyed first, so its handlers never see a half-destroyed Impl.
  std::unique_ptr<http::HttpServer> http;

  ~Impl() {
    if (http != nullptr) http->Stop();
  }

  std::shared_ptr<engine::Engine> CurrentEngine() {
    std::lock_guard lock(mu);
    return engine;
  }

  std::shared_ptr<http::Router> MakeRouter() {
    auto router = std::make_shared<http::Router>();
    router->Handle("GET", "/metrics", [this](const http::Request&) {
      http::Response r;
      r.content_type = std::string(metrics::Registry::kContentType);
      r.body = metrics->Serialize();
      return r;
    });
    router->HandleStream("GET", "/v1/generate",
                         [this](http::Request request, std::shared_ptr<http::ResponseStream> out) {
                           service->HttpGenerate(std::move(request), std::move(out));
                         });
    router->HandleStream("GET", "/v1/sessions/{id}/watch",
                         [this](http::Request request, std::shared_ptr<http::ResponseStream> out) {
                           service->HttpWatch(std::move(request), std::move(out));
                         });
    router->Handle("GET", "/", [](const http::Request&) {
      http::Response r;
      r.content_type = "text/html; charset=utf-8";
      r.body = std::string(PlaygroundPage());
      r.headers = {{"Cache-Control", "no-cache"},
                   {"X-Content-Type-Options", "nosniff"},
                   {"Content-Security-Policy",
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                    "media-src 'self' blob:; connect-src 'self' ws: wss:"}};
      return r;
    });
    router->Handle("GET", "/favicon.ico", [](const http::Request&) {
      http::Response r;  // no icon: an empty answer rather than a 404 in the browser's console
      r.status = 204;
      r.content_type.clear();
      return r;
    });
    router->HandleWebSocket("/v1/session",
                            [this](http::Request request, std::shared_ptr<http::WebSocket> ws) {
                              service->WebSocketSession(std::move(request), std::move(ws));
                            });
    router->Handle("GET", "/healthz", [this](const http::Request&) {
      if (service->phase() == ServingPhase::kUnhealthy) {
        return http::Response::Json(503, R"({"status":"unhealthy","detail":"device error"})");
      }
      return http::Response::Json(200, R"({"status":"ok"})");
    });
    router->Handle("GET", "/readyz", [this](const http::Request&) {
      const ServingPhase phase = service->phase();
      if (phase == ServingPhase::kServing)
        return http::Response::Json(200, R"({"status":"ready"})");
      const char* name = phase == ServingPhase::kLoading     ? "loading"
                         : phase == ServingPhase::kDraining  ? "draining"
                         : phase == ServingPhase::kUnhealthy ? "unhealthy"
                                                             : "load_failed";
      return http::Response::Json(503, fmt::format(R"({{"status":"{}"}})", name));
    });
    return router;
  }

  void SetHealth(bool serving) {
    grpc::HealthCheckServiceInterface* health = grpc_server->GetHealthCheckService();
    if (health == nullptr) return;
    health->SetServingStatus(serving);  // every service, including "" (the whole server)
    health->SetServingStatus(kServiceName, serving);
    // "liveness" (Kubernetes' liveness probe): the process works, whether or not it takes
    // sessions; NOT_SERVING only once the device failed, so a pod is never restarted while
    // it loads or drains.
    health->SetServingStatus(kLivenessService, service->phase() != ServingPhase::kUnhealthy);
  }

  // Polls Engine::Healthy() while serving; an unhealthy engine is sticky (the pod restarts).
  void MonitorLoop() {
    std::unique_lock lock(mu);
    while (!stopping) {
      cv.wait_for(lock, options.health_poll_interval);
      if (stopping || engine == nullptr) continue;
      if (service->phase() != ServingPhase::kServing) continue;
      const std::shared_ptr<engine::Engine> e = engine;
      lock.unlock();
      const bool healthy = e->Healthy();
      lock.lock();
      if (!healthy && service->phase() == ServingPhase::kServing) {
        spdlog::error(
            "the engine reports itself unhealthy: health NOT_SERVING, new sessions "
            "are refused");
        service->SetPhase(ServingPhase::kUnhealthy);
        SetHealth(false);
        metrics->SetReady(false);
      }
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      std::shared_ptr<ServerMetrics> metrics) {
  if (auto s = options.Validate(); !s.ok()) return s;
  auto host_port = ParseHostPort("listen", options.listen);
  if (!host_port.ok()) return host_port.status();
  auto tls = LoadTlsMaterial(options);
  if (!tls.ok()) return tls.status();
  if (tls->has_value() && (*tls)->expired) {
    spdlog::warn("--tls_cert {}: the certificate expired on {}; clients will refuse it",
                 options.tls_cert_file, (*tls)->not_after);
  }

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->host_port = *host_port;
  impl->metrics = metrics != nullptr
                      ? std::move(metrics)
                      : std::make_shared<ServerMetrics>(ServerMetrics::Options{
                            .version = LONGSANA_VERSION, .build = BuildDescription()});
  if (!options.auth_tokens_file.empty()) {
    auto tenants = TenantDirectory::Load(options.auth_tokens_file);
    if (!tenants.ok()) return tenants.status();
    impl->tenants = std::move(*tenants);
    spdlog::info("tenant tokens: {} tenants from {}; every RPC but health needs a token",
                 impl->tenants->tenants().size(), options.auth_tokens_file);
  }

  grpc::EnableDefaultHealthCheckService(true);
  // Reflection has no per-call hook for the token check, so it is left out when tokens are
  // required. (The plugin registration is process-wide: once a server of this process has
  // registered it, later ones get it too.)
  if (!impl->tenants.has_value()) grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  impl->service = std::make_unique<LongSanaService>(
      options, BuildDescription(),
      ServiceDeps{.metrics = impl->metrics.get(),
                  .tenants = impl->tenants.has_value() ? &*impl->tenants : nullptr});

  grpc::ServerBuilder builder;
  int port = 0;
  std::string security;
  builder.AddListeningPort(options.listen, Credentials(*tls, &security), &port);
  builder.RegisterService(impl->service.get());
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_send_message_bytes));
  SetConnectionBounds(options, builder);
  // A busy port must fail the bind instead of being shared silently (SO_REUSEPORT).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl->grpc_server = builder.BuildAndStart();
  if (impl->grpc_server == nullptr || port == 0) {
    return absl::UnavailableError(
        fmt::format("listen: cannot listen on {} (address in use or invalid)", options.listen));
  }
  impl->host_port.port = port;
  // The default health service starts out SERVING; we are not, until the models are loaded.
  impl->SetHealth(false);
  Impl* raw = impl.get();
  impl->metrics->SetStatsSource([raw]() -> std::optional<engine::EngineStats> {
    auto engine = raw->CurrentEngine();
    if (engine == nullptr) return std::nullopt;
    return engine->Stats();
  });
  if (!options.http_listen.empty()) {
    http::HttpServerOptions http_options;
    http_options.listen = options.http_listen;
    http_options.cors_allowed_origins = options.cors_allowed_origins;
    auto http = http::HttpServer::Start(http_options, impl->MakeRouter());
    if (!http.ok()) {
      impl->grpc_server->Shutdown(std::chrono::system_clock::now());
      return absl::Status(http.status().code(),
                          fmt::format("http_listen: {}", std::string(http.status().message())));
    }
    impl->http = std::move(*http);
    spdlog::info(
        "HTTP port listening on {} (the playground at /, /metrics, /healthz, /readyz, "
        "/v1/generate, /v1/sessions/{{id}}/watch, WebSocket /v1/session)",
        impl->http->address());
  }
  impl->monitor = std::thread([raw] { raw->MonitorLoop(); });
  spdlog::info(
      "gRPC server listening on {}:{}, {} (health NOT_SERVING until the models are loaded)",
      impl->host_port.host, port, security);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->host_port.port; }

std::string Server::address() const {
  return fmt::format("{}:{}", impl_->host_port.host, impl_->host_port.port);
}

int Server::http_port() const { return impl_->http != nullptr ? impl_->http->port() : 0; }

std::string Server::http_address() const {
  return impl_->http != nullptr ? impl_->http->address() : "";
}

void Server::SetEngine(std::shared_ptr<engine::Engine> engine) {
  std::lock_guard lock(impl_->mu);
  if (impl_->shut_down || impl_->drain_started) return;
  impl_->engine = engine;
  impl_->service->SetEngine(std::move(engine));
  impl_->SetHealth(true);
  impl_->metrics->SetReady(true);
  spdlog::info("ready: health SERVING");
}

void Server::SetLoadFailed(const absl::Status& reason) {
  std::lock_guard lock(impl_->mu);
  impl_->service->SetPhase(ServingPhase::kLoadFailed, reason);
  impl_->SetHealth(false);
}

bool Server::serving() const { return impl_->service->phase() == ServingPhase::kServing; }

int Server::open_streams() const { return impl_->service->open_streams(); }

void Server::Drain(std::chrono::milliseconds timeout) {
  std::shared_ptr<engine::Engine> engine;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->drain_started || impl_->shut_down) return;
    impl_->drain_started = true;
    impl_->service->SetPhase(ServingPhase::kDraining);
    impl_->SetHealth(false);
    impl_->metrics->SetReady(false);
    engine = impl_->engine;
  }
  if (engine == nullptr) {
    spdlog::info("draining: no engine loaded");
    return;
  }
  const engine::EngineStats before = engine->Stats();
  spdlog::info("draining: health NOT_SERVING; {} running and {} queued sessions get {:.1f} s",
               before.running, before.queued, std::chrono::duration<double>(timeout).count());
  engine->Drain(timeout);
  const engine::EngineStats after = engine->Stats();
  spdlog::info("drained: {} completed, {} cancelled in total", after.completed, after.cancelled);
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->monitor.joinable()) impl_->monitor.join();
  impl_->SetHealth(false);
  impl_->metrics->SetReady(false);
  if (impl_->service->phase() == ServingPhase::kServing) {
    impl_->service->SetPhase(ServingPhase::kDraining);  // /readyz: no longer ready
  }
  // Our streams get `grace` to flush their last events. Then gRPC's own shutdown gets no
  // further deadline: it cancels what is still open (their reactors cancel their sessions)
  // instead of waiting for idle client connections to go away.
  if (!impl_->service->WaitForStreamsClosed(grace)) {
    spdlog::warn("{} streams still open after the {:.1f} s grace period: cancelling them",
                 impl_->service->open_streams(), std::chrono::duration<double>(grace).count());
  }
  impl_->grpc_server->Shutdown(std::chrono::system_clock::now());
  impl_->grpc_server->Wait();
  spdlog::info("gRPC server stopped");
}

std::string Server::BuildDescription() {
#ifdef NDEBUG
  constexpr const char* kBuildType = "optimized";
#else
  constexpr const char* kBuildType = "debug";
#endif
#if defined(__clang__)
  const std::string compiler = fmt::format("clang {}", __clang_version__);
#elif defined(__GNUC__)
  const std::string compiler = fmt::format("gcc {}", __VERSION__);
#else
  const std::string compiler = "unknown compiler";
#endif
  return fmt::format("{}, {}, gRPC {}, protobuf {}", compiler, kBuildType, grpc::Version(),
                     google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION));
}

}  // namespace longsana::server
