// A component's named parameters as at::Tensor, loaded strictly from a checkpoint.
// The names are the checkpoint keys (the diffusers/transformers names), so
// named_parameters() equals the file's keys for the parts we run.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/loader/checkpoint.h"
#include "engine/loader/param_spec.h"

namespace longsana::engine {

at::ScalarType ToScalarType(DType dtype);

// Copies one checkpoint tensor into a new tensor of `dtype` on `device`.
at::Tensor LoadTensor(const Checkpoint& checkpoint, const Checkpoint::Entry& entry,
                      at::ScalarType dtype, at::Device device);

// A zero-copy CPU view of a checkpoint tensor in its stored dtype. Read-only: the bytes are
// a private read-only mapping; the view is valid while `checkpoint` lives.
at::Tensor ViewTensor(const Checkpoint& checkpoint, const Checkpoint::Entry& entry);

using TensorMap = std::map<std::string, at::Tensor, std::less<>>;

// CheckStrictShapes on tensors in memory (an undefined tensor counts as missing), for
// modules built from tensors rather than a checkpoint.
absl::Status CheckStrictTensors(const ParamSpecs& expected, const TensorMap& tensors,
                                std::string_view component,
                                const StrictCheckOptions& options = {});

struct WeightLoadOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  StrictCheckOptions strict;
};

// Immutable after Load; thread-safe for reads.
class Weights {
 public:
  // Runs CheckStrict (every missing, unexpected and mis-shaped key in one InvalidArgument),
  // then copies each expected tensor, converted to options.dtype on options.device.
  static absl::StatusOr<Weights> Load(const ParamSpecs& specs, const Checkpoint& checkpoint,
                                      std::string_view component,
                                      const WeightLoadOptions& options = {});

  // Random N(0, std^2) tensors for every spec (benchmarks with the real configs, which
  // have no downloadable weights here). Norm weights come out random too: fine for timing.
  static Weights Random(const ParamSpecs& specs, const WeightLoadOptions& options,
                        uint64_t seed = 0, double std = 0.02);

  // The parameter named `name` (spec name, without the key prefix). Throws c10::Error when
  // absent: a programming error, since Load checked every spec.
  const at::Tensor& Get(std::string_view name) const;
  bool Has(std::string_view name) const { return tensors_.count(name) != 0; }

  const TensorMap& named_parameters() const { return tensors_; }
  int64_t num_params() const;
  uint64_t num_bytes() const;

 private:
  TensorMap tensors_;
};

}  // namespace longsana::engine
