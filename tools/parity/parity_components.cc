#include "tools/parity/parity_components.h"

#include "engine/parity/dit_parity.h"
#include "engine/parity/e2e_parity.h"
#include "engine/parity/text_parity.h"
#include "engine/parity/wan_vae_parity.h"

namespace longsana::tools {

const std::map<std::string, ParityRunner>& ParityComponents() {
  static const std::map<std::string, ParityRunner> kComponents = {
      {"dit-forward", engine::RunDitForwardParity},
      {"dit-state", engine::RunDitStateParity},
      {"sampler", engine::RunSamplerParity},
      {"tokenizer", engine::RunTokenizerParity},
      {"gemma2", engine::RunGemma2Parity},
      {"vae", engine::RunVaeParity},
      {"e2e", engine::RunE2eParity},
  };
  return kComponents;
}

}  // namespace longsana::tools
