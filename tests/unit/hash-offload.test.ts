/**
 * The streamed SHA-256 of a restore, on the worker thread and inline: the same digests as node's own hash for
 * any cut of the bytes, several hashes at once, the caller's buffers free to reuse, and a process that ends by
 * itself once the work is done (the worker never keeps it alive when idle).
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { PipelineError } from "../../hostscripts/common/errors";
import { sha256Stream } from "../../hostscripts/common/hash-offload";

const run = promisify(execFile);
const ROOT = join(__dirname, "..", "..");

function reference(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Feeds `data` in pieces of random sizes (1 byte to 300 KiB), each awaited as a restore does. */
async function feed(data: Buffer, offload: boolean): Promise<string> {
  const hash = sha256Stream("VerifierInfrastructure", offload);
  for (let at = 0; at < data.length;) {
    const take = Math.min(data.length - at, 1 + Math.floor(Math.random() * 300 * 1024));
    await hash.update(data.subarray(at, at + take));
    at += take;
  }
  return hash.digest();
}

describe.each([
  ["on the worker thread", true],
  ["inline", false],
])("sha256Stream %s", (_, offload) => {
  test("equals node's SHA-256 for empty input, one byte, and 11.3 MiB cut at random", async () => {
    for (const data of [Buffer.alloc(0), Buffer.from([7]), randomBytes(11.3 * 1024 * 1024)]) {
      expect(await feed(data, offload)).toBe(reference(data));
    }
  });

  test("twelve hashes at once keep their bytes apart", async () => {
    const inputs = Array.from({ length: 12 }, (_, i) => randomBytes(1024 * 1024 * (i % 4) + i * 4099));
    const digests = await Promise.all(inputs.map((data) => feed(data, offload)));
    expect(digests).toEqual(inputs.map(reference));
  });

  test("a buffer written over once update resolved does not change the digest", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const reused = Buffer.alloc(64 * 1024);
    const hash = sha256Stream("VerifierInfrastructure", offload);
    for (let at = 0; at < data.length; at += reused.length) {
      const n = data.copy(reused, 0, at, Math.min(data.length, at + reused.length));
      await hash.update(reused.subarray(0, n));
      reused.fill(0xff);
    }
    expect(await hash.digest()).toBe(reference(data));
  });
});

test("a failed worker fails the hashes it held with the caller's kind; the next hash gets a new worker", async () => {
  const misused = sha256Stream("ArchiveFailed", true);
  await misused.update(Buffer.from("abc"));
  await misused.digest();
  // A second digest asks the worker for a hash it no longer has: the worker thread dies of it.
  const error = await misused.digest().catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PipelineError);
  expect(error).toMatchObject({ kind: "ArchiveFailed" });
  expect((error as Error).message).toMatch(/the hashing thread failed/);
  const data = randomBytes(2 * 1024 * 1024 + 5);
  expect(await feed(data, true)).toBe(reference(data));
});

test("a process that hashed on the worker ends by itself, and one that left a hash unfinished too", async () => {
  const script = `
    import { sha256Stream } from ${JSON.stringify(join(ROOT, "hostscripts/common/hash-offload"))};
    void (async () => {
      const done = sha256Stream("VerifierInfrastructure", true);
      await done.update(Buffer.alloc(3 * 1024 * 1024, 1));
      console.log(await done.digest());
      const abandoned = sha256Stream("VerifierInfrastructure", true);
      await abandoned.update(Buffer.alloc(1500 * 1024, 2));
    })();
  `;
  const { stdout } = await run(join(ROOT, "node_modules/.bin/tsx"), ["--eval", script], {
    cwd: ROOT,
    timeout: 30_000,
  });
  expect(stdout.trim()).toBe(reference(Buffer.alloc(3 * 1024 * 1024, 1)));
});
