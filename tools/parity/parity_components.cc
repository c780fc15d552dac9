#include "tools/parity/parity_components.h"

#include "engine/sampler/dit_parity.h"

namespace longsana::tools {

const std::map<std::string, ParityRunner>& ParityComponents() {
  static const std::map<std::string, ParityRunner> kComponents = {
      {"dit-forward", engine::RunDitForwardParity},
      {"dit-state", engine::RunDitStateParity},
      {"sampler", engine::RunSamplerParity},
  };
  return kComponents;
}

}  // namespace longsana::tools
