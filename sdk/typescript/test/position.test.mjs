// The session consistency token: the client echoes the highest
// Haldir-Position it has seen, against a scripted HTTP server (to choose the
// positions) and against the real one.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { ConflictError, HaldirClient } from '../dist/index.js';
import { recordingFetch, useServer } from './helpers.mjs';

const server = useServer();

const MALFORMED = ['abc', '-9', '+9', '9 9', '9.0', '0x10', '1_000', '1e3', '9007199254740992', '9223372036854775808', '99999999999999999999'];

// What the scripted server answers next, and the Haldir-Position each request sent.
const script = { position: undefined, status: 200, sent: [] };
let scripted;
let scriptedUrl;

before(async () => {
  scripted = createServer((req, res) => {
    script.sent.push(req.headers['haldir-position']);
    if (script.position !== undefined) res.setHeader('Haldir-Position', script.position);
    res.writeHead(script.status, { 'Content-Type': 'application/json' });
    res.end('{"error":"scripted","code":"conflict"}');
  });
  await new Promise((ok) => scripted.listen(0, '127.0.0.1', ok));
  scriptedUrl = `http://127.0.0.1:${scripted.address().port}`;
});

after(() => new Promise((ok) => scripted.close(ok)));

test('the client echoes the highest position seen', async () => {
  const h = new HaldirClient({ apiKey: 'hld_x', baseUrl: scriptedUrl, maxRetries: 0 });
  assert.equal(h.position, 0);
  // [answer position, answer status, the position the request must send]
  const steps = [
    ['7', 200, undefined],
    ['5', 200, '7'],
    ...MALFORMED.map((bad) => [bad, 200, '7']),
    [undefined, 200, '7'],
    ['9007199254740991', 409, '7'], // an error answer carries a position too
    [undefined, 200, '9007199254740991'],
  ];
  for (const [answer, status, want] of steps) {
    script.position = answer;
    script.status = status;
    if (status < 400) await h.getUsage();
    else await assert.rejects(h.getUsage(), ConflictError);
    assert.equal(script.sent.at(-1), want, `answered ${answer} before`);
  }
  assert.equal(h.position, Number.MAX_SAFE_INTEGER);
});

test('a position can seed another client', async () => {
  script.position = undefined;
  script.status = 200;
  const h = new HaldirClient({ apiKey: 'hld_x', baseUrl: scriptedUrl, position: 42 });
  await h.getUsage();
  assert.equal(script.sent.at(-1), '42');
  assert.equal(h.position, 42);
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 63]) {
    assert.throws(() => new HaldirClient({ baseUrl: scriptedUrl, position: bad }), RangeError);
  }
});

test('the real server names positions that the client echoes', async () => {
  const { key } = await server().newTenant();
  const recorder = recordingFetch();
  const h = new HaldirClient({ apiKey: key, baseUrl: server().baseUrl, fetch: recorder });
  const { session_id } = await h.createSession('position-bot');
  const written = h.position;
  assert.ok(written > 0);
  assert.equal(recorder.requests[0].headers.get('haldir-position'), null);
  assert.equal((await h.getSession(session_id)).is_valid, true);
  assert.equal(recorder.requests.at(-1).headers.get('haldir-position'), String(written));
});
