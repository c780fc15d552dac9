// The Gemma-2 text encoder (model.md §2.3): transformers' Gemma2Model forward, returning
// last_hidden_state (after the final RMSNorm); no LM head.
//
// Numerics follow transformers v4.47 (the goldens), with model.md's binding decisions:
//  1. attention logit soft-capping is OFF by default, as the released environment
//     (transformers 4.57.3, SDPA path) computes; Gemma2Options::softcap applies
//     `cap * tanh(scores / cap)` with cap = config.attn_logit_softcapping (eager behaviour).
//  6. RoPE angles in fp32: inv_freq = 1 / theta^(2i/d) and pos * inv_freq in fp32, then
//     cos/sin cast to the activation dtype (rotate-half convention).
// Masking reproduces transformers' 4-D additive mask: key j is hidden from query i when
// j > i, when mask[j] == 0, or (even layers) when i - j >= sliding_window; hidden entries get
// the lowest finite value of the activation dtype (not -inf). Hence pad query rows attend to
// the non-pad prefix, and a row with every key hidden attends uniformly, as in HF.
// Position ids are 0..S-1 whatever the mask (HF without explicit position_ids).
//
// Precision: weights and activations in Gemma2Options::dtype (default fp32 on CPU, bf16 on
// CUDA); RMSNorm and softmax compute in fp32 and cast back, as the reference does.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/loader/weights.h"
#include "engine/models/gemma2/gemma2_config.h"

namespace longsana::engine {

class Checkpoint;
struct ModelDirectory;

struct Gemma2Options {
  at::Device device = at::kCPU;
  // Weights/activations dtype: kFloat, kBFloat16 or kHalf. Unset: fp32 on CPU, bf16 on CUDA.
  std::optional<at::ScalarType> dtype;
  // Apply config.attn_logit_softcapping (model.md binding decision 1; default off).
  bool softcap = false;

  at::ScalarType ResolvedDtype() const;
};

// Intermediates of one Forward, for parity debugging.
struct Gemma2Trace {
  std::vector<at::Tensor> layer_inputs;  // [B, S, hidden] entering each decoder layer
};

using Gemma2Parameters = TensorMap;

// Immutable after construction; Forward is const and thread-safe (callers may run it from
// several threads at once; each call allocates its own activations).
class Gemma2Encoder {
 public:
  // Weights of `dir`/text_encoder (single file or shards; keys without prefix or with the
  // `model.` prefix of the causal-LM checkpoints, whose lm_head is ignored).
  // Errors: NotFound (no weights), InvalidArgument (every missing/unexpected/mis-shaped key,
  // or bad options), Internal (conversion failure, e.g. out of device memory).
  static absl::StatusOr<std::unique_ptr<Gemma2Encoder>> Load(const ModelDirectory& dir,
                                                             const Gemma2Options& options);
  static absl::StatusOr<std::unique_ptr<Gemma2Encoder>> Load(const Gemma2Config& config,
                                                             const Checkpoint& checkpoint,
                                                             const Gemma2Options& options);
  // From named parameters (the Gemma2ParamSpecs names, no prefix), e.g. random weights for
  // benchmarks. Each tensor is converted to the options' device and dtype. InvalidArgument
  // lists every missing, unexpected and mis-shaped name.
  static absl::StatusOr<std::unique_ptr<Gemma2Encoder>> FromParameters(
      const Gemma2Config& config, Gemma2Parameters parameters, const Gemma2Options& options);

  // ids: [B, S] integer token ids in [0, vocab_size); mask: [B, S] (any integer/bool/float
  // dtype, nonzero = token, 0 = padding). Either may live on any device. Host tensors are
  // uploaded without a host wait (device::Upload), and host ids are range-checked before; ids
  // already on a device are not checked, as that would make the host wait for the device.
  // Returns last_hidden_state [B, S, hidden] in dtype() on device(). Throws c10::Error on bad
  // shapes or ids (compute-zone contract).
  at::Tensor Forward(const at::Tensor& ids, const at::Tensor& mask,
                     Gemma2Trace* trace = nullptr) const;

  const Gemma2Config& config() const { return config_; }
  at::Device device() const { return options_.device; }
  at::ScalarType dtype() const { return dtype_; }
  bool softcap() const { return softcap_value_.has_value(); }
  const Gemma2Parameters& named_parameters() const { return parameters_; }
  int64_t num_params() const;
  uint64_t num_bytes() const;

 private:
  struct Layer {
    at::Tensor q_proj, k_proj, v_proj, o_proj;  // [out, in]
    at::Tensor gate_proj, up_proj, down_proj;
    // (1 + w) in fp32, precomputed: Gemma's RMSNorm scales by (1 + weight).
    at::Tensor input_norm, post_attention_norm, pre_feedforward_norm, post_feedforward_norm;
    bool sliding = false;  // even layers use the sliding window
  };

  Gemma2Encoder() = default;
  at::Tensor Attention(const Layer& layer, const at::Tensor& x, const at::Tensor& cos,
                       const at::Tensor& sin, const at::Tensor& mask) const;
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& scale) const;

  Gemma2Config config_;
  Gemma2Options options_;
  at::ScalarType dtype_ = at::kFloat;
  std::optional<double> softcap_value_;
  double scaling_ = 1.0;  // query_pre_attn_scalar^-0.5
  Gemma2Parameters parameters_;
  at::Tensor embed_tokens_;  // [vocab, hidden]
  std::vector<Layer> layers_;
  at::Tensor final_norm_;  // (1 + w) in fp32
};

}  // namespace longsana::engine
