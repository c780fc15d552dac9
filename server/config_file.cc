#include "server/config_file.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/reflection.h"

namespace longsana::server {
namespace {

// The flag that names the file; a file naming another file would be an include mechanism
// nobody asked for.
constexpr std::string_view kConfigFlag = "config";
// Validates and exits (server/server_main.cc): not a setting a file could keep.
constexpr std::string_view kCheckConfigFlag = "check_config";

std::string Normalized(std::string key) {
  std::replace(key.begin(), key.end(), '-', '_');
  return key;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean max_sessions?)" when a flag name is within a few edits of `key`.
std::string Suggestion(std::string_view key) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, key.size() / 3) + 1;
  for (const absl::CommandLineFlag* flag : ProgramFlags()) {
    const std::string name(flag->Name());
    if (name == kConfigFlag) continue;
    const size_t d = EditDistance(key, name);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean {}?)", best);
}

}  // namespace

bool IsProgramFlagFile(std::string_view filename) {
  // Abseil defines its own flags (--flagfile, --fromenv, --help, ...) in absl/flags/.
  return filename.find("absl/flags/") == std::string_view::npos;
}

std::vector<const absl::CommandLineFlag*> ProgramFlags() {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!flag->IsRetired() && IsProgramFlagFile(flag->Filename())) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  return flags;
}

std::string ConfigFileArgument(int argc, char** argv) {
  std::string file;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.starts_with("--")) {
      arg.remove_prefix(2);
    } else if (arg.starts_with("-")) {
      arg.remove_prefix(1);
    } else {
      continue;
    }
    if (arg.starts_with("config=")) {
      file = std::string(arg.substr(7));
    } else if (arg == kConfigFlag && i + 1 < argc) {
      file = argv[++i];
    }
  }
  return file;
}

absl::StatusOr<AppliedSettings> ApplyConfigFile(const std::string& path) {
  const auto error = [&path](int line, std::string_view what) {
    return absl::InvalidArgumentError(
        line > 0 ? fmt::format("--config {}: line {}: {}", path, line, what)
                 : fmt::format("--config {}: {}", path, what));
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(0, fmt::format("cannot read the file: {}", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();

  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return error(e.mark.is_null() ? 0 : e.mark.line + 1, fmt::format("not YAML: {}", e.msg));
  }
  if (root.IsNull()) return AppliedSettings{};  // an empty file sets nothing
  if (!root.IsMap()) {
    return error(root.Mark().line + 1, "the file must be a mapping of flag names to values");
  }

  AppliedSettings applied;
  std::set<std::string, std::less<>> seen;
  for (const auto& entry : root) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    const int line = key_node.Mark().line + 1;
    if (!key_node.IsScalar()) return error(line, "a key must be a flag name");
    const std::string key = key_node.Scalar();
    const std::string name = Normalized(key);
    if (!seen.insert(name).second) return error(line, fmt::format("{}: given twice", key));
    if (name == kConfigFlag) return error(line, "config: a config file cannot name another");
    if (name == kCheckConfigFlag) {
      return error(line, "check_config: an action of the command line, not a setting");
    }
    if (value.IsMap()) {
      return error(line, fmt::format("{}: nested mappings are not supported (flat flag: value "
                                     "pairs only)",
                                     key));
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr || flag->IsRetired() || !IsProgramFlagFile(flag->Filename())) {
      return error(line, fmt::format("unknown key '{}'{}", key, Suggestion(name)));
    }

    std::string value_text;
    if (value.IsScalar()) {
      value_text = value.Scalar();
    } else if (value.IsNull()) {
      value_text = "";  // `key:` or `key: ~`, an empty value (e.g. http_listen off)
    } else if (value.IsSequence()) {
      if (!flag->IsOfType<std::vector<std::string>>()) {
        return error(line, fmt::format("{}: takes one value, not a list", key));
      }
      for (const YAML::Node& item : value) {
        if (!item.IsScalar() || item.Scalar().find(',') != std::string::npos) {
          return error(item.Mark().line + 1,
                       fmt::format("{}: list items must be plain values without commas", key));
        }
        if (!value_text.empty()) value_text += ',';
        value_text += item.Scalar();
      }
    } else {
      return error(line, fmt::format("{}: not a value", key));
    }

    std::string parse_error;
    if (!flag->ParseFrom(value_text, &parse_error)) {
      return error(line, fmt::format("{}: bad value '{}': {}", key, value_text, parse_error));
    }
    applied.emplace(name, value_text);
  }
  return applied;
}

}  // namespace longsana::server
