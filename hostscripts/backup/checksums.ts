import { crc32 } from "node:zlib";

/**
 * The S3 checksums of what a replica uploads. Every part of an archive object carries a CRC32 that S3 checks
 * on arrival, and the completed object a full-object CRC32 (S3's `FULL_OBJECT` type) that S3 checks against
 * the parts: transport integrity, end to end. They are CRC32 rather than SHA-256 because node computes CRC32
 * natively at several GB/s, and the backup's own integrity rests on the sha256s of the manifest (of every
 * file and every archive object), which the verifier checks. The full-object CRC32 is combined from the
 * parts' CRCs (as zlib's crc32_combine does), so each byte is checksummed once.
 */

/** CRC32 (the zlib/IEEE polynomial) of `data`, as an unsigned number. */
export function crc32Of(data: Uint8Array): number {
  return crc32(data) >>> 0;
}

/** A CRC32 as S3 writes it: the 4 bytes big-endian, in base64. */
export function crc32Base64(crc: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc >>> 0);
  return bytes.toString("base64");
}

/** The 32×32 matrix of GF(2) that appends one zero bit to a CRC32 register (zlib's crc32_combine). */
function gf2Times(matrix: Uint32Array, vector: number): number {
  let sum = 0;
  for (let i = 0; vector !== 0; i++, vector >>>= 1) if (vector & 1) sum ^= matrix[i];
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, matrix: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(matrix, matrix[n]);
}

/** The CRC32 of A followed by B, from the CRC32 of A, the CRC32 of B and B's length. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB <= 0) return crcA >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row;
  gf2Square(even, odd);
  gf2Square(odd, even);
  let crc = crcA >>> 0;
  let length = lengthB;
  do {
    gf2Square(even, odd);
    if (length % 2 === 1) crc = gf2Times(even, crc);
    length = Math.floor(length / 2);
    if (length === 0) break;
    gf2Square(odd, even);
    if (length % 2 === 1) crc = gf2Times(odd, crc);
    length = Math.floor(length / 2);
  } while (length !== 0);
  return (crc ^ crcB) >>> 0;
}

/** The full-object CRC32 of parts given in order as their CRC32 and length. */
export function combinedCrc32(parts: ReadonlyArray<{ crc32: number; bytes: number }>): number {
  let crc = 0;
  for (const part of parts) crc = crc32Combine(crc, part.crc32, part.bytes);
  return crc;
}
