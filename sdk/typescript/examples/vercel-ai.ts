/**
 * A Vercel AI SDK agent whose tools are governed by Haldir: one line
 * (`governTools`) adds scope checks, spend caps, approvals and an audit trail.
 *
 *   npm install @haldir/sdk ai zod
 *   export HALDIR_API_KEY=hld_... HALDIR_BASE_URL=http://localhost:8000 AI_GATEWAY_API_KEY=...
 *   npx tsx examples/vercel-ai.ts
 */
import { ApprovalRequiredError, HaldirClient } from '@haldir/sdk';
import { governTools } from '@haldir/sdk/ai';
import { generateText, stepCountIs, tool } from 'ai';
import { z } from 'zod';

const haldir = new HaldirClient();
const { session_id: sessionId } = await haldir.createSession('shopping-agent', {
  scopes: ['tool:searchProducts', 'tool:checkout'], // no tool:deleteAccount: that tool can never run
  spend_limit: 50,
  ttl: 900,
});

const tools = governTools(
  {
    searchProducts: tool({
      description: 'Search the catalogue.',
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => [{ sku: 'kb-1', name: `Keyboard matching ${query}`, price: 39.5 }],
    }),
    checkout: tool({
      description: 'Buy a product.',
      inputSchema: z.object({ sku: z.string(), price: z.number() }),
      execute: async ({ sku }) => ({ ordered: sku }),
    }),
    deleteAccount: tool({
      description: 'Delete the user account.',
      inputSchema: z.object({}),
      execute: async () => 'deleted',
    }),
  },
  // Each checkout is authorised against the $50 cap for its price before it runs.
  { sessionId, client: haldir, costs: { checkout: ({ price }: { price: number }) => price } },
);

const result = await generateText({
  model: 'openai/gpt-4o-mini',
  tools,
  stopWhen: stepCountIs(5),
  prompt: 'Find me a keyboard and buy it. Then delete my account.',
});
console.log(result.text);

// Refusals reach the model as tool errors; they are Haldir errors you can act on.
for (const part of result.steps.flatMap((s) => s.content)) {
  if (part.type === 'tool-error' && part.error instanceof ApprovalRequiredError) {
    console.log(`approval needed: ${part.error.requestId}`);
  }
}
console.log('spent:', (await haldir.getSession(sessionId)).spent);
await haldir.revokeSession(sessionId);
