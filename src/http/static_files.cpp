#include "http/static_files.hpp"

#include <fstream>
#include <sstream>

namespace cartd::http {
namespace {

// The page loads nothing from elsewhere; the policy makes sure it cannot.
constexpr std::string_view kPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'";

Response file_response(std::string_view name, std::string body) {
  Response r;
  r.body = std::move(body);
  r.content_type = content_type_of(name);
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Content-Security-Policy", std::string(kPolicy));
  return r;
}

}  // namespace

std::string_view content_type_of(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  if (name.ends_with(".png")) return "image/png";
  return "application/octet-stream";
}

void add_static_routes(Router& router, std::string web_root) {
  for (const web::StaticFile& file : web::files) {
    Handler serve = [file, web_root](const Request&, const PathParams&, Respond respond) {
      if (web_root.empty()) return respond(file_response(file.name, std::string(file.body)));
      std::ifstream in(web_root + "/" + std::string(file.name), std::ios::binary);
      if (!in) return respond(error_response(404, "not_found", "no such file"));
      std::stringstream body;
      body << in.rdbuf();
      respond(file_response(file.name, body.str()));
    };
    router.add(Verb::get, "/" + std::string(file.name), serve);
    if (file.name == "index.html") router.add(Verb::get, "/", serve);
  }
}

}  // namespace cartd::http
