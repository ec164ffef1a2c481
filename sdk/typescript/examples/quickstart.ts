/**
 * Haldir in five calls: a governed session, a payment, an audit entry, a revocation.
 *
 *   export HALDIR_BASE_URL=http://localhost:8000 HALDIR_API_KEY=hld_...
 *   npx tsx examples/quickstart.ts
 */
import { BudgetExceededError, HaldirClient, SessionInvalidError } from '@haldir/sdk';

const haldir = new HaldirClient();

const session = await haldir.createSession('quickstart-agent', { scopes: ['read', 'tool', 'spend:50'], ttl: 600 });
const sid = session.session_id;
console.log(`session ${sid}: scopes ${session.scopes.join(', ')}, cap $${session.spend_limit}`);

console.log('may read?', (await haldir.checkPermission(sid, 'read')).allowed);
console.log('may delete?', (await haldir.checkPermission(sid, 'delete')).allowed);

const payment = await haldir.authorizePayment(sid, 29.99, { description: 'api credits' });
console.log(`authorised $${payment.amount}; $${payment.remaining_budget} left`);
try {
  await haldir.authorizePayment(sid, 100);
} catch (err) {
  if (!(err instanceof BudgetExceededError)) throw err;
  console.log('refused:', err.message);
}

await haldir.logAction(sid, { tool: 'stripe', action: 'charge', details: { authorization_id: payment.authorization_id } });
for await (const entry of haldir.iterAuditTrail({ session_id: sid })) {
  console.log(`  #${entry.seq} ${entry.type.padEnd(20)} ${entry.tool.padEnd(10)} ${entry.action}`);
}

await haldir.revokeSession(sid);
try {
  await haldir.authorizePayment(sid, 1);
} catch (err) {
  if (!(err instanceof SessionInvalidError)) throw err;
  console.log('after revocation:', err.message);
}
console.log('audit chain verified:', (await haldir.verifyAudit()).verified);
