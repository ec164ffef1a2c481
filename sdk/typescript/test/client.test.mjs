// HaldirClient against a real Haldir server: the wire contract, typed errors,
// idempotency keys and retries.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { test } from 'node:test';

import {
  APIConnectionError,
  AuthenticationError,
  BudgetExceededError,
  ConflictError,
  HaldirClient,
  HaldirError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitedError,
  SessionInvalidError,
  ValidationError,
  retryDelay,
} from '../dist/index.js';
import { recordingFetch, startServer, useServer } from './helpers.mjs';

const server = useServer();

test('the first key of a fresh install needs no auth', async () => {
  const fresh = await startServer({ binary: server().binary, adminToken: '' });
  try {
    const anonymous = new HaldirClient({ apiKey: '', baseUrl: fresh.baseUrl });
    const first = await anonymous.createKey({ name: 'bootstrap' });
    assert.match(first.key, /^hld_/);
    assert.deepEqual(first.scopes, ['*']);
    const err = await anonymous.createKey({ name: 'second' }).catch((e) => e);
    assert.ok(err instanceof AuthenticationError);
    assert.ok(!String(err).includes(first.key));
    const h = new HaldirClient({ apiKey: first.key, baseUrl: fresh.baseUrl });
    assert.equal((await h.listKeys()).count, 1);
  } finally {
    await fresh.stop();
  }
});

test('keys are scoped, listed and revocable', async () => {
  const { client } = await server().newTenant();
  const made = await client.createKey({ name: 'reader', scopes: ['audit:read'] });
  assert.ok((await client.listKeys()).keys.some((k) => k.prefix === made.prefix));
  const reader = new HaldirClient({ apiKey: made.key, baseUrl: server().baseUrl });
  await reader.getAuditTrail({ limit: 1 });
  await assert.rejects(reader.createSession('agent'), (e) => e instanceof PermissionDeniedError && e.code === 'insufficient_scope');
  assert.equal((await client.revokeKey(made.prefix)).revoked, true);
  await assert.rejects(reader.getAuditTrail({ limit: 1 }), AuthenticationError);
});

test('the API key never appears in errors, JSON or inspect output', async () => {
  const key = `hld_${'S3cr3t'.repeat(8)}`;
  const h = new HaldirClient({ apiKey: key, baseUrl: server().baseUrl });
  for (const text of [JSON.stringify(h), inspect(h), String(h)]) assert.ok(!text.includes(key), text);
  const err = await h.getSession('ses_x').catch((e) => e);
  assert.ok(err instanceof AuthenticationError);
  assert.equal(err.status, 401);
  assert.ok(err.requestId);
  for (const text of [String(err), err.message, JSON.stringify(err.body), inspect(err)]) assert.ok(!text.includes(key));
});

test('configuration comes from the environment', async () => {
  const { key } = await server().newTenant();
  const saved = { ...process.env };
  try {
    process.env.HALDIR_API_KEY = key;
    process.env.HALDIR_BASE_URL = `${server().baseUrl}/`;
    const h = new HaldirClient();
    assert.equal(h.baseUrl, server().baseUrl);
    assert.ok((await h.getUsage()).action_count >= 0);
    delete process.env.HALDIR_BASE_URL;
    assert.equal(new HaldirClient().baseUrl, 'http://localhost:8000');
  } finally {
    process.env = saved;
  }
});

test('session lifecycle', async () => {
  const { client } = await server().newTenant();
  const created = await client.createSession('research-bot', { scopes: ['read', 'write', 'spend:50'], ttl: 600 });
  const sid = created.session_id;
  assert.equal(created.spend_limit, 50);
  assert.equal(created.ttl, 600);
  const info = await client.getSession(sid);
  assert.equal(info.is_valid, true);
  assert.equal(info.remaining_budget, 50);
  assert.equal((await client.checkPermission(sid, 'write:files')).allowed, true);
  assert.equal((await client.checkPermission(sid, 'delete')).allowed, false);
  assert.deepEqual(await client.revokeSession(sid), { revoked: true, session_id: sid });
  assert.equal((await client.getSession(sid)).is_valid, false);
  assert.equal((await client.checkPermission(sid, 'read')).allowed, false);
  await assert.rejects(client.getSession('ses_missing'), (e) => e instanceof NotFoundError && e.status === 404);
  assert.equal((await client.checkPermission('ses_missing', 'read')).allowed, false);
});

test('validation errors name the field', async () => {
  const { client } = await server().newTenant();
  await assert.rejects(client.createSession('x'.repeat(200)), (e) => e instanceof ValidationError && e.field === 'agent_id');
  await assert.rejects(client.getAuditTrail({ limit: 5000 }), (e) => e instanceof ValidationError && e.field === 'limit');
});

test('payments against the cap', async () => {
  const { client } = await server().newTenant();
  const { session_id: sid } = await client.createSession('buyer', { scopes: ['spend:10'] });
  const auth = await client.authorizePayment(sid, 2.5, { description: 'api credits' });
  assert.equal(auth.authorized, true);
  assert.ok(auth.authorization_id);
  assert.equal(auth.remaining_budget, 7.5);
  assert.equal((await client.authorizePayment(sid, '2.50')).remaining_budget, 5);
  const err = await client.authorizePayment(sid, 6).catch((e) => e);
  assert.ok(err instanceof BudgetExceededError && err instanceof PermissionDeniedError);
  assert.equal(err.code, 'budget_exceeded');
  assert.equal(err.remainingBudget, 5);
  assert.equal(err.body.authorized, false);

  const { session_id: uncapped } = await client.createSession('no-cap');
  await assert.rejects(client.authorizePayment(uncapped, 1), BudgetExceededError);
  await assert.rejects(client.authorizePayment(sid, -1), (e) => e instanceof ValidationError && e.field === 'amount');
  await client.revokeSession(sid);
  await assert.rejects(client.authorizePayment(sid, 1), SessionInvalidError);
});

test('audit trail: log, query, paginate, spend, verify, export', async () => {
  const { client } = await server().newTenant();
  const { session_id: sid } = await client.createSession('auditor', { spend_limit: 5 });
  const logged = await client.logAction(sid, { tool: 'stripe', action: 'charge', cost_usd: 1.25, details: { invoice: 'inv_1' } });
  assert.equal(logged.logged, true);
  assert.equal(logged.flagged, false);
  for (let i = 0; i < 4; i++) await client.logAction(sid, { tool: 'search', action: `query-${i}` });

  const page = await client.getAuditTrail({ session_id: sid, tool: 'stripe' });
  assert.equal(page.count, 1);
  assert.deepEqual(page.entries[0].details, { invoice: 'inv_1' });
  assert.equal(page.entries[0].entry_hash.length, 64);

  const all = [];
  for await (const e of client.iterAuditTrail({ session_id: sid }, 2)) all.push(e);
  assert.deepEqual(
    all.filter((e) => e.type === 'audit.logged').map((e) => e.action),
    ['query-3', 'query-2', 'query-1', 'query-0', 'charge'],
  );
  const spend = await client.getSpend({ session_id: sid });
  assert.equal(spend.total_usd, 1.25);
  assert.equal((await client.getSession(sid)).spent, 1.25);
  assert.equal((await client.verifyAudit()).verified, true);
  const exported = await client.exportAudit({ session_id: sid });
  assert.match(exported.trim().split('\n').at(-1), /^\{"manifest"/);

  await client.revokeSession(sid);
  const late = await client.logAction(sid, { tool: 'shell', action: 'rm' });
  assert.equal(late.flagged, true);
  assert.match(late.flag_reason, /revoked/);
});

test('an explicit idempotency key replays the original; another body is refused', async () => {
  const { client } = await server().newTenant();
  const { session_id: sid } = await client.createSession('idem', { spend_limit: 10 });
  const first = await client.authorizePayment(sid, 3, {}, { idempotencyKey: 'order-42' });
  assert.deepEqual(await client.authorizePayment(sid, 3, {}, { idempotencyKey: 'order-42' }), first);
  assert.equal((await client.getSession(sid)).spent, 3);
  await assert.rejects(
    client.authorizePayment(sid, 4, {}, { idempotencyKey: 'order-42' }),
    (e) => e instanceof ConflictError && e.code === 'idempotency_key_reused' && e.status === 422,
  );
});

test('every write gets its own idempotency key; reads and checks none', async () => {
  const { key } = await server().newTenant();
  const recorder = recordingFetch();
  const h = new HaldirClient({ apiKey: key, baseUrl: server().baseUrl, fetch: recorder });
  const { session_id: sid } = await h.createSession('keys', { spend_limit: 5 });
  await Promise.all([h.authorizePayment(sid, 1), h.authorizePayment(sid, 1), h.logAction(sid, { action: 'x' })]);
  await h.checkPermission(sid, 'read');
  await h.getSession(sid);
  const writes = recorder.requests.filter((r) => r.method === 'POST' && !r.url.endsWith('/check')).map((r) => r.headers.get('idempotency-key'));
  assert.equal(writes.length, 4);
  assert.equal(new Set(writes).size, 4);
  assert.ok(writes.every(Boolean));
  for (const r of recorder.requests.filter((r) => r.method === 'GET' || r.url.endsWith('/check'))) {
    assert.equal(r.headers.get('idempotency-key'), null);
  }
});

test('connection failures are retried with the same idempotency key', async () => {
  const recorder = recordingFetch();
  const h = new HaldirClient({ apiKey: 'hld_x', baseUrl: 'http://127.0.0.1:9', retry: { maxRetries: 2, backoffBaseMs: 10 }, fetch: recorder });
  const started = Date.now();
  const err = await h.authorizePayment('ses_1', 1).catch((e) => e);
  assert.ok(Date.now() - started < 5000);
  assert.ok(err instanceof APIConnectionError && err instanceof HaldirError);
  assert.match(err.message, /after 3 attempt\(s\)/);
  assert.equal(err.status, undefined);
  const keys = recorder.requests.map((r) => r.headers.get('idempotency-key'));
  assert.equal(keys.length, 3);
  assert.equal(new Set(keys).size, 1);
});

test('rate limits throw with retryAfter, without waiting past the bound', async () => {
  const { client } = await server().newTenant();
  const { key } = await client.createKey({ name: 'slow', rate_limit: 2 });
  const recorder = recordingFetch();
  const h = new HaldirClient({ apiKey: key, baseUrl: server().baseUrl, retry: { maxRetries: 3, maxRetryAfterMs: 500 }, fetch: recorder });
  await h.getUsage();
  await h.getUsage();
  const started = Date.now();
  const err = await h.getUsage().catch((e) => e);
  assert.ok(Date.now() - started < 2000);
  assert.ok(err instanceof RateLimitedError);
  assert.equal(err.status, 429);
  assert.ok(err.retryAfter >= 1);
  assert.equal(recorder.requests.length, 3);
});

test('retry delays are bounded and jittered', () => {
  const policy = { maxRetries: 5, backoffBaseMs: 1000, backoffMaxMs: 4000, maxRetryAfterMs: 10_000 };
  for (const [attempt, ceiling] of [[1, 1000], [2, 2000], [3, 4000], [4, 4000], [5, 4000]]) {
    const delays = new Set(Array.from({ length: 50 }, () => retryDelay(policy, attempt)));
    assert.ok([...delays].every((d) => d >= ceiling / 2 && d <= ceiling));
    assert.ok(delays.size > 1);
  }
  assert.equal(retryDelay(policy, 6), undefined);
  const honoured = retryDelay(policy, 1, 3);
  assert.ok(honoured >= 3000 && honoured <= 4000);
  assert.equal(retryDelay(policy, 1, 11), undefined);
});
