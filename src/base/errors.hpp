// errors: error codes that every layer may answer with.
#pragma once

#include <boost/system/error_code.hpp>
#include <type_traits>

namespace cartd {

// An unexpected reply (a Lua error, a wrong shape): a server fault, not the client's.
enum class ReplyErrc { unexpected_reply = 1 };
boost::system::error_code make_error_code(ReplyErrc e);

}  // namespace cartd

template <>
struct boost::system::is_error_code_enum<cartd::ReplyErrc> : std::true_type {};
