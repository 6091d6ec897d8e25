// library: the cartd Redis Functions library, joined from src/lua/*.lua at build time
// (cmake/EmbedScripts.cmake). Every Redis connection loads it with FUNCTION LOAD REPLACE.
#pragma once

#include <string_view>

namespace cartd::scripts {
extern const std::string_view library;
}
