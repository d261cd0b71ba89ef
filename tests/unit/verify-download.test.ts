/** The ranges of a ranged download, and the part buffers the downloads of one archive share. */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import { laterRanges, openRanged, totalFromContentRange } from "../../hostscripts/restore/download";

test("the total size comes from Content-Range", () => {
  expect(totalFromContentRange("bytes 0-1023/40960")).toBe(40960);
  expect(totalFromContentRange(undefined)).toBeUndefined();
  expect(totalFromContentRange("bytes */*")).toBeUndefined();
});

test("the parts after the first cover the rest exactly once, the last one short", () => {
  expect(laterRanges(10, 4)).toEqual(["bytes=4-7", "bytes=8-9"]);
  expect(laterRanges(8, 4)).toEqual(["bytes=4-7"]);
  expect(laterRanges(3, 4)).toEqual([]);
});

/** S3's answers to ranged GETs of fixed objects (S3 itself cannot be reached from here), in 64 KiB chunks. */
function rangedS3(objects: Record<string, Buffer>): S3Client {
  return {
    send: (command: { input: { Key: string; Range: string } }) => {
      const data = objects[command.input.Key];
      const [, from, to] = /^bytes=(\d+)-(\d+)$/.exec(command.input.Range)!.map(Number);
      const body = data.subarray(from, Math.min(to + 1, data.length));
      const chunks = Array.from({ length: Math.ceil(body.length / 65536) }, (_, i) =>
        body.subarray(i * 65536, (i + 1) * 65536),
      );
      return Promise.resolve({
        Body: Readable.from(chunks),
        ContentLength: body.length,
        ContentRange: `bytes ${from}-${from + body.length - 1}/${data.length}`,
        ETag: '"e"',
      });
    },
  } as unknown as S3Client;
}

test("the downloads of one archive's chunks reuse one pool of part buffers, the first part's too", async () => {
  const objects = { a: randomBytes(5 * 1024 * 1024 + 5), b: randomBytes(3 * 1024 * 1024 + 1) };
  const s3 = rangedS3(objects);
  const buffers: Buffer[] = [];
  const read = async (key: "a" | "b") => {
    const opened = await openRanged(s3, "bucket", key, { partSizeMiB: 1, concurrency: 2, buffers });
    const parts: Buffer[] = [];
    for await (const part of opened.body) parts.push(Buffer.from(part));
    return Buffer.concat(parts);
  };
  expect((await read("a")).equals(objects.a)).toBe(true);
  // The first part and two in flight: three buffers, back in the pool once the download is read.
  expect(buffers).toHaveLength(3);
  const pool = new Set(buffers);
  expect((await read("b")).equals(objects.b)).toBe(true);
  expect(buffers).toHaveLength(3);
  expect(buffers.every((buffer) => pool.has(buffer))).toBe(true);
});
