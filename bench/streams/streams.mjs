// streams: the live-availability part of scripts/bench. Holds STREAMS pages open on
// GET /v1/stock/stream (each watching ROWS), reading them the way a browser's EventSource
// does: it honours `retry:`, reconnects after the connection drops or is refused, sends
// Last-Event-ID, and gives a page up for good on an answer other than 200
// text/event-stream (as EventSource "fails the connection"). Raw `net` sockets, no
// dependencies: one process holds ten thousand of them.
//
// Driven by scripts/bench, one command a line on stdin, answering "ok <command>" (or
// "error <why>") on stdout; progress goes to stderr:
//   (at start)                opens the pages, OPEN_IN_FLIGHT (200) at a time; "ok open"
//   idle SECONDS PID [RPID]   a window with the streams open and nothing changing: the
//                             CPU of cartd (PID; RPID: Redis) and the events delivered
//   push SECONDS PID [RPID]   the same while the probe row changes every PUSH_EVERY_MS
//                             on average (default 125, so each poll of cartd, every
//                             250 ms, finds it changed: 4 events a second per page)
//   probe-start               changes the probe row every PROBE_EVERY_MS on average
//                             (default 1000)
//   probe-stop SECONDS        ... until SECONDS after probe-start, then waits for delivery
//   kill                      marks the moment (scripts/bench then kill -9s cartd at once)
//   restarted UP_MS           waits until every page is back with current counts
//   report                    prints the results as one JSON line
// `node streams.mjs --summary FILE` prints a report file as the bench's summary lines.
//
// A probe change is a PUT /v1/carts/{id}/items/probe that raises the probe row's
// `reserved` by one (each change to a higher value, a new cart every PROBE_PER_CART
// units), so a page that sees reserved = base + k has had change k and every one before
// it: its latency for each is arrival - the moment its PUT was written. Changes that
// cartd's poll coalesces count as delivered with the later one that carries them.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';

if (process.argv[2] === '--summary') {
  summary(JSON.parse(fs.readFileSync(process.argv[3], 'utf8')));
  process.exit(0);
}

const env = process.env;
const host = '127.0.0.1';
const port = Number(env.PORT);
const count = Number(env.STREAMS ?? 10000);
const rows = (env.ROWS ?? 'drop-s,probe').split(',');
const probe = env.PROBE ?? 'probe';
const clkTck = Number(env.CLK_TCK ?? 100);
const pushEveryMs = Number(env.PUSH_EVERY_MS ?? 125);
const probeEveryMs = Number(env.PROBE_EVERY_MS ?? 1000);
const openInFlight = Number(env.OPEN_IN_FLIGHT ?? 200);
const perCart = Number(env.PROBE_PER_CART ?? 50);
const graceMs = Number(env.GRACE_MS ?? 3000);
const restartTimeoutMs = Number(env.RESTART_TIMEOUT_MS ?? 30000);
const openTimeoutMs = Number(env.OPEN_TIMEOUT_MS ?? 300000);

const query = rows.map((r) => `inventory_id=${encodeURIComponent(r)}`).join('&');
const log = (...a) => process.stderr.write(`streams: ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const bump = (o, k) => { o[k] = (o[k] ?? 0) + 1; };

// Counters over every page.
const stats = { events: 0, heartbeats: 0, connects: 0 };
let phase = 'open';
const closes = {};         // per phase: streams that ended while the page had them open
const connectErrors = {};  // per phase and error: connections that never got an answer
const failed = {};         // per phase and status: pages given up (answer not 200 event-stream)

// The probe: change k set reserved to probeBase + k; sentAt[k] when its PUT was written,
// phaseOf[k] the latency phase it belongs to.
let probeBase = null;
const sentAt = [];
const phaseOf = [];
let killAt = null;

class Page {
  constructor(index) {
    this.index = index;
    this.retry = 3000;  // a browser's own default until the server sends `retry:`
    this.lastEventId = '';
    this.state = 'new';
    this.counts = new Map();
    this.seenUpTo = 0;  // the last probe change this page has
    this.openedAt = null;
    this.connStart = 0;
    this.back = null;      // ms from the kill until it had every row again
    this.backCounts = null;
    this.onReady = null;
  }

  connect() {
    this.state = 'connecting';
    this.connStart = performance.now();
    this.head = true;
    this.buf = '';
    this.field = { event: '', data: null };
    this.error = null;
    stats.connects++;
    const sock = net.connect({ host, port });
    this.sock = sock;
    sock.setNoDelay(true);
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      sock.write(`GET /v1/stock/stream?${query} HTTP/1.1\r\nHost: ${host}:${port}\r\n` +
                 'Accept: text/event-stream\r\nCache-Control: no-cache\r\n' +
                 (this.lastEventId ? `Last-Event-ID: ${this.lastEventId}\r\n` : '') + '\r\n');
    });
    sock.on('data', (chunk) => this.data(chunk));
    sock.on('error', (e) => { this.error = e.code ?? e.message; });
    sock.on('close', () => this.closed());
  }

  data(chunk) {
    this.buf += chunk;
    if (this.head) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 4);
      this.head = false;
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const type = /\r\ncontent-type:\s*([^\r;]*)/i.exec(head)?.[1]?.trim();
      if (status !== 200 || type !== 'text/event-stream') return this.fail(status || 'bad-head');
      this.state = 'open';
    }
    const now = performance.now();
    let from = 0;
    for (;;) {
      const nl = this.buf.indexOf('\n', from);
      if (nl < 0) break;
      let line = this.buf.slice(from, nl);
      from = nl + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.line(line, now);
    }
    this.buf = this.buf.slice(from);
  }

  // One line of the event stream (the WHATWG interpretation, for the fields cartd sends).
  line(line, now) {
    if (line === '') {
      const { event, data } = this.field;
      this.field = { event: '', data: null };
      if (data !== null && event === 'stock') this.stock(JSON.parse(data), now);
      return;
    }
    if (line[0] === ':') {
      stats.heartbeats++;
      return;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (name === 'event') this.field.event = value;
    else if (name === 'data') this.field.data = this.field.data === null ? value : `${this.field.data}\n${value}`;
    else if (name === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (name === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }

  stock(row, now) {
    stats.events++;
    this.counts.set(row.inventory_id, row);
    if (row.inventory_id === probe && probeBase !== null) {
      const k = row.reserved - probeBase;
      for (let j = this.seenUpTo + 1; j <= k; j++) {
        if (sentAt[j] !== undefined) phaseOf[j].samples.push(now - sentAt[j]);
      }
      if (k > this.seenUpTo) this.seenUpTo = k;
    }
    if (this.openedAt === null && this.counts.size === rows.length) {
      this.openedAt = now;
      this.ready();
    }
    if (killAt !== null && this.back === null && this.connStart >= killAt) {
      this.backCounts ??= new Map();
      if (!this.backCounts.has(row.inventory_id)) this.backCounts.set(row.inventory_id, row);
      if (this.backCounts.size === rows.length) this.back = now - killAt;
    }
  }

  fail(status) {
    this.state = 'failed';
    failed[phase] ??= {};
    bump(failed[phase], status);
    this.sock.destroy();
    this.ready();
  }

  closed() {
    this.sock = null;
    if (this.state === 'failed' || this.state === 'stopped') return;
    if (this.state === 'open') bump(closes, phase);
    else {
      connectErrors[phase] ??= {};
      bump(connectErrors[phase], this.error ?? 'closed-before-answer');
    }
    // EventSource: a dropped or refused connection is tried again after `retry` ms.
    this.state = 'waiting';
    setTimeout(() => { if (this.state === 'waiting') this.connect(); }, this.retry);
  }

  ready() {
    const done = this.onReady;
    this.onReady = null;
    if (done) done();
  }
}

const pages = Array.from({ length: count }, (_, i) => new Page(i));

// HTTP for the probe and the checks: one keep-alive connection.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function request(method, path, body) {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ host, port, method, path, agent,
      headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
    (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, body: json });
      });
    });
    req.on('error', (e) => resolve({ status: e.code ?? 'error', body: null }));
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

// A latency phase: probe changes and how long each took to reach each page.
function newPhase(name) {
  return { name, first: null, last: null, changes: 0, errors: {}, samples: [] };
}

class Prober {
  constructor() {
    this.k = 0;
    this.cart = null;
    this.inCart = 0;
    this.running = null;
  }

  async change(ph) {
    if (this.cart === null || this.inCart >= perCart) {
      const c = await request('POST', '/v1/carts');
      if (c.status !== 201) return bump(ph.errors, `new-cart-${c.status}`);
      this.cart = c.body.id;
      this.inCart = 0;
    }
    const k = this.k + 1;
    phaseOf[k] = ph;
    sentAt[k] = performance.now();
    const r = await request('PUT', `/v1/carts/${this.cart}/items/${probe}`,
                            { inventory_id: probe, quantity: this.inCart + 1 });
    if (r.status !== 200) {
      // Nothing changed: the next change is k again, with its own send time.
      sentAt[k] = undefined;
      return bump(ph.errors, r.status);
    }
    this.k = k;
    this.inCart++;
    ph.changes++;
    ph.first ??= k;
    ph.last = k;
  }

  // A change every everyMs on average, each counted in this.ph (which may change
  // meanwhile). The gaps are random (0.5-1.5 x everyMs): at a fixed period the changes
  // would land at the same point of cartd's poll cycle each time, and every latency
  // would be that point's, lucky or not.
  start(ph, everyMs) {
    this.stopping = false;
    this.ph = ph;
    this.running = (async () => {
      let at = performance.now();
      while (!this.stopping) {
        await this.change(this.ph);
        at += everyMs * (0.5 + Math.random());
        await sleep(at - performance.now());
      }
    })();
  }

  async stop() {
    this.stopping = true;
    await this.running;
  }
}
const prober = new Prober();

// After the last change of a phase: waits until every live page has it (or graceMs),
// then sums up arrivals and the (page, change) pairs that never arrived.
async function settle(ph) {
  const until = performance.now() + graceMs;
  while (ph.last !== null && performance.now() < until &&
         pages.some((p) => p.state !== 'failed' && p.seenUpTo < ph.last)) await sleep(20);
  let missing = 0;
  let pagesMissing = 0;
  if (ph.last !== null) {
    for (const p of pages) {
      const m = ph.last - Math.max(p.seenUpTo, ph.first - 1);
      if (m > 0) { missing += m; pagesMissing++; }
    }
  }
  const s = Float64Array.from(ph.samples).sort();
  const q = (x) => (s.length ? round(s[Math.min(s.length - 1, Math.floor(x * s.length))]) : null);
  return {
    changes: ph.changes, pairs: ph.changes * count, arrived: s.length, never_arrived: missing,
    pages_missing_some: pagesMissing, p50_ms: q(0.5), p99_ms: q(0.99), p999_ms: q(0.999),
    max_ms: s.length ? round(s[s.length - 1]) : null, probe_errors: ph.errors,
  };
}

function round(x, digits = 1) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// [user, system] CPU seconds of a process, all its threads.
function cpuTimes(pid) {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(f[11]) / clkTck, Number(f[12]) / clkTck];  // utime, stime (fields 14, 15)
  } catch {
    return null;
  }
}

// A measured window: CPU of cartd (and Redis, and this client) and what the pages got.
async function window(seconds, pid, redisPid) {
  const t0 = performance.now();
  const c0 = cpuTimes(pid);
  const r0 = cpuTimes(redisPid);
  const n0 = process.cpuUsage();
  const e0 = stats.events;
  const h0 = stats.heartbeats;
  await sleep(seconds * 1000);
  const wall = (performance.now() - t0) / 1000;
  const c1 = cpuTimes(pid);
  const r1 = cpuTimes(redisPid);
  const n1 = process.cpuUsage(n0);
  const events = stats.events - e0;
  const cartd = c0 && c1 ? [c1[0] - c0[0], c1[1] - c0[1]] : null;
  return {
    seconds: round(wall, 3),
    cartd_cpu_seconds: cartd ? round(cartd[0] + cartd[1], 3) : null,
    cartd_core: cartd ? round((cartd[0] + cartd[1]) / wall, 4) : null,
    cartd_user_core: cartd ? round(cartd[0] / wall, 4) : null,
    cartd_system_core: cartd ? round(cartd[1] / wall, 4) : null,
    redis_core: r0 && r1 ? round((r1[0] + r1[1] - r0[0] - r0[1]) / wall, 4) : null,
    client_core: round((n1.user + n1.system) / 1e6 / wall, 4),
    events, events_per_s: round(events / wall, 1), heartbeats: stats.heartbeats - h0,
  };
}

// Opens every page, openInFlight at a time, until each has every row's counts (or fails).
async function openAll() {
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  await new Promise((resolve) => {
    const until = setTimeout(resolve, openTimeoutMs);
    const launch = () => {
      if (next >= count) return;
      const p = pages[next++];
      p.onReady = () => {
        if (++done === count) { clearTimeout(until); resolve(); }
        if (done % 1000 === 0) log(`${done} of ${count} open`);
        launch();
      };
      p.connect();
    };
    for (let i = 0; i < Math.min(openInFlight, count); i++) launch();
  });
  return {
    seconds: round((performance.now() - t0) / 1000, 3),
    opened: pages.filter((p) => p.openedAt !== null).length,
    failed: failed.open ?? {}, connect_errors: connectErrors.open ?? {},
  };
}

const report = { streams: count, rows, push_every_ms: pushEveryMs, probe_every_ms: probeEveryMs };

async function command(words) {
  const [cmd, ...args] = words;
  if (cmd === 'idle') {
    phase = 'idle';
    report.idle = await window(Number(args[0]), Number(args[1]), Number(args[2]));
  } else if (cmd === 'push') {
    phase = 'push';
    const ph = newPhase('push');
    prober.start(ph, pushEveryMs);
    await sleep(1000);  // warm-up: the changes are flowing before the window opens
    const w = await window(Number(args[0]), Number(args[1]), Number(args[2]));
    await prober.stop();
    w.latency = await settle(ph);
    // The figure the issue asks for: cartd's share of one core at 40 000 events/s.
    if (w.cartd_core !== null && w.events_per_s > 0) {
      w.cartd_core_per_40k = round(w.cartd_core / w.events_per_s * 40000, 4);
      if (report.idle?.cartd_core != null) {
        w.cartd_core_per_40k_above_idle =
          round((w.cartd_core - report.idle.cartd_core) / w.events_per_s * 40000, 4);
      }
    }
    report.push = w;
  } else if (cmd === 'probe-start') {
    // scripts/bench starts the drop on the answer, and says probe-stop when it is over:
    // the changes sent in between count as during the drop, the rest (until SECONDS
    // after probe-start) as after it.
    phase = 'drop';
    report.during_drop = { started: performance.now(), ph: newPhase('drop') };
    prober.start(report.during_drop.ph, probeEveryMs);
  } else if (cmd === 'probe-stop') {
    const d = report.during_drop;
    const dropSeconds = (performance.now() - d.started) / 1000;
    const after = newPhase('after');
    prober.ph = after;
    await sleep(d.started + Number(args[0]) * 1000 - performance.now());
    await prober.stop();
    const seconds = (performance.now() - d.started) / 1000;
    report.during_drop = {
      seconds: round(dropSeconds, 3), latency: await settle(d.ph),
      after_seconds: round(seconds - dropSeconds, 3), after_latency: await settle(after),
    };
  } else if (cmd === 'kill') {
    phase = 'restart';
    killAt = performance.now();
  } else if (cmd === 'restarted') {
    const until = killAt + restartTimeoutMs;
    while (performance.now() < until && pages.some((p) => p.state !== 'failed' && p.back === null)) await sleep(20);
    const waited = performance.now() - killAt;
    // What every page should have been told: the counts as cartd has them now.
    const truth = new Map();
    for (const r of rows) truth.set(r, (await request('GET', `/v1/stock/${encodeURIComponent(r)}`)).body);
    let stale = 0;
    for (const p of pages) {
      if (p.backCounts === null) continue;
      for (const [id, row] of p.backCounts) {
        const t = truth.get(id);
        if (!t || t.available !== row.available || t.on_hand !== row.on_hand || t.reserved !== row.reserved) { stale++; break; }
      }
    }
    const back = Float64Array.from(pages.filter((p) => p.back !== null).map((p) => p.back)).sort();
    const q = (x) => (back.length ? round(back[Math.min(back.length - 1, Math.floor(x * back.length))]) : null);
    report.restart = {
      cartd_answered_ms: Number(args[0]), pages: count, back: back.length,
      all_back_ms: back.length === count ? round(back[back.length - 1]) : null,
      p50_ms: q(0.5), p99_ms: q(0.99), max_ms: back.length ? round(back[back.length - 1]) : null,
      waited_ms: round(waited), stale_counts: stale,
      failed: failed.restart ?? {}, connect_errors: connectErrors.restart ?? {},
    };
  } else if (cmd === 'report') {
    report.closes = closes;
    report.connects = stats.connects;
    report.failed_pages = pages.filter((p) => p.state === 'failed').length;
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
}

async function main() {
  const start = await request('GET', `/v1/stock/${encodeURIComponent(probe)}`);
  if (start.status !== 200) throw new Error(`GET /v1/stock/${probe}: ${start.status}`);
  probeBase = start.body.reserved;
  log(`opening ${count} streams on ${host}:${port}, each watching ${rows.join(', ')}`);
  report.open = await openAll();
  log(`${report.open.opened} of ${count} open in ${report.open.seconds} s`);
  process.stdout.write('ok open\n');
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const words = line.trim().split(/\s+/);
    if (!words[0]) continue;
    try {
      await command(words);
      process.stdout.write(`ok ${words[0]}\n`);
    } catch (e) {
      process.stdout.write(`error ${words[0]}: ${e.message}\n`);
    }
  }
  for (const p of pages) {
    p.state = 'stopped';
    p.sock?.destroy();
  }
  agent.destroy();
  process.exit(0);
}

// The bench's printed lines for a report.
function summary(r) {
  const pct = (x) => (x == null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
  const ms = (x) => (x == null ? 'n/a' : `${x} ms`);
  const lat = (l) => (l ? `p50 ${ms(l.p50_ms)}, p99 ${ms(l.p99_ms)}, max ${ms(l.max_ms)} over ${l.changes} changes; ` +
    `${l.never_arrived} of ${l.pairs} (page, change) pairs never arrived` : 'n/a');
  console.log(`Streams (${r.streams} pages on one cartd, each watching ${r.rows.join(', ')}): ` +
    `${r.open.opened} open in ${r.open.seconds} s; ${r.failed_pages} pages given up; ` +
    `streams that ended, by phase ${JSON.stringify(r.closes)} (restart: expected)`);
  if (r.during_drop) {
    const d = r.during_drop;
    console.log(`  delivery during the drop (a change every ~${r.probe_every_ms} ms, ${d.seconds} s): ${lat(d.latency)} (target p99 <= 500 ms)`);
    console.log(`  delivery after the drop (${d.after_seconds} s): ${lat(d.after_latency)}`);
  }
  if (r.push) {
    console.log(`  push window (a change every ~${r.push_every_ms} ms, ${r.push.seconds} s): ${r.push.events_per_s} events/s, cartd ${pct(r.push.cartd_core)} of a core ` +
      `(user ${pct(r.push.cartd_user_core)}, system ${pct(r.push.cartd_system_core)}; Redis ${pct(r.push.redis_core)}, this client ${pct(r.push.client_core)}); ` +
      `delivery ${lat(r.push.latency)}`);
    console.log(`  cartd per 40 000 events/s: ${pct(r.push.cartd_core_per_40k)} of a core (${pct(r.push.cartd_core_per_40k_above_idle)} above idle) (target <= 15%)`);
  }
  if (r.idle) console.log(`  idle window (${r.idle.seconds} s, no changes): cartd ${pct(r.idle.cartd_core)} of a core, ${r.idle.events} events, ${r.idle.heartbeats} heartbeats`);
  if (r.restart) {
    const x = r.restart;
    console.log(`  kill -9 and restart: ${x.back} of ${x.pages} pages back with counts; all back after ${ms(x.all_back_ms)} ` +
      `(p50 ${ms(x.p50_ms)}, p99 ${ms(x.p99_ms)}; cartd answered after about ${x.cartd_answered_ms} ms); ${x.stale_counts} stale; ` +
      `given up ${JSON.stringify(x.failed)}; connect errors ${JSON.stringify(x.connect_errors)} (target <= 2000 ms)`);
  }
}

main().catch((e) => {
  log(`failed: ${e.stack ?? e}`);
  process.exit(1);
});
