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

inline constexpr std::string_view kDitForward = "dit_forward";  // forward of a batch with it
inline constexpr std::string_view kMedia = "media";             // its VAE decode + encode

// From now on, `point` fails for `session_id` (every time it is reached).
void FailSession(std::string_view point, uint64_t session_id);
// Disarms every point.
void Reset();
bool Armed(std::string_view point, uint64_t session_id);

}  // namespace longsana::engine::fault_injection
