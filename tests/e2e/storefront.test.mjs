// The storefront in a real browser: playwright-core drives Debian's chromium (no browser
// download) against a cartd and a redis-server this test starts on free loopback ports.
// Screenshots go to test-output/e2e/ (git ignores it) for a person to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const CARTD = process.env.CARTD_BINARY ?? resolve(here, '../../build/test/cartd');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const OUTPUT = process.env.E2E_OUTPUT ?? resolve(here, '../../test-output/e2e');
const TTL_SECONDS = 3;

const catalog = [
  { inventory_id: 'mug', product_id: 'mug', name: 'Enamel Mug', price_cents: 1500, on_hand: 10 },
  { inventory_id: 'cap', product_id: 'cap', name: 'Canvas Cap', price_cents: 2500, on_hand: 20 },
  { inventory_id: 'tee-m', product_id: 'tee-m', name: 'Classic Tee', price_cents: 1999, on_hand: 8 },
  { inventory_id: 'lamp', product_id: 'lamp', name: 'Desk Lamp', price_cents: 12900, on_hand: 1 },
  { inventory_id: 'boot-eu', product_id: 'boot', name: 'Trail Boot', price_cents: 9900, on_hand: 4 },
  { inventory_id: 'boot-us', product_id: 'boot', name: 'Trail Boot (US warehouse)', price_cents: 9900, on_hand: 2 },
  { inventory_id: 'vase', product_id: 'vase', name: 'Glass Vase', price_cents: 3000, on_hand: 1 },
];

let dir, redis, cartd, browser, base;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function until(check, what, timeoutMs = 8000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what} (last: ${last})`);
}

async function stock(inv) {
  const r = await fetch(`${base}/v1/stock/${inv}`);
  return r.json();
}

const card = (page, name) => page.getByRole('article').filter({ has: page.getByRole('heading', { name }) });
const cart = (page) => page.getByRole('region', { name: 'Cart', exact: true });

async function add(page, name, quantity = 1) {
  const c = card(page, name);
  await c.getByLabel('Quantity').fill(String(quantity));
  await c.getByRole('button', { name: 'Add to cart' }).click();
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cartd-e2e-'));
  mkdirSync(OUTPUT, { recursive: true });
  writeFileSync(join(dir, 'catalog.json'), JSON.stringify(catalog));
  const redisPort = await freePort();
  redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir, '--save', ''], { stdio: 'ignore' });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (cartd) return true;
    return new Promise((ok) => {
      const probe = createServer().once('error', () => ok(false));
      probe.listen(redisPort, '127.0.0.1', () => probe.close(() => ok(false)));
      setTimeout(() => ok(false), 200);
    }).then(() => true);
  }, 'redis');
  cartd = spawn(CARTD, ['--listen', `127.0.0.1:${port}`, '--redis', `redis://127.0.0.1:${redisPort}/0`,
    '--db', `sqlite:${join(dir, 'cartd.db')}`, '--catalog', join(dir, 'catalog.json'),
    '--cart-ttl', String(TTL_SECONDS), '--sweep-interval-ms', '200', '--threads', '1'], { stdio: 'ignore' });
  await until(async () => (await fetch(`${base}/healthz`)).ok, 'cartd to be healthy', 15000);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  cartd?.kill('SIGTERM');
  redis?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a shopper adds, changes, removes and checks out', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(base);
  await card(page, 'Enamel Mug').getByText('10 available').waitFor();
  const before = await stock('mug');

  await add(page, 'Enamel Mug', 2);
  await cart(page).getByText('Enamel Mug').waitFor();
  await add(page, 'Canvas Cap', 1);
  await cart(page).getByText('Canvas Cap').waitFor();
  await page.getByRole('timer').waitFor();
  // The TTL, its deadline rounded up to the bucket quantum (a hundredth of it).
  assert.match(await page.getByRole('timer').textContent(), /^00:0[0-4]$/);

  await cart(page).getByLabel('Quantity of Enamel Mug').fill('3');
  await cart(page).getByLabel('Quantity of Enamel Mug').press('Enter');
  await until(async () => (await stock('mug')).reserved === 3, 'the mug line to be 3');
  await cart(page).getByRole('button', { name: 'Remove Canvas Cap' }).click();
  await until(async () => (await cart(page).getByText('Canvas Cap').count()) === 0, 'the cap line to go');
  assert.equal((await stock('cap')).reserved, 0);
  await until(async () => (await cart(page).textContent()).includes('$45.00'), 'the total');
  await page.screenshot({ path: join(OUTPUT, 'desktop-cart.png'), fullPage: true });

  await cart(page).getByRole('button', { name: 'Checkout' }).click();
  const confirmation = page.getByRole('region', { name: 'Order confirmation' });
  await confirmation.getByText('Thank you for your order!').waitFor();
  const text = await confirmation.textContent();
  assert.match(text, /Order [0-9a-f-]{36}/);
  assert.match(text, /Total \$45\.00/);
  await page.screenshot({ path: join(OUTPUT, 'desktop-confirmation.png'), fullPage: true });
  // The confirmation leads back to the shop.
  await confirmation.getByRole('button', { name: 'Continue shopping' }).click();
  await until(async () => !(await confirmation.isVisible()), 'the confirmation to close');
  await until(async () => page.evaluate(() => document.activeElement?.id === 'catalog-title'),
    'the products heading to take the focus');
  await card(page, 'Canvas Cap').getByRole('button', { name: 'Add to cart' }).waitFor();

  const after = await stock('mug');
  assert.equal(after.on_hand, before.on_hand - 3, 'on_hand fell by what was bought');
  assert.equal(after.available, before.available - 3);
  await card(page, 'Enamel Mug').getByText(`${after.available} available`).waitFor();
  await page.close();
});

test('two shoppers race for the last unit, and an expired hold frees it', async () => {
  const a = await (await browser.newContext()).newPage();
  const b = await (await browser.newContext()).newPage();
  // B's page hears of stock by polling here (its live stream cannot connect), so that its
  // product list can be held stale below.
  const streams = (url) => url.pathname === '/v1/stock/stream';
  await b.route(streams, (route) => route.abort());
  await a.goto(base);
  await b.goto(base);
  await card(b, 'Desk Lamp').getByText('Only 1 left').waitFor();

  // B's page has not seen A's hold yet (its product list is held at the moment before A
  // adds): B's add loses the race and says why.
  const stale = await (await fetch(`${base}/v1/products?limit=100`)).text();
  const products = (url) => url.pathname === '/v1/products';
  await b.route(products, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: stale }));
  await add(a, 'Desk Lamp');
  await cart(a).getByText('Desk Lamp').waitFor();
  await add(b, 'Desk Lamp');
  const alert = b.getByRole('alert');
  await alert.getByText(/Out of stock: 0 available/).waitFor();
  await b.unroute(products);
  await b.unroute(streams);

  // Once B's page knows, the product is sold out: a disabled button says so.
  await card(b, 'Desk Lamp').getByText('Out of stock').waitFor();
  const soldOut = card(b, 'Desk Lamp').getByRole('button', { name: 'Sold out' });
  await soldOut.waitFor();
  assert.equal(await soldOut.isDisabled(), true, 'a sold-out product cannot be added');
  assert.equal(await card(b, 'Desk Lamp').getByRole('button', { name: 'Add to cart' }).count(), 0);
  await b.screenshot({ path: join(OUTPUT, 'desktop-out-of-stock.png'), fullPage: true });

  // A leaves the page open but does nothing: after the TTL the unit is free again.
  await card(b, 'Desk Lamp').getByText('Only 1 left').waitFor({ timeout: (TTL_SECONDS + 5) * 1000 });
  await a.getByText(/Your cart expired/).waitFor({ timeout: 5000 });
  await add(b, 'Desk Lamp');
  await cart(b).getByText('Desk Lamp').waitFor();
  await cart(b).getByRole('button', { name: 'Checkout' }).click();
  await b.getByRole('region', { name: 'Order confirmation' }).getByText('Thank you for your order!').waitFor();
  assert.equal((await stock('lamp')).on_hand, 0);
  await a.context().close();
  await b.context().close();
});

test('availability is pushed to an open page as it changes', async () => {
  const page = await (await browser.newContext()).newPage();
  const opened = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/stock/stream');
  await page.goto(base);
  assert.equal((await opened).headers()['content-type'], 'text/event-stream');
  const before = (await stock('cap')).available;
  assert.ok(before > 3, `Canvas Cap has ${before} available`);
  await card(page, 'Canvas Cap').getByText(`${before} available`).waitFor();

  // From here on the page's product list stays as it was: only the stream can tell it.
  const stale = await (await fetch(`${base}/v1/products?limit=100`)).text();
  await page.route((url) => url.pathname === '/v1/products',
    (route) => route.fulfill({ status: 200, contentType: 'application/json', body: stale }));
  const other = await (await fetch(`${base}/v1/carts`, { method: 'POST' })).json();
  const held = await fetch(`${base}/v1/carts/${other.id}/items`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ product_id: 'cap', inventory_id: 'cap', quantity: before - 2 }),
  });
  assert.equal(held.status, 200);
  await card(page, 'Canvas Cap').getByText('Only 2 left').waitFor({ timeout: 3000 });

  // Another shopper's units come back: the page hears that too.
  assert.equal((await fetch(`${base}/v1/carts/${other.id}`, { method: 'DELETE' })).status, 200);
  await card(page, 'Canvas Cap').getByText(`${before} available`).waitFor({ timeout: 3000 });
  await page.context().close();
});

test('a shopper waits for a sold-out product and claims the unit that comes back', async () => {
  // Another shopper holds the only vase.
  const other = await (await fetch(`${base}/v1/carts`, { method: 'POST' })).json();
  const held = await fetch(`${base}/v1/carts/${other.id}/items`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ product_id: 'vase', inventory_id: 'vase', quantity: 1 }),
  });
  assert.equal(held.status, 200);

  const page = await (await browser.newContext()).newPage();
  await page.goto(base);
  const vase = card(page, 'Glass Vase');
  await vase.getByText('Out of stock').waitFor();
  await vase.getByRole('button', { name: 'Join the waitlist' }).click();
  await vase.getByText('You are #1 in line').waitFor();

  // The other shopper gives up: the unit is held for this page, not put back on sale.
  assert.equal((await fetch(`${base}/v1/carts/${other.id}`, { method: 'DELETE' })).status, 200);
  await vase.getByText(/1 held for you: claim within 0[12]:\d\d/).waitFor({ timeout: 5000 });
  assert.equal((await stock('vase')).available, 0, 'nobody else can take it');
  await page.screenshot({ path: join(OUTPUT, 'desktop-waitlist-offer.png'), fullPage: true });
  await vase.getByRole('button', { name: 'Claim' }).click();
  await cart(page).getByText('Glass Vase').waitFor();
  await vase.getByText(/held for you/).waitFor({ state: 'detached' });
  assert.equal((await stock('vase')).reserved, 1);
  await page.context().close();
});

test('a reload keeps the cart, and an expired cart says so', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(base);
  await add(page, 'Classic Tee', 2);
  await cart(page).getByText('Classic Tee').waitFor();
  const id = await page.evaluate(() => localStorage.getItem('cart-session-id'));
  assert.match(id, /^[0-9a-f-]{36}$/);

  await page.reload();
  await cart(page).getByText('Classic Tee').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('cart-session-id')), id);

  await page.close();
  await new Promise((r) => setTimeout(r, (TTL_SECONDS + 1) * 1000));
  const later = await context.newPage();
  await later.goto(base);
  await later.getByText(/Your cart expired/).waitFor();
  assert.equal(await cart(later).getByText('Classic Tee').count(), 0);
  assert.equal(await later.evaluate(() => localStorage.getItem('cart-session-id')), null);
  await context.close();
});

test('a network failure shows a message and the page stays usable', async () => {
  const page = await browser.newPage();
  await page.goto(base);
  await card(page, 'Canvas Cap').getByText(/available/).waitFor();
  await page.route('**/v1/carts**', (route) => route.abort());
  await add(page, 'Canvas Cap');
  await page.getByRole('alert').getByText(/Can't reach the shop/).waitFor();
  await page.unroute('**/v1/carts**');
  await add(page, 'Canvas Cap');
  await cart(page).getByText('Canvas Cap').waitFor();
  await page.close();
});

test('a product held in two stock rows lets the shopper pick one', async () => {
  const page = await browser.newPage();
  await page.goto(base);
  const boot = card(page, 'Trail Boot');
  const source = boot.getByLabel('Stock of Trail Boot');
  await source.selectOption('boot-us');
  await boot.getByText('Only 2 left', { exact: true }).waitFor();
  await boot.getByRole('button', { name: 'Add to cart' }).click();
  await cart(page).getByText('Trail Boot').waitFor();
  await until(async () => (await stock('boot-us')).reserved === 1, 'the US row to hold one');
  assert.equal((await stock('boot-eu')).reserved, 0);
  await page.close();
});

test('the layout works on a desktop and on a phone', async () => {
  for (const [name, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
    const page = await browser.newPage({ viewport, deviceScaleFactor: 1, isMobile: name === 'phone' });
    await page.goto(base);
    await add(page, 'Enamel Mug', 1);
    await cart(page).getByText('Enamel Mug').waitFor();
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= viewport.width, `${name}: no sideways scrolling (${width}px)`);
    await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
    await page.close();
  }
});
