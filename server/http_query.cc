#include "server/http_query.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <set>
#include <string>
#include <type_traits>

#include "server/http/http_router.h"

namespace longsana::server {
namespace {

absl::Status Bad(std::string_view field, const std::string& what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", field, what));
}

template <typename T>
absl::StatusOr<T> ParseNumber(std::string_view name, std::string_view text) {
  T value{};
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Bad(name, fmt::format("'{}' is not {}", text.substr(0, 64),
                                 std::is_floating_point_v<T> ? "a number" : "an integer"));
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) return Bad(name, "must be finite");
  }
  return value;
}

}  // namespace

absl::StatusOr<v1::GenerateRequest> GenerateRequestFromQuery(std::string_view query) {
  v1::GenerateRequest r;
  std::set<std::string> seen;
  for (const auto& pair : server::http::QueryPairs(query)) {
    const std::string& name = pair.first;
    const std::string& value = pair.second;
    if (name == "access_token") continue;  // the route's credential, not part of the request
    const std::string key = name == "frames" ? "num_frames" : name;
    if (!seen.insert(key).second) return Bad(name, "given twice");
    auto number = [&]<typename T>(T* out) -> absl::Status {
      auto v = ParseNumber<T>(name, value);
      if (!v.ok()) return v.status();
      *out = *v;
      return absl::OkStatus();
    };
    absl::Status s;
    if (key == "prompt") {
      r.set_prompt(value);
    } else if (key == "preset") {
      r.mutable_output()->set_preset(value);
    } else if (key == "width" || key == "height" || key == "num_frames" || key == "crf") {
      uint32_t v = 0;
      s = number(&v);
      if (key == "width") r.set_width(v);
      if (key == "height") r.set_height(v);
      if (key == "num_frames") r.set_num_frames(v);
      if (key == "crf") r.mutable_output()->set_crf(v);
    } else if (key == "seed" || key == "bitrate_bps") {
      uint64_t v = 0;
      s = number(&v);
      if (key == "seed") r.set_seed(v);
      if (key == "bitrate_bps") r.mutable_output()->set_bitrate_bps(v);
    } else if (key == "num_cached_blocks" || key == "motion_score" || key == "priority") {
      int32_t v = 0;
      s = number(&v);
      if (key == "num_cached_blocks") r.set_num_cached_blocks(v);
      if (key == "motion_score") r.set_motion_score(v);
      if (key == "priority") r.set_priority(v);
    } else if (key == "duration_seconds" || key == "lookahead_seconds") {
      double v = 0;
      s = number(&v);
      if (key == "duration_seconds") r.set_duration_seconds(v);
      if (key == "lookahead_seconds") r.set_lookahead_seconds(v);
    } else if (key == "live") {
      if (value == "true" || value == "1" || value.empty()) {
        r.set_live(true);
      } else if (value != "false" && value != "0") {
        return Bad(name, fmt::format("'{}' is not true, false, 1 or 0", value.substr(0, 64)));
      }
    } else if (key == "pacing") {
      if (value == "realtime") {
        r.set_pacing(v1::GenerateRequest::PACING_REALTIME);
      } else if (value == "fast") {
        r.set_pacing(v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE);
      } else {
        return Bad(name, fmt::format("'{}' is not realtime or fast", value.substr(0, 64)));
      }
    } else if (key == "fragments") {
      if (value == "block") {
        r.mutable_output()->set_fragments(v1::OutputOptions::FRAGMENTS_PER_BLOCK);
      } else if (value == "latent_frame") {
        r.mutable_output()->set_fragments(v1::OutputOptions::FRAGMENTS_PER_LATENT_FRAME);
      } else {
        return Bad(name, fmt::format("'{}' is not block or latent_frame", value.substr(0, 64)));
      }
    } else {
      return Bad(name.substr(0, 64),
                 "unknown parameter (known: prompt, width, height, num_frames, "
                 "duration_seconds, live, seed, num_cached_blocks, motion_score, priority, crf, "
                 "bitrate_bps, preset, pacing, lookahead_seconds, fragments)");
    }
    if (!s.ok()) return s;
  }
  const int lengths =
      seen.count("num_frames") + seen.count("duration_seconds") + seen.count("live");
  if (lengths > 1) return Bad("num_frames", "give one of num_frames, duration_seconds and live");
  return r;
}


}  // namespace longsana::server
