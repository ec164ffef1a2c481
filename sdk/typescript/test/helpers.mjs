// Test harness: a real Haldir server, built from this repository and started
// on a free loopback port with a temporary data directory.
//
// Environment:
//   HALDIR_TEST_BINARY  use this haldir binary instead of running `go build`
//                       (run_tests.sh builds once and sets it for every file).
//
// Each test gets a tenant of its own through the operator route
// POST /v1/tenants, so approval rules or rate limits cannot leak between tests.

import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';

import { HaldirClient } from '../dist/index.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

function buildBinary(workdir) {
  if (process.env.HALDIR_TEST_BINARY) return process.env.HALDIR_TEST_BINARY;
  const binary = join(workdir, 'haldir');
  try {
    execFileSync('go', ['build', '-o', binary, './cmd/haldir'], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`go build ./cmd/haldir failed (the SDK tests need Go, or HALDIR_TEST_BINARY):\n${err.stderr ?? err.message}`);
  }
  return binary;
}

/**
 * Start `haldir serve`; resolves to {baseUrl, adminToken, binary, newTenant(), routeMissing(), stop()}.
 * @param {{ binary?: string, adminToken?: string }} options
 */
export async function startServer(options = {}) {
  const workdir = mkdtempSync(join(tmpdir(), 'haldir-sdk-ts-'));
  const binary = options.binary ?? buildBinary(workdir);
  const adminToken = options.adminToken ?? `test-operator-${randomUUID()}`;
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const logPath = join(workdir, 'server.log');
  const log = openSync(logPath, 'w');
  const args = ['serve', '--addr', `127.0.0.1:${port}`, '--data-dir', join(workdir, 'data'), '--log-format', 'text'];
  if (adminToken) args.push('--admin-token', adminToken);
  // The tests' webhook receivers listen on loopback, which the server's SSRF
  // guard refuses unless told otherwise.
  const env = { ...process.env, HALDIR_ALLOW_PRIVATE_NETWORKS: 'true' };
  const proc = spawn(binary, args, { cwd: workdir, stdio: ['ignore', log, log], env });
  let exited = null;
  proc.on('exit', (code) => (exited = code ?? -1));

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) throw new Error(`haldir serve exited with ${exited}:\n${readFileSync(logPath, 'utf8')}`);
    try {
      const r = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`haldir serve was not ready within 60s:\n${readFileSync(logPath, 'utf8')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    baseUrl,
    adminToken,
    binary,
    /** A fresh tenant: resolves to a HaldirClient holding its `*` key, and the key. */
    async newTenant(name = `t-${randomUUID().slice(0, 8)}`) {
      const operator = new HaldirClient({ apiKey: adminToken, baseUrl });
      const { key } = await operator.createTenant(name);
      return { client: new HaldirClient({ apiKey: key, baseUrl }), key };
    },
    /**
     * Whether this build does not serve `method path` yet. The router answers
     * 404 for an unknown route before authenticating; a served route answers
     * an unauthenticated probe with 401.
     */
    async routeMissing(method, path) {
      const r = await fetch(baseUrl + path, { method });
      await r.body?.cancel();
      return r.status === 404;
    },
    async stop() {
      if (exited === null) {
        const done = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await done;
        clearTimeout(timer);
      }
      rmSync(workdir, { recursive: true, force: true });
    },
  };
}

/** One server for the whole test file, stopped when the file's tests end. */
export function useServer() {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });
  return () => server;
}

/** Counts how often a tool body really ran. */
export class Counter {
  calls = 0;
  hit() {
    this.calls += 1;
  }
}

/** Skip `t` while the server does not serve the route yet; returns true when skipped. */
export async function skipUnlessRoute(t, server, method, path, feature) {
  if (await server.routeMissing(method, path)) {
    t.skip(`${feature} is not served by this Haldir build yet (${method} ${path} answers 404); this test runs once it lands`);
    return true;
  }
  return false;
}

/** A fetch that records every request it sends (real traffic, nothing mocked). */
export function recordingFetch() {
  const requests = [];
  const recorder = (input, init = {}) => {
    requests.push({ url: String(input), method: init.method ?? 'GET', headers: new Headers(init.headers) });
    return fetch(input, init);
  };
  recorder.requests = requests;
  return recorder;
}
