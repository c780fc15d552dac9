// Streaming Wan2.1 VAE decoder (model.md §8): post_quant_conv + decoder under the diffusers
// AutoencoderKLWan key names, with the per-session causal-conv cache made explicit.
//
// Streaming: the DiT hands over blocks of latent frames; each DecodeBlock call decodes one
// block with the session's WanVaeCache and returns that block's video frames. The first
// latent frame of a stream gives 1 video frame, every later one 4 (Wan2.1 strides), so a
// stream of T latent frames gives 1 + 4(T - 1) frames however it is cut into blocks.
// Decoding block by block equals decoding the whole latent at once (model.md binding
// decision 5): bit-exactly with the default max_frames_per_pass = 1, which also applies
// post_quant_conv one latent frame at a time.
//
// Numerics: fp32 by default, like the reference (model.md §8.1). On CUDA the caller must
// disable TF32 (at::globalContext().setAllowTF32CuDNN(false) / setAllowTF32CuBLAS(false))
// for golden parity: LibTorch enables TF32 for cuDNN convolutions by default.
//
// Thread-safety: a loaded decoder is immutable; DecodeBlock is const and may run
// concurrently on different caches. A cache is used by one thread at a time. CUDA work is
// issued on the current stream (set it with a stream guard in the caller).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/loader/weights.h"
#include "engine/models/model_directory.h"
#include "engine/models/wan_vae/wan_vae_cache_layout.h"
#include "engine/models/wan_vae/wan_vae_config.h"

namespace longsana::engine {

struct VaeOptions {
  std::string device = "cpu";         // "cpu", "cuda", "cuda:1", ...
  at::ScalarType dtype = at::kFloat;  // kFloat (reference), kBFloat16 or kHalf
  // Latent frames decoded per pass through the network (>= 1). 1 is the reference's
  // per-frame loop and makes block-by-block decoding bit-identical to whole decoding. Larger
  // values batch the frames of a block into bigger convolutions (~20% faster on CPU at
  // 2 frames; activation memory grows linearly: ~0.6 GB per fp32 activation and latent frame
  // at 832x480). They agree with 1 to a few 1e-6 but not always bit for bit (oneDNN picks
  // shape- and thread-dependent kernels). The first frame of a stream always goes alone.
  int64_t max_frames_per_pass = 1;

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

// The decoder cache of one session: per cached causal conv the last 2 input frames (zeros
// when fresh), in one preallocated buffer laid out by ComputeWanVaeCacheLayout, plus the
// number of latent frames decoded so far (which also says whether the time_convs have seen
// latent frame 0). Its size never changes after NewCache.
class WanVaeCache {
 public:
  int64_t latent_h() const { return layout_.latent_h; }
  int64_t latent_w() const { return layout_.latent_w; }
  int64_t frames_decoded() const { return frames_decoded_; }
  // Bytes actually allocated (the buffer's storage).
  int64_t bytes() const;
  const WanVaeCacheLayout& layout() const { return layout_; }
  // Slot i of layout().slots as a [1, C_in, 2, H, W] view of the buffer.
  const at::Tensor& slot(size_t i) const { return slots_.at(i); }
  const at::Tensor& buffer() const { return buffer_; }

  // Back to the fresh state (zeros, no frame decoded) without reallocating.
  void Reset();

 private:
  friend class WanVaeDecoder;
  WanVaeCache(WanVaeCacheLayout layout, at::Tensor buffer);

  WanVaeCacheLayout layout_;
  at::Tensor buffer_;              // [layout_.numel], the only allocation
  std::vector<at::Tensor> slots_;  // views of buffer_
  int64_t frames_decoded_ = 0;
};

class WanVaeDecoder {
 public:
  // Strict load of post_quant_conv.* and decoder.* from the model folder's vae/ weights,
  // converted to options.dtype on options.device. Encoder keys (encoder.*, quant_conv.*)
  // are ignored. InvalidArgument for bad options or a checkpoint that does not match the
  // config (every missing / unexpected / mis-shaped key listed); NotFound for missing files;
  // FailedPrecondition when the device is not available.
  static absl::StatusOr<std::unique_ptr<WanVaeDecoder>> Load(const ModelDirectory& dir,
                                                             const VaeOptions& options = {});

  // From named tensors (checkpoint keys of WanVaeDecoderParamSpecs; encoder keys are
  // ignored), e.g. random weights for benchmarks. Same checks and errors as Load.
  static absl::StatusOr<std::unique_ptr<WanVaeDecoder>> FromTensors(
      const WanVaeConfig& config, const TensorMap& tensors,
      const VaeOptions& options = {});

  // Bytes of one session's cache at this latent resolution and the decoder's dtype,
  // computed without allocating. InvalidArgument for a bad resolution.
  absl::StatusOr<int64_t> CacheBytes(int64_t latent_h, int64_t latent_w) const;
  // A fresh cache on the decoder's device and dtype; cache->bytes() == CacheBytes(h, w).
  absl::StatusOr<std::unique_ptr<WanVaeCache>> NewCache(int64_t latent_h, int64_t latent_w) const;

  // Decodes one block of latent frames, continuing the stream held by `cache`.
  //   z: [1, z_dim, T, h, w], T >= 1, the DiT's normalised latent (any float dtype, any
  //      device; h, w must equal the cache's).
  //   returns: video [1, 3, F, 8h, 8w] float32 on the decoder's device, before clamping;
  //      F = 1 + 4(T - 1) when the cache is fresh, else 4T (Wan2.1 strides).
  // Throws c10::Error on bad shapes (nothing is changed then). If a pass fails midway
  // (e.g. out of memory) the cache is left part-updated: Reset it or drop the session.
  // `before_pass`, when set, is called with the block's latent frame index before each
  // pass and may throw to stop the decode there (cancellation, fault injection).
  at::Tensor DecodeBlock(const at::Tensor& z, WanVaeCache* cache,
                         const std::function<void(int64_t latent_frame)>& before_pass = {}) const;

  // z_vae = z / (1/std) + mean with 1/std rounded to fp32 first (binding decision 4), in
  // fp32 on the decoder's device. z: [1, z_dim, T, h, w].
  at::Tensor DenormalizeLatent(const at::Tensor& z) const;

  const WanVaeConfig& config() const { return config_; }
  const VaeOptions& options() const { return options_; }
  at::Device device() const { return device_; }
  // The loaded parameters under their checkpoint keys.
  const TensorMap& named_parameters() const { return params_; }

  ~WanVaeDecoder();

 private:
  struct Conv;
  struct ResBlock;
  struct Attention;
  struct UpStage;

  WanVaeDecoder(WanVaeConfig config, VaeOptions options, at::Device device);
  void Build();

  at::Tensor DecodePass(const at::Tensor& z_vae, WanVaeCache* cache) const;
  at::Tensor CachedConv(const Conv& conv, const at::Tensor& x, WanVaeCache* cache) const;
  at::Tensor Residual(const ResBlock& block, const at::Tensor& x, WanVaeCache* cache) const;
  at::Tensor Attend(const Attention& attn, const at::Tensor& x) const;
  at::Tensor Upsample(const UpStage& stage, const at::Tensor& x, WanVaeCache* cache) const;
  const at::Tensor& P(const std::string& name) const;

  WanVaeConfig config_;
  VaeOptions options_;
  at::Device device_;
  TensorMap params_;
  at::Tensor mean_;     // [1, z_dim, 1, 1, 1] fp32
  at::Tensor inv_std_;  // [1, z_dim, 1, 1, 1] fp32, 1/std rounded to fp32

  // The network, built once from params_ (model.md §8.3).
  std::unique_ptr<Conv> post_quant_conv_;
  std::unique_ptr<Conv> conv_in_;
  std::vector<ResBlock> mid_resnets_;
  std::unique_ptr<Attention> mid_attention_;
  std::vector<UpStage> up_stages_;
  at::Tensor norm_out_;
  std::unique_ptr<Conv> conv_out_;
  size_t num_slots_ = 0;
};

// Clamp to [-1, 1] (what the reference's WanVAE.decode returns).
at::Tensor ClampVideo(const at::Tensor& video);

// video [1, 3, F, H, W] float (clamped or not) -> [F, H, W, 3] uint8 RGB, contiguous, on the
// input's device: clamp(127.5 * x + 127.5, 0, 255) then a truncating cast (model.md §8.4).
at::Tensor VideoToUint8Frames(const at::Tensor& video);

}  // namespace longsana::engine
