#include "engine/models/gemma2/gemma2_model.h"

#include <torch/version.h>

#include <cmath>
#include <limits>

#include "engine/common/device_ops.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/loader/checkpoint.h"
#include "engine/loader/weights.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/model_directory.h"

// at::scaled_dot_product_attention with a `scale` argument exists from LibTorch 2.1 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define LONGSANA_GEMMA2_HAVE_SDPA 1
#else
#define LONGSANA_GEMMA2_HAVE_SDPA 0
#endif

namespace longsana::engine {
namespace {

// torch.finfo(dtype).min: the value transformers writes into hidden mask entries.
double LowestFinite(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16:
      return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
    case at::kHalf:
      return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
    case at::kDouble:
      return std::numeric_limits<double>::lowest();
    default:
      return static_cast<double>(std::numeric_limits<float>::lowest());
  }
}

// [..., d] -> cat(-x[..., d/2:], x[..., :d/2]).
at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// [B, nkv, S, d] -> [B, nkv * n_rep, S, d], each KV head repeated for n_rep consecutive
// query heads (transformers' repeat_kv).
at::Tensor RepeatKv(const at::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const int64_t b = x.size(0), h = x.size(1), s = x.size(2), d = x.size(3);
  // [B, nkv, 1, S, d] -> expand [B, nkv, n_rep, S, d] -> [B, nkv * n_rep, S, d]
  return x.unsqueeze(2).expand({b, h, n_rep, s, d}).reshape({b, h * n_rep, s, d});
}

}  // namespace

at::ScalarType Gemma2Options::ResolvedDtype() const {
  if (dtype) return *dtype;
  return device.is_cuda() ? at::kBFloat16 : at::kFloat;
}

absl::StatusOr<std::unique_ptr<Gemma2Encoder>> Gemma2Encoder::Load(const ModelDirectory& dir,
                                                                   const Gemma2Options& options) {
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint,
                            dir.OpenWeights("text_encoder"));
  return Load(dir.text_encoder, *checkpoint, options);
}

absl::StatusOr<std::unique_ptr<Gemma2Encoder>> Gemma2Encoder::Load(const Gemma2Config& config,
                                                                   const Checkpoint& checkpoint,
                                                                   const Gemma2Options& options) {
  WeightLoadOptions load;
  load.dtype = options.ResolvedDtype();
  load.device = options.device;
  load.strict.key_prefix = Gemma2KeyPrefix(checkpoint);
  load.strict.ignore_unexpected = IsGemma2IgnoredKey;
  LONGSANA_ASSIGN_OR_RETURN(
      Weights weights, Weights::Load(Gemma2ParamSpecs(config), checkpoint, "text_encoder", load));
  return FromParameters(config, weights.named_parameters(), options);
}

absl::StatusOr<std::unique_ptr<Gemma2Encoder>> Gemma2Encoder::FromParameters(
    const Gemma2Config& config, Gemma2Parameters parameters, const Gemma2Options& options) {
  LONGSANA_RETURN_IF_ERROR(config.Validate());
  const at::ScalarType dtype = options.ResolvedDtype();
  if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf) {
    return absl::InvalidArgumentError(StrCat(
        "text_encoder: dtype must be float32, bfloat16 or float16, got ", c10::toString(dtype)));
  }
  LONGSANA_RETURN_IF_ERROR(
      CheckStrictTensors(Gemma2ParamSpecs(config), parameters, "text_encoder"));

  std::unique_ptr<Gemma2Encoder> m(new Gemma2Encoder());
  m->config_ = config;
  m->options_ = options;
  m->dtype_ = dtype;
  if (options.softcap) m->softcap_value_ = config.attn_logit_softcapping;
  m->scaling_ = std::pow(config.query_pre_attn_scalar, -0.5);
  try {
    for (auto& [name, tensor] : parameters) {
      tensor =
          tensor.to(options.device, dtype, /*non_blocking=*/false, /*copy=*/false).contiguous();
    }
    auto norm_scale = [&](const std::string& name) {
      return (1.0 + parameters.at(name).to(at::kFloat)).contiguous();
    };
    m->embed_tokens_ = parameters.at("embed_tokens.weight");
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      const std::string p = StrCat("layers.", i, ".");
      Layer l;
      l.q_proj = parameters.at(p + "self_attn.q_proj.weight");
      l.k_proj = parameters.at(p + "self_attn.k_proj.weight");
      l.v_proj = parameters.at(p + "self_attn.v_proj.weight");
      l.o_proj = parameters.at(p + "self_attn.o_proj.weight");
      l.gate_proj = parameters.at(p + "mlp.gate_proj.weight");
      l.up_proj = parameters.at(p + "mlp.up_proj.weight");
      l.down_proj = parameters.at(p + "mlp.down_proj.weight");
      l.input_norm = norm_scale(p + "input_layernorm.weight");
      l.post_attention_norm = norm_scale(p + "post_attention_layernorm.weight");
      l.pre_feedforward_norm = norm_scale(p + "pre_feedforward_layernorm.weight");
      l.post_feedforward_norm = norm_scale(p + "post_feedforward_layernorm.weight");
      l.sliding = i % 2 == 0;
      m->layers_.push_back(std::move(l));
    }
    m->final_norm_ = norm_scale("norm.weight");
  } catch (const c10::Error& e) {
    return absl::InternalError(
        StrCat("text_encoder: moving weights failed: ", e.what_without_backtrace()));
  }
  m->parameters_ = std::move(parameters);
  return m;
}

int64_t Gemma2Encoder::num_params() const {
  int64_t n = 0;
  for (const auto& [name, t] : parameters_) n += t.numel();
  return n;
}

uint64_t Gemma2Encoder::num_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : parameters_) n += t.numel() * t.element_size();
  return n;
}

at::Tensor Gemma2Encoder::RmsNorm(const at::Tensor& x, const at::Tensor& scale) const {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + config_.rms_norm_eps);
  return (y * scale).to(x.scalar_type());
}

at::Tensor Gemma2Encoder::Attention(const Layer& layer, const at::Tensor& x, const at::Tensor& cos,
                                    const at::Tensor& sin, const at::Tensor& mask) const {
  const int64_t b = x.size(0), s = x.size(1);
  const int64_t nh = config_.num_attention_heads, nkv = config_.num_key_value_heads;
  const int64_t d = config_.head_dim;
  // [B, S, n*d] -> [B, S, n, d] -> [B, n, S, d]
  at::Tensor q = at::linear(x, layer.q_proj).view({b, s, nh, d}).transpose(1, 2);
  at::Tensor k = at::linear(x, layer.k_proj).view({b, s, nkv, d}).transpose(1, 2);
  at::Tensor v = at::linear(x, layer.v_proj).view({b, s, nkv, d}).transpose(1, 2);
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;
  k = RepeatKv(k, nh / nkv);
  v = RepeatKv(v, nh / nkv);

  at::Tensor out;
#if LONGSANA_GEMMA2_HAVE_SDPA
  // The released environment runs this exact call (transformers' SDPA path: repeated KV,
  // the 4-D additive mask, explicit scale, no soft-cap); on CUDA it also avoids
  // materialising bf16 probabilities.
  if (!softcap_value_ && x.is_cuda()) {
    out = at::scaled_dot_product_attention(q, k, v, mask, 0.0, /*is_causal=*/false, scaling_);
  }
#endif
  if (!out.defined()) {
    // [B, nh, S, d] x [B, nh, d, S] -> [B, nh, S, S]. In-place updates of this fresh tensor
    // compute exactly what HF's out-of-place expressions do, without the extra S x S buffers.
    at::Tensor scores = at::matmul(q, k.transpose(2, 3)).mul_(scaling_);
    if (softcap_value_) scores.div_(*softcap_value_).tanh_().mul_(*softcap_value_);
    scores.add_(mask);
    at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
    out = at::matmul(probs, v);  // [B, nh, S, d]
  }
  // [B, nh, S, d] -> [B, S, nh, d] -> [B, S, nh * d]
  out = out.transpose(1, 2).reshape({b, s, nh * d});
  return at::linear(out, layer.o_proj);
}

at::Tensor Gemma2Encoder::Forward(const at::Tensor& ids_in, const at::Tensor& mask_in,
                                  Gemma2Trace* trace) const {
  TORCH_CHECK(ids_in.dim() == 2, "Gemma2Encoder: ids must be [B, S], got ", ids_in.sizes());
  TORCH_CHECK(mask_in.sizes() == ids_in.sizes(), "Gemma2Encoder: mask ", mask_in.sizes(),
              " must match ids ", ids_in.sizes());
  TORCH_CHECK(!at::isFloatingType(ids_in.scalar_type()) && ids_in.scalar_type() != at::kBool,
              "Gemma2Encoder: ids must be integers");
  const int64_t b = ids_in.size(0), s = ids_in.size(1);
  TORCH_CHECK(b > 0 && s > 0, "Gemma2Encoder: empty input ", ids_in.sizes());
  const at::Device device = options_.device;
  at::Tensor ids;
  if (ids_in.device().is_cpu()) {
    // Out-of-range ids would be a device-side assert on CUDA: check them on the host, then
    // upload (a copy on the CPU, so every device counts the same transfers).
    const int64_t lo = ids_in.min().item<int64_t>(), hi = ids_in.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < config_.vocab_size, "Gemma2Encoder: token ids must be in [0, ",
                config_.vocab_size, "), got [", lo, ", ", hi, "]");
    ids = device::Upload(ids_in, device, at::kLong);
  } else {
    ids = device::ToDevice(ids_in, device, at::kLong);
  }
  const auto opts = at::TensorOptions().dtype(dtype_).device(device);

  // Additive mask [B, 1, S, S] in the activation dtype (see the header).
  const at::Tensor pos = at::arange(s, at::TensorOptions().dtype(at::kLong).device(device));
  const at::Tensor query_pos = pos.view({s, 1});  // [S] -> [S, 1]
  const at::Tensor key_pos = pos.view({1, s});    // [S] -> [1, S]
  // [B, S] -> [B, 1, 1, S]: padding hides a key from every query row.
  const at::Tensor mask = mask_in.device().is_cpu()
                              ? device::Upload(mask_in, device, mask_in.scalar_type())
                              : device::ToDevice(mask_in, device, mask_in.scalar_type());
  const at::Tensor padded = mask.eq(0).view({b, 1, 1, s});
  // [S, S] -> [1, 1, S, S], | [B, 1, 1, S] -> [B, 1, S, S]
  const at::Tensor hidden = (key_pos > query_pos).view({1, 1, s, s}).logical_or(padded);
  const double lowest = LowestFinite(dtype_);
  const at::Tensor full_mask = at::zeros({b, 1, s, s}, opts).masked_fill_(hidden, lowest);
  at::Tensor sliding_mask = full_mask;
  if (config_.sliding_window && s > *config_.sliding_window) {
    // [S, S] -> [1, 1, S, S]
    const at::Tensor outside = (key_pos <= query_pos - *config_.sliding_window).view({1, 1, s, s});
    sliding_mask = full_mask.masked_fill(outside, lowest);
  }

  // RoPE, fp32 angles (binding decision 6): inv_freq = 1 / theta^(arange(0, d, 2) / d).
  const int64_t d = config_.head_dim;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor exponent =
      at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong).device(device)).to(at::kFloat) /
      static_cast<double>(d);
  const at::Tensor inv_freq = at::reciprocal(at::pow(config_.rope_theta, exponent));
  // [S, 1] * [1, d/2] -> [S, d/2]: one fp32 product per angle, as HF's K=1 matmul.
  const at::Tensor freqs = pos.to(f32).view({s, 1}) * inv_freq.view({1, d / 2});
  const at::Tensor emb = at::cat({freqs, freqs}, -1);  // [S, d]
  // [S, d] -> [1, 1, S, d], broadcast over batch and heads.
  const at::Tensor cos = emb.cos().to(dtype_).view({1, 1, s, d});
  const at::Tensor sin = emb.sin().to(dtype_).view({1, 1, s, d});

  // The normaliser is a tensor of the activation dtype, as in transformers.
  const at::Tensor normalizer = at::scalar_tensor(
      std::sqrt(static_cast<double>(config_.hidden_size)), at::TensorOptions().dtype(dtype_));
  at::Tensor h = at::embedding(embed_tokens_, ids) * normalizer;  // [B, S, hidden]

  for (const Layer& layer : layers_) {
    if (trace != nullptr) trace->layer_inputs.push_back(h);
    at::Tensor a = Attention(layer, RmsNorm(h, layer.input_norm), cos, sin,
                             layer.sliding ? sliding_mask : full_mask);
    h = h + RmsNorm(a, layer.post_attention_norm);
    at::Tensor x = RmsNorm(h, layer.pre_feedforward_norm);
    at::Tensor m =
        at::linear(at::gelu(at::linear(x, layer.gate_proj), "tanh") * at::linear(x, layer.up_proj),
                   layer.down_proj);
    h = h + RmsNorm(m, layer.post_feedforward_norm);
  }
  return RmsNorm(h, final_norm_);
}

}  // namespace longsana::engine
