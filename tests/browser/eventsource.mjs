// Subscribes with a browser's own EventSource in headless Chromium, for tests/sse_clients.rs:
// opens <base>/healthz (so the page has the server's origin), creates
// `new EventSource('/graphql?query=...')` for BBR_Events after eventid 0 and records every
// `next` message (its lastEventId and data), every `open`, `complete` and `error`, and the
// Last-Event-ID header of every request the EventSource makes as it reconnects by itself.
//
//   node tests/browser/eventsource.mjs <base-url> <count> [NODE_MODULES]
//
// Prints `READY` on stdout once the first connection is open. Done when <count> events have
// arrived and then a stream opened by a reconnect ($SSE_SETTLE_RECONNECTS of them, default 1)
// has completed, so that a replay of events already delivered would show; then prints, as the
// last line of stdout, {"events": [{id, data}], "opens", "completes", "errors", "lastEventIds":
// [per request, null when absent], "unexpected": [messages of other kinds]} and exits 0.
//
// NODE_MODULES holds playwright-core (default: target/graphiql-node/node_modules, as
// scripts/graphiql-assets.sh installs it). $CHROMIUM names the browser (default
// /usr/bin/chromium); $SSE_TEST_TIMEOUT_MS bounds the whole run (default 45000).
// Exit status: 0 when done, 1 otherwise, with the reason on stderr.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const [base, countArg, modulesArg] = process.argv.slice(2);
const count = Number(countArg);
const modules = resolve(modulesArg ?? join(ROOT, 'target/graphiql-node/node_modules'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.SSE_TEST_TIMEOUT_MS || 45000);
const settleReconnects = Number(process.env.SSE_SETTLE_RECONNECTS || 1);
const QUERY = 'subscription { BBR_Events(where: {eventid: {gt: 0}}) { eventid } }';

const record = {
  events: [],
  opens: 0,
  completes: 0,
  errors: 0,
  lastEventIds: [],
  unexpected: [],
};

/** Reports the failure, with what was seen, and exits; Playwright kills its browser on exit. */
function fail(message) {
  console.error(`eventsource browser test FAILED: ${message}`);
  console.error(`seen: ${JSON.stringify({ ...record, events: record.events.map((e) => e.id) })}`);
  process.exit(1);
}

if (!base || !Number.isInteger(count) || count < 1) {
  fail('usage: node tests/browser/eventsource.mjs <base-url> <count> [node_modules]');
}
if (Number(process.versions.node.split('.')[0]) < 20) {
  fail(`Node.js ${process.version} is too old: playwright-core needs 20 or later`);
}
if (!existsSync(executablePath)) {
  fail(`no Chromium at ${executablePath}: run scripts/install-deps.sh (or set $CHROMIUM)`);
}
if (!existsSync(join(modules, 'playwright-core'))) {
  fail(`no playwright-core in ${modules}: run scripts/graphiql-assets.sh`);
}
// playwright-core lives in the assets' node_modules, not next to this file.
const { chromium } = createRequire(join(modules, '..', 'resolve-from-here.js'))('playwright-core');
const log = (line) => console.error(`[eventsource] ${line}`);

const watchdog = setTimeout(() => {
  fail(`timed out after ${timeout} ms with ${record.events.length} of ${count} events`);
}, timeout);

let browser;
let done;
const finished = new Promise((resolve, reject) => {
  done = { resolve, reject };
});
// Opens seen once `count` events had arrived.
let opensAfterCount = null;

/** Called from the page, in the order the EventSource fires its events. */
function report(kind, detail) {
  switch (kind) {
    case 'open':
      record.opens += 1;
      log(`open #${record.opens}`);
      if (record.opens === 1) console.log('READY');
      if (opensAfterCount !== null) opensAfterCount += 1;
      break;
    case 'next':
      record.events.push(detail);
      if (record.events.length === count) opensAfterCount = 0;
      break;
    case 'complete':
      record.completes += 1;
      log(`complete #${record.completes} after ${record.events.length} events`);
      // A whole stream after a reconnect past the last event: a replay would have shown.
      if (opensAfterCount !== null && opensAfterCount >= settleReconnects) done.resolve();
      break;
    case 'error':
      record.errors += 1;
      // CONNECTING (0): it reconnects by itself; CLOSED (2): it gave up (an HTTP error status,
      // or not text/event-stream).
      if (detail === 2) done.reject(new Error('the EventSource closed for good (readyState 2)'));
      break;
    default:
      record.unexpected.push({ kind, detail });
      log(`unexpected ${kind}: ${JSON.stringify(detail)}`);
  }
}

try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // As tests/browser/graphiql.mjs: no sandbox as root, small /dev/shm, no background traffic.
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    timeout,
  });
  log(`chromium ${browser.version()}`);
  const page = await browser.newPage();
  page.setDefaultTimeout(timeout);
  page.on('pageerror', (error) => done.reject(new Error(`page error: ${error.stack || error}`)));
  page.on('console', (msg) =>
    log(`console ${msg.type()}: ${msg.text()} (${msg.location()?.url ?? 'no url'})`),
  );
  page.on('request', (request) => {
    if (!new URL(request.url()).pathname.startsWith('/graphql')) return;
    const index = record.lastEventIds.length;
    record.lastEventIds.push(null);
    request
      .headerValue('last-event-id')
      .then((value) => {
        record.lastEventIds[index] = value;
        log(`request #${index + 1} Last-Event-ID: ${value}`);
      })
      .catch((error) => log(`cannot read the headers of request #${index + 1}: ${error}`));
  });
  page.on('response', (response) => {
    if (response.status() >= 400) {
      done.reject(new Error(`HTTP ${response.status()} for ${response.url()}`));
    }
  });
  await page.exposeFunction('report', report);

  const response = await page.goto(`${base}/healthz`);
  if (!response?.ok()) fail(`GET /healthz answered ${response?.status()}`);
  await page.evaluate((query) => {
    const source = new EventSource(`/graphql?query=${encodeURIComponent(query)}`);
    window.source = source;
    source.addEventListener('open', () => window.report('open', null));
    source.addEventListener('next', (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        data = event.data;
      }
      window.report('next', { id: event.lastEventId, data });
    });
    source.addEventListener('complete', () => window.report('complete', null));
    source.addEventListener('error', () => window.report('error', source.readyState));
    // Messages without an event name: the protocol sends none.
    source.addEventListener('message', (event) => window.report('message', event.data));
  }, QUERY);

  await finished;
  await page.evaluate(() => window.source.close());
  // Let the header reads of the last requests settle.
  await new Promise((resolve) => setTimeout(resolve, 200));
  log(
    `${record.events.length} events, ${record.opens} opens, ${record.completes} completes, ` +
      `${record.errors} errors`,
  );
  console.log(JSON.stringify(record));
} catch (error) {
  fail(String(error.stack || error));
} finally {
  await browser?.close().catch(() => {});
}
clearTimeout(watchdog);
process.exit(0);
