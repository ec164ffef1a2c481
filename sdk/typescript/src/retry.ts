/**
 * How the client retries: on 429 and 503, and when no response arrives at
 * all (connection refused, reset, timeout). Every POST carries an
 * Idempotency-Key that stays the same across the retries of one call, so a
 * retried write runs once.
 */
export interface RetryPolicy {
  /** Retries after the first attempt; 0 disables retrying. Default 2. */
  maxRetries: number;
  /** The first backoff in milliseconds; it doubles each retry. Default 500. */
  backoffBaseMs: number;
  /** The largest backoff between two attempts, in milliseconds. Default 8000. */
  backoffMaxMs: number;
  /**
   * The longest `Retry-After` the client sleeps for, in milliseconds. A
   * server asking for a longer wait gets no retry: the error is thrown at
   * once with `retryAfter` set, so the caller decides. Default 30000.
   */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxRetries: 2,
  backoffBaseMs: 500,
  backoffMaxMs: 8000,
  maxRetryAfterMs: 30_000,
});

/** Statuses worth retrying: the server asked us to slow down, or is briefly down. */
export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 503]);

/**
 * Milliseconds to wait before retry number `attempt` (1-based), or
 * `undefined` when the call must not be retried. `retryAfterSeconds` is the
 * server's `Retry-After`, when it sent one.
 */
export function retryDelay(policy: RetryPolicy, attempt: number, retryAfterSeconds?: number): number | undefined {
  if (attempt > policy.maxRetries) return undefined;
  if (retryAfterSeconds !== undefined) {
    const ms = retryAfterSeconds * 1000;
    if (ms > policy.maxRetryAfterMs) return undefined;
    // Honour the server's wait; a little jitter spreads a thundering herd.
    return ms + Math.random() * Math.min(1000, policy.backoffBaseMs);
  }
  const ceiling = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (attempt - 1));
  // "Equal jitter": never less than half the ceiling, never more than it.
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
