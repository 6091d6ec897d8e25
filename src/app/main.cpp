// cartd: carts and stock holds for online shops. See README.md.
#include <iostream>

#include "app/app.hpp"
#include "app/check.hpp"
#include "config/config.hpp"

int main(int argc, char** argv) {
  auto parsed = cartd::parse_config(argc, argv);
  if (!parsed.config) return parsed.exit_code;
  if (parsed.check) {
    int violations = cartd::stock::check_invariants(*parsed.config, std::cout);
    return violations == 0 ? 0 : violations < 0 ? 2 : 1;
  }
  if (parsed.migrate) return cartd::migrate(*parsed.config);
  return cartd::run(*parsed.config);
}
