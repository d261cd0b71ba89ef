/**
 * The retry policy: which failures are retried (with the SDK's own exception shapes), the capped
 * exponential backoff with jitter, and per-attempt timeouts. The fault-injection integration test runs it
 * against a misbehaving endpoint.
 */
import { S3ServiceException } from "@aws-sdk/client-s3";
import { memoryLogger } from "../../hostscripts/common/log";
import { backoffMs, isRetryable, withRetries, type RetryPolicy } from "../../hostscripts/common/retry";

const policy: RetryPolicy = { attempts: 4, baseMs: 100, capMs: 250, attemptTimeoutMs: 10_000 };

function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
    message: name,
  });
}

function connectionError(code: string): Error {
  return Object.assign(new Error(`read ${code}`), { code });
}

/** A clock that records the pauses instead of sleeping, with jitter fixed at `r`. */
function fakeClock(r = 0.5) {
  const pauses: number[] = [];
  return { pauses, clock: { sleep: async (ms: number) => void pauses.push(ms), random: () => r } };
}

test("throttling, 5xx, resets and timeouts are retryable; client errors are not", () => {
  expect(isRetryable(s3Error("SlowDown", 503))).toBe(true);
  expect(isRetryable(s3Error("TooManyRequests", 429))).toBe(true);
  expect(isRetryable(s3Error("InternalError", 500))).toBe(true);
  expect(isRetryable(s3Error("BadGateway", 502))).toBe(true);
  expect(isRetryable(connectionError("ECONNRESET"))).toBe(true);
  expect(isRetryable(connectionError("EPIPE"))).toBe(true);
  expect(isRetryable(new Error("socket hang up"))).toBe(true);
  expect(isRetryable(Object.assign(new Error("timed out"), { name: "TimeoutError" }))).toBe(true);

  expect(isRetryable(s3Error("AccessDenied", 403))).toBe(false);
  expect(isRetryable(s3Error("NoSuchBucket", 404))).toBe(false);
  expect(isRetryable(s3Error("InvalidPart", 400))).toBe(false);
  expect(isRetryable(new Error("the archive ended at byte 12"))).toBe(false);
  expect(isRetryable("a string")).toBe(false);
});

test("backoff doubles from the base, is capped, and is jittered below the ceiling", () => {
  const top = () => 0.999999;
  expect([1, 2, 3, 4].map((a) => backoffMs(a, policy, top))).toEqual([99, 199, 249, 249]);
  expect(backoffMs(3, policy, () => 0)).toBe(0);
  expect(backoffMs(2, policy, () => 0.5)).toBe(100);
});

test("retries a throttled call until it succeeds, pausing between attempts", async () => {
  const { pauses, clock } = fakeClock();
  const errors = [s3Error("SlowDown", 503), connectionError("ECONNRESET")];
  let calls = 0;
  const value = await withRetries(
    "UploadPart 3/9",
    async () => {
      calls++;
      const error = errors.shift();
      if (error) throw error;
      return "etag";
    },
    memoryLogger(),
    policy,
    clock,
  );
  expect(value).toBe("etag");
  expect(calls).toBe(3);
  expect(pauses).toEqual([50, 100]);
});

test("fails at once on an error no retry can fix", async () => {
  const { pauses, clock } = fakeClock();
  let calls = 0;
  const denied = s3Error("AccessDenied", 403);
  const error = await withRetries(
    "PutObject",
    async () => {
      calls++;
      throw denied;
    },
    memoryLogger(),
    policy,
    clock,
  ).catch((e: unknown) => e);
  expect(error).toBe(denied);
  expect(calls).toBe(1);
  expect(pauses).toEqual([]);
});

test("gives up after the last attempt with the last error", async () => {
  const { pauses, clock } = fakeClock(1);
  let calls = 0;
  const error = await withRetries(
    "SendMessage",
    async () => {
      calls++;
      throw s3Error("ServiceUnavailable", 503);
    },
    memoryLogger(),
    policy,
    clock,
  ).catch((e: unknown) => e);
  expect((error as S3ServiceException).name).toBe("ServiceUnavailable");
  expect(calls).toBe(4);
  expect(pauses).toEqual([100, 200, 250]);
});

test("an attempt that hangs is aborted at its timeout and retried", async () => {
  const { clock } = fakeClock();
  let calls = 0;
  const value = await withRetries(
    "UploadPart 1/1",
    (signal) => {
      calls++;
      if (calls === 1) {
        return new Promise<string>((_, reject) =>
          signal.addEventListener("abort", () => reject(new Error("aborted by the signal"))),
        );
      }
      return Promise.resolve("etag");
    },
    memoryLogger(),
    { ...policy, attemptTimeoutMs: 50 },
    clock,
  );
  expect(value).toBe("etag");
  expect(calls).toBe(2);
});
