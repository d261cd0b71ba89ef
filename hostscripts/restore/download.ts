import {
  GetObjectCommand,
  HeadObjectCommand,
  type GetObjectCommandOutput,
  type S3Client,
} from "@aws-sdk/client-s3";

/**
 * An S3 object's bytes, in order, fetched as ranged GETs of `partSizeMiB`, `concurrency` at a time: one TCP
 * stream rarely fills an instance's bandwidth to S3, several do. Parts are held in memory until their turn
 * (at most `concurrency + 1` parts). Each part is read straight into one of `concurrency + 1` buffers reused
 * part after part, so it is held once, never as its chunks and their concatenation (as the SDK's
 * `transformToByteArray` holds it), and the download makes no garbage per byte (a fresh buffer per part made
 * the garbage collector mark the whole heap after every few parts): part size and concurrency bound the
 * verifier's memory. A part yielded is valid until the next one is asked for. Every part after the first is
 * fetched with the first one's version id (where the bucket versions objects) and `If-Match` on its ETag,
 * so an object replaced mid-download can neither mix two versions nor go unnoticed.
 */

/** How an archive is downloaded. */
export interface RangedDownloadOptions {
  /** Bytes per ranged GET, in MiB. */
  partSizeMiB: number;
  /** Ranged GETs in flight at once. */
  concurrency: number;
  signal?: AbortSignal;
  /**
   * Free part buffers (each of the part size) shared by the downloads of one archive: a download takes from
   * it and gives back, so the chunks of a format 2 archive reuse the same few buffers instead of allocating
   * their own (a fresh set per chunk made the garbage collector a third of a restore's main thread).
   */
  buffers?: Buffer[];
}

/** The version to download: every part, the first included, asks for it. */
export interface DownloadPin {
  /** Null where the bucket does not version objects: the ETag alone pins it then. */
  versionId: string | null;
  etag: string;
}

/** An opened download: what S3 said of the object (its size, version and ETag) and its bytes. */
export interface OpenedDownload {
  bytes: number | undefined;
  /** The version S3 served; null when it named none (the bucket does not version objects). */
  versionId: string | null;
  etag: string;
  body: AsyncIterable<Uint8Array>;
  /** Closes the download without reading it (its first response is open until then). */
  discard(): void;
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

/** S3 could not satisfy the range: `bytes=0-…` of an object of 0 bytes (416 InvalidRange). */
function isUnsatisfiableRange(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "InvalidRange" || e.$metadata?.httpStatusCode === 416;
}

/**
 * Opens `key` for a ranged download, of the `pin`ned version when given. The first part is requested at
 * once, so a missing object throws here (S3's NoSuchKey) rather than mid-stream; a server that ignores Range
 * sends the whole object in one body. An object of 0 bytes has no first range (S3 answers 416): it opens as
 * an empty download, so the caller can compare its size with what it expects instead of blaming S3.
 */
export async function openRanged(
  s3: S3Client,
  bucket: string,
  key: string,
  options: RangedDownloadOptions & { pin?: DownloadPin },
): Promise<OpenedDownload> {
  const partBytes = Math.round(options.partSizeMiB * 1024 * 1024);
  const get = (Range: string, pin: DownloadPin | undefined) =>
    s3.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        Range,
        VersionId: pin?.versionId ?? undefined,
        IfMatch: pin?.etag,
      }),
      { abortSignal: options.signal },
    );
  let first: GetObjectCommandOutput;
  try {
    first = await get(`bytes=0-${partBytes - 1}`, options.pin);
  } catch (error) {
    if (!isUnsatisfiableRange(error)) throw error;
    // The refusal names no version or ETag; HEAD (of the same version) says which object is empty.
    const head = await s3
      .send(
        new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: options.pin?.versionId ?? undefined }),
      )
      .catch(() => undefined);
    return {
      bytes: head?.ContentLength ?? 0,
      versionId: head?.VersionId ?? options.pin?.versionId ?? null,
      etag: head?.ETag ?? options.pin?.etag ?? "",
      body: emptyBody(),
      discard: () => undefined,
    };
  }
  const served = {
    versionId: first.VersionId ?? null,
    etag: first.ETag ?? "",
    discard: () => (first.Body as { destroy?: () => void } | undefined)?.destroy?.(),
  };
  const total = totalFromContentRange(first.ContentRange);
  if (total === undefined) return { bytes: first.ContentLength, ...served, body: streamOf(first) };
  const ranges = laterRanges(total, partBytes);
  return {
    bytes: total,
    ...served,
    body: inOrder(first, ranges, (range) => get(range, served), {
      concurrency: options.concurrency,
      partBytes,
      free: options.buffers ?? [],
    }),
  };
}

async function* emptyBody(): AsyncGenerator<Uint8Array> {}

function streamOf(response: GetObjectCommandOutput): AsyncIterable<Uint8Array> {
  return response.Body as AsyncIterable<Uint8Array>;
}

/**
 * The parts in order, each read into a buffer of `free` (or a new one) and given back once the consumer asks
 * for the next; the first part too, so no byte goes through the SDK's stream chunks (garbage per byte).
 */
async function* inOrder(
  first: GetObjectCommandOutput,
  ranges: string[],
  get: (range: string) => Promise<GetObjectCommandOutput>,
  layout: { concurrency: number; partBytes: number; free: Buffer[] },
): AsyncGenerator<Uint8Array> {
  const { concurrency, partBytes, free } = layout;
  const fetchPart = (range: string) => {
    const buffer = free.pop() ?? Buffer.allocUnsafeSlow(partBytes);
    return get(range).then(async (response) => ({ buffer, filled: await collect(response, buffer) }));
  };
  const inFlight: Array<Promise<{ buffer: Buffer; filled: number }>> = [];
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
  const head = free.pop() ?? Buffer.allocUnsafeSlow(partBytes);
  try {
    yield head.subarray(0, await collect(first, head));
  } finally {
    free.push(head);
  }
  while (inFlight.length > 0) {
    const { buffer, filled } = await inFlight.shift()!;
    refill();
    try {
      yield buffer.subarray(0, filled);
    } finally {
      // The consumer asked for the next part (or stopped): it is done with this one.
      free.push(buffer);
    }
  }
}

/**
 * Reads a part's body into `buffer` (chunks are copied in as they arrive) and returns its length. A body
 * longer or shorter than announced, or than the part size, is a broken download.
 */
async function collect(response: GetObjectCommandOutput, buffer: Buffer): Promise<number> {
  const length = response.ContentLength ?? buffer.length;
  if (length > buffer.length)
    throw new Error(`a ranged GET announced ${length} bytes, more than the ${buffer.length} asked for`);
  let filled = 0;
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
    if (filled + chunk.length > length)
      throw new Error(`a ranged GET sent more than the ${length} bytes it announced`);
    buffer.set(chunk, filled);
    filled += chunk.length;
  }
  if (response.ContentLength !== undefined && filled !== length)
    throw new Error(`a ranged GET ended after ${filled} of the ${length} bytes it announced`);
  return filled;
}
