// `--config FILE`: flag settings from a YAML file, for operators who keep the server's
// configuration in a file (a Kubernetes ConfigMap) rather than on the command line.
//
// The file is a flat mapping from flag names (dashes or underscores) to values:
//   model_dir: /models/longsana
//   max-sessions: 4
//   allowed_presets: [ultrafast, veryfast]   # list flags: a sequence (or "a,b")
//   http_listen: ''                          # empty (or `http_listen:`): the empty string
// Each value goes through its flag's own parser, exactly as if it were given on the command
// line, and is then validated with the rest of the Config; a flag given on the command line
// wins over the file. Every flag of the program may be set, except `config` itself; Abseil's
// own flags (--flagfile, --help, ...) are not settings and are unknown keys here.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/status/statusor.h"

namespace longsana::server {

// True for a flag the program defines itself (server/server_main.cc, a test binary's own
// flags); false for Abseil's own flags. `filename` is CommandLineFlag::Filename().
bool IsProgramFlagFile(std::string_view filename);

// The program's own flags (IsProgramFlagFile, not retired), sorted by name.
std::vector<const absl::CommandLineFlag*> ProgramFlags();

// flag name -> the value text the file gave its parser; what ApplyConfigFile changed.
using AppliedSettings = std::map<std::string, std::string, std::less<>>;

// The FILE of "--config FILE" / "--config=FILE" (or one dash) in argv (flag names already
// with underscores, see NormalizeFlagDashes), the last one when repeated; empty when absent
// or after a bare "--". A pre-scan: the file must be applied before absl::ParseCommandLine.
std::string ConfigFileArgument(int argc, char** argv);

// Reads the YAML file at `path` and sets the flags it names (see above). Call it before
// absl::ParseCommandLine, which then overrides what the file set. Returns what it set.
// Errors are InvalidArgument starting with "--config PATH: " and naming the key (and its
// line) and, for a bad value, the value: the file cannot be read or is not YAML; the top
// level is not a mapping; an unknown key (with the nearest flag name when one is close);
// `config`; a key given twice (also as dashes and underscores); a nested mapping; a sequence
// for a flag that is not a list; a value the flag's parser refuses. On an error, flags of
// earlier keys stay set (the program exits). Not thread-safe against other flag writers;
// call once, at start.
absl::StatusOr<AppliedSettings> ApplyConfigFile(const std::string& path);

}  // namespace longsana::server
