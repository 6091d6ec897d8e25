// cartd: carts and stock holds for online shops. See README.md.
#include "app.hpp"
#include "config/config.hpp"

int main(int argc, char** argv) {
  auto parsed = cartd::parse_config(argc, argv);
  if (!parsed.config) return parsed.exit_code;
  return cartd::run(*parsed.config);
}
