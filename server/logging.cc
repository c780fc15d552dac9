#include "server/logging.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <grpc/support/log.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/api/log_tag.h"

namespace longsana::server {
namespace {

constexpr const char* kTextPattern = "%Y-%m-%dT%H:%M:%S.%e %l %v";

std::string IsoTimeUtc(spdlog::log_clock::time_point t) {
  const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(t);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(t - seconds).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(spdlog::log_clock::to_time_t(t)),
                     millis);
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    nlohmann::ordered_json line;
    line["time"] = IsoTimeUtc(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string_view(level.data(), level.size());
    line["logger"] = std::string_view(msg.logger_name.data(), msg.logger_name.size());
    std::string_view text = payload;
    if (auto tag = engine::ParseLogTag(payload)) {
      if (tag->fields.session_id != 0) line["session_id"] = std::to_string(tag->fields.session_id);
      if (!tag->fields.tenant.empty()) line["tenant"] = tag->fields.tenant;
      if (!tag->fields.request_id.empty()) line["request_id"] = tag->fields.request_id;
      text = tag->rest;
    }
    line["msg"] = text;
    // Invalid UTF-8 (a client's bytes quoted in a message) becomes U+FFFD, never a broken line.
    const std::string out = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(out.data(), out.data() + out.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// gRPC may log from any thread at any time, also while ConfigureLogging runs again.
std::atomic<std::shared_ptr<spdlog::logger>> g_grpc_logger;

void GrpcLogToSpdlog(gpr_log_func_args* args) {
  const std::shared_ptr<spdlog::logger> logger = g_grpc_logger.load();
  if (logger == nullptr) return;
  spdlog::level::level_enum level = spdlog::level::info;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = spdlog::level::debug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = spdlog::level::err;
  logger->log(level, "{}:{}: {}", args->file != nullptr ? args->file : "?", args->line,
              args->message != nullptr ? args->message : "");
}

}  // namespace

spdlog::level::level_enum ToSpdlogLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>(kTextPattern);
}

void ConfigureLogging(LogLevel level, LogFormat format, spdlog::sink_ptr sink) {
  if (sink == nullptr) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("longsana-server", sink);
  logger->set_formatter(MakeLogFormatter(format));
  spdlog::set_default_logger(logger);
  spdlog::set_level(ToSpdlogLevel(level));
  spdlog::flush_on(spdlog::level::info);
  auto grpc = std::make_shared<spdlog::logger>("grpc", sink);
  grpc->set_formatter(MakeLogFormatter(format));
  grpc->set_level(spdlog::level::trace);  // gRPC filters by its own verbosity
  grpc->flush_on(spdlog::level::info);
  g_grpc_logger.store(std::move(grpc));
  // gRPC's own lines: errors always, more only when we log at debug or trace.
  gpr_set_log_verbosity(level == LogLevel::kTrace   ? GPR_LOG_SEVERITY_DEBUG
                        : level == LogLevel::kDebug ? GPR_LOG_SEVERITY_INFO
                                                    : GPR_LOG_SEVERITY_ERROR);
  gpr_set_log_function(GrpcLogToSpdlog);
}

}  // namespace longsana::server
