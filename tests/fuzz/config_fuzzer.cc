// libFuzzer target: every config parser (and the shard index parser) must turn any byte
// string into either a validated config or a clean error.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/common/json_fields.h"
#include "engine/loader/checkpoint.h"
#include "engine/models/gemma2/gemma2_config.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/longsana_dit/dit_config.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/model_directory.h"
#include "engine/models/scheduler_config.h"
#include "engine/models/tokenizer_config.h"
#include "engine/models/wan_vae/wan_vae_config.h"
#include "engine/models/wan_vae/wan_vae_params.h"

using namespace longsana::engine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)ParseShardIndex(text, "fuzz");
  auto json = ParseJsonObject(text, "fuzz");
  if (!json.ok()) return 0;
  // A config that validates must also yield a parameter table without overflow or crash.
  if (auto c = DitConfig::FromJson(*json, "fuzz"); c.ok()) (void)CountParams(DitParamSpecs(*c));
  if (auto c = WanVaeConfig::FromJson(*json, "fuzz"); c.ok()) {
    (void)CountParams(WanVaeDecoderParamSpecs(*c));
  }
  if (auto c = Gemma2Config::FromJson(*json, "fuzz"); c.ok()) {
    (void)CountParams(Gemma2ParamSpecs(*c));
  }
  (void)TokenizerConfig::FromJson(*json, "fuzz");
  (void)SchedulerConfig::FromJson(*json, "fuzz");
  (void)ModelIndex::FromJson(*json, "fuzz");
  return 0;
}
