#include "engine/models/wan_vae/wan_vae_decoder.h"

#include <cmath>
#include <optional>
#include <utility>

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/loader/param_spec.h"
#include "engine/loader/weights.h"
#include "engine/models/wan_vae/wan_vae_params.h"

namespace longsana::engine {

struct WanVaeDecoder::Conv {
  at::Tensor weight;  // [out, in, kt, kh, kw]
  at::Tensor bias;    // [out]
  int64_t pad_hw = 0;
  int64_t slot = -1;  // cache slot; -1 for 1x1x1 convs (no temporal context)
};

struct WanVaeDecoder::ResBlock {
  at::Tensor norm1, norm2;  // [C, 1, 1, 1]
  Conv conv1, conv2;
  std::optional<Conv> shortcut;
};

struct WanVaeDecoder::Attention {
  at::Tensor norm;                    // [C, 1, 1]
  at::Tensor qkv_weight, qkv_bias;    // [3C, C, 1, 1], [3C]
  at::Tensor proj_weight, proj_bias;  // [C, C, 1, 1], [C]
};

struct WanVaeDecoder::UpStage {
  std::vector<ResBlock> resnets;
  bool upsample = false;
  bool temporal = false;
  Conv time_conv;              // temporal: C -> 2C, kernel (3, 1, 1)
  at::Tensor resample_weight;  // [C/2, C, 1, 3, 3] (the Conv2d as a 1x3x3 Conv3d)
  at::Tensor resample_bias;    // [C/2]
};

namespace {

// F.normalize(x, dim=1) * sqrt(C) * gamma with eps 1e-12 (model.md §8.2), in the
// reference's operation order. The L2 norm is sqrt(sum(x * x)): LibTorch 1.13's CPU norm
// kernel is much slower reducing over the strided channel dim (2x at 96 channels, 160x at 8);
// the two agree to ~1 ulp.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& gamma) {
  const double scale = std::sqrt(static_cast<double>(x.size(1)));
  at::Tensor denom = at::mul(x, x).sum(1, /*keepdim=*/true).sqrt_().clamp_min_(1e-12);
  return at::div(x, denom).mul_(scale).mul_(gamma);
}

// SiLU(RmsNorm(x)), the pre-activation of every decoder conv.
at::Tensor NormSilu(const at::Tensor& x, const at::Tensor& gamma) {
  at::Tensor y = RmsNorm(x, gamma);
  at::silu_(y);
  return y;
}

absl::StatusOr<at::Device> ParseDevice(const std::string& name) {
  try {
    at::Device device(name);
    if (device.is_cuda() && !at::hasCUDA()) {
      return absl::FailedPreconditionError(
          StrCat("VaeOptions.device: '", name, "' requested but CUDA is not available"));
    }
    if (!device.is_cpu() && !device.is_cuda()) {
      return absl::InvalidArgumentError(
          StrCat("VaeOptions.device: expected cpu or cuda, got '", name, "'"));
    }
    return device;
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(StrCat("VaeOptions.device: cannot parse '", name, "'"));
  }
}

}  // namespace

absl::Status VaeOptions::Validate() const {
  if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf) {
    return absl::InvalidArgumentError(
        StrCat("VaeOptions.dtype: expected float32, bfloat16 or float16, got ",
               std::string(c10::toString(dtype))));
  }
  if (max_frames_per_pass < 1) {
    return absl::InvalidArgumentError(
        StrCat("VaeOptions.max_frames_per_pass: must be >= 1, got ", max_frames_per_pass));
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------------------
// WanVaeCache

WanVaeCache::WanVaeCache(WanVaeCacheLayout layout, at::Tensor buffer)
    : layout_(std::move(layout)), buffer_(std::move(buffer)) {
  slots_.reserve(layout_.slots.size());
  for (const WanVaeCacheSlot& s : layout_.slots) {
    slots_.push_back(buffer_.narrow(0, s.offset, s.numel()).view(s.shape));
  }
}

int64_t WanVaeCache::bytes() const { return static_cast<int64_t>(buffer_.storage().nbytes()); }

void WanVaeCache::Reset() {
  buffer_.zero_();
  frames_decoded_ = 0;
}

// ----------------------------------------------------------------------------------------
// Loading

WanVaeDecoder::WanVaeDecoder(WanVaeConfig config, VaeOptions options, at::Device device)
    : config_(std::move(config)), options_(std::move(options)), device_(device) {}

WanVaeDecoder::~WanVaeDecoder() = default;

absl::StatusOr<std::unique_ptr<WanVaeDecoder>> WanVaeDecoder::Load(const ModelDirectory& dir,
                                                                   const VaeOptions& options) {
  LONGSANA_RETURN_IF_ERROR(options.Validate());
  LONGSANA_ASSIGN_OR_RETURN(at::Device device, ParseDevice(options.device));
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, dir.OpenWeights("vae"));
  WeightLoadOptions load;
  load.dtype = options.dtype;
  load.device = device;
  load.strict.ignore_unexpected = IsWanVaeEncoderKey;
  LONGSANA_ASSIGN_OR_RETURN(
      Weights weights, Weights::Load(WanVaeDecoderParamSpecs(dir.vae), *checkpoint, "vae", load));
  return FromTensors(dir.vae, weights.named_parameters(), options);
}

absl::StatusOr<std::unique_ptr<WanVaeDecoder>> WanVaeDecoder::FromTensors(
    const WanVaeConfig& config, const TensorMap& tensors,
    const VaeOptions& options) {
  LONGSANA_RETURN_IF_ERROR(config.Validate());
  LONGSANA_RETURN_IF_ERROR(options.Validate());
  LONGSANA_ASSIGN_OR_RETURN(at::Device device, ParseDevice(options.device));

  const ParamSpecs specs = WanVaeDecoderParamSpecs(config);
  StrictCheckOptions strict;
  strict.ignore_unexpected = IsWanVaeEncoderKey;
  LONGSANA_RETURN_IF_ERROR(CheckStrictTensors(specs, tensors, "vae", strict));

  std::unique_ptr<WanVaeDecoder> decoder(new WanVaeDecoder(config, options, device));
  try {
    // "cuda" -> "cuda:<current>", so that device() compares equal to the tensors' device.
    decoder->device_ = at::empty({0}, at::TensorOptions().device(device)).device();
    device = decoder->device_;
    for (const ParamSpec& spec : specs) {
      at::Tensor t = tensors.find(spec.name)->second;
      decoder->params_.emplace(spec.name, t.to(device, options.dtype).contiguous());
    }
    // Reference: std and mean as fp32 tensors, scale = [mean, 1.0 / std] (1/std in fp32).
    std::vector<float> mean(config.latents_mean.begin(), config.latents_mean.end());
    std::vector<float> inv_std;
    for (double s : config.latents_std) inv_std.push_back(1.0f / static_cast<float>(s));
    const int64_t z = config.z_dim;
    decoder->mean_ = at::tensor(mean, at::kFloat).view({1, z, 1, 1, 1}).to(device);
    decoder->inv_std_ = at::tensor(inv_std, at::kFloat).view({1, z, 1, 1, 1}).to(device);
    decoder->Build();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        StrCat("vae: preparing the decoder failed: ", e.what_without_backtrace()));
  }
  return decoder;
}

const at::Tensor& WanVaeDecoder::P(const std::string& name) const {
  auto it = params_.find(name);
  TORCH_CHECK(it != params_.end(), "vae: no parameter named ", name);
  return it->second;
}

// Builds the module tree from params_ following the walk of WanVaeDecoderParamSpecs and
// ComputeWanVaeCacheLayout; slot indices are assigned in execution order and checked
// against the layout's names so the two can never disagree.
void WanVaeDecoder::Build() {
  WanVaeCacheLayout layout = ComputeWanVaeCacheLayout(config_, 1, 1).value();
  size_t next_slot = 0;
  auto conv = [&](const std::string& prefix, bool cached) {
    Conv c;
    c.weight = P(prefix + ".weight");
    c.bias = P(prefix + ".bias");
    c.pad_hw = (c.weight.size(3) - 1) / 2;
    if (cached) {
      TORCH_CHECK(next_slot < layout.slots.size() && layout.slots[next_slot].conv == prefix,
                  "vae: cache layout out of step at ", prefix);
      c.slot = static_cast<int64_t>(next_slot++);
    }
    return c;
  };
  auto residual = [&](const std::string& p) {
    ResBlock b;
    b.norm1 = P(p + ".norm1.gamma");
    b.conv1 = conv(p + ".conv1", true);
    b.norm2 = P(p + ".norm2.gamma");
    b.conv2 = conv(p + ".conv2", true);
    if (params_.count(p + ".conv_shortcut.weight") != 0)
      b.shortcut = conv(p + ".conv_shortcut", false);
    return b;
  };

  post_quant_conv_ = std::make_unique<Conv>(conv("post_quant_conv", false));
  conv_in_ = std::make_unique<Conv>(conv("decoder.conv_in", true));
  mid_resnets_.push_back(residual("decoder.mid_block.resnets.0"));
  mid_attention_ = std::make_unique<Attention>();
  const std::string a = "decoder.mid_block.attentions.0";
  mid_attention_->norm = P(a + ".norm.gamma");
  mid_attention_->qkv_weight = P(a + ".to_qkv.weight");
  mid_attention_->qkv_bias = P(a + ".to_qkv.bias");
  mid_attention_->proj_weight = P(a + ".proj.weight");
  mid_attention_->proj_bias = P(a + ".proj.bias");
  mid_resnets_.push_back(residual("decoder.mid_block.resnets.1"));

  const std::vector<bool> up_t = config_.temperal_upsample();
  const size_t num_stages = config_.dim_mult.size();
  for (size_t i = 0; i < num_stages; ++i) {
    const std::string p = StrCat("decoder.up_blocks.", i);
    UpStage stage;
    for (int64_t j = 0; j <= config_.num_res_blocks; ++j) {
      stage.resnets.push_back(residual(StrCat(p, ".resnets.", j)));
    }
    if (i + 1 < num_stages) {
      const std::string u = p + ".upsamplers.0";
      stage.upsample = true;
      stage.temporal = up_t[i];
      if (stage.temporal) stage.time_conv = conv(u + ".time_conv", true);
      stage.resample_weight = P(u + ".resample.1.weight").unsqueeze(2);
      stage.resample_bias = P(u + ".resample.1.bias");
    }
    up_stages_.push_back(std::move(stage));
  }
  norm_out_ = P("decoder.norm_out.gamma");
  conv_out_ = std::make_unique<Conv>(conv("decoder.conv_out", true));
  TORCH_CHECK(next_slot == layout.slots.size(), "vae: cache layout has ", layout.slots.size(),
              " slots, the network uses ", next_slot);
  num_slots_ = next_slot;
}

// ----------------------------------------------------------------------------------------
// Caches

absl::StatusOr<int64_t> WanVaeDecoder::CacheBytes(int64_t latent_h, int64_t latent_w) const {
  LONGSANA_ASSIGN_OR_RETURN(WanVaeCacheLayout layout,
                            ComputeWanVaeCacheLayout(config_, latent_h, latent_w));
  return layout.bytes(static_cast<int64_t>(c10::elementSize(options_.dtype)));
}

absl::StatusOr<std::unique_ptr<WanVaeCache>> WanVaeDecoder::NewCache(int64_t latent_h,
                                                                     int64_t latent_w) const {
  LONGSANA_ASSIGN_OR_RETURN(WanVaeCacheLayout layout,
                            ComputeWanVaeCacheLayout(config_, latent_h, latent_w));
  try {
    at::Tensor buffer =
        at::zeros({layout.numel}, at::TensorOptions().dtype(options_.dtype).device(device_));
    return std::unique_ptr<WanVaeCache>(new WanVaeCache(std::move(layout), std::move(buffer)));
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(
        StrCat("vae: allocating the decoder cache failed: ", e.what_without_backtrace()));
  }
}

// ----------------------------------------------------------------------------------------
// Forward

at::Tensor WanVaeDecoder::DenormalizeLatent(const at::Tensor& z) const {
  TORCH_CHECK(z.dim() == 5 && z.size(1) == config_.z_dim, "vae: latent must be [B, ", config_.z_dim,
              ", T, h, w], got ", z.sizes());
  return at::div(z.to(device_, at::kFloat), inv_std_).add_(mean_);
}

at::Tensor WanVaeDecoder::DecodeBlock(
    const at::Tensor& z, WanVaeCache* cache,
    const std::function<void(int64_t latent_frame)>& before_pass) const {
  TORCH_CHECK(cache != nullptr, "vae: DecodeBlock needs a cache");
  TORCH_CHECK(cache->slots_.size() == num_slots_, "vae: cache was made for another decoder");
  TORCH_CHECK(z.dim() == 5 && z.size(0) == 1 && z.size(1) == config_.z_dim && z.size(2) >= 1,
              "vae: latent must be [1, ", config_.z_dim, ", T >= 1, h, w], got ", z.sizes());
  TORCH_CHECK(z.size(3) == cache->latent_h() && z.size(4) == cache->latent_w(), "vae: latent is ",
              z.size(3), "x", z.size(4), " but the cache was made for ", cache->latent_h(), "x",
              cache->latent_w());
  TORCH_CHECK(cache->buffer_.device() == device_ && cache->buffer_.scalar_type() == options_.dtype,
              "vae: cache device/dtype differ from the decoder's");
  const at::Tensor z_vae = DenormalizeLatent(z).to(options_.dtype);  // [1, z_dim, T, h, w]
  const int64_t num_latent = z.size(2);
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < num_latent;) {
    // Latent frame 0 of a stream skips the time_convs, so it always goes through alone.
    const int64_t n =
        cache->frames_decoded_ == 0 ? 1 : std::min(options_.max_frames_per_pass, num_latent - t);
    if (before_pass) before_pass(t);
    outs.push_back(DecodePass(z_vae.narrow(2, t, n), cache));
    cache->frames_decoded_ += n;
    t += n;
  }
  at::Tensor video = outs.size() == 1 ? outs[0] : at::cat(outs, 2);  // [1, 3, F, 8h, 8w]
  return video.to(at::kFloat);
}

at::Tensor WanVaeDecoder::DecodePass(const at::Tensor& z_vae, WanVaeCache* cache) const {
  at::Tensor x = at::conv3d(z_vae, post_quant_conv_->weight, post_quant_conv_->bias);
  x = CachedConv(*conv_in_, x, cache);
  x = Residual(mid_resnets_[0], x, cache);
  x = Attend(*mid_attention_, x);
  x = Residual(mid_resnets_[1], x, cache);
  for (const UpStage& stage : up_stages_) {
    for (const ResBlock& block : stage.resnets) x = Residual(block, x, cache);
    if (stage.upsample) x = Upsample(stage, x, cache);
  }
  x = NormSilu(x, norm_out_);
  return CachedConv(*conv_out_, x, cache);
}

// Causal conv with the cached history standing in for the 2 left padding frames:
// conv(cat(history, x)) with no temporal padding; the history becomes the last 2 frames
// of that concatenation (model.md §8.4).
at::Tensor WanVaeDecoder::CachedConv(const Conv& conv, const at::Tensor& x,
                                     WanVaeCache* cache) const {
  at::Tensor& history = cache->slots_[conv.slot];  // [1, C, 2, H, W]
  TORCH_CHECK(
      history.size(1) == x.size(1) && history.size(3) == x.size(3) && history.size(4) == x.size(4),
      "vae: cache slot ", cache->layout_.slots[conv.slot].conv, " is ", history.sizes(),
      ", input is ", x.sizes());
  at::Tensor padded = at::cat({history, x}, 2);  // [1, C, 2 + T, H, W]
  history.copy_(padded.narrow(2, padded.size(2) - kWanVaeCacheFrames, kWanVaeCacheFrames));
  return at::conv3d(padded, conv.weight, conv.bias, {1, 1, 1}, {0, conv.pad_hw, conv.pad_hw});
}

at::Tensor WanVaeDecoder::Residual(const ResBlock& block, const at::Tensor& x,
                                   WanVaeCache* cache) const {
  const at::Tensor h =
      block.shortcut ? at::conv3d(x, block.shortcut->weight, block.shortcut->bias) : x;
  at::Tensor y = NormSilu(x, block.norm1);
  y = CachedConv(block.conv1, y, cache);
  y = NormSilu(y, block.norm2);
  y = CachedConv(block.conv2, y, cache);
  return y.add_(h);
}

// Single-head softmax attention over the H*W tokens of each frame separately.
at::Tensor WanVaeDecoder::Attend(const Attention& attn, const at::Tensor& x) const {
  const int64_t c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
  // [1, C, T, H, W] -> [T, C, H, W]
  at::Tensor frames = x.permute({0, 2, 1, 3, 4}).reshape({t, c, h, w});
  frames = RmsNorm(frames, attn.norm);
  at::Tensor qkv = at::conv2d(frames, attn.qkv_weight, attn.qkv_bias);  // [T, 3C, H, W]
  // [T, 3C, H, W] -> [T, 1, 3C, HW] -> [T, 1, HW, 3C]
  qkv = qkv.reshape({t, 1, 3 * c, h * w}).permute({0, 1, 3, 2}).contiguous();
  std::vector<at::Tensor> parts = qkv.chunk(3, -1);  // q, k, v: [T, 1, HW, C]
  at::Tensor scores = at::matmul(parts[0], parts[1].transpose(-2, -1))
                          .mul_(1.0 / std::sqrt(static_cast<double>(c)));  // [T, 1, HW, HW]
  at::Tensor out = at::matmul(scores.softmax(-1), parts[2]);               // [T, 1, HW, C]
  // [T, 1, HW, C] -> [T, C, HW] -> [T, C, H, W]
  out = out.squeeze(1).permute({0, 2, 1}).reshape({t, c, h, w});
  out = at::conv2d(out, attn.proj_weight, attn.proj_bias);
  // [T, C, H, W] -> [1, T, C, H, W] -> [1, C, T, H, W], contiguous like x
  out = out.view({1, t, c, h, w}).permute({0, 2, 1, 3, 4}).contiguous();
  return out.add_(x);
}

// upsample3d / upsample2d (model.md §8.2).
at::Tensor WanVaeDecoder::Upsample(const UpStage& stage, const at::Tensor& x,
                                   WanVaeCache* cache) const {
  at::Tensor y = x;
  // Latent frame 0 skips the time_conv (the reference's "Rep" marker) and leaves its
  // history at zeros; from latent frame 1 on it doubles the frame count.
  if (stage.temporal && cache->frames_decoded_ > 0) {
    const int64_t c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
    at::Tensor d = CachedConv(stage.time_conv, x, cache);  // [1, 2C, T, H, W]
    // [1, 2C, T, H, W] -> [1, 2, C, T, H, W]; channels [0:C] become frame 2τ, [C:2C] 2τ+1
    d = d.view({1, 2, c, t, h, w});
    // stack -> [1, C, T, 2, H, W] -> [1, C, 2T, H, W]
    y = at::stack({d.select(1, 0), d.select(1, 1)}, 3).view({1, c, 2 * t, h, w});
  }
  // Nearest 2x in H and W per frame (nearest-exact equals nearest for a factor of 2), then
  // the 3x3 Conv2d applied per frame as a 1x3x3 Conv3d.
  y = at::upsample_nearest3d(y, std::vector<int64_t>{y.size(2), 2 * y.size(3), 2 * y.size(4)},
                             c10::nullopt, c10::nullopt, c10::nullopt);
  return at::conv3d(y, stage.resample_weight, stage.resample_bias, {1, 1, 1}, {0, 1, 1});
}

// ----------------------------------------------------------------------------------------
// Output conversion

at::Tensor ClampVideo(const at::Tensor& video) { return video.clamp(-1.0, 1.0); }

at::Tensor VideoToUint8Frames(const at::Tensor& video) {
  TORCH_CHECK(video.dim() == 5 && video.size(0) == 1 && video.size(1) == 3,
              "vae: video must be [1, 3, F, H, W], got ", video.sizes());
  at::Tensor v = video.to(at::kFloat);
  at::Tensor bytes = at::mul(v, 127.5).add_(127.5).clamp_(0.0, 255.0).to(at::kByte);
  // [1, 3, F, H, W] -> [F, H, W, 3]
  return bytes.select(0, 0).permute({1, 2, 3, 0}).contiguous();
}

}  // namespace longsana::engine
