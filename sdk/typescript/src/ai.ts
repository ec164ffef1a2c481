/**
 * Haldir for the Vercel AI SDK (`ai`, v5 and later): govern the tools you
 * pass to `generateText` / `streamText`.
 *
 * ```ts
 * import { governTools } from '@haldir/sdk/ai';
 * const tools = governTools({ weather, checkout }, { sessionId, costs: { checkout: 19.99 } });
 * const result = await generateText({ model, tools, prompt });
 * ```
 *
 * A governed tool is the same tool object (description, input schema, ...)
 * with its `execute` wrapped: each call is scope-checked, spend-authorised
 * (when it has a cost), run and audited (see {@link Governor}). A refusal
 * throws a {@link PermissionDeniedError} subclass before the tool runs; the
 * AI SDK reports it to the model as a `tool-error` part, whose `error` is the
 * Haldir error (an {@link ApprovalRequiredError} carries the approval
 * `requestId`). Tools that stream (async generator `execute`) are governed
 * too; their audit entry records the last value yielded.
 *
 * The module needs nothing from `ai` at run time: it works on any object
 * with an `execute(input, options)` function.
 * @module
 */

import type { HaldirClient } from './client.js';
import { Governor, type CostSpec } from './governance.js';

/** What governTool needs of a tool: the AI SDK's `execute(input, options)`. */
export interface ExecutableTool {
  execute?: ((input: any, options: any) => unknown) | undefined;
}

/** The input type of a tool's `execute`. */
export type ToolInput<T extends ExecutableTool> = T['execute'] extends (input: infer I, ...rest: any[]) => unknown ? I : unknown;

/** Options of {@link governTool}. */
export interface GovernToolOptions<INPUT = unknown> {
  /** The tool's name, as the key it has in the `tools` object (the AI SDK keeps names there). */
  name: string;
  /** The Haldir agent session to check and charge. Give this or `governor`. */
  sessionId?: string;
  /** A shared {@link Governor}, instead of `sessionId`/`client`/`recordIo`. */
  governor?: Governor;
  /** Default: `new HaldirClient()` configured from the environment. */
  client?: HaldirClient;
  /** The session scope required. Default `tool:<name>`. */
  scope?: string;
  /** Dollars per call (at least 0.01), or a function of the input returning them. */
  cost?: CostSpec<INPUT>;
  /** Put the input and a result preview in the audit entry (default true). */
  recordIo?: boolean;
}

function isAsyncGeneratorFunction(fn: unknown): boolean {
  return typeof fn === 'function' && fn.constructor?.name === 'AsyncGeneratorFunction';
}

function governorFor(options: { sessionId?: string; governor?: Governor; client?: HaldirClient; recordIo?: boolean }): Governor {
  if (options.governor) return options.governor;
  if (!options.sessionId) throw new TypeError('governTool needs a sessionId (or a governor)');
  return new Governor(options.sessionId, {
    ...(options.client ? { client: options.client } : {}),
    ...(options.recordIo !== undefined ? { recordIo: options.recordIo } : {}),
  });
}

/**
 * Wrap one AI SDK tool so every call goes through Haldir. Returns a tool of
 * the same type, usable wherever the original was.
 *
 * @throws {TypeError} when the tool has no `execute` (a client-side or
 *   provider-executed tool does not run here, so there is nothing to govern).
 */
export function governTool<T extends ExecutableTool>(tool: T, options: GovernToolOptions<ToolInput<T>>): T {
  const { name } = options;
  if (typeof tool.execute !== 'function') {
    throw new TypeError(`governTool: tool '${name}' has no execute function; Haldir can only govern tools that run in this process`);
  }
  const execute: (input: unknown, options: unknown) => unknown = tool.execute;
  const governor = governorFor(options);
  const governance = { ...(options.scope ? { scope: options.scope } : {}), cost: options.cost };
  const context = (execOptions: unknown): Record<string, unknown> => {
    const id = (execOptions as { toolCallId?: unknown } | undefined)?.toolCallId;
    return typeof id === 'string' ? { tool_call_id: id } : {};
  };

  if (isAsyncGeneratorFunction(execute)) {
    async function* governedStream(input: ToolInput<T>, execOptions: unknown): AsyncGenerator<unknown> {
      const ticket = await governor.before(name, input, governance, context(execOptions));
      let last: unknown;
      try {
        for await (const part of execute.call(tool, input, execOptions) as AsyncIterable<unknown>) {
          last = part;
          yield part;
        }
      } catch (error) {
        await governor.after(ticket, { error });
        throw error;
      }
      await governor.after(ticket, { result: last });
    }
    return { ...tool, execute: governedStream };
  }

  const governed = (input: ToolInput<T>, execOptions: unknown) =>
    governor.call(name, input, () => execute.call(tool, input, execOptions), governance, context(execOptions));
  return { ...tool, execute: governed };
}

/** Options of {@link governTools}: those of {@link governTool}, with scopes and costs keyed by tool name. */
export interface GovernToolsOptions {
  sessionId?: string;
  governor?: Governor;
  client?: HaldirClient;
  recordIo?: boolean;
  /** The scope each tool needs, by name (default `tool:<name>`). */
  scopes?: Record<string, string>;
  /** The cost of each tool, by name. */
  costs?: Record<string, CostSpec<any>>;
}

/**
 * Govern a whole `tools` object (as passed to `generateText`): the result
 * has the same keys. Tools without `execute` are passed through unchanged.
 */
export function governTools<TOOLS extends Record<string, ExecutableTool>>(tools: TOOLS, options: GovernToolsOptions): TOOLS {
  const governor = governorFor(options);
  const out: Record<string, ExecutableTool> = {};
  for (const [name, tool] of Object.entries(tools)) {
    out[name] =
      typeof tool.execute === 'function'
        ? governTool(tool, {
            name,
            governor,
            ...(options.scopes?.[name] ? { scope: options.scopes[name] } : {}),
            cost: options.costs?.[name],
          })
        : tool;
  }
  return out as TOOLS;
}
