#include "engine/models/gemma2/gemma2_config.h"

#include <cmath>

#include "engine/common/str_util.h"
#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"

namespace longsana::engine {

absl::StatusOr<Gemma2Config> Gemma2Config::FromJson(const nlohmann::json& json,
                                                    const std::string& source) {
  JsonFields f(source, json);
  Gemma2Config c;
  LONGSANA_RETURN_IF_ERROR(f.Optional("architectures", &c.architectures));
  LONGSANA_RETURN_IF_ERROR(f.Required("vocab_size", &c.vocab_size));
  LONGSANA_RETURN_IF_ERROR(f.Required("hidden_size", &c.hidden_size));
  LONGSANA_RETURN_IF_ERROR(f.Required("intermediate_size", &c.intermediate_size));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_hidden_layers", &c.num_hidden_layers));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_attention_heads", &c.num_attention_heads));
  LONGSANA_RETURN_IF_ERROR(f.Required("num_key_value_heads", &c.num_key_value_heads));
  LONGSANA_RETURN_IF_ERROR(f.Required("head_dim", &c.head_dim));
  LONGSANA_RETURN_IF_ERROR(f.Optional("rms_norm_eps", &c.rms_norm_eps));
  LONGSANA_RETURN_IF_ERROR(f.Optional("rope_theta", &c.rope_theta));
  LONGSANA_RETURN_IF_ERROR(f.Optional("query_pre_attn_scalar", &c.query_pre_attn_scalar));
  if (f.Has("attn_logit_softcapping")) {
    LONGSANA_RETURN_IF_ERROR(f.Nullable("attn_logit_softcapping", &c.attn_logit_softcapping));
  }
  if (f.Has("final_logit_softcapping")) {
    LONGSANA_RETURN_IF_ERROR(f.Nullable("final_logit_softcapping", &c.final_logit_softcapping));
  }
  if (f.Has("sliding_window")) {
    LONGSANA_RETURN_IF_ERROR(f.Nullable("sliding_window", &c.sliding_window));
  }
  LONGSANA_RETURN_IF_ERROR(f.Optional("max_position_embeddings", &c.max_position_embeddings));
  // transformers prefers hidden_activation and falls back to the older hidden_act.
  if (f.Has("hidden_activation")) {
    LONGSANA_RETURN_IF_ERROR(f.Optional("hidden_activation", &c.hidden_activation));
  } else {
    LONGSANA_RETURN_IF_ERROR(f.Optional("hidden_act", &c.hidden_activation));
  }
  LONGSANA_RETURN_IF_ERROR(f.Optional("attention_bias", &c.attention_bias));
  LONGSANA_RETURN_IF_ERROR(f.Optional("pad_token_id", &c.pad_token_id));
  LONGSANA_RETURN_IF_ERROR(f.Optional("bos_token_id", &c.bos_token_id));
  LONGSANA_RETURN_IF_ERROR(f.Optional("eos_token_id", &c.eos_token_id));
  return Validated(std::move(c), source);
}

absl::StatusOr<Gemma2Config> Gemma2Config::FromFile(const std::string& path) {
  return ConfigFromFile<Gemma2Config>(path);
}

absl::Status Gemma2Config::Validate() const {
  auto bad = [](std::string_view field, std::string_view what) {
    return absl::InvalidArgumentError(StrCat("field '", field, "': ", what));
  };
  auto in_range = [&](std::string_view field, int64_t v, int64_t hi) -> absl::Status {
    if (v <= 0 || v > hi) return bad(field, StrCat("must be in [1, ", hi, "], got ", v));
    return absl::OkStatus();
  };
  LONGSANA_RETURN_IF_ERROR(in_range("vocab_size", vocab_size, 1 << 24));
  LONGSANA_RETURN_IF_ERROR(in_range("hidden_size", hidden_size, 1 << 16));
  LONGSANA_RETURN_IF_ERROR(in_range("intermediate_size", intermediate_size, 1 << 18));
  LONGSANA_RETURN_IF_ERROR(in_range("num_hidden_layers", num_hidden_layers, 1024));
  LONGSANA_RETURN_IF_ERROR(in_range("num_attention_heads", num_attention_heads, 1024));
  LONGSANA_RETURN_IF_ERROR(in_range("num_key_value_heads", num_key_value_heads, 1024));
  LONGSANA_RETURN_IF_ERROR(in_range("head_dim", head_dim, 4096));
  LONGSANA_RETURN_IF_ERROR(in_range("max_position_embeddings", max_position_embeddings, 1 << 24));
  if (num_attention_heads % num_key_value_heads != 0) {
    return bad("num_key_value_heads",
               StrCat("must divide num_attention_heads (", num_attention_heads, "), got ",
                            num_key_value_heads));
  }
  if (head_dim % 2 != 0) return bad("head_dim", "must be even (rotary pairs)");
  if (!(rms_norm_eps > 0.0)) return bad("rms_norm_eps", "must be positive");
  if (!(rope_theta > 0.0) || !std::isfinite(rope_theta)) return bad("rope_theta", "must be positive");
  if (!(query_pre_attn_scalar > 0.0)) return bad("query_pre_attn_scalar", "must be positive");
  if (attn_logit_softcapping && !(*attn_logit_softcapping > 0.0)) {
    return bad("attn_logit_softcapping", "must be positive or null");
  }
  if (hidden_activation != "gelu_pytorch_tanh" && hidden_activation != "gelu_tanh") {
    return bad("hidden_activation", StrCat("only gelu_pytorch_tanh is supported, got '",
                                                 hidden_activation, "'"));
  }
  if (attention_bias) return bad("attention_bias", "attention biases are not supported");
  for (auto [field, id] : {std::pair<std::string_view, int64_t>{"pad_token_id", pad_token_id},
                           {"bos_token_id", bos_token_id},
                           {"eos_token_id", eos_token_id}}) {
    if (id < 0 || id >= vocab_size) {
      return bad(field, StrCat("must be in [0, vocab_size), got ", id));
    }
  }
  return absl::OkStatus();
}

}  // namespace longsana::engine
