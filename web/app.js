// The cartd storefront: lists products with live availability, keeps the shopper's
// cart id in localStorage, and talks to the /v1 API of the cartd that serves it.

const CART_KEY = 'cart-session-id';
const POLL_MS = 2000;          // cart, and stock while no live stream is open
const CATALOG_MS = 30000;      // names and prices, while the stream brings availability
const STREAM_MAX_ROWS = 100;   // cartd's --stream-max-rows default: rows per stream
const MAX_QUANTITY = 100;

const $ = (id) => document.getElementById(id);

// Amounts come in the currency's minor unit (`*_cents`) with the shop's ISO 4217
// `currency` beside them; the formatter knows how many minor digits each currency has.
const formatters = new Map();
function money(minorUnits, currency = state.currency) {
  if (!formatters.has(currency)) {
    formatters.set(currency, new Intl.NumberFormat('en-US', { style: 'currency', currency }));
  }
  const format = formatters.get(currency);
  return format.format(minorUnits / 10 ** format.resolvedOptions().maximumFractionDigits);
}

const state = {
  cartId: localStorage.getItem(CART_KEY),
  cart: null,
  deadline: 0,        // local clock ms when the cart expires
  products: new Map(), // product_id -> product
  checkoutKey: null,   // reused when a checkout is retried
  busy: false,
  stockError: false,   // the message shown is about loading stock
  currency: 'USD',     // the shop's, as the API last named it
  streams: [],         // EventSources of GET /v1/stock/stream, each for up to STREAM_MAX_ROWS rows
  streamRows: '',      // the inventory ids they watch, joined
  cartStream: null,    // EventSource of GET /v1/carts/{id}/stream while the cart waits in a line
  cartStreamKey: '',   // the cart and the rows it waited on when that stream opened
};

class HttpError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.body = body;
  }
}

async function api(method, path, body, headers = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new HttpError(0, { error: { code: 'network', message: 'network error' } });
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}

function notice(text) {
  $('notice').textContent = text;
  $('notice').hidden = !text;
}

function error(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
  state.stockError = false;
}

// Says what went wrong in words a shopper understands; the page stays usable.
function explain(e, what) {
  if (e.status === 0) return error(`Can't reach the shop right now, so we couldn't ${what}. Check your connection and try again.`);
  if (e.status === 503) return error(`The shop is busy right now, so we couldn't ${what}. Please try again in a moment.`);
  if (e.code === 'insufficient_stock') {
    const left = e.body.error.available;
    return error(left > 0 ? `Only ${left} left in stock: we couldn't ${what}.` : `Out of stock: 0 available, so we couldn't ${what}.`);
  }
  error(`Sorry, we couldn't ${what}: ${e.message}.`);
}

function forgetCart(expired) {
  state.cartId = null;
  state.cart = null;
  watchCart();
  state.checkoutKey = null;
  localStorage.removeItem(CART_KEY);
  if (expired) notice('Your cart expired and its items went back on the shelf. A fresh cart starts when you add something.');
  renderCart();
}

async function ensureCart() {
  if (state.cartId) return state.cartId;
  const cart = await api('POST', '/v1/carts');
  state.cartId = cart.id;
  localStorage.setItem(CART_KEY, cart.id);
  showCart(cart);
  return cart.id;
}

function showCart(cart) {
  state.cart = cart;
  if (cart.currency) state.currency = cart.currency;
  state.deadline = Date.now() + cart.ttl_seconds * 1000;
  renderCart();
  updateCards();
  watchCart();
}

// The cart is no more: expired, unknown, or already an order (410 cart_checked_out).
function isGone(e) {
  return (e.status === 404 && (e.code === 'cart_expired' || e.code === 'cart_not_found')) ||
    e.status === 410;
}

async function refreshCart() {
  if (!state.cartId) return renderCart();
  try {
    showCart(await api('GET', `/v1/carts/${state.cartId}`));
  } catch (e) {
    if (isGone(e)) forgetCart(true);
    else if (e.status === 0 || e.status === 503) explain(e, 'refresh your cart');
  }
}

// Runs a change of the cart; a cart that expired meanwhile is replaced once.
async function changeCart(what, change) {
  if (state.busy) return;
  state.busy = true;
  error('');
  try {
    let id = await ensureCart();
    try {
      showCart(await change(id));
    } catch (e) {
      if (!isGone(e)) throw e;
      forgetCart(true);
      id = await ensureCart();
      showCart(await change(id));
    }
    if (!state.cart.lines.length) notice('');
  } catch (e) {
    explain(e, what);
  } finally {
    state.busy = false;
    refreshProducts();
  }
}

function addToCart(product, inventoryId, quantity) {
  notice('');
  $('confirmation').hidden = true;
  return changeCart(`add ${product.name} to your cart`, (id) =>
    api('POST', `/v1/carts/${id}/items`, { product_id: product.product_id, inventory_id: inventoryId, quantity }));
}

function setLine(line, quantity) {
  return changeCart(`change ${line.name}`, (id) =>
    api('PUT', `/v1/carts/${id}/items/${encodeURIComponent(line.product_id)}`, { inventory_id: line.inventory_id, quantity }));
}

function removeLine(line) {
  return changeCart(`remove ${line.name}`, (id) =>
    api('DELETE', `/v1/carts/${id}/items/${encodeURIComponent(line.product_id)}`));
}

async function checkout() {
  if (!state.cartId || state.busy) return;
  state.busy = true;
  error('');
  state.checkoutKey ??= crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  try {
    const order = await api('POST', `/v1/carts/${state.cartId}/checkout`, null, { 'Idempotency-Key': state.checkoutKey });
    forgetCart(false);
    const box = $('confirmation');
    box.hidden = false;
    box.innerHTML = '';
    const title = document.createElement('h3');
    title.textContent = 'Thank you for your order!';
    const id = document.createElement('p');
    id.append('Order ', Object.assign(document.createElement('code'), { textContent: order.order_id }));
    const total = document.createElement('p');
    total.textContent = `Total ${money(order.total_cents, order.currency)}`;
    const more = document.createElement('button');
    more.type = 'button';
    more.className = 'primary';
    more.textContent = 'Continue shopping';
    more.addEventListener('click', continueShopping);
    box.append(title, id, total, more);
  } catch (e) {
    if (e.status === 410 || isGone(e)) forgetCart(true);
    else explain(e, 'check out');
  } finally {
    state.busy = false;
    refreshProducts();
  }
}

// Closes the confirmation and takes the shopper back to the products.
function continueShopping() {
  $('confirmation').hidden = true;
  const heading = $('catalog-title');
  heading.scrollIntoView({ behavior: 'smooth', block: 'start' });
  heading.focus({ preventScroll: true });
}

// mm:ss of a number of seconds.
function clock(seconds) {
  return `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
}

// The cart's offer and its place in line for a stock row, if any.
function waitOf(inventoryId) {
  return {
    offer: state.cart?.offers?.find((o) => o.inventory_id === inventoryId),
    place: state.cart?.waitlist?.find((w) => w.inventory_id === inventoryId),
  };
}

function updateCards() {
  for (const card of document.querySelectorAll('#products article')) {
    const product = state.products.get(card.dataset.product);
    if (product) updateCard(card, product);
  }
}

async function joinWaitlist(product, inventoryId, quantity) {
  if (state.busy) return;
  state.busy = true;
  error('');
  try {
    const id = await ensureCart();
    const place = await api('POST', `/v1/stock/${encodeURIComponent(inventoryId)}/waitlist`, { cart_id: id, quantity });
    notice(`You are #${place.position} in line for ${product.name}. If a unit comes back, it is held for you here.`);
  } catch (e) {
    if (e.code === 'stock_available') notice(`${product.name} is back in stock: add it to your cart.`);
    else if (e.code === 'offer_pending') notice(`${product.name} is held for you: claim it.`);
    else explain(e, `join the waitlist for ${product.name}`);
  } finally {
    state.busy = false;
    await refreshCart();
    refreshProducts();
  }
}

async function leaveWaitlist(product, inventoryId) {
  if (!state.cartId || state.busy) return;
  state.busy = true;
  try {
    await api('DELETE', `/v1/stock/${encodeURIComponent(inventoryId)}/waitlist/${state.cartId}`);
    notice('');
  } catch (e) {
    if (e.code !== 'not_waiting') explain(e, `leave the line for ${product.name}`);
  } finally {
    state.busy = false;
    await refreshCart();
  }
}

// While the cart waits in a line, its own stream says at once when units are held for it.
function watchCart() {
  const rows = [...(state.cart?.waitlist ?? []), ...(state.cart?.offers ?? [])].map((w) => w.inventory_id).sort();
  const key = rows.length && typeof EventSource !== 'undefined' ? `${state.cartId}:${rows.join('|')}` : '';
  const closed = state.cartStream?.readyState === EventSource.CLOSED;
  if (key === state.cartStreamKey && !closed) return;
  state.cartStream?.close();
  state.cartStream = null;
  state.cartStreamKey = key;
  if (!key) return;
  state.cartStream = new EventSource(`/v1/carts/${state.cartId}/stream`);
  state.cartStream.addEventListener('offer', (event) => {
    const offer = JSON.parse(event.data);
    const product = state.products.get(offer.product_id);
    notice(`Good news: ${offer.quantity} of ${product?.name ?? offer.product_id} came back and is held for you. Claim it before the timer runs out.`);
    refreshCart();
  });
}

function availabilityText(row) {
  if (row.available <= 0) return 'Out of stock';
  if (row.available <= 3) return `Only ${row.available} left`;
  return `${row.available} available`;
}

function productCard(product) {
  const card = document.createElement('article');
  card.className = 'product';
  card.dataset.product = product.product_id;
  const title = document.createElement('h3');
  title.textContent = product.name;
  const price = document.createElement('p');
  price.className = 'price';
  price.textContent = money(product.price_cents, product.currency);
  const stock = document.createElement('p');
  stock.className = 'stock';
  stock.setAttribute('aria-live', 'polite');

  // A product held in several stock rows (sizes, warehouses) lets the shopper choose one.
  const source = document.createElement('select');
  source.setAttribute('aria-label', `Stock of ${product.name}`);
  for (const row of product.stock) source.append(new Option(row.name, row.inventory_id));

  const quantity = document.createElement('input');
  quantity.type = 'number';
  quantity.min = '1';
  quantity.max = String(MAX_QUANTITY);
  quantity.value = '1';
  quantity.id = `qty-${product.product_id}`;
  const label = document.createElement('label');
  label.htmlFor = quantity.id;
  label.textContent = 'Quantity';

  const add = document.createElement('button');
  add.type = 'button';
  add.className = 'primary add';
  add.textContent = 'Add to cart';
  add.addEventListener('click', () => {
    const n = Math.max(1, Math.min(MAX_QUANTITY, Number.parseInt(quantity.value, 10) || 1));
    addToCart(state.products.get(product.product_id), source.value, n);
  });
  source.addEventListener('change', () => updateCard(card, state.products.get(product.product_id)));

  // The fair waitlist: a sold-out product can be waited for; units that come back are
  // held for the first in line, who claims them before the offer runs out.
  const wait = document.createElement('div');
  wait.className = 'wait';
  const waitText = document.createElement('p');
  waitText.className = 'wait-text';
  waitText.setAttribute('aria-live', 'polite');
  const waitButton = document.createElement('button');
  waitButton.type = 'button';
  waitButton.className = 'wait-button';
  waitButton.addEventListener('click', () => {
    const current = state.products.get(product.product_id);
    const n = Math.max(1, Math.min(MAX_QUANTITY, Number.parseInt(quantity.value, 10) || 1));
    const { offer, place } = waitOf(source.value);
    if (offer) addToCart(current, source.value, offer.quantity);
    else if (place) leaveWaitlist(current, source.value);
    else joinWaitlist(current, source.value, n);
  });
  wait.append(waitText, waitButton);

  const row = document.createElement('div');
  row.className = 'row';
  row.append(label, quantity);
  card.append(title, price);
  if (product.stock.length > 1) card.append(source);
  card.append(stock, row, add, wait);
  return card;
}

function updateCard(card, product) {
  const select = card.querySelector('select');
  const row = product.stock.find((r) => r.inventory_id === select?.value) ?? product.stock[0];
  const stock = card.querySelector('.stock');
  stock.textContent = availabilityText(row);
  stock.className = `stock${row.available <= 0 ? ' out' : row.available <= 3 ? ' low' : ''}`;
  // Sold out: nothing to add, so the button says so instead of failing when pressed.
  const soldOut = row.available <= 0;
  const add = card.querySelector('button.add');
  add.disabled = soldOut;
  add.textContent = soldOut ? 'Sold out' : 'Add to cart';
  card.querySelector('input[type=number]').disabled = soldOut;
  const { offer, place } = waitOf(row.inventory_id);
  const wait = card.querySelector('.wait');
  const text = wait.querySelector('.wait-text');
  const button = wait.querySelector('button');
  wait.hidden = !(soldOut || offer || place);
  if (offer) {
    const left = Math.max(0, Math.ceil((Date.parse(offer.expires_at) - Date.now()) / 1000));
    text.textContent = `${offer.quantity} held for you: claim within ${clock(left)}`;
    text.className = 'wait-text offer';
    button.textContent = 'Claim';
    button.className = 'wait-button primary';
  } else if (place) {
    text.textContent = `You are #${place.position} in line`;
    text.className = 'wait-text';
    button.textContent = 'Leave the line';
    button.className = 'wait-button';
  } else {
    text.textContent = '';
    button.textContent = 'Join the waitlist';
    button.className = 'wait-button';
  }
  for (const option of select?.options ?? []) {
    const r = product.stock.find((s) => s.inventory_id === option.value);
    if (r) option.textContent = `${r.name} (${availabilityText(r).toLowerCase()})`;
  }
}

// Live availability: cartd pushes each row's counts as they change (Server-Sent Events),
// so the page shows a sell-out or a returned unit at once, without polling. An EventSource
// reconnects by itself (a cartd restart, a network blip) and then hears the current counts.
function rowsById() {
  const rows = new Map();
  for (const product of state.products.values()) {
    for (const row of product.stock) rows.set(row.inventory_id, [product, row]);
  }
  return rows;
}

function streamOpen() {
  return state.streams.length > 0 && state.streams.every((s) => s.readyState === EventSource.OPEN);
}

function watchStock() {
  if (typeof EventSource === 'undefined') return;  // polling it is
  const ids = [...rowsById().keys()];
  // A source the server refused (503 at its stream cap, a restart) is closed for good:
  // it is opened again here, on the next refresh of the polling that stands in for it.
  const closed = state.streams.some((s) => s.readyState === EventSource.CLOSED);
  if (ids.join('|') === state.streamRows && !closed) return;
  for (const s of state.streams) s.close();
  state.streamRows = ids.join('|');
  state.streams = [];
  for (let i = 0; i < ids.length; i += STREAM_MAX_ROWS) {
    const query = ids.slice(i, i + STREAM_MAX_ROWS).map((id) => `inventory_id=${encodeURIComponent(id)}`).join('&');
    const source = new EventSource(`/v1/stock/stream?${query}`);
    source.addEventListener('stock', (event) => {
      const counts = JSON.parse(event.data);
      const found = rowsById().get(counts.inventory_id);
      if (!found) return;
      const [product, row] = found;
      Object.assign(row, { available: counts.available, on_hand: counts.on_hand, reserved: counts.reserved });
      const card = document.querySelector(`article[data-product="${CSS.escape(product.product_id)}"]`);
      if (card) updateCard(card, product);
    });
    state.streams.push(source);
  }
}

async function refreshProducts() {
  try {
    const products = [];
    let cursor = null;
    do {
      const page = await api('GET', `/v1/products?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      products.push(...page.products);
      cursor = page.next_cursor;
    } while (cursor);
    const container = $('products');
    const known = [...state.products.keys()].join('|');
    state.products = new Map(products.map((p) => [p.product_id, p]));
    if (products[0]?.currency) state.currency = products[0].currency;
    $('currency').textContent = state.currency;
    if (known !== [...state.products.keys()].join('|')) {
      container.replaceChildren(...products.map(productCard));
    }
    for (const card of container.querySelectorAll('article')) updateCard(card, state.products.get(card.dataset.product));
    container.setAttribute('aria-busy', 'false');
    watchStock();
    if (state.stockError) error('');  // the shop is back
    state.stockError = false;
  } catch (e) {
    explain(e, 'load the latest stock');
    state.stockError = true;
  }
}

function renderCart() {
  const cart = state.cart;
  const lines = cart?.lines ?? [];
  const list = $('lines');
  list.replaceChildren(...lines.map((line) => {
    const item = document.createElement('li');
    item.className = 'line';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = line.name;
    const total = document.createElement('span');
    total.textContent = money(line.line_total_cents, line.currency);
    const controls = document.createElement('div');
    controls.className = 'controls';
    const qty = document.createElement('input');
    qty.type = 'number';
    qty.min = '0';
    qty.max = String(MAX_QUANTITY);
    qty.value = String(line.quantity);
    qty.setAttribute('aria-label', `Quantity of ${line.name}`);
    qty.addEventListener('change', () => {
      const n = Math.max(0, Math.min(MAX_QUANTITY, Number.parseInt(qty.value, 10) || 0));
      setLine(line, n);
    });
    const each = document.createElement('span');
    each.className = 'muted';
    each.textContent = `× ${money(line.unit_price_cents, line.currency)}`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${line.name}`);
    remove.addEventListener('click', () => removeLine(line));
    controls.append(qty, each, remove);
    item.append(name, total, controls);
    return item;
  }));
  $('empty').hidden = lines.length > 0;
  $('total').textContent = money(cart?.total_cents ?? 0, cart?.currency);
  $('checkout').disabled = lines.length === 0;
  $('timer-line').hidden = !cart || lines.length === 0;
  tick();
}

function tick() {
  const left = Math.max(0, Math.ceil((state.deadline - Date.now()) / 1000));
  $('timer').textContent = clock(left);
  if (state.cart?.offers?.length) {
    updateCards();  // the offers' countdowns
    // An offer that ran out has passed to the next in line: the cart says so.
    if (!state.busy && state.cart.offers.some((o) => Date.parse(o.expires_at) <= Date.now())) refreshCart();
  }
  if (state.cart && state.cart.lines.length && left === 0 && !state.busy) {
    state.cart = null;  // ask the server once, then say so
    refreshCart().then(refreshProducts);
  }
}

$('checkout').addEventListener('click', checkout);
setInterval(tick, 250);
let lastCatalog = Date.now();
setInterval(() => {
  // With a live stream open, the catalog itself (names, prices, new products) is read
  // now and then; without one, stock is polled too.
  if (!streamOpen() || Date.now() - lastCatalog >= CATALOG_MS) {
    lastCatalog = Date.now();
    refreshProducts();
  }
  if (state.cartId && !state.busy && !document.activeElement?.closest?.('.cart')) refreshCart();
}, POLL_MS);
refreshProducts();
refreshCart();
