// Subscribes with the graphql-sse npm client (distinct connections mode, Node's fetch) and
// collects the subscription's results, for tests/sse_clients.rs:
//
//   node tests/browser/graphql-sse.mjs <graphql-url> <count> [--query Q] [--variables JSON]
//        [--modules NODE_MODULES] [--settle MS] [--timeout MS]
//
// The default query is BBR_Events after `$last` (variables default to {"last": 0}). Prints
// `READY` on stdout once the stream is open, then waits for <count> results, keeps listening for
// --settle ms (default 500) so that a surplus shows, disposes the client and prints, as the last
// line of stdout, {"events": [the BBR_Events of each result, in order]}; exit status 0.
// A result with GraphQL errors ends the run with {"errors": [...], "completed": bool} as the last
// line (completed: the server ended the stream after the errors) and exit status 1. Any other
// failure (the client's error, the stream completing early, the --timeout, default 45000 ms,
// running out) exits 1 with the reason on stderr.
//
// NODE_MODULES holds graphql-sse (default: target/graphiql-node/node_modules, as
// scripts/graphiql-assets.sh installs it).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEFAULT_QUERY =
  'subscription($last: Long!) { BBR_Events(where: {eventid: {gt: $last}}) ' +
  '{ eventid entityname eventaction } }';

/** Reports the failure and exits. */
function fail(message) {
  console.error(`graphql-sse client FAILED: ${message}`);
  process.exit(1);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      query: { type: 'string', default: DEFAULT_QUERY },
      variables: { type: 'string', default: '{"last": 0}' },
      modules: { type: 'string', default: join(ROOT, 'target/graphiql-node/node_modules') },
      settle: { type: 'string', default: '500' },
      timeout: { type: 'string', default: '45000' },
    },
  });
} catch (error) {
  fail(String(error.message || error));
}
const [url, countArg] = args.positionals;
const count = Number(countArg);
if (!url || !Number.isInteger(count) || count < 1) {
  fail('usage: node tests/browser/graphql-sse.mjs <graphql-url> <count> [--query Q] ...');
}
const settle = Number(args.values.settle);
const timeout = Number(args.values.timeout);
let variables;
try {
  variables = JSON.parse(args.values.variables);
} catch (error) {
  fail(`--variables is not JSON: ${error.message}`);
}
const modules = resolve(args.values.modules);
if (!existsSync(join(modules, 'graphql-sse'))) {
  fail(`no graphql-sse in ${modules}: run scripts/graphiql-assets.sh`);
}
// graphql-sse lives in the assets' node_modules, not next to this file.
const { createClient } = createRequire(join(modules, '..', 'resolve-from-here.js'))('graphql-sse');
const log = (line) => console.error(`[graphql-sse] ${line}`);

const events = [];
let errors = null;
let finished = false;

const watchdog = setTimeout(() => {
  if (errors) finish(false);
  fail(`timed out after ${timeout} ms with ${events.length} of ${count} results`);
}, timeout);

const client = createClient({
  url,
  singleConnection: false,
  // No silent retries: a network error fails the run, and a retry would replay from the start.
  retryAttempts: 0,
  on: {
    connected: () => {
      log(`connected to ${url}`);
      console.log('READY');
    },
  },
});

/** Prints the outcome and exits: 0 with the events, 1 with GraphQL errors. */
function finish(completed) {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  client.dispose();
  if (errors) {
    console.log(JSON.stringify({ errors, completed }));
    console.error(`graphql-sse client got GraphQL errors: ${JSON.stringify(errors)}`);
    process.exit(1);
  }
  log(`received ${events.length} results`);
  console.log(JSON.stringify({ events }));
  process.exit(0);
}

client.subscribe(
  { query: args.values.query, variables },
  {
    next(result) {
      if (finished) return;
      if (result.errors) {
        // graphql-sse hands request errors (a `next` holding `errors`) over as a result.
        errors = result.errors;
        log(`result with errors: ${JSON.stringify(result)}`);
        return;
      }
      const event = result.data?.BBR_Events;
      if (!event) fail(`a result without data.BBR_Events: ${JSON.stringify(result)}`);
      events.push(event);
      if (events.length === count) setTimeout(() => finish(false), settle);
    },
    error(error) {
      if (finished) return;
      const detail = error?.response ? ` (HTTP ${error.response.status})` : '';
      fail(`the client failed${detail}: ${error?.stack || JSON.stringify(error)}`);
    },
    complete() {
      if (finished) return;
      if (errors) finish(true);
      if (events.length >= count) finish(false);
      fail(`the server completed the stream after ${events.length} of ${count} results`);
    },
  },
);
