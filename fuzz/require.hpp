// require: a property a fuzz target checks. A broken one aborts, which libFuzzer reports
// as a crash and saves the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CARTD_REQUIRE(cond)                                                            \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
