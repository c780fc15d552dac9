#include "engine/models/model_summary.h"

#include <algorithm>
#include <filesystem>
#include <iterator>

#include "engine/common/str_util.h"
#include "fmt/format.h"
#include "engine/common/status_macros.h"
#include "engine/loader/checkpoint.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/wan_vae/wan_vae_params.h"

namespace longsana::engine {
namespace fs = std::filesystem;
namespace {

std::string Thousands(int64_t n) {
  std::string digits = StrCat(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

absl::Status FillWeights(const ModelDirectory& dir, ComponentSummary* c) {
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, dir.OpenWeights(c->name));
  c->has_weights = true;
  c->num_params = ckpt->num_params();
  c->num_bytes = ckpt->num_bytes();
  for (const auto& [key, entry] : ckpt->entries()) {
    c->params_by_dtype[std::string(DTypeName(entry.info->dtype))] += entry.info->numel();
  }
  for (const auto& f : ckpt->files()) c->files.push_back(fs::path(f).filename().string());

  ParamSpecs specs;
  StrictCheckOptions options;
  if (c->name == "transformer") {
    specs = DitParamSpecs(dir.transformer);
  } else if (c->name == "vae") {
    specs = WanVaeDecoderParamSpecs(dir.vae);
    options.ignore_unexpected = IsWanVaeEncoderKey;
  } else {
    specs = Gemma2ParamSpecs(dir.text_encoder);
    options.key_prefix = Gemma2KeyPrefix(*ckpt);
    options.ignore_unexpected = IsGemma2IgnoredKey;
  }
  c->expected_params = CountParams(specs);
  absl::Status strict = CheckStrict(specs, *ckpt, c->name, options);
  c->check = strict.ok() ? "OK" : std::string(strict.message());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelSummary> SummarizeModel(const ModelDirectory& dir) {
  ModelSummary s;
  s.root = dir.root;
  s.pipeline_class = dir.index.class_name;
  for (const auto& [name, component] : dir.index.components) {
    ComponentSummary c;
    c.name = name;
    c.library = component.library;
    c.class_name = component.class_name;
    if (name == "transformer" || name == "vae" || name == "text_encoder") {
      LONGSANA_RETURN_IF_ERROR(FillWeights(dir, &c));
    } else {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir.ComponentDir(name), ec)) {
        c.files.push_back(e.path().filename().string());
      }
      std::sort(c.files.begin(), c.files.end());
      c.check = "OK";
    }
    s.components.push_back(std::move(c));
  }
  return s;
}

std::string FormatModelSummary(const ModelSummary& s) {
  std::string out = StrCat("model directory: ", s.root, "\npipeline: ", s.pipeline_class,
                                 "\n\n");
  fmt::format_to(std::back_inserter(out), "{:<13} {:<13} {:<36} {:>15} {:<10} {:>15}  {}\n", "component", "library",
                        "class", "params", "dtype", "bytes", "files");
  int64_t total_params = 0;
  uint64_t total_bytes = 0;
  for (const auto& c : s.components) {
    std::vector<std::string> dtypes;
    for (const auto& [dt, n] : c.params_by_dtype) dtypes.push_back(dt);
    fmt::format_to(std::back_inserter(out), "{:<13} {:<13} {:<36} {:>15} {:<10} {:>15}  {}\n", c.name, c.library,
                          c.class_name, c.has_weights ? Thousands(c.num_params) : "-",
                          dtypes.empty() ? "-" : StrJoin(dtypes, "+"),
                          c.has_weights ? Thousands(static_cast<int64_t>(c.num_bytes)) : "-",
                          StrJoin(c.files, " "));
    total_params += c.num_params;
    total_bytes += c.num_bytes;
  }
  fmt::format_to(std::back_inserter(out), "{:<13} {:<13} {:<36} {:>15} {:<10} {:>15}\n\n", "total", "", "",
                        Thousands(total_params), "", Thousands(static_cast<int64_t>(total_bytes)));
  for (const auto& c : s.components) {
    if (!c.has_weights) continue;
    StrAppend(&out, c.name, ": config expects ", Thousands(c.expected_params),
                    " parameters in the parts we run; strict check: ", c.check, "\n");
  }
  return out;
}

}  // namespace longsana::engine
