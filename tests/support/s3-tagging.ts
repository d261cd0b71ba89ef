/**
 * S3's object tagging for the lab's emulator, which has none: fauxqs 1.9.2 ignores `x-amz-tagging` on
 * PutObject and CreateMultipartUpload, and takes `PUT ?tagging` for a PutObject that replaces the object
 * with the tag XML. A test adds this middleware to its S3 clients, sharing one `ObjectTags`.
 *
 * Only S3's side is played, on the wire: the SDK builds, serialises and signs the real requests, this reads
 * them as S3 would (the `x-amz-tagging` header of a write, the `?tagging` query, the XML body) and answers
 * GetObjectTagging and PutObjectTagging with the XML S3 answers, which the SDK parses as it parses S3's.
 * Every other request goes to the emulator. The bucket policy's rule on retention tags is played too
 * (components/bucketPolicy.ts): a tagging request that changes or drops an object's `retention` tag is
 * refused with 403 AccessDenied.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import { RETENTION_TAG } from "../../contracts";

/** One object's tags. */
export type TagSet = Record<string, string>;

/** The tags of the objects the clients created or tagged, as S3 would hold them. */
export class ObjectTags {
  private readonly objects = new Map<string, TagSet>();
  /** Tagging requests refused, as `<key>: <why>`. */
  readonly refused: string[] = [];

  /** The tags of `key`; an object this store never saw is untagged. */
  of(key: string): TagSet {
    return { ...(this.objects.get(key) ?? {}) };
  }

  /** Replaces the tags of `key`, as creating or tagging it does. */
  set(key: string, tags: TagSet): void {
    this.objects.set(key, { ...tags });
  }
}

interface WireRequest {
  method: string;
  headers: Record<string, string>;
  query: Record<string, unknown>;
  body?: unknown;
}

interface WireResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/** Plays S3's object tagging for `s3` (see the module comment), keeping the tags in `tags`; returns `s3`. */
export function playObjectTagging(s3: S3Client, tags: ObjectTags): S3Client {
  // A multipart upload's tags come with its creation and apply once it is completed.
  const uploads = new Map<string, TagSet>();
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as WireRequest;
      const key = (args.input as { Key?: string }).Key ?? "";
      const command = context.commandName;
      const onTags = "tagging" in (request.query ?? {});
      if (onTags && request.method === "GET") return answer(xml(tagging(tags.of(key))));
      if (onTags && request.method === "PUT") {
        const why = refusal(tags.of(key), parseTagging(String(request.body)));
        if (why !== null) {
          tags.refused.push(`${key}: ${why}`);
          return answer(xml(`<Error><Code>AccessDenied</Code><Message>${why}</Message></Error>`), 403);
        }
        tags.set(key, parseTagging(String(request.body)));
        return answer(xml(""));
      }
      const result = await next(args);
      const ok = (result.response as WireResponse).statusCode < 300;
      const requested = Object.fromEntries(new URLSearchParams(request.headers["x-amz-tagging"] ?? ""));
      if (ok && command === "PutObjectCommand") tags.set(key, requested);
      if (ok && command === "CreateMultipartUploadCommand") uploads.set(key, requested);
      if (ok && command === "CompleteMultipartUploadCommand") tags.set(key, uploads.get(key) ?? {});
      return result;
    },
    // Innermost, after the SDK serialised and signed the request and before it parses the answer.
    { step: "deserialize", priority: "low", name: "playObjectTagging" },
  );
  return s3;
}

/** Why the bucket policy refuses replacing `existing` with `requested`, or null. */
function refusal(existing: TagSet, requested: TagSet): string | null {
  const retention = existing[RETENTION_TAG];
  if (retention === undefined || requested[RETENTION_TAG] === retention) return null;
  return `explicit deny in the bucket policy: the ${RETENTION_TAG} tag (${retention}) cannot change (requested ${requested[RETENTION_TAG] ?? "none"})`;
}

function answer(body: string, statusCode = 200): { response: WireResponse; output?: undefined } {
  return {
    response: { statusCode, headers: { "content-type": "application/xml" }, body: Buffer.from(body) },
  };
}

const xml = (inner: string) => `<?xml version="1.0" encoding="UTF-8"?>\n${inner}`;

function tagging(tags: TagSet): string {
  const set = Object.entries(tags)
    .map(([k, v]) => `<Tag><Key>${escape(k)}</Key><Value>${escape(v)}</Value></Tag>`)
    .join("");
  return `<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>${set}</TagSet></Tagging>`;
}

/** The tag set of a PutObjectTagging body. */
function parseTagging(body: string): TagSet {
  const tags: TagSet = {};
  for (const [, k, v] of body.matchAll(/<Tag><Key>(.*?)<\/Key><Value>(.*?)<\/Value><\/Tag>/g))
    tags[unescape(k)] = unescape(v);
  return tags;
}

const entities: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
const escape = (text: string) => text.replace(/[&<>"]/g, (c) => entities[c]);
const unescape = (text: string) =>
  text.replace(
    /&(amp|lt|gt|quot|apos);/g,
    (_, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[e]!,
  );
