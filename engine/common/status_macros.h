// Status propagation helpers for control code (see HOUSE_STYLE.md, "Errors").
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LONGSANA_STATUS_CONCAT_INNER_(a, b) a##b
#define LONGSANA_STATUS_CONCAT_(a, b) LONGSANA_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define LONGSANA_RETURN_IF_ERROR(expr)                \
  do {                                                \
    ::absl::Status longsana_status_ = (expr);         \
    if (!longsana_status_.ok()) return longsana_status_; \
  } while (false)

// `lhs = *expr` when `expr` (an absl::StatusOr<T>) is OK, otherwise returns its status.
#define LONGSANA_ASSIGN_OR_RETURN(lhs, expr) \
  LONGSANA_ASSIGN_OR_RETURN_IMPL_(LONGSANA_STATUS_CONCAT_(longsana_statusor_, __LINE__), lhs, expr)

#define LONGSANA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()
