/**
 * What a replica expects S3 to describe after a create-only write (create-only.ts) and the checksums it sends
 * (checksums.ts): the SHA-256 S3 keeps for a single PUT, the full-object CRC32 of a multipart upload (combined
 * from its parts' CRC32s, which must equal zlib's CRC32 of the whole object), and the MD5 ETags where S3
 * gives them. The integration tests settle taken keys against the emulator.
 */
import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { combinedCrc32, crc32Base64, crc32Combine, crc32Of } from "../../hostscripts/backup/checksums";
import { intendedBody, intendedMultipart, isTaken } from "../../hostscripts/backup/create-only";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest();
const md5 = (data: Buffer) => createHash("md5").update(data).digest();

test("a single PUT: the body's size, SHA-256 (base64) and MD5", () => {
  const body = '{"backupId": "20261124T020000Z-3fa9c1"}\n';
  expect(intendedBody(body)).toEqual({
    bytes: Buffer.byteLength(body),
    checksum: { algorithm: "SHA256", value: sha256(Buffer.from(body)).toString("base64") },
    etag: md5(Buffer.from(body)).toString("hex"),
  });
});

test("a multipart upload: its full-object CRC32, and the MD5 of its parts' MD5s with the part count", () => {
  const parts = [Buffer.alloc(5 * 1024 * 1024, 1), Buffer.from("the last, short part")];
  const full = crc32Base64(combinedCrc32(parts.map((p) => ({ crc32: crc32Of(p), bytes: p.length }))));
  const intended = intendedMultipart(
    parts.map((p) => ({ bytes: p.length, etag: `"${md5(p).toString("hex")}"` })),
    full,
  );
  expect(intended).toEqual({
    bytes: parts[0].length + parts[1].length,
    checksum: { algorithm: "CRC32", value: crc32Base64(crc32(Buffer.concat(parts)) >>> 0) },
    etag: `${createHash("md5")
      .update(Buffer.concat(parts.map(md5)))
      .digest("hex")}-2`,
  });
});

test("parts whose ETags are not MD5s (SSE-KMS) give no ETag to compare", () => {
  expect(intendedMultipart([{ bytes: 1, etag: '"a1b2c3-kms-opaque"' }], "AAAAAA==").etag).toBeNull();
});

test("CRC32s combine into the CRC32 of the concatenation, whatever the part sizes", () => {
  for (const sizes of [[1], [5, 7], [0, 3, 0], [8 << 20, 8 << 20, 12345], [1, 1, 1, 1, 1_000_000]]) {
    const parts = sizes.map((n) => randomBytes(n));
    const whole = crc32Of(Buffer.concat(parts));
    expect(combinedCrc32(parts.map((p) => ({ crc32: crc32Of(p), bytes: p.length })))).toBe(whole);
  }
  expect(crc32Combine(0x12345678, 0, 0)).toBe(0x12345678);
  // S3 writes a CRC32 as its 4 bytes big-endian in base64.
  expect(crc32Base64(0xcbf43926)).toBe(Buffer.from([0xcb, 0xf4, 0x39, 0x26]).toString("base64"));
  expect(crc32Of(Buffer.from("123456789"))).toBe(0xcbf43926);
});

test("a taken key is S3's 412 on a create-only write, or NoSuchUpload on a completion retried after it went through", () => {
  expect(isTaken({ name: "PreconditionFailed", $metadata: { httpStatusCode: 412 } })).toBe(true);
  expect(isTaken({ name: "NoSuchUpload", $metadata: { httpStatusCode: 404 } })).toBe(true);
  expect(isTaken({ name: "ConditionalRequestConflict", $metadata: { httpStatusCode: 409 } })).toBe(false);
  expect(isTaken({ name: "AccessDenied", $metadata: { httpStatusCode: 403 } })).toBe(false);
});
