# Torch-free engine sources: file access, safetensors, checkpoints, configs and parameter
# tables. Shared by the main build, the ASan/UBSan build and the clang fuzzers.
set(LONGSANA_ENGINE_CORE_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/common/fault_injection.cc
  ${CMAKE_CURRENT_LIST_DIR}/common/json_fields.cc
  ${CMAKE_CURRENT_LIST_DIR}/common/mapped_file.cc
  ${CMAKE_CURRENT_LIST_DIR}/common/request_checks.cc
  ${CMAKE_CURRENT_LIST_DIR}/loader/checkpoint.cc
  ${CMAKE_CURRENT_LIST_DIR}/loader/dtype.cc
  ${CMAKE_CURRENT_LIST_DIR}/loader/param_spec.cc
  ${CMAKE_CURRENT_LIST_DIR}/loader/safetensors.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/gemma2/gemma2_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/gemma2/gemma2_params.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/longsana_dit/dit_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/longsana_dit/dit_flops.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/longsana_dit/dit_params.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/model_directory.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/model_summary.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/scheduler_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/tokenizer_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/wan_vae/wan_vae_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/wan_vae/wan_vae_flops.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/wan_vae/wan_vae_layers.cc
  ${CMAKE_CURRENT_LIST_DIR}/models/wan_vae/wan_vae_params.cc
)
set(LONGSANA_ENGINE_CORE_LIBS absl::status absl::statusor absl::strings fmt::fmt nlohmann_json::nlohmann_json)
