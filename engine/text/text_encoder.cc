#include "engine/text/text_encoder.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "engine/common/device_ops.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/models/model_directory.h"
#include "engine/text/prompt.h"

namespace longsana::engine {

absl::Status TextEncoderOptions::Validate() const {
  if (caption_len < 1 || caption_len > 8192) {
    return absl::InvalidArgumentError(
        StrCat("caption_len: must be in [1, 8192], got ", caption_len));
  }
  if (max_prompt_bytes == 0) {
    return absl::InvalidArgumentError("max_prompt_bytes: must be positive");
  }
  return absl::OkStatus();
}

Caption BlendCaptions(const Caption& from, const Caption& to, double weight) {
  TORCH_CHECK(from.embedding.sizes() == to.embedding.sizes(),
              "BlendCaptions: captions of different shapes");
  Caption out;
  out.embedding = at::lerp(from.embedding, to.embedding, weight);
  out.mask = at::maximum(from.mask, to.mask);
  out.num_tokens = std::max(from.num_tokens, to.num_tokens);  // prefix masks: no device read
  out.truncated = from.truncated || to.truncated;
  return out;
}

size_t Caption::bytes() const {
  size_t n = 0;
  for (const at::Tensor* t : {&embedding, &mask}) {
    if (t->defined()) n += t->numel() * t->element_size();
  }
  return n;
}

TextEncoder::TextEncoder(std::unique_ptr<Tokenizer> tokenizer,
                         std::unique_ptr<Gemma2Encoder> encoder, const TextEncoderOptions& options)
    : tokenizer_(std::move(tokenizer)),
      encoder_(std::move(encoder)),
      options_(options),
      cache_(options.cache_max_entries, options.cache_max_bytes) {}

absl::StatusOr<std::unique_ptr<TextEncoder>> TextEncoder::Load(const ModelDirectory& dir,
                                                               const TextEncoderOptions& options) {
  LONGSANA_RETURN_IF_ERROR(options.Validate());
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                            Tokenizer::Load(dir.ComponentDir("tokenizer"), dir.tokenizer));
  Gemma2Options gemma;
  gemma.device = options.device;
  gemma.dtype = options.dtype;
  gemma.softcap = options.softcap;
  const auto start = std::chrono::steady_clock::now();
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Gemma2Encoder> encoder,
                            Gemma2Encoder::Load(dir, gemma));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info(
      "text encoder loaded: Gemma-2 {} layers, {} params ({:.1f} MB) on {} as {}, "
      "soft-cap {}, caption_len {}, in {:.2f} s",
      encoder->config().num_hidden_layers, encoder->num_params(), encoder->num_bytes() / 1e6,
      encoder->device().str(), c10::toString(encoder->dtype()), encoder->softcap() ? "on" : "off",
      options.caption_len, seconds);
  return Create(std::move(tokenizer), std::move(encoder), options);
}

absl::StatusOr<std::unique_ptr<TextEncoder>> TextEncoder::Create(
    std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<Gemma2Encoder> encoder,
    const TextEncoderOptions& options) {
  LONGSANA_RETURN_IF_ERROR(options.Validate());
  if (tokenizer == nullptr || encoder == nullptr) {
    return absl::InvalidArgumentError("text encoder: tokenizer and encoder are required");
  }
  if (tokenizer->vocab_size() > encoder->config().vocab_size) {
    return absl::InvalidArgumentError(
        StrCat(tokenizer->model_path(), ": vocabulary of ", tokenizer->vocab_size(),
               " pieces exceeds the text encoder's vocab_size ", encoder->config().vocab_size));
  }
  TextEncoderOptions effective = options;
  effective.device = encoder->device();
  effective.dtype = encoder->dtype();
  effective.softcap = encoder->softcap();
  return std::unique_ptr<TextEncoder>(
      new TextEncoder(std::move(tokenizer), std::move(encoder), effective));
}

absl::StatusOr<Caption> TextEncoder::Encode(std::string_view user_prompt, int motion_score) {
  if (motion_score < 1) {
    return absl::InvalidArgumentError(
        StrCat("motion_score: must be at least 1, got ", motion_score));
  }
  if (user_prompt.size() > options_.max_prompt_bytes) {
    return absl::InvalidArgumentError(StrCat(
        "prompt: ", user_prompt.size(), " bytes exceeds the limit of ", options_.max_prompt_bytes));
  }
  std::string cleaned = CleanPrompt(user_prompt, motion_score);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::optional<Caption> hit = cache_.Get(cleaned)) return *std::move(hit);
  }
  LONGSANA_ASSIGN_OR_RETURN(Caption caption, EncodeUncached(cleaned));
  const size_t bytes = caption.bytes() + cleaned.size();
  std::lock_guard<std::mutex> lock(mu_);
  ++encodes_;
  cache_.Put(std::move(cleaned), caption, bytes);
  return caption;
}

absl::StatusOr<Caption> TextEncoder::EncodeUncached(std::string_view cleaned_prompt) const {
  const auto start = std::chrono::steady_clock::now();
  LONGSANA_ASSIGN_OR_RETURN(PromptTokens tokens,
                            BuildPromptTokens(*tokenizer_, cleaned_prompt, options_.caption_len));
  Caption caption;
  try {
    const int64_t s = tokens.max_len_all;
    const auto cpu_long = at::TensorOptions().dtype(at::kLong);
    // [S] host vectors -> [1, S] host tensors (from_blob borrows; Gemma checks the ids on
    // the host and uploads them, and device::Upload owns what it copies).
    const at::Tensor ids = at::from_blob(tokens.full_ids.data(), {1, s}, cpu_long);
    const at::Tensor mask = at::from_blob(tokens.full_mask.data(), {1, s}, cpu_long);
    at::Tensor select =
        device::Upload(at::from_blob(tokens.select_index.data(), {options_.caption_len}, cpu_long),
                       encoder_->device(), at::kLong);
    at::Tensor hidden = encoder_->Forward(ids, mask);  // [1, S, hidden]
    // [1, S, hidden] -> [S, hidden] -> [L, hidden] (index_select copies: the full hidden
    // state is released here).
    caption.embedding = hidden[0].index_select(0, select);
    caption.mask =
        device::Upload(at::from_blob(tokens.sel_mask.data(), {options_.caption_len}, cpu_long),
                       encoder_->device(), at::kLong);
    // A caption leaves here computed: the prompt cache shares it with every session, and
    // the runner reads it on its own stream. This wait is on the text worker's thread,
    // never in the step loop.
    device::Fence::Record(encoder_->device()).HostWait();
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(
        StrCat("text encoder: out of memory: ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("text encoder: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("text encoder: ", e.what()));
  }
  caption.num_tokens = tokens.caption_tokens();
  caption.truncated = tokens.truncated;
  spdlog::debug(
      "text encoder: encoded {} tokens (caption {}{}) in {:.1f} ms", tokens.max_len_all,
      caption.num_tokens, tokens.truncated ? ", truncated" : "",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  return caption;
}

TextEncoderStats TextEncoder::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return TextEncoderStats{cache_.stats(), encodes_};
}

void TextEncoder::ClearCache() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.Clear();
}

}  // namespace longsana::engine
