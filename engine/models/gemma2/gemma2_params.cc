#include "engine/models/gemma2/gemma2_params.h"

#include "engine/common/str_util.h"
#include "engine/loader/checkpoint.h"

namespace longsana::engine {

ParamSpecs Gemma2ParamSpecs(const Gemma2Config& c) {
  const int64_t h = c.hidden_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  const int64_t m = c.intermediate_size;
  ParamSpecs s;
  s.push_back({"embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = StrCat("layers.", i, ".");
    s.push_back({p + "self_attn.q_proj.weight", {q, h}});
    s.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    s.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    s.push_back({p + "self_attn.o_proj.weight", {h, q}});
    s.push_back({p + "mlp.gate_proj.weight", {m, h}});
    s.push_back({p + "mlp.up_proj.weight", {m, h}});
    s.push_back({p + "mlp.down_proj.weight", {h, m}});
    s.push_back({p + "input_layernorm.weight", {h}});
    s.push_back({p + "post_attention_layernorm.weight", {h}});
    s.push_back({p + "pre_feedforward_layernorm.weight", {h}});
    s.push_back({p + "post_feedforward_layernorm.weight", {h}});
  }
  s.push_back({"norm.weight", {h}});
  return s;
}

std::string Gemma2KeyPrefix(const Checkpoint& checkpoint) {
  if (checkpoint.Find("embed_tokens.weight") == nullptr &&
      checkpoint.Find("model.embed_tokens.weight") != nullptr) {
    return "model.";
  }
  return "";
}

bool IsGemma2IgnoredKey(std::string_view key) { return key == "lm_head.weight"; }

}  // namespace longsana::engine
