// governTool with the real Vercel AI SDK (`ai`) against a real Haldir server.
//
// There is no LLM here (no internet), so generateText is driven by
// MockLanguageModelV4 from `ai/test`, the AI SDK's own scripted model for
// tests: the tool-calling loop, tool execution and error reporting are the
// real ones. A counter proves whether a tool body really ran.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { generateText, stepCountIs, tool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { z } from 'zod';

import {
  ApprovalRequiredError,
  BudgetExceededError,
  Governor,
  PermissionDeniedError,
  SessionInvalidError,
  ValidationError,
} from '../dist/index.js';
import { governTool, governTools } from '../dist/ai.js';
import { Counter, skipUnlessRoute, useServer } from './helpers.mjs';

const server = useServer();

const usage = { inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: 1, text: 1, reasoning: 0 } };

/** A model that calls `toolName` with `input` once, then answers "done". */
function modelCalling(toolName, input) {
  return new MockLanguageModelV4({
    doGenerate: [
      {
        content: [{ type: 'tool-call', toolCallId: 'call_1', toolName, input: JSON.stringify(input) }],
        finishReason: { unified: 'tool-calls', raw: undefined },
        usage,
        warnings: [],
      },
      { content: [{ type: 'text', text: 'done' }], finishReason: { unified: 'stop', raw: undefined }, usage, warnings: [] },
    ],
  });
}

/** Run one agent turn in which the model calls `name`; resolve to the tool's result or error part. */
async function callThroughAgent(tools, name, input) {
  const result = await generateText({ model: modelCalling(name, input), tools, prompt: 'go', stopWhen: stepCountIs(3) });
  const part = result.steps[0].content.find((c) => c.type === 'tool-result' || c.type === 'tool-error');
  assert.ok(part, 'the model called the tool');
  return part;
}

/** A `lookup` tool whose body counts its runs. */
function lookupTool(counter, body = (query) => `found ${query}`) {
  return tool({
    description: 'Look something up.',
    inputSchema: z.object({ query: z.string() }),
    execute: async ({ query }) => {
      counter.hit();
      return body(query);
    },
  });
}

async function tenantWithSession(sessionParams) {
  const { client } = await server().newTenant();
  const { session_id: sessionId } = await client.createSession('ai-agent', sessionParams);
  return { client, sessionId };
}

async function auditEntries(client, sessionId, action) {
  const out = [];
  for await (const e of client.iterAuditTrail({ session_id: sessionId, tool: 'lookup' })) if (e.action === action) out.push(e);
  return out;
}

test('an allowed tool runs inside generateText and is audited', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool:lookup'] });
  const counter = new Counter();
  const tools = governTools({ lookup: lookupTool(counter) }, { sessionId, client });
  const part = await callThroughAgent(tools, 'lookup', { query: 'mcp' });
  assert.equal(part.type, 'tool-result');
  assert.equal(part.output, 'found mcp');
  assert.equal(counter.calls, 1);
  const [entry] = await auditEntries(client, sessionId, 'tool_call');
  assert.deepEqual(entry.details.arguments, { query: 'mcp' });
  assert.equal(entry.details.result, 'found mcp');
  assert.equal(entry.details.tool_call_id, 'call_1');
});

test('a denied tool never runs; the model gets a scope_denied tool-error', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['read', 'tool:other'] });
  const counter = new Counter();
  const tools = { lookup: governTool(lookupTool(counter), { name: 'lookup', sessionId, client }) };
  const part = await callThroughAgent(tools, 'lookup', { query: 'x' });
  assert.equal(part.type, 'tool-error');
  assert.ok(part.error instanceof PermissionDeniedError);
  assert.equal(part.error.code, 'scope_denied');
  assert.match(part.error.message, /tool:lookup/);
  assert.equal(counter.calls, 0);
  assert.equal((await auditEntries(client, sessionId, 'tool_call')).length, 0);
  const [denied] = await auditEntries(client, sessionId, 'tool_denied');
  assert.equal(denied.details.scope, 'tool:lookup');
});

test('budget exhaustion stops the tool, and each cost is counted once', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool'], spend_limit: 1 });
  const counter = new Counter();
  const tools = governTools({ lookup: lookupTool(counter) }, { sessionId, client, costs: { lookup: 0.4 } });
  assert.equal((await callThroughAgent(tools, 'lookup', { query: 'one' })).type, 'tool-result');
  assert.equal((await callThroughAgent(tools, 'lookup', { query: 'two' })).type, 'tool-result');
  const third = await callThroughAgent(tools, 'lookup', { query: 'three' });
  assert.ok(third.error instanceof BudgetExceededError);
  assert.ok(Math.abs(third.error.remainingBudget - 0.2) < 1e-9);
  assert.equal(counter.calls, 2);
  assert.ok(Math.abs((await client.getSession(sessionId)).spent - 0.8) < 1e-9);
  const entries = await auditEntries(client, sessionId, 'tool_call');
  assert.deepEqual(entries.map((e) => e.details.cost_usd), [0.4, 0.4]);
  assert.ok(entries.every((e) => e.details.authorization_id));
});

test('cost can depend on the input', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool'], spend_limit: 5 });
  const counter = new Counter();
  const governed = governTool(lookupTool(counter), { name: 'lookup', sessionId, client, cost: ({ query }) => query.length });
  await governed.execute({ query: 'abc' }, { toolCallId: 'a', messages: [] });
  await assert.rejects(governed.execute({ query: 'abc' }, { toolCallId: 'b', messages: [] }), BudgetExceededError);
  assert.equal(counter.calls, 1);
});

test('revocation stops the next call', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool'] });
  const counter = new Counter();
  const tools = governTools({ lookup: lookupTool(counter) }, { sessionId, client });
  assert.equal((await callThroughAgent(tools, 'lookup', { query: 'before' })).type, 'tool-result');
  await client.revokeSession(sessionId);
  const part = await callThroughAgent(tools, 'lookup', { query: 'after' });
  assert.ok(part.error instanceof SessionInvalidError);
  assert.match(part.error.message, /revoked/);
  assert.equal(counter.calls, 1);
});

test('a tool error is audited and reported', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool'] });
  const tools = governTools(
    {
      lookup: lookupTool(new Counter(), (q) => {
        throw new RangeError(`upstream refused ${q}`);
      }),
    },
    { sessionId, client },
  );
  const part = await callThroughAgent(tools, 'lookup', { query: 'boom' });
  assert.equal(part.type, 'tool-error');
  assert.match(String(part.error.message ?? part.error), /upstream refused boom/);
  const [entry] = await auditEntries(client, sessionId, 'tool_error');
  assert.equal(entry.details.error_type, 'RangeError');
  assert.equal(entry.details.error, 'upstream refused boom');
});

test('streaming tools (async generator execute) are governed', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool:lookup'] });
  const counter = new Counter();
  const streaming = tool({
    description: 'Streams progress.',
    inputSchema: z.object({ query: z.string() }),
    async *execute({ query }) {
      counter.hit();
      yield { status: 'working' };
      yield { status: 'done', answer: query.toUpperCase() };
    },
  });
  const part = await callThroughAgent(governTools({ lookup: streaming }, { sessionId, client }), 'lookup', { query: 'mcp' });
  assert.equal(part.type, 'tool-result');
  assert.deepEqual(part.output, { status: 'done', answer: 'MCP' });
  const [entry] = await auditEntries(client, sessionId, 'tool_call');
  assert.deepEqual(entry.details.result, { status: 'done', answer: 'MCP' });

  await client.revokeSession(sessionId);
  const denied = await callThroughAgent(governTools({ lookup: streaming }, { sessionId, client }), 'lookup', { query: 'again' });
  assert.ok(denied.error instanceof SessionInvalidError);
  assert.equal(counter.calls, 1);
});

test('record_io off keeps input and output out of the trail', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool'] });
  const governor = new Governor(sessionId, { client, recordIo: false });
  const tools = governTools({ lookup: lookupTool(new Counter()) }, { governor });
  await callThroughAgent(tools, 'lookup', { query: 'secret' });
  const [entry] = await auditEntries(client, sessionId, 'tool_call');
  assert.equal(entry.details.arguments, undefined);
  assert.equal(entry.details.result, undefined);
});

test('tools without execute are passed through; governTool refuses them', async () => {
  const { client, sessionId } = await tenantWithSession({ scopes: ['tool'] });
  const clientSide = tool({ description: 'Runs in the browser.', inputSchema: z.object({}) });
  const governed = governTools({ clientSide }, { sessionId, client });
  assert.equal(governed.clientSide, clientSide);
  assert.throws(() => governTool(clientSide, { name: 'clientSide', sessionId, client }), TypeError);
  assert.throws(() => governTool(lookupTool(new Counter()), { name: 'lookup' }), /sessionId/);
});

test('invalid costs and unknown sessions are refused before anything runs', async () => {
  const { client } = await server().newTenant();
  const counter = new Counter();
  const unknown = new Governor('ses_never_existed', { client });
  await assert.rejects(unknown.call('t', {}, () => counter.hit()), (e) => e instanceof SessionInvalidError && /does not exist/.test(e.message));
  const { session_id: sid } = await client.createSession('costly', { scopes: ['tool'], spend_limit: 10 });
  const gov = new Governor(sid, { client });
  for (const cost of [0.001, -1, 'lots', Number.NaN]) {
    await assert.rejects(gov.call('t', {}, () => counter.hit(), { cost }), (e) => e instanceof ValidationError && e.field === 'cost');
  }
  assert.equal(counter.calls, 0);
});

test('approval required, then approved: the same call runs once', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/approvals/pending', 'The approvals API')) return;
  const { client } = await server().newTenant();
  await client.createApprovalRule({ type: 'spend_over', threshold: 5 });
  const { session_id: sessionId } = await client.createSession('shopper', { scopes: ['tool'], spend_limit: 100 });
  const counter = new Counter();
  const tools = governTools({ lookup: lookupTool(counter, () => 'bought') }, { sessionId, client, costs: { lookup: 10 } });

  const first = await callThroughAgent(tools, 'lookup', { query: 'laptop' });
  assert.ok(first.error instanceof ApprovalRequiredError, String(first.error));
  const requestId = first.error.requestId;
  assert.ok(requestId, 'approval_required must carry the approval request id');
  assert.equal(counter.calls, 0);
  assert.equal((await client.getApproval(requestId)).status, 'pending');

  await client.approve(requestId, { decided_by: 'test-suite', note: 'ok' });
  assert.equal((await client.waitForApproval(requestId, { timeoutMs: 5000, pollIntervalMs: 100 })).status, 'approved');
  const second = await callThroughAgent(tools, 'lookup', { query: 'laptop' });
  assert.equal(second.type, 'tool-result');
  assert.equal(counter.calls, 1);

  const third = await callThroughAgent(tools, 'lookup', { query: 'laptop' });
  assert.ok(third.error instanceof ApprovalRequiredError);
  assert.notEqual(third.error.requestId, requestId);
  assert.equal(counter.calls, 1);
});

test('a denied approval never runs the tool', async (t) => {
  if (await skipUnlessRoute(t, server(), 'GET', '/v1/approvals/pending', 'The approvals API')) return;
  const { client } = await server().newTenant();
  await client.createApprovalRule({ type: 'spend_over', threshold: 5 });
  const { session_id: sessionId } = await client.createSession('shopper', { scopes: ['tool'], spend_limit: 100 });
  const counter = new Counter();
  const tools = governTools({ lookup: lookupTool(counter) }, { sessionId, client, costs: { lookup: 10 } });
  const first = await callThroughAgent(tools, 'lookup', { query: 'yacht' });
  await client.deny(first.error.requestId, { decided_by: 'test-suite', note: 'no' });
  const second = await callThroughAgent(tools, 'lookup', { query: 'yacht' });
  assert.ok(second.error instanceof PermissionDeniedError);
  assert.equal(counter.calls, 0);
});
