import { mkdir, rm } from "node:fs/promises";
import { crc32Of } from "../hostscripts/backup/checksums";
import { writeArchive } from "../hostscripts/backup/archive";
import { ChunkFeed } from "../hostscripts/backup/growing";
import { sha256Stream } from "../hostscripts/common/hash-offload";
import { memoryLogger } from "../hostscripts/common/log";

/**
 * `node archive-only.cjs ROOT DIR CHUNK_MIB`: our archive step alone, as the backup runs it (the same
 * `writeArchive`: every file's sha256, the tar framing, one zstd per chunk), with the upload's own checksum
 * work on the compressed bytes (each chunk's sha256 and a CRC32 per 8 MiB part, read from the chunk files as
 * they grow) but no HTTP and no S3 server. On the lab the emulator serves the upload on the same two cores,
 * which plain `tar | zstd` does not pay for; this is the like-for-like side of that comparison
 * (bench/archive-ab.ts). Prints one JSON line; removes the chunks it wrote.
 */

const PART_BYTES = 8 * 1024 * 1024;

async function followAndHash(feed: ChunkFeed): Promise<number> {
  const buffer = Buffer.alloc(PART_BYTES);
  let hashed = 0;
  try {
    for await (const chunk of feed) {
      const hash = sha256Stream("ArchiveFailed");
      for (let position = 0; ;) {
        const { available, complete } = await chunk.source.reach(position + PART_BYTES);
        const length = Math.min(PART_BYTES, available - position);
        if (length > 0) {
          const part = await chunk.source.read(buffer, length, position);
          crc32Of(part);
          await hash.update(part);
          position += length;
          hashed += length;
        }
        if (complete && position === available) break;
      }
      await hash.digest();
    }
  } finally {
    await feed.close();
  }
  return hashed;
}

async function main(): Promise<void> {
  const [root, dir, chunkMiB] = process.argv.slice(2);
  if (!root || !dir) throw new Error("usage: archive-only ROOT DIR [CHUNK_MIB]");
  await mkdir(dir, { recursive: true });
  const feed = new ChunkFeed();
  const following = followAndHash(feed);
  following.catch(() => undefined);
  try {
    const result = await writeArchive({
      root,
      dir,
      chunkBytes: Number(chunkMiB ?? 1024) * 1024 * 1024,
      log: memoryLogger(),
      feed,
    });
    const hashed = await following;
    console.log(
      JSON.stringify({
        seconds: result.seconds,
        rawBytes: result.rawBytes,
        bytes: result.bytes,
        chunks: result.chunks.length,
        hashed,
      }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
