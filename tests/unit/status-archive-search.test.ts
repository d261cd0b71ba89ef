/**
 * How `status` finds an epoch's first and newest complete segments without listing it: over a bucket that
 * answers ListObjectsV2 as S3 does (keys in byte order, Prefix, StartAfter, MaxKeys), the search finds the
 * newest of 60,000 segments in a few list requests, skips a newest segment whose ledger entry is not written
 * yet, and starts after the oldest segments lifecycle expired. (The benchmark runs it against the emulator.)
 */
import type { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { epochPrefix } from "../../contracts";
import { scanArchive } from "../../hostscripts/status/archive";
import { StatusReader } from "../../hostscripts/status/scan";

const EPOCH = "20261130T080000Z-aaaaaa";
const prefix = epochPrefix({ prefix: "backups", cluster: "orders", host: "db1", epoch: EPOCH });
const stem = (n: number) => `${prefix}${String(n).padStart(10, "0")}-20261130T080000Z`;

/** The keys of segments `from`..`to`, each with its ledger entry unless `withoutLedger` names it, sorted. */
function keys(from: number, to: number, withoutLedger: number[] = []): string[] {
  const all = [`${prefix}epoch.json`];
  for (let n = from; n <= to; n++) {
    all.push(`${stem(n)}.binlog`);
    if (!withoutLedger.includes(n)) all.push(`${stem(n)}.ledger.json`);
  }
  return all.sort();
}

/** A bucket that lists `stored` as S3 does; `lists()` counts the requests. */
function bucket(stored: string[]): { s3: S3Client; lists: () => number } {
  let lists = 0;
  const send = async (command: ListObjectsV2Command) => {
    lists++;
    const { Prefix = "", StartAfter, MaxKeys = 1000, Delimiter } = command.input;
    const matching = stored.filter(
      (k) => k.startsWith(Prefix) && (StartAfter === undefined || k > StartAfter),
    );
    if (Delimiter !== undefined) {
      const below = matching.filter((k) => k.indexOf(Delimiter, Prefix.length) >= 0);
      const dirs = new Set(below.map((k) => k.slice(0, k.indexOf(Delimiter, Prefix.length) + 1)));
      return { CommonPrefixes: [...dirs].map((d) => ({ Prefix: d })), IsTruncated: false };
    }
    const page = matching.slice(0, MaxKeys);
    return { Contents: page.map((Key) => ({ Key })), IsTruncated: matching.length > page.length };
  };
  return { s3: { send } as unknown as S3Client, lists: () => lists };
}

/** A reader that records the keys status reads instead of reading them (they hold nothing here). */
class Recording extends StatusReader {
  readonly keys: string[] = [];
  override async read(key: string): Promise<null> {
    this.keys.push(key);
    return null;
  }
}

/** The first and newest ledger entries status reads, and the list requests it took to find them. */
async function found(stored: string[]): Promise<{ first?: number; newest?: number; lists: number }> {
  const { s3, lists } = bucket(stored);
  const reader = new Recording(s3, "bucket-1", "backups");
  await scanArchive(reader, "orders", "db1");
  const ledgers = reader.keys
    .filter((k) => k.endsWith(".ledger.json"))
    .map((k) => Number(k.slice(prefix.length, prefix.length + 10)));
  return { first: ledgers[0], newest: ledgers.at(-1), lists: lists() };
}

test("a small epoch is one page: one list request for the epochs, one for its segments", async () => {
  expect(await found(keys(1, 300))).toEqual({ first: 1, newest: 300, lists: 1 + 1 });
});

test("the newest of 60,000 segments in a few list requests, never a page per 1,000 keys", async () => {
  const result = await found(keys(1, 60_000));
  expect(result).toMatchObject({ first: 1, newest: 60_000 });
  // A full listing would take 121 requests; the search about 2 × log2(60,000 / 500) after the first page.
  expect(result.lists).toBeLessThanOrEqual(2 + 2 * Math.ceil(Math.log2(60_000 / 500)) + 1);
});

test("a newest segment still waiting for its ledger entry is skipped; expired old segments are not looked for", async () => {
  expect(await found(keys(30_001, 64_321, [64_321]))).toMatchObject({ first: 30_001, newest: 64_320 });
  expect(await found(keys(1, 1, [1]))).toMatchObject({ first: undefined, newest: undefined });
});
