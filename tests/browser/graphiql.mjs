// Drives fordeler's GraphiQL page in headless Chromium: opens <base>/graphql as a browser does,
// waits for the editor, runs the default query with the execute button and waits for BBR events
// in the result pane. Fails on page errors, failed or non-local requests, and HTTP errors.
//
//   node tests/browser/graphiql.mjs http://127.0.0.1:8080 [NODE_MODULES]
//
// NODE_MODULES holds playwright-core (default: target/graphiql-node/node_modules, as
// scripts/graphiql-assets.sh installs it). $CHROMIUM names the browser (default
// /usr/bin/chromium); $GRAPHIQL_TEST_TIMEOUT_MS bounds the whole run (default 60000).
// Exit status: 0 when the query's result shows up, 1 otherwise, with the reason on stderr.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const [base, modulesArg] = process.argv.slice(2);
const modules = resolve(modulesArg ?? join(ROOT, 'target/graphiql-node/node_modules'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.GRAPHIQL_TEST_TIMEOUT_MS || 60000);

/** Reports the failure and exits; Playwright kills the browser it started on exit. */
function fail(message) {
  console.error(`graphiql browser test FAILED: ${message}`);
  process.exit(1);
}

if (!base) fail('usage: node tests/browser/graphiql.mjs <base-url> [node_modules]');
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

const origin = new URL(base).origin;
const problems = [];
// Settles (rejects) at the first problem, so a waiting step fails at once rather than time out.
let problemSeen;
const firstProblem = new Promise((_, reject) => {
  problemSeen = reject;
});
firstProblem.catch(() => {});
function problem(text) {
  problems.push(text);
  problemSeen(new Error(text));
}
/** `promise`, unless a problem shows up first. */
const guard = (promise) => Promise.race([promise, firstProblem]);
const log = (line) => console.log(`[graphiql] ${line}`);

// The whole run, browser start included, gets `timeout`; a hang fails with what was seen.
const watchdog = setTimeout(() => {
  fail(`timed out after ${timeout} ms${problems.length ? `; problems: ${problems.join('; ')}` : ''}`);
}, timeout);

/** The text of the CodeMirror editor in `selector` (its whole document, not just what is drawn). */
function editorText(page, selector) {
  return page.$eval(selector, (el) => (el.CodeMirror ? el.CodeMirror.getValue() : el.innerText));
}

let browser;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // Root (CI) cannot use Chromium's sandbox; containers often have a small /dev/shm; the
    // network is closed, so no background connections or QUIC.
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

  page.on('pageerror', (error) => problem(`page error: ${error.stack || error}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/favicon\.ico/.test(msg.location()?.url ?? '')) {
      problem(`console error: ${msg.text()}`);
    }
  });
  page.on('requestfailed', (request) => {
    const url = request.url();
    // Requests leaving the origin are reported (and aborted) by the route below.
    if (url.startsWith(`${origin}/`) && !url.endsWith('/favicon.ico')) {
      problem(`request failed: ${url} (${request.failure()?.errorText})`);
    }
  });
  page.on('response', (response) => {
    if (response.status() >= 400 && !response.url().endsWith('/favicon.ico')) {
      problem(`HTTP ${response.status()} for ${response.url()}`);
    }
  });
  // Everything must come from the server under test (local assets, no CDN).
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('data:') || url.startsWith(`${origin}/`)) return route.continue();
    problem(`request outside ${origin}: ${url}`);
    return route.abort();
  });

  const response = await guard(page.goto(`${base}/graphql`, { waitUntil: 'load' }));
  const type = response?.headers()['content-type'] ?? '';
  if (!response?.ok() || !type.startsWith('text/html')) {
    fail(`GET /graphql answered ${response?.status()} ${type}, not an HTML page`);
  }

  const queryEditor = '.graphiql-query-editor .CodeMirror';
  await guard(page.waitForSelector(queryEditor, { state: 'visible' }));
  const query = await editorText(page, queryEditor);
  if (!query.includes('BBR_Events')) fail(`the query editor lacks the default query:\n${query}`);
  log('editor rendered with the default query');

  await page.click('.graphiql-execute-button');
  const resultPane = '.result-window .CodeMirror';
  await guard(
    page.waitForFunction((selector) => {
      const el = document.querySelector(selector);
      const text = el && (el.CodeMirror ? el.CodeMirror.getValue() : el.innerText);
      return Boolean(text) && text.trim() !== '';
    }, resultPane),
  );
  // The pane may fill in steps; give it a moment to show the events.
  const wanted = ['"BBR_Events"', '"eventid": 1', '"entityname": "Bygning"'];
  await page
    .waitForFunction(
      ([selector, strings]) => {
        const el = document.querySelector(selector);
        const text = el && (el.CodeMirror ? el.CodeMirror.getValue() : el.innerText);
        return Boolean(text) && strings.every((s) => text.includes(s));
      },
      [resultPane, wanted],
      { timeout: 10000 },
    )
    .catch(() => {});
  const result = await editorText(page, resultPane);
  const missing = wanted.filter((s) => !result.includes(s));
  if (missing.length) fail(`the result pane lacks ${missing.join(', ')}:\n${result}`);
  if (result.includes('"errors"')) fail(`the query returned errors:\n${result}`);
  if (problems.length) fail(problems.join('\n'));
  log(`result pane shows the events:\n${result.split('\n').slice(0, 12).join('\n')}\n  ...`);
  log('PASSED');
} catch (error) {
  // A problem seen in the page explains the failure better than the step it interrupted.
  fail(problems.length ? problems.join('\n') : String(error.stack || error));
} finally {
  await browser?.close().catch(() => {});
}
clearTimeout(watchdog);
process.exit(0);
