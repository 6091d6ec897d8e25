// static_files: the storefront page (web/), built into the binary, or read from a
// folder given with --web-root while working on it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "http/server.hpp"

namespace cartd::web {

struct StaticFile {
  std::string_view name;  // e.g. "app.js"
  std::string_view body;
};

// Every file of web/, embedded at build time.
extern const std::vector<StaticFile> files;

}  // namespace cartd::web

namespace cartd::http {

// Adds GET / (index.html) and GET /<name> for each embedded file. With a non-empty
// `web_root`, each request reads the file of that name from the folder instead.
void add_static_routes(Router& router, std::string web_root);

// The Content-Type for a file name.
std::string_view content_type_of(std::string_view name);

}  // namespace cartd::http
