// The one conversion of compute-zone exceptions (LibTorch, allocation) into a Status, for
// the runner's and workers' catch-all handlers. Private to engine/runner.
#pragma once

#include <c10/util/Exception.h>

#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "engine/common/str_util.h"

namespace longsana::engine {

// Call only inside a catch block: ResourceExhausted for out-of-memory (device or host),
// Internal otherwise, prefixed with `what` (e.g. "DiT forward").
inline absl::Status StatusFromCurrentException(std::string_view what) {
  try {
    throw;
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (msg.find("out of memory") != std::string::npos) {
      return absl::ResourceExhaustedError(StrCat(what, ": out of device memory"));
    }
    return absl::InternalError(StrCat(what, ": ", msg));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(StrCat(what, ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat(what, ": ", e.what()));
  } catch (...) {
    return absl::InternalError(StrCat(what, ": unknown exception"));
  }
}

}  // namespace longsana::engine
