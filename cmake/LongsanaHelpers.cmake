# Helpers shared by the per-layer CMakeLists.

set(LONGSANA_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)

# longsana_warnings(<target>): our warning set, on our own sources only.
function(longsana_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${LONGSANA_WARNINGS}>)
endfunction()

# One precompiled header for every translation unit that includes ATen. Compiling
# <ATen/ATen.h> costs ~15 s per TU on this machine; with the PCH it is paid once.
add_library(longsana_torch_pch STATIC ${CMAKE_SOURCE_DIR}/cmake/torch_pch.cc)
target_link_libraries(longsana_torch_pch PUBLIC torch)
target_precompile_headers(longsana_torch_pch PRIVATE ${CMAKE_SOURCE_DIR}/cmake/torch_pch.h)

# longsana_torch_target(<target>): link LibTorch and reuse the shared precompiled header.
function(longsana_torch_target target)
  target_link_libraries(${target} PUBLIC torch)
  target_precompile_headers(${target} REUSE_FROM longsana_torch_pch)
endfunction()

# longsana_gtest(NAME <name> SOURCES <src...> LIBS <libs...> LABELS <labels...>
#                [TORCH] [WORKING_DIRECTORY <dir>] [TIMEOUT <s>] [ARGS <args...>])
# Builds a GoogleTest executable and registers it as one CTest test (gtest_discover_tests
# would run every binary once at build time, which costs minutes for the torch suites).
function(longsana_gtest)
  cmake_parse_arguments(T "TORCH" "NAME;WORKING_DIRECTORY;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${T_NAME} PRIVATE ${CMAKE_SOURCE_DIR})
  longsana_warnings(${T_NAME})
  if(T_TORCH)
    longsana_torch_target(${T_NAME})
  endif()
  if(NOT T_WORKING_DIRECTORY)
    set(T_WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS} WORKING_DIRECTORY ${T_WORKING_DIRECTORY})
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}")
  if(T_TIMEOUT)
    set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT})
  endif()
endfunction()
