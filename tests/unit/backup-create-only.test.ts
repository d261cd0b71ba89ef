/**
 * What a replica expects S3 to describe after a create-only write (create-only.ts): the SHA-256 checksum S3
 * keeps for a single PUT and for a multipart upload (the checksum of the parts' checksums), and the MD5
 * ETags where S3 gives them. The integration tests settle taken keys against the emulator.
 */
import { createHash } from "node:crypto";
import { intendedBody, intendedMultipart, isTaken } from "../../hostscripts/backup/create-only";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest();
const md5 = (data: Buffer) => createHash("md5").update(data).digest();

test("a single PUT: the body's size, SHA-256 (base64) and MD5", () => {
  const body = '{"backupId": "20261124T020000Z-3fa9c1"}\n';
  expect(intendedBody(body)).toEqual({
    bytes: Buffer.byteLength(body),
    checksumSHA256: sha256(Buffer.from(body)).toString("base64"),
    etag: md5(Buffer.from(body)).toString("hex"),
  });
});

test("a multipart upload: the checksum of the parts' checksums, and the MD5 of their MD5s with the part count", () => {
  const parts = [Buffer.alloc(5 * 1024 * 1024, 1), Buffer.from("the last, short part")];
  const intended = intendedMultipart(
    parts.map((p) => ({
      bytes: p.length,
      sha256: sha256(p).toString("base64"),
      etag: `"${md5(p).toString("hex")}"`,
    })),
  );
  expect(intended).toEqual({
    bytes: parts[0].length + parts[1].length,
    checksumSHA256: sha256(Buffer.concat(parts.map(sha256))).toString("base64"),
    etag: `${createHash("md5")
      .update(Buffer.concat(parts.map(md5)))
      .digest("hex")}-2`,
  });
  // Not the plain SHA-256 of the object: S3 does not keep that for a multipart upload.
  expect(intended.checksumSHA256).not.toBe(sha256(Buffer.concat(parts)).toString("base64"));
});

test("parts whose ETags are not MD5s (SSE-KMS) give no ETag to compare", () => {
  const part = Buffer.from("x");
  expect(
    intendedMultipart([{ bytes: 1, sha256: sha256(part).toString("base64"), etag: '"a1b2c3-kms-opaque"' }])
      .etag,
  ).toBeNull();
});

test("a taken key is S3's 412 on a create-only write, or NoSuchUpload on a completion retried after it went through", () => {
  expect(isTaken({ name: "PreconditionFailed", $metadata: { httpStatusCode: 412 } })).toBe(true);
  expect(isTaken({ name: "NoSuchUpload", $metadata: { httpStatusCode: 404 } })).toBe(true);
  expect(isTaken({ name: "ConditionalRequestConflict", $metadata: { httpStatusCode: 409 } })).toBe(false);
  expect(isTaken({ name: "AccessDenied", $metadata: { httpStatusCode: 403 } })).toBe(false);
});
