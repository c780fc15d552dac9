// longsana-server: see server/server_main.h for the flags, lifecycle and exit codes.
#include "engine/api/engine.h"
#include "server/server_main.h"

int main(int argc, char** argv) {
  return longsana::server::ServerMain(argc, argv, [](const longsana::engine::EngineConfig& c) {
    return longsana::engine::CreateEngine(c);
  });
}
