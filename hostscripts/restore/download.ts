import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from "@aws-sdk/client-s3";

/**
 * An S3 object's bytes, in order, fetched as ranged GETs of `partSizeMiB`, `concurrency` at a time: one TCP
 * stream rarely fills an instance's bandwidth to S3, several do. Parts are held in memory until their turn
 * (at most `concurrency + 1` parts). Each part is read straight into one buffer of its announced length, so
 * it is held once, never as its chunks and their concatenation (as the SDK's `transformToByteArray` holds
 * it): part size and concurrency bound the verifier's memory. Every part after the first is fetched with
 * `If-Match` on the first one's ETag, so an object replaced mid-download fails the download instead of
 * mixing two versions.
 */

/** How an archive is downloaded. */
export interface RangedDownloadOptions {
  /** Bytes per ranged GET, in MiB. */
  partSizeMiB: number;
  /** Ranged GETs in flight at once. */
  concurrency: number;
  signal?: AbortSignal;
}

/** An opened download: the object's size (when S3 said it) and its bytes. */
export interface OpenedDownload {
  bytes: number | undefined;
  body: AsyncIterable<Uint8Array>;
}

/** Total size from a `Content-Range: bytes 0-1023/4096` header. */
export function totalFromContentRange(header: string | undefined): number | undefined {
  const match = /\/(\d+)$/.exec(header ?? "");
  return match ? Number(match[1]) : undefined;
}

/** The `Range` headers of the parts after the first. */
export function laterRanges(total: number, partBytes: number): string[] {
  const ranges: string[] = [];
  for (let start = partBytes; start < total; start += partBytes) {
    ranges.push(`bytes=${start}-${Math.min(start + partBytes, total) - 1}`);
  }
  return ranges;
}

/**
 * Opens `key` for a ranged download. The first part is requested at once, so a missing object throws here
 * (S3's NoSuchKey) rather than mid-stream; a server that ignores Range sends the whole object in one body.
 */
export async function openRanged(
  s3: S3Client,
  bucket: string,
  key: string,
  options: RangedDownloadOptions,
): Promise<OpenedDownload> {
  const partBytes = Math.round(options.partSizeMiB * 1024 * 1024);
  const get = (Range: string, IfMatch?: string) =>
    s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range, IfMatch }), {
      abortSignal: options.signal,
    });
  const first = await get(`bytes=0-${partBytes - 1}`);
  const total = totalFromContentRange(first.ContentRange);
  if (total === undefined) return { bytes: first.ContentLength, body: streamOf(first) };
  const ranges = laterRanges(total, partBytes);
  return {
    bytes: total,
    body: inOrder(first, ranges, (range) => get(range, first.ETag), options.concurrency),
  };
}

function streamOf(response: GetObjectCommandOutput): AsyncIterable<Uint8Array> {
  return response.Body as AsyncIterable<Uint8Array>;
}

async function* inOrder(
  first: GetObjectCommandOutput,
  ranges: string[],
  get: (range: string) => Promise<GetObjectCommandOutput>,
  concurrency: number,
): AsyncGenerator<Uint8Array> {
  const fetchPart = (range: string) => get(range).then(collect);
  const inFlight: Array<Promise<Uint8Array>> = [];
  let next = 0;
  const refill = () => {
    while (inFlight.length < concurrency && next < ranges.length) {
      const part = fetchPart(ranges[next++]);
      // Rejections surface when the part's turn comes; until then they must not count as unhandled.
      part.catch(() => undefined);
      inFlight.push(part);
    }
  };
  refill();
  yield* streamOf(first);
  while (inFlight.length > 0) {
    const part = await inFlight.shift()!;
    refill();
    yield part;
  }
}

/**
 * A part's body as one buffer: chunks are copied into a buffer of the announced Content-Length as they arrive.
 * A body longer or shorter than announced is a broken download.
 */
async function collect(response: GetObjectCommandOutput): Promise<Uint8Array> {
  const length = response.ContentLength;
  if (length === undefined) return response.Body!.transformToByteArray();
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
    if (filled + chunk.length > length)
      throw new Error(`a ranged GET sent more than the ${length} bytes it announced`);
    buffer.set(chunk, filled);
    filled += chunk.length;
  }
  if (filled !== length)
    throw new Error(`a ranged GET ended after ${filled} of the ${length} bytes it announced`);
  return buffer;
}
