#include "base/errors.hpp"

#include <string>

namespace cartd {
namespace {

class ReplyCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cartd.reply"; }
  std::string message(int) const override { return "Redis answered in an unexpected way"; }
};

}  // namespace

boost::system::error_code make_error_code(ReplyErrc e) {
  static const ReplyCategory category;
  return {static_cast<int>(e), category};
}

}  // namespace cartd
