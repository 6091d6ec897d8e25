#include "routes/catalog.hpp"

#include <spdlog/spdlog.h>

#include <boost/json/array.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <map>
#include <memory>
#include <utility>

#include "base/session_id.hpp"
#include "routes/classic.hpp"
#include "routes/v1.hpp"

namespace cartd::stock {
namespace {

namespace json = boost::json;
using http::error_response;
using http::PathParams;
using http::Request;
using http::Respond;
using http::Response;

// A stock row with its price in `currency` (the shop's one currency, --currency).
json::object stock_json(const db::StockRow& row, const std::optional<LiveCounts>& live,
                        std::string_view currency) {
  std::int64_t on_hand = live ? live->on_hand : row.on_hand;
  std::int64_t reserved = live ? live->reserved : row.reserved;
  return json::object{{"inventory_id", row.inventory_id},
                      {"product_id", row.product_id},
                      {"name", row.name},
                      {"price_cents", row.price_cents},
                      {"currency", currency},
                      {"on_hand", on_hand},
                      {"reserved", reserved},
                      {"available", on_hand - reserved},
                      {"max_per_cart", row.max_per_cart > 0 ? json::value(row.max_per_cart)
                                                            : json::value(nullptr)}};
}

constexpr std::int64_t kMaxCount = 1'000'000'000;

// The optional max_per_cart of a request body: absent, null or 0 is no limit of the
// row's own.
boost::system::result<std::int64_t, cart::Rejection> max_per_cart_field(const json::object& body) {
  const json::value* v = body.if_contains("max_per_cart");
  if (!v || v->is_null()) {
    return boost::system::result<std::int64_t, cart::Rejection>(boost::system::in_place_value, 0);
  }
  return cart::integer_field(body, "max_per_cart", 0, kMaxCount, "invalid_max_per_cart");
}

// Groups rows (sorted by product) into products with their stock rows.
json::array products_json(const std::vector<db::StockRow>& rows,
                          const std::vector<std::optional<LiveCounts>>& live,
                          std::string_view currency) {
  json::array products;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i == 0 || rows[i].product_id != rows[i - 1].product_id) {
      products.push_back(json::object{{"product_id", rows[i].product_id},
                                      {"name", rows[i].name},
                                      {"price_cents", rows[i].price_cents},
                                      {"currency", currency},
                                      {"stock", json::array{}}});
    }
    products.back().as_object()["stock"].as_array().push_back(
        stock_json(rows[i], live[i], currency));
  }
  return products;
}

// Adds live counts from Redis to rows read from the DB, then answers with make(rows, live).
template <typename Make>
void with_counts(CatalogContext& ctx, std::vector<db::StockRow> rows, Respond respond, Make make) {
  std::vector<std::string> ids;
  for (auto& r : rows) ids.push_back(r.inventory_id);
  ctx.stock.counts(ids, [rows = std::move(rows), respond = std::move(respond), make](auto live) {
    if (!live) return respond(cart::unavailable(live.error()));
    respond(make(rows, *live));
  });
}

bool parse_size(std::string_view text, std::size_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

void list_products(CatalogContext& ctx, const Request& req, Respond respond) {
  auto query = parse_page_query(req.target());
  if (!query) return respond(cart::reject(query.error()));
  std::size_t limit = query->limit;
  std::string cursor = std::move(query->cursor);
  ctx.db.run<std::vector<db::StockRow>>(
      ctx.loop, [cursor, limit](db::Store& s) { return s.products_after(cursor, limit + 1); },
      [&ctx, respond = std::move(respond), limit](db::DbResult<std::vector<db::StockRow>> rows) {
        if (!rows) return respond(cart::db_unavailable(rows.error()));
        // One product more than asked for says whether there is a next page.
        std::vector<db::StockRow> page = std::move(*rows);
        std::string next;
        std::size_t products = 0;
        for (std::size_t i = 0; i < page.size(); ++i) {
          if (i == 0 || page[i].product_id != page[i - 1].product_id) ++products;
          if (products > limit) {
            next = page[i - 1].product_id;
            page.resize(i);
            break;
          }
        }
        with_counts(ctx, std::move(page), respond,
                    [&ctx, next](const auto& rows, const auto& live) {
                      json::object body{{"products", products_json(rows, live, ctx.currency)}};
                      body["next_cursor"] = next.empty() ? json::value(nullptr) : json::value(next);
                      return http::json_response(200, body);
                    });
      });
}

void get_product(CatalogContext& ctx, const std::string& product_id, Respond respond) {
  if (!is_valid_id(product_id)) {
    return respond(error_response(400, "invalid_id", "product_id is not a valid id"));
  }
  ctx.db.run<std::vector<db::StockRow>>(
      ctx.loop, [product_id](db::Store& s) { return s.product(product_id); },
      [&ctx, respond = std::move(respond)](db::DbResult<std::vector<db::StockRow>> rows) {
        if (!rows) return respond(cart::db_unavailable(rows.error()));
        if (rows->empty()) {
          return respond(error_response(404, "product_not_found", "no such product"));
        }
        with_counts(ctx, std::move(*rows), respond, [&ctx](const auto& rows, const auto& live) {
          return http::json_response(200, products_json(rows, live, ctx.currency)[0].as_object());
        });
      });
}

void get_stock(CatalogContext& ctx, const std::string& inventory_id, Respond respond) {
  if (!is_valid_id(inventory_id)) {
    return respond(error_response(400, "invalid_id",
                                  "inventory_id must be 1-64 characters of [A-Za-z0-9._-]"));
  }
  ctx.stock.stock(inventory_id, [respond = std::move(respond)](auto result) {
    if (!result) return respond(cart::unavailable(result.error()));
    if (!*result) return respond(error_response(404, "unknown_inventory", "Unknown inventory_id"));
    const StockView& s = **result;
    respond(http::json_response(200, {{"inventory_id", s.inventory_id},
                                      {"product_id", s.product_id},
                                      {"on_hand", s.on_hand},
                                      {"reserved", s.reserved},
                                      {"available", s.available()}}));
  });
}

// Compares in time independent of where the strings differ.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

// Wraps an admin handler with the bearer-token check.
http::Handler admin(const CatalogContext& ctx, http::Handler handler) {
  return [&ctx, handler = std::move(handler)](const Request& req, const PathParams& p,
                                              Respond respond) {
    auto auth = req.find(boost::beast::http::field::authorization);
    constexpr std::string_view kBearer = "Bearer ";
    if (auth == req.end() || !auth->value().starts_with(kBearer)) {
      Response r = error_response(401, "unauthorized", "admin routes need a bearer token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return respond(std::move(r));
    }
    if (!same_secret(auth->value().substr(kBearer.size()), ctx.admin_token)) {
      return respond(error_response(403, "forbidden", "the token is not the admin token"));
    }
    handler(req, p, std::move(respond));
  };
}

// Mirrors a row the DB now holds into Redis and answers with it.
void mirror_and_answer(CatalogContext& ctx, db::StockRow row, unsigned status, Respond respond) {
  ctx.stock.mirror({row}, [&ctx, row, status, respond = std::move(respond)](auto ok) mutable {
    if (!ok) return respond(cart::unavailable(ok.error()));
    with_counts(ctx, {row}, respond, [&ctx, status](const auto& rows, const auto& live) {
      Response r = http::json_response(status, stock_json(rows[0], live[0], ctx.currency));
      if (status == 201) r.headers.emplace_back("Location", "/v1/stock/" + rows[0].inventory_id);
      return r;
    });
  });
}

void create_stock(CatalogContext& ctx, const Request& req, Respond respond) {
  auto body = cart::parse_object(req.body());
  if (!body) return respond(cart::reject(body.error()));
  db::StockRow row;
  auto inv = cart::id_field(*body, "inventory_id");
  if (!inv) return respond(cart::reject(inv.error()));
  auto product = cart::id_field(*body, "product_id");
  if (!product) return respond(cart::reject(product.error()));
  const json::value* name = body->if_contains("name");
  if (!name || !name->is_string() || name->get_string().empty() ||
      name->get_string().size() > 200) {
    return respond(error_response(400, "invalid_name", "name must be 1-200 characters"));
  }
  auto price = cart::integer_field(*body, "price_cents", 0, kMaxCount, "invalid_price");
  if (!price) return respond(cart::reject(price.error()));
  auto on_hand = cart::integer_field(*body, "on_hand", 0, kMaxCount, "invalid_on_hand");
  if (!on_hand) return respond(cart::reject(on_hand.error()));
  auto max_per_cart = max_per_cart_field(*body);
  if (!max_per_cart) return respond(cart::reject(max_per_cart.error()));
  row = db::StockRow{*inv, *product,     std::string(name->get_string()), *price, *on_hand, 0,
                     0,    *max_per_cart};

  struct Created {
    bool inserted;
    db::StockRow row;
  };
  ctx.db.run<Created>(
      ctx.loop,
      [row](db::Store& s) {
        bool inserted = s.insert_stock_row(row);
        return Created{inserted, *s.stock_row(row.inventory_id)};
      },
      [&ctx, row, respond = std::move(respond)](db::DbResult<Created> c) {
        if (!c) return respond(cart::db_unavailable(c.error()));
        const db::StockRow& stored = c->row;
        bool same = stored.product_id == row.product_id && stored.name == row.name &&
                    stored.price_cents == row.price_cents && stored.on_hand == row.on_hand &&
                    stored.max_per_cart == row.max_per_cart;
        if (!c->inserted && !same) {
          return respond(error_response(409, "stock_exists",
                                        "a stock row with this inventory_id exists",
                                        {{"inventory_id", row.inventory_id}}));
        }
        // A retry of the same request mirrors again and answers 200.
        mirror_and_answer(ctx, stored, c->inserted ? 201 : 200, respond);
      });
}

// PUT /v1/stock/{id}/max-per-cart: the units of the row one cart may hold. Carts above a
// new limit keep their lines (they may lower them); adds beyond it are refused (422
// limit_exceeded). Setting the same value again is harmless: a 503 (Redis away after the
// DB took it) is retried as is.
void set_max_per_cart(CatalogContext& ctx, const Request& req, const std::string& inventory_id,
                      Respond respond) {
  if (!is_valid_id(inventory_id)) {
    return respond(error_response(400, "invalid_id", "inventory_id is not a valid id"));
  }
  auto body = cart::parse_object(req.body());
  if (!body) return respond(cart::reject(body.error()));
  if (!body->contains("max_per_cart")) {
    return respond(error_response(400, "missing_field", "max_per_cart is required (null: none)"));
  }
  auto max_per_cart = max_per_cart_field(*body);
  if (!max_per_cart) return respond(cart::reject(max_per_cart.error()));
  ctx.db.run<std::optional<db::StockRow>>(
      ctx.loop,
      [inventory_id, limit = *max_per_cart](db::Store& s) -> std::optional<db::StockRow> {
        if (!s.set_max_per_cart(inventory_id, limit)) return std::nullopt;
        return s.stock_row(inventory_id);
      },
      [&ctx, respond = std::move(respond)](db::DbResult<std::optional<db::StockRow>> row) {
        if (!row) return respond(cart::db_unavailable(row.error()));
        if (!*row) return respond(error_response(404, "unknown_inventory", "Unknown inventory_id"));
        mirror_and_answer(ctx, **row, 200, respond);
      });
}

// PUT /v1/stock/{id} (absolute) and POST /v1/stock/{id}/adjust (delta). Every change is a
// delta applied once in the main DB, with its ledger row and its request key:
//   1. read the row (PUT: the delta from its on_hand, and its version) and whether the
//      request key was applied before (a replay answers without changing anything);
//   2. a change that removes units first holds them in Redis (cartd_admin_hold), so no
//      cart can hold them while the DB changes; refused if they are not available;
//   3. the DB applies the delta (PUT: only if the row's version is still the one read;
//      otherwise start again); a DB error is checked against the request key, so the
//      answer is either "applied once" or "nothing changed";
//   4. Redis takes the new on_hand (versioned) and drops the hold in one step. If Redis
//      does not answer, the change stands (200) and the mirror sync catches up.
class AdminChange : public std::enable_shared_from_this<AdminChange> {
 public:
  AdminChange(CatalogContext& ctx, std::string inv, std::int64_t value, bool absolute,
              std::string request_key, bool key_given, Respond respond)
      : ctx_(ctx),
        inv_(std::move(inv)),
        value_(value),
        absolute_(absolute),
        request_key_(std::move(request_key)),
        key_given_(key_given),
        respond_(std::move(respond)) {}

  void start() {
    if (!ctx_.stock.ready()) {
      // Not begun: a change the mirror could not take now would change nothing visible.
      return respond_(cart::unavailable(StockService::unavailable()));
    }
    if (++attempts_ > kMaxAttempts) {
      return respond_(
          error_response(409, "concurrent_change", "the stock row kept changing; try again"));
    }
    struct Read {
      std::optional<db::StockRow> row;
      bool applied = false;
    };
    ctx_.db.run<Read>(
        ctx_.loop,
        [inv = inv_, key = request_key_, given = key_given_](db::Store& s) {
          // A key cartd made for this request cannot have been applied: no lookup.
          return Read{s.stock_row(inv), given && s.admin_request_applied(key)};
        },
        [self = shared_from_this()](db::DbResult<Read> read) {
          if (!read) return self->respond_(cart::db_unavailable(read.error()));
          if (!read->row) {
            return self->respond_(error_response(404, "unknown_inventory", "Unknown inventory_id"));
          }
          self->read(*read->row, read->applied);
        });
  }

 private:
  static constexpr int kMaxAttempts = 5;

  void read(const db::StockRow& row, bool applied) {
    request_.inventory_id = inv_;
    request_.request_key = request_key_;
    request_.reason = absolute_ ? "admin_set" : "admin_adjust";
    request_.request = request_.reason + " " + std::to_string(value_);
    request_.delta = absolute_ ? value_ - row.on_hand : value_;
    if (absolute_) request_.expected_version = row.version;
    if (applied || request_.delta >= 0) return write();
    if (row.on_hand + request_.delta < 0) {
      return respond_(error_response(409, "negative_on_hand", "on_hand may not fall below 0",
                                     {{"on_hand", row.on_hand}}));
    }
    hold_member_ = admin_hold_member(new_session_id(), -request_.delta);
    ctx_.stock.admin_hold(
        inv_, hold_member_, -request_.delta, ctx_.admin_hold,
        [self = shared_from_this()](boost::system::result<AdminHold> held) {
          if (!held) return self->respond_(cart::unavailable(held.error()));
          switch (held->kind) {
            case AdminHold::Kind::ok:
              return self->write();
            case AdminHold::Kind::unknown_inventory:
              return self->respond_(
                  error_response(404, "unknown_inventory", "Unknown inventory_id"));
            case AdminHold::Kind::below_reserved:
              return self->respond_(error_response(
                  409, "below_reserved", "on_hand may not fall below the units held in carts",
                  {{"reserved", held->counts.reserved}, {"on_hand", held->counts.on_hand}}));
          }
        });
  }

  void write() {
    ctx_.db.run<db::OnHandResult>(
        ctx_.loop, [req = request_](db::Store& s) { return s.change_on_hand(req); },
        [self = shared_from_this()](db::DbResult<db::OnHandResult> r) {
          if (!r) return self->after_db_error(r.error());
          self->written(*r);
        });
  }

  void written(const db::OnHandResult& r) {
    using C = db::OnHandChange;
    switch (r.result) {
      case C::ok:
        return apply(r.row);
      case C::replayed:
        // Applied by an earlier request with this key (maybe one still running, whose
        // own last step applies it): this one changed nothing, so its hold goes without
        // touching on_hand, then the row takes the DB's count as the mirror sync would.
        return release_hold([self = shared_from_this(), row = r.row] { self->apply(row); });
      case C::version_changed:
        return release_hold([self = shared_from_this()] { self->start(); });
      case C::unknown_inventory:
        return release_hold([self = shared_from_this()] {
          self->respond_(error_response(404, "unknown_inventory", "Unknown inventory_id"));
        });
      case C::negative:
        return release_hold([self = shared_from_this()] {
          self->respond_(error_response(409, "negative_on_hand", "on_hand may not fall below 0"));
        });
      case C::key_reused:
        return release_hold([self = shared_from_this()] {
          self->respond_(error_response(422, "idempotency_key_reused",
                                        "this Idempotency-Key was used for another request"));
        });
    }
  }

  // The DB failed: whether the change committed is unknown until the request key says.
  void after_db_error(const std::string& error) {
    struct Outcome {
      bool applied;
      std::optional<db::StockRow> row;
    };
    ctx_.db.run<Outcome>(
        ctx_.loop,
        [key = request_key_, inv = inv_](db::Store& s) {
          bool applied = s.admin_request_applied(key);
          return Outcome{applied, applied ? s.stock_row(inv) : std::nullopt};
        },
        [self = shared_from_this(), error](db::DbResult<Outcome> o) {
          if (o && o->applied && o->row) return self->apply(*o->row);
          // Not applied (or unknown: then a retry with the same Idempotency-Key is safe).
          self->release_hold([self, error] { self->respond_(cart::db_unavailable(error)); });
        });
  }

  void apply(const db::StockRow& row) {
    ctx_.stock.apply_on_hand(
        hold_member_.empty() ? "" : inv_, hold_member_,
        {{row.inventory_id, row.on_hand, row.version}},
        [self = shared_from_this(), row](auto live) {
          std::optional<LiveCounts> counts;
          if (live && !live->empty()) {
            counts = (*live)[0];
          } else {
            spdlog::warn(
                "admin: {} changed in the main DB; Redis did not take it yet ({}): the "
                "mirror sync will",
                row.inventory_id, live ? "unknown row" : live.error().message());
          }
          self->respond_(http::json_response(200, stock_json(row, counts, self->ctx_.currency)));
        });
  }

  // Drops the admin hold, if any, then calls next (whatever Redis answered: a hold left
  // behind frees itself at its deadline).
  void release_hold(std::function<void()> next) {
    if (hold_member_.empty()) return next();
    std::string member = std::exchange(hold_member_, "");
    ctx_.stock.apply_on_hand(inv_, member, {}, [next](auto) { next(); });
  }

  CatalogContext& ctx_;
  std::string inv_;
  std::int64_t value_;
  bool absolute_;
  std::string request_key_;
  bool key_given_;  // the client's Idempotency-Key (else one made for this request)
  Respond respond_;
  db::OnHandRequest request_;
  std::string hold_member_;
  int attempts_ = 0;
};

// PUT /v1/stock/{id} {"on_hand"} (absolute) or POST .../adjust {"delta"} (relative).
http::Handler on_hand_route(CatalogContext& ctx, std::string_view field, std::int64_t min,
                            std::int64_t max, std::string_view code, bool absolute) {
  return admin(ctx, [&ctx, field, min, max, code, absolute](const Request& req, const PathParams& p,
                                                            Respond respond) {
    if (!is_valid_id(p[0])) {
      return respond(error_response(400, "invalid_id", "inventory_id is not a valid id"));
    }
    auto body = cart::parse_object(req.body());
    if (!body) return respond(cart::reject(body.error()));
    auto value = cart::integer_field(*body, field, min, max, code);
    if (!value) return respond(cart::reject(value.error()));
    // With an Idempotency-Key, a retry of a request whose answer was lost is applied at
    // most once; without one, each request is its own.
    std::string key = new_session_id();
    auto given = req.find("Idempotency-Key");
    if (given != req.end()) {
      if (!cart::is_valid_idempotency_key(given->value())) {
        return respond(error_response(400, "invalid_idempotency_key",
                                      "an Idempotency-Key is 1-128 printable ASCII characters"));
      }
      key = std::string(given->value());
    }
    std::make_shared<AdminChange>(ctx, p[0], *value, absolute, std::move(key), given != req.end(),
                                  std::move(respond))
        ->start();
  });
}

}  // namespace

boost::system::result<PageQuery, cart::Rejection> parse_page_query(std::string_view target) {
  auto url = boost::urls::parse_origin_form(target);
  if (!url) return cart::Rejection{400, "bad_request", "the request target is not a valid path"};
  PageQuery query;
  for (auto param : url->params()) {
    if (param.key == "limit") {
      if (!parse_size(param.value, query.limit) || query.limit < 1 || query.limit > kMaxPageSize) {
        return cart::Rejection{
            400, "invalid_limit",
            "limit must be an integer from 1 to " + std::to_string(kMaxPageSize)};
      }
    } else if (param.key == "cursor") {
      query.cursor = param.value;
      if (!is_valid_id(query.cursor)) {
        return cart::Rejection{400, "invalid_cursor", "cursor is not a valid cursor"};
      }
    }
  }
  return query;
}

void add_catalog_routes(http::Router& router, CatalogContext& ctx) {
  router.add(http::Verb::get, "/v1/products",
             [&ctx](const Request& req, const PathParams&, Respond respond) {
               list_products(ctx, req, std::move(respond));
             });
  router.add(http::Verb::get, "/v1/products/{product_id}",
             [&ctx](const Request&, const PathParams& p, Respond respond) {
               get_product(ctx, p[0], std::move(respond));
             });
  router.add(http::Verb::get, "/v1/stock/{inventory_id}",
             [&ctx](const Request&, const PathParams& p, Respond respond) {
               get_stock(ctx, p[0], std::move(respond));
             });
  if (ctx.admin_token.empty()) return;

  router.add(http::Verb::post, "/v1/stock",
             admin(ctx, [&ctx](const Request& req, const PathParams&, Respond respond) {
               create_stock(ctx, req, std::move(respond));
             }));
  router.add(http::Verb::put, "/v1/stock/{inventory_id}/max-per-cart",
             admin(ctx, [&ctx](const Request& req, const PathParams& p, Respond respond) {
               set_max_per_cart(ctx, req, p[0], std::move(respond));
             }));
  constexpr std::int64_t kMaxUnits = 1'000'000'000;
  router.add(http::Verb::put, "/v1/stock/{inventory_id}",
             on_hand_route(ctx, "on_hand", 0, kMaxUnits, "invalid_on_hand", true));
  router.add(http::Verb::post, "/v1/stock/{inventory_id}/adjust",
             on_hand_route(ctx, "delta", -kMaxUnits, kMaxUnits, "invalid_delta", false));
}

}  // namespace cartd::stock
