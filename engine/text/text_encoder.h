// The text-conditioning facade the engine uses (model.md §2): user prompt -> cleaned prompt
// -> CHI + prompt tokens -> Gemma-2 -> BOS + the last L-1 hidden states = the DiT caption,
// with an LRU cache of encoded prompts (load tests and prompt switches repeat prompts).
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/models/gemma2/gemma2_model.h"
#include "engine/text/lru_cache.h"
#include "engine/text/tokenizer.h"

namespace longsana::engine {

struct ModelDirectory;

struct TextEncoderOptions {
  at::Device device = at::kCPU;
  // Unset: fp32 on CPU, bf16 on CUDA (see Gemma2Options).
  std::optional<at::ScalarType> dtype;
  bool softcap = false;                 // model.md binding decision 1 (default: no soft-cap)
  int64_t caption_len = 300;            // L: caption tokens given to the DiT (BOS + L-1)
  size_t cache_max_entries = 64;        // 0 disables the cache
  size_t cache_max_bytes = 256u << 20;  // embeddings + masks + keys; 0 disables the cache
  size_t max_prompt_bytes = 16384;      // longer user prompts are rejected (InvalidArgument)

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

// One encoded prompt. The tensors are shared with the cache and with every other caller that
// asked for the same prompt: treat them as immutable (never modify them in place).
struct Caption {
  at::Tensor embedding;    // [L, hidden] in the encoder dtype (fp32 CPU / bf16 CUDA), on device
  at::Tensor mask;         // [L] int64 0/1 on device: 1 = BOS or prompt token, 0 = padding
  int64_t num_tokens = 0;  // sum(mask): valid caption tokens incl. BOS
  bool truncated = false;  // the prompt was cut to fit L - 1 tokens

  size_t bytes() const;  // device bytes of embedding + mask
};

// A transition between two captions of the same shape (SwitchPromptCommand's
// transition_blocks): (1 - weight) * from + weight * to, elementwise over the padded
// embeddings, with the union of the masks (a token valid in either is attended to).
// Masks are prefixes (BOS, tokens, then padding), so the union has the larger num_tokens.
// No device synchronisation.
Caption BlendCaptions(const Caption& from, const Caption& to, double weight);

struct TextEncoderStats {
  LruCacheStats cache;
  uint64_t encodes = 0;  // Gemma forward passes run (cache misses that encoded)
};

// Thread-safe: Encode may be called from several threads at once. The cache is guarded by a
// mutex; forward passes run outside it (two threads missing on the same prompt both encode
// it, with identical results).
class TextEncoder {
 public:
  // Tokenizer from dir/tokenizer, Gemma-2 from dir/text_encoder. Errors as Tokenizer::Load
  // and Gemma2Encoder::Load; InvalidArgument for bad options or a tokenizer whose vocabulary
  // does not fit the encoder's embedding table.
  static absl::StatusOr<std::unique_ptr<TextEncoder>> Load(const ModelDirectory& dir,
                                                           const TextEncoderOptions& options);
  // From already loaded parts (options.device/dtype/softcap are taken from `encoder`).
  static absl::StatusOr<std::unique_ptr<TextEncoder>> Create(std::unique_ptr<Tokenizer> tokenizer,
                                                             std::unique_ptr<Gemma2Encoder> encoder,
                                                             const TextEncoderOptions& options);

  // Encodes CleanPrompt(user_prompt, motion_score), from the cache when present.
  // InvalidArgument: motion_score < 1, prompt longer than max_prompt_bytes, invalid UTF-8.
  // ResourceExhausted: out of device memory. Internal: any other compute failure.
  absl::StatusOr<Caption> Encode(std::string_view user_prompt, int motion_score = 10);

  TextEncoderStats stats() const;
  void ClearCache();

  int64_t caption_len() const { return options_.caption_len; }
  int64_t hidden_size() const { return encoder_->config().hidden_size; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const Gemma2Encoder& encoder() const { return *encoder_; }

 private:
  TextEncoder(std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<Gemma2Encoder> encoder,
              const TextEncoderOptions& options);
  absl::StatusOr<Caption> EncodeUncached(std::string_view cleaned_prompt) const;

  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Gemma2Encoder> encoder_;
  TextEncoderOptions options_;

  mutable std::mutex mu_;
  LruCache<std::string, Caption> cache_;  // key: the cleaned prompt (incl. motion suffix)
  uint64_t encodes_ = 0;
};

}  // namespace longsana::engine
