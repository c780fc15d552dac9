// Request ids: the client's `x-request-id` (gRPC metadata or HTTP header) when it is a sane
// token, else one we make. Carried into every log line of the request and echoed to the
// client (Accepted.request_id and the `x-request-id` response metadata).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace longsana::server {

// 32 random hex digits. Thread-safe.
std::string NewRequestId();

// `header` when it is 1-128 bytes of [A-Za-z0-9._:/+-]; otherwise (absent, empty, too long,
// other bytes) a NewRequestId(): ids go into logs, so nothing else is taken from a client.
std::string RequestIdOrNew(std::optional<std::string_view> header);

}  // namespace longsana::server
