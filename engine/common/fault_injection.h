// Fault injection points, for testing that a failure in one session ends only that session.
//
// The runner asks Armed(point, session) at a few places where real failures happen (a DiT
// forward that throws, a VAE decode or encode that fails) and, when armed, fails exactly
// as the real error would: the code after the check is the production path. Only tests
// arm points; no flag or environment variable reaches them, and while nothing is armed a
// check is one relaxed atomic load.
#pragma once

#include <cstdint>
#include <string_view>

namespace longsana::engine::fault_injection {

// After the first layer of any DiT forward whose batch holds the session (state staged).
inline constexpr std::string_view kDitForward = "dit_forward";
// The same, only in the session's cache-pass forwards (where state is committed).
inline constexpr std::string_view kDitCachePass = "dit_cache_pass";
// In the middle of the session's VAE decode of a block (before its second latent frame,
// or its only one), with the decoder cache part-updated.
inline constexpr std::string_view kMediaDecode = "media_decode";

// From now on, `point` fails for `session_id`: every time it is reached, or only the next
// `times` times.
void FailSession(std::string_view point, uint64_t session_id, int times = -1);
// Disarms every point.
void Reset();
// True (and one use consumed) when `point` should fail for `session_id` now.
bool Armed(std::string_view point, uint64_t session_id);

}  // namespace longsana::engine::fault_injection
