#include "engine/models/wan_vae/wan_vae_params.h"

#include "engine/common/str_util.h"
#include "engine/models/wan_vae/wan_vae_layers.h"

namespace longsana::engine {
namespace {

class Builder {
 public:
  explicit Builder(ParamSpecs* out) : out_(out) {}

  void Add(std::string name, std::vector<int64_t> shape) {
    out_->push_back({std::move(name), std::move(shape)});
  }
  void CausalConv(const std::string& p, int64_t out, int64_t in, int64_t kt, int64_t kh,
                  int64_t kw) {
    Add(p + ".weight", {out, in, kt, kh, kw});
    Add(p + ".bias", {out});
  }
  void Residual(const std::string& p, int64_t in, int64_t out) {
    Add(p + ".norm1.gamma", {in, 1, 1, 1});
    CausalConv(p + ".conv1", out, in, 3, 3, 3);
    Add(p + ".norm2.gamma", {out, 1, 1, 1});
    CausalConv(p + ".conv2", out, out, 3, 3, 3);
    if (in != out) CausalConv(p + ".conv_shortcut", out, in, 1, 1, 1);
  }
  void Attention(const std::string& p, int64_t c) {
    Add(p + ".norm.gamma", {c, 1, 1});
    Add(p + ".to_qkv.weight", {3 * c, c, 1, 1});
    Add(p + ".to_qkv.bias", {3 * c});
    Add(p + ".proj.weight", {c, c, 1, 1});
    Add(p + ".proj.bias", {c});
  }

 private:
  ParamSpecs* out_;
};

}  // namespace

ParamSpecs WanVaeDecoderParamSpecs(const WanVaeConfig& c) {
  using Kind = WanVaeLayer::Kind;
  ParamSpecs specs;
  Builder b(&specs);
  for (const WanVaeLayer& l : WanVaeDecoderLayers(c)) {
    switch (l.kind) {
      case Kind::kPostQuantConv:
        b.CausalConv(l.prefix, l.out, l.in, 1, 1, 1);
        break;
      case Kind::kConvIn:
      case Kind::kConvOut:
        b.CausalConv(l.prefix, l.out, l.in, 3, 3, 3);
        break;
      case Kind::kResidual:
        b.Residual(l.prefix, l.in, l.out);
        break;
      case Kind::kAttention:
        b.Attention(l.prefix, l.in);
        break;
      case Kind::kTimeConv:
        b.CausalConv(l.prefix, l.out, l.in, 3, 1, 1);
        break;
      case Kind::kResample:
        b.Add(l.prefix + ".weight", {l.out, l.in, 3, 3});
        b.Add(l.prefix + ".bias", {l.out});
        break;
      case Kind::kNormOut:
        b.Add(l.prefix + ".gamma", {l.in, 1, 1, 1});
        break;
    }
  }
  return specs;
}

bool IsWanVaeEncoderKey(std::string_view key) {
  return key.starts_with("encoder.") || key.starts_with("quant_conv.");
}

}  // namespace longsana::engine
