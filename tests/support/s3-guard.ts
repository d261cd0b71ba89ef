/**
 * S3's conditional write in front of the lab's emulator. fauxqs 1.9 ignores `If-None-Match: *` on PUT (it
 * would overwrite), so the binlog tests put this proxy between the archiver and the emulator: a PUT with
 * `If-None-Match: *` on a key that exists gets S3's 412 PreconditionFailed, as it would from S3; everything
 * else is passed through. It records every PUT (key, whether it was conditional, its SSE and checksum
 * headers, and the answer), which is what the tests assert about the archiver's writes.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One PUT as the guard saw it. */
export interface GuardedPut {
  key: string;
  conditional: boolean;
  sse: string | undefined;
  checksumSha256: string | undefined;
  status: number;
}

/** A running guard. */
export interface S3Guard {
  /** The endpoint clients use instead of the emulator's. */
  endpoint: string;
  puts: GuardedPut[];
  close(): Promise<void>;
}

const PRECONDITION_FAILED =
  '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>';

/** Starts a guard in front of the emulator at `upstream` (`http://127.0.0.1:<port>`). */
export async function startS3Guard(upstream: string): Promise<S3Guard> {
  const puts: GuardedPut[] = [];
  // One conditional PUT per key at a time, so two racing writers cannot both pass the existence check.
  const locks = new Map<string, Promise<void>>();
  const target = new URL(upstream);
  const server = createServer((req, res) => {
    void handle(req, res).catch((error: Error) => {
      // A client that went away (killed mid-request) has no one left to answer.
      if (res.headersSent || res.destroyed) res.destroy();
      else res.writeHead(500).end(error.message);
    });
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", upstream);
    const isPut =
      req.method === "PUT" && !url.searchParams.has("uploadId") && !url.searchParams.has("tagging");
    if (!isPut) {
      await forward(req, res, target);
      return;
    }
    const key = decodeURIComponent(url.pathname.replace(/^\/[^/]+\//, ""));
    const record: GuardedPut = {
      key,
      conditional: req.headers["if-none-match"] === "*",
      sse: header(req, "x-amz-server-side-encryption"),
      checksumSha256: header(req, "x-amz-checksum-sha256"),
      status: 0,
    };
    puts.push(record);
    const previous = locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    locks.set(
      key,
      previous.then(() => mine),
    );
    await previous;
    try {
      if (record.conditional) {
        const head = await fetch(`${upstream}${url.pathname}`, { method: "HEAD" });
        if (head.status === 200) {
          req.resume();
          record.status = 412;
          res.writeHead(412, { "content-type": "application/xml" }).end(PRECONDITION_FAILED);
          return;
        }
      }
      record.status = await forward(req, res, target);
    } finally {
      release();
    }
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    puts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Passes a request to the emulator and its answer back; resolves with the status. A client killed while it
 * sent its body (the archiver under kill -9) never ends its request: the upstream request is then cut off and
 * the promise rejects, so the key's lock is released instead of holding every later PUT of that key.
 */
function forward(req: IncomingMessage, res: ServerResponse, target: URL): Promise<number> {
  return new Promise((resolve, reject) => {
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on("end", () => resolve(answer.statusCode ?? 502));
        answer.on("error", reject);
      },
    );
    upstream.on("error", reject);
    const gone = () => {
      upstream.destroy();
      reject(new Error(`the client went away during ${req.method} ${req.url}`));
    };
    req.on("close", () => {
      if (!req.complete) gone();
    });
    res.on("close", () => {
      if (!res.writableFinished) gone();
    });
    req.pipe(upstream);
  });
}
