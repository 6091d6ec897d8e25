// replies: what the cart service's two paths (service.cpp: one call per change;
// split.cpp: a cluster's single-slot steps) share in reading the library's answers.
#pragma once

#include <string_view>

#include <boost/system/error_code.hpp>

#include "cart/service.hpp"
#include "redis/reply.hpp"

namespace cartd::cart::replies {

// Logs a reply the library does not give (a Lua error, a wrong shape) and names it.
boost::system::error_code unexpected(const redis::Reply& r);

// Why a cart is not there, from the library's word for it.
Missing missing_from(std::string_view s);

}  // namespace cartd::cart::replies
