// Parameter tables: the names and shapes a network expects, derived from its config alone.
// They let us count parameters and check a checkpoint strictly without allocating weights.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace longsana::engine {

class Checkpoint;

struct ParamSpec {
  std::string name;  // the checkpoint key
  std::vector<int64_t> shape;

  int64_t numel() const;
};
using ParamSpecs = std::vector<ParamSpec>;

int64_t CountParams(const ParamSpecs& specs);

// Formats a shape as "[2240, 16, 1, 2, 2]".
std::string ShapeToString(const std::vector<int64_t>& shape);

struct StrictCheckOptions {
  // Prefix prepended to every expected name when looking it up in the checkpoint
  // (e.g. "model." for the causal-LM layout of gemma-2-2b-it).
  std::string key_prefix;
  // Checkpoint keys for which this returns true are allowed without being expected
  // (e.g. the VAE encoder, which T2V never runs).
  std::function<bool(std::string_view key)> ignore_unexpected;
};

// Keys and shapes to check: a checkpoint's entries or a module's tensors.
using KeyShapes = std::map<std::string, std::vector<int64_t>, std::less<>>;

// Compares `expected` (each name behind options.key_prefix) with `present`. On mismatch
// returns one InvalidArgument, headed by `source`, that lists every missing, unexpected and
// mis-shaped key with its shapes, one per line.
absl::Status CheckStrictShapes(const ParamSpecs& expected, const KeyShapes& present,
                               std::string_view source, const StrictCheckOptions& options = {});

// Compares `expected` with the checkpoint's tensors. On mismatch returns one
// InvalidArgument that lists every missing, unexpected and mis-shaped key (each with its
// shapes), headed by `component`, never just the first problem.
absl::Status CheckStrict(const ParamSpecs& expected, const Checkpoint& checkpoint,
                         std::string_view component, const StrictCheckOptions& options = {});

}  // namespace longsana::engine
