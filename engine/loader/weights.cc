#include "engine/loader/weights.h"

#include <ATen/CPUGeneratorImpl.h>

#include "engine/common/str_util.h"

namespace longsana::engine {

at::ScalarType ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kF64: return at::kDouble;
    case DType::kF32: return at::kFloat;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kI64: return at::kLong;
    case DType::kI32: return at::kInt;
    case DType::kI16: return at::kShort;
    case DType::kI8: return at::kChar;
    case DType::kU8: return at::kByte;
    case DType::kBool: return at::kBool;
  }
  return at::kFloat;
}

at::Tensor ViewTensor(const Checkpoint& checkpoint, const Checkpoint::Entry& entry) {
  std::span<const uint8_t> bytes = checkpoint.Bytes(entry);
  // from_blob never writes through the pointer unless the caller does; the const_cast only
  // satisfies its signature.
  return at::from_blob(const_cast<uint8_t*>(bytes.data()), entry.info->shape,
                       at::TensorOptions().dtype(ToScalarType(entry.info->dtype)));
}

at::Tensor LoadTensor(const Checkpoint& checkpoint, const Checkpoint::Entry& entry,
                      at::ScalarType dtype, at::Device device) {
  at::Tensor view = ViewTensor(checkpoint, entry);
  // Always a fresh, owned, contiguous tensor: the mapping may be unaligned and is read-only.
  at::Tensor owned = at::empty(entry.info->shape, at::TensorOptions().dtype(view.scalar_type()));
  owned.copy_(view);
  return owned.to(device, dtype, /*non_blocking=*/false, /*copy=*/false);
}

absl::Status CheckStrictTensors(const ParamSpecs& expected, const TensorMap& tensors,
                                std::string_view component,
                                const StrictCheckOptions& options) {
  KeyShapes present;
  for (const auto& [name, t] : tensors) {
    if (t.defined()) present.emplace(name, t.sizes().vec());
  }
  return CheckStrictShapes(expected, present, StrCat(component, ": tensors"), options);
}

absl::StatusOr<Weights> Weights::Load(const ParamSpecs& specs, const Checkpoint& checkpoint,
                                      std::string_view component,
                                      const WeightLoadOptions& options) {
  absl::Status strict = CheckStrict(specs, checkpoint, component, options.strict);
  if (!strict.ok()) return strict;
  Weights w;
  try {
    for (const auto& spec : specs) {
      const Checkpoint::Entry* entry = checkpoint.Find(options.strict.key_prefix + spec.name);
      w.tensors_.emplace(spec.name, LoadTensor(checkpoint, *entry, options.dtype, options.device));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        StrCat(component, ": converting weights failed: ", e.what_without_backtrace()));
  }
  return w;
}

Weights Weights::Random(const ParamSpecs& specs, const WeightLoadOptions& options,
                        uint64_t seed, double std) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  Weights w;
  for (const auto& spec : specs) {
    at::Tensor t = at::normal(0.0, std, spec.shape, gen, at::TensorOptions().dtype(at::kFloat));
    w.tensors_.emplace(spec.name, t.to(options.device, options.dtype));
  }
  return w;
}

const at::Tensor& Weights::Get(std::string_view name) const {
  auto it = tensors_.find(name);
  TORCH_CHECK(it != tensors_.end(), "no parameter named ", std::string(name));
  return it->second;
}

int64_t Weights::num_params() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.numel();
  return n;
}

uint64_t Weights::num_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.numel() * t.element_size();
  return n;
}

}  // namespace longsana::engine
