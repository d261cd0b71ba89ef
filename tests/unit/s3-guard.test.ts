/**
 * The binlog tests' S3 guard (tests/support/s3-guard.ts) over a small upstream that stands in for the emulator:
 * a client killed while it sends a PUT's body must not leave the key locked, or every later PUT of that key
 * hangs (what made `binlog-archiver`'s kill -9 test time out once).
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { startS3Guard, type S3Guard } from "../support/s3-guard";

let upstream: Server;
let guard: S3Guard;

beforeAll(async () => {
  // Answers a PUT once its whole body arrived; HEAD says the key does not exist.
  upstream = createServer((req, res) => {
    if (req.method === "HEAD") {
      res.writeHead(404).end();
      return;
    }
    req.resume();
    req.on("end", () => res.writeHead(200).end());
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  guard = await startS3Guard(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
});

afterAll(async () => {
  await guard.close();
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

/** A conditional PUT of `bytes` to the guard; with `cutAfter`, the socket is destroyed after that many bytes. */
function put(key: string, bytes: number, cutAfter?: number): Promise<number> {
  const url = new URL(`${guard.endpoint}/bucket/${key}`);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "PUT",
        headers: { "content-length": bytes, "if-none-match": "*" },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", (error) => (cutAfter === undefined ? reject(error) : resolve(-1)));
    if (cutAfter === undefined) {
      req.end(Buffer.alloc(bytes));
      return;
    }
    req.write(Buffer.alloc(cutAfter), () => setTimeout(() => req.destroy(), 50));
  });
}

test("a PUT whose client died mid-body releases its key: the next PUT of that key is answered", async () => {
  expect(await put("segment-1", 1024 * 1024, 4096)).toBe(-1);
  const next = await Promise.race([
    put("segment-1", 1024),
    new Promise<string>((resolve) => setTimeout(() => resolve("still waiting after 5 s"), 5_000)),
  ]);
  expect(next).toBe(200);
});
