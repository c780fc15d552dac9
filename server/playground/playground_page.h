// The playground page served at / on the HTTP port (serving.md §6): server/playground/index.html,
// embedded in the binary at build time.
#pragma once

#include <string_view>

namespace longsana::server {

std::string_view PlaygroundPage();

}  // namespace longsana::server
