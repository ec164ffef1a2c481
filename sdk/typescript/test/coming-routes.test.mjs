// Client methods for routes the server does not serve yet (vault, approvals,
// webhooks, proxy), written against docs/API.md. Each test probes its route
// and skips while the server answers 404, so it runs once the route lands.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApprovalRequiredError, ConflictError, HaldirError, NotFoundError, PermissionDeniedError } from '../dist/index.js';
import { skipUnlessRoute, useServer } from './helpers.mjs';

const server = useServer();

test('vault secrets lifecycle', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/secrets', 'The vault API')) return;
  const { client: h } = await server().newTenant();
  const stored = await h.storeSecret('stripe_key', 'sk_live_123', { scope_required: 'payments' });
  assert.equal(stored.stored, true);
  const again = await h.storeSecret('stripe_key', 'sk_live_456', { scope_required: 'payments' });
  assert.ok((again.version ?? 0) > (stored.version ?? 0));

  const { session_id: allowed } = await h.createSession('payer', { scopes: ['payments'] });
  const { session_id: denied } = await h.createSession('reader', { scopes: ['read'] });
  assert.deepEqual(await h.getSecret('stripe_key', allowed), { name: 'stripe_key', value: 'sk_live_456' });
  await assert.rejects(h.getSecret('stripe_key', denied), PermissionDeniedError);
  await assert.rejects(h.getSecret('stripe_key'), HaldirError);
  assert.deepEqual(await h.listSecrets(), { secrets: ['stripe_key'], count: 1 });
  assert.deepEqual(await h.deleteSecret('stripe_key'), { deleted: true, name: 'stripe_key' });
  await assert.rejects(h.getSecret('stripe_key', allowed), NotFoundError);
});

test('approval requests and decisions', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/approvals/pending', 'The approvals API')) return;
  const { client: h } = await server().newTenant();
  const rule = await h.createApprovalRule({ type: 'tool_match', tools: ['delete_repo'] });
  assert.ok(rule.rule_id);
  const { session_id: sid } = await h.createSession('ops-bot', { scopes: ['tool'] });
  const req = await h.requestApproval(sid, { tool: 'delete_repo', action: 'delete', reason: 'cleanup', ttl: 600 });
  assert.equal(req.status, 'pending');
  const pending = await h.listPendingApprovals({ agent_id: 'ops-bot' });
  assert.ok(pending.requests.some((r) => r.request_id === req.request_id));
  assert.equal((await h.approve(req.request_id, { decided_by: 'alice', note: 'fine' })).approved, true);
  const decided = await h.waitForApproval(req.request_id, { timeoutMs: 5000, pollIntervalMs: 100 });
  assert.equal(decided.status, 'approved');
  assert.equal(decided.decided_by, 'alice');
  await assert.rejects(h.deny(req.request_id, { decided_by: 'bob' }), ConflictError);
});

test('a payment over a spend rule needs approval, once', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/approvals/pending', 'The approvals API')) return;
  const { client: h } = await server().newTenant();
  await h.createApprovalRule({ type: 'spend_over', threshold: 100 });
  const { session_id: sid } = await h.createSession('buyer', { spend_limit: 1000 });
  assert.equal((await h.authorizePayment(sid, 50)).authorized, true);
  const err = await h.authorizePayment(sid, 250, { description: 'gpu hours' }).catch((e) => e);
  assert.ok(err instanceof ApprovalRequiredError);
  assert.ok(err.requestId);
  await h.approve(err.requestId, { decided_by: 'finance' });
  assert.equal((await h.authorizePayment(sid, 250, { description: 'gpu hours' })).authorized, true);
  await assert.rejects(h.authorizePayment(sid, 250, { description: 'gpu hours' }), ApprovalRequiredError);
});

test('webhooks', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/webhooks', 'The webhooks API')) return;
  const { client: h } = await server().newTenant();
  const hook = await h.createWebhook('http://127.0.0.1:9/hook', { name: 'alerts', events: ['all'] });
  assert.ok(hook.webhook_id && hook.secret);
  const { webhooks } = await h.listWebhooks();
  assert.deepEqual(webhooks.map((w) => w.webhook_id), [hook.webhook_id]);
  const rotated = await h.rotateWebhookSecret(hook.webhook_id, { grace_seconds: 60 });
  assert.notEqual(rotated.secret, hook.secret);
  assert.ok(Array.isArray((await h.listWebhookDeliveries({ limit: 5 })).deliveries));
});

test('proxy catalogue and policies', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/proxy/tools', 'The proxy API')) return;
  const { client: h } = await server().newTenant();
  assert.equal((await h.listProxyTools()).count, 0);
  const policy = await h.createProxyPolicy({ type: 'deny_list', tools: ['rm'] });
  assert.ok(policy.policy_id);
  const { session_id: sid } = await h.createSession('proxied', { scopes: ['tool'] });
  await assert.rejects(h.callTool('rm', { path: '/' }, sid), HaldirError);
});
