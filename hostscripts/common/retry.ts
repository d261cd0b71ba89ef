import { setTimeout as sleep } from "node:timers/promises";
import { messageOf } from "./errors";
import type { Logger } from "./log";

/**
 * Retries for the calls to S3 and SQS, on top of the SDK's own (a few quick attempts per request). The SDK
 * gives up within seconds, which a throttled prefix or a flapping network outlasts; an upload of hundreds
 * of gigabytes must not be lost to that. So each call — each part of an upload on its own — is retried here
 * with capped exponential backoff and full jitter, on throttling (503 SlowDown, 429), 5xx, connection
 * resets and timeouts; every attempt has its own timeout, so a request that hangs is retried too.
 * Anything else (access denied, no such bucket, a bad request) fails at once: retrying cannot fix it.
 */

/** How a call is retried. */
export interface RetryPolicy {
  /** Attempts in all, the first included. Defaults to 6. */
  attempts: number;
  /** Backoff before the second attempt; doubles each time. Defaults to 500 ms. */
  baseMs: number;
  /** Cap of one backoff. Defaults to 20 s. */
  capMs: number;
  /** Limit of one attempt; it is aborted and retried after this. Defaults to 5 minutes. */
  attemptTimeoutMs: number;
}

/** The defaults: about a minute of backoff in all, at most 20 s at a time. */
export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 6,
  baseMs: 500,
  capMs: 20_000,
  attemptTimeoutMs: 300_000,
};

/** Injected for tests: the pause between attempts and the source of jitter. */
export interface RetryClock {
  sleep(ms: number): Promise<void>;
  random(): number;
}

const realClock: RetryClock = { sleep: (ms) => sleep(ms), random: Math.random };

/** Error names S3 and SQS use for throttling and transient trouble. */
const RETRYABLE_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestThrottled",
  "RequestLimitExceeded",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "TimeoutError",
  "AbortError",
]);

/** Node's codes for a connection that failed, was reset or timed out. */
const RETRYABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ECONNABORTED",
  "UND_ERR_SOCKET",
]);

/** True for the failures a later attempt can succeed past. */
export function isRetryable(e: unknown): boolean {
  if (typeof e !== "object" || e === null) return false;
  const error = e as {
    name?: string;
    code?: string;
    $metadata?: { httpStatusCode?: number };
    message?: string;
  };
  const status = error.$metadata?.httpStatusCode;
  if (status === 429 || (status !== undefined && status >= 500)) return true;
  if (error.name !== undefined && RETRYABLE_NAMES.has(error.name)) return true;
  if (error.code !== undefined && RETRYABLE_CODES.has(error.code)) return true;
  return /socket hang up|ECONNRESET|EPIPE/.test(error.message ?? "");
}

/** The pause before attempt `attempt + 1` (attempt counts from 1): full jitter below the capped exponential. */
export function backoffMs(attempt: number, policy: RetryPolicy, random: () => number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** (attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * Runs `call` until it succeeds, fails with an error no retry can fix, or runs out of attempts; each
 * attempt gets an AbortSignal that fires at `attemptTimeoutMs`. The last error is rethrown as it was.
 */
export async function withRetries<T>(
  what: string,
  call: (signal: AbortSignal) => Promise<T>,
  log: Logger,
  policy: RetryPolicy = DEFAULT_RETRY,
  clock: RetryClock = realClock,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const timeout = AbortSignal.timeout(policy.attemptTimeoutMs);
    try {
      return await call(timeout);
    } catch (e) {
      const error = timeout.aborted ? timedOut(what, policy.attemptTimeoutMs, e) : e;
      if (attempt >= policy.attempts || !isRetryable(error)) throw error;
      const pause = backoffMs(attempt, policy, clock.random);
      log.warn("retrying after a transient failure", {
        call: what,
        attempt,
        of: policy.attempts,
        pauseMs: pause,
        error: messageOf(error),
      });
      await clock.sleep(pause);
    }
  }
}

function timedOut(what: string, ms: number, cause: unknown): Error {
  const error = new Error(`${what} took longer than ${ms} ms and was aborted`, { cause });
  error.name = "TimeoutError";
  return error;
}
