#include "engine/models/wan_vae/wan_vae_params.h"

#include "engine/common/str_util.h"

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
  ParamSpecs specs;
  Builder b(&specs);
  const std::vector<int64_t> dims = c.decoder_dims();
  const std::vector<bool> up_t = c.temperal_upsample();
  b.CausalConv("post_quant_conv", c.z_dim, c.z_dim, 1, 1, 1);
  b.CausalConv("decoder.conv_in", dims[0], c.z_dim, 3, 3, 3);
  b.Residual("decoder.mid_block.resnets.0", dims[0], dims[0]);
  b.Attention("decoder.mid_block.attentions.0", dims[0]);
  b.Residual("decoder.mid_block.resnets.1", dims[0], dims[0]);
  int64_t out_dim = dims[0];
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    int64_t in_dim = i > 0 ? dims[i] / 2 : dims[i];  // every Resample halves the channels
    out_dim = dims[i + 1];
    const std::string p = StrCat("decoder.up_blocks.", i);
    for (int64_t j = 0; j <= c.num_res_blocks; ++j) {
      b.Residual(StrCat(p, ".resnets.", j), in_dim, out_dim);
      in_dim = out_dim;
    }
    if (i + 1 < c.dim_mult.size()) {
      const std::string u = p + ".upsamplers.0";
      if (up_t[i]) b.CausalConv(u + ".time_conv", 2 * out_dim, out_dim, 3, 1, 1);
      b.Add(u + ".resample.1.weight", {out_dim / 2, out_dim, 3, 3});
      b.Add(u + ".resample.1.bias", {out_dim / 2});
    }
  }
  b.Add("decoder.norm_out.gamma", {out_dim, 1, 1, 1});
  b.CausalConv("decoder.conv_out", 3, out_dim, 3, 3, 3);
  return specs;
}

bool IsWanVaeEncoderKey(std::string_view key) {
  return key.starts_with("encoder.") || key.starts_with("quant_conv.");
}

}  // namespace longsana::engine
