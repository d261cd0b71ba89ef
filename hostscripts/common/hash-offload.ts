import { createHash, type Hash } from "node:crypto";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { PipelineError, messageOf, type ExitCodeName } from "./errors";

/**
 * SHA-256 of streamed bytes, computed on a worker thread when the host has a core to spare, so the main thread
 * of a backup (file reads, tar framing, zstd's input) or a restore (download, `zstd -d`'s input, tar parsing,
 * writes) no longer spends a second per ~1.8 GB hashing: that thread bounds one process (`BENCHMARKS.md`,
 * "hashing on a worker thread": a 2.5 GB backup's archive step 14.8 → 12.2 s median on this 2-core machine). The
 * bytes are copied into 1 MiB staging buffers that are transferred to the worker (not cloned) and handed back
 * for reuse once hashed; at most MAX_IN_FLIGHT of them are with the worker, so a worker that falls behind slows
 * the caller instead of growing the heap. On one core, or with `MYSQL_BACKUP_HASH_INLINE=1`, the hash runs
 * inline as before: a second thread would only take turns.
 */

/** One running SHA-256. */
export interface StreamHash {
  /** Adds bytes; the caller may reuse `data` once the promise resolves. */
  update(data: Uint8Array): Promise<void>;
  /** The hex digest of every byte added; the hash cannot be used after. */
  digest(): Promise<string>;
}

/** Bytes staged per message to the worker. */
const STAGE_BYTES = 1024 * 1024;
/** Staging buffers with the worker at once (4 MiB): the memory a slow worker may hold. */
const MAX_IN_FLIGHT = 4;

/** The worker's program: one `Hash` per id; buffers go back to the main thread once hashed. */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const hashes = new Map();
parentPort.on("message", (m) => {
  if (m.op === "open") hashes.set(m.id, createHash("sha256"));
  else if (m.op === "update") {
    hashes.get(m.id).update(new Uint8Array(m.buffer, 0, m.bytes));
    parentPort.postMessage({ op: "free", buffer: m.buffer }, [m.buffer]);
  } else if (m.op === "digest") {
    const hex = hashes.get(m.id).digest("hex");
    hashes.delete(m.id);
    parentPort.postMessage({ op: "digest", id: m.id, hex });
  }
});
`;

type WorkerReply = { op: "free"; buffer: ArrayBuffer } | { op: "digest"; id: number; hex: string };

/**
 * The worker and its bookkeeping; one per process, started on first use. It keeps the process alive only while
 * it holds work (bytes to hash, a digest to return): an idle worker never stops the process from exiting. A hash
 * abandoned before its digest (an extraction that failed) costs the worker one idle `Hash` object.
 */
class HashWorker {
  private readonly worker: Worker;
  /** Staging buffers handed back by the worker, for reuse. */
  private readonly free: ArrayBuffer[] = [];
  /** Buffers sent and not yet handed back: the work the worker holds. */
  private withWorker = 0;
  private readonly waitingForRoom: Array<() => void> = [];
  private readonly digests = new Map<
    number,
    { resolve: (hex: string) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  /** Set once the worker failed or exited: every later call fails with it. */
  private failure: Error | null = null;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on("message", (reply: WorkerReply) => this.received(reply));
    this.worker.on("error", (error) => this.fail(error));
    this.worker.on("exit", (code) => this.fail(new Error(`the hashing thread exited (code ${code})`)));
  }

  /** A new hash's id (a worker that failed ignores it: the hash's first send or digest fails). */
  open(): number {
    const id = this.nextId++;
    this.worker.postMessage({ op: "open", id });
    return id;
  }

  /** An empty staging buffer. */
  stage(): ArrayBuffer {
    return this.free.pop() ?? new ArrayBuffer(STAGE_BYTES);
  }

  /** Sends `bytes` of a staging buffer to be hashed, once fewer than MAX_IN_FLIGHT are with the worker. */
  async send(id: number, buffer: ArrayBuffer, bytes: number): Promise<void> {
    while (this.withWorker >= MAX_IN_FLIGHT) {
      this.check();
      await new Promise<void>((resolve) => this.waitingForRoom.push(resolve));
    }
    this.check();
    this.withWorker++;
    this.holdProcess();
    this.worker.postMessage({ op: "update", id, buffer, bytes }, [buffer]);
  }

  digest(id: number): Promise<string> {
    this.check();
    return new Promise((resolve, reject) => {
      this.digests.set(id, { resolve, reject });
      this.holdProcess();
      this.worker.postMessage({ op: "digest", id });
    });
  }

  private received(reply: WorkerReply): void {
    if (reply.op === "free") {
      this.withWorker--;
      if (this.free.length < MAX_IN_FLIGHT) this.free.push(reply.buffer);
      this.waitingForRoom.shift()?.();
    } else {
      this.digests.get(reply.id)?.resolve(reply.hex);
      this.digests.delete(reply.id);
    }
    this.holdProcess();
  }

  /** Refs the worker while it holds work, unrefs it when idle. */
  private holdProcess(): void {
    if (this.withWorker > 0 || this.digests.size > 0) this.worker.ref();
    else this.worker.unref();
  }

  private fail(cause: unknown): void {
    this.failure ??= new Error(`the hashing thread failed: ${messageOf(cause)}`, { cause });
    for (const { reject } of this.digests.values()) reject(this.failure);
    this.digests.clear();
    for (const wake of this.waitingForRoom.splice(0)) wake();
    this.worker.unref();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  /** Whether the worker failed: its hashes fail, and new ones go to a new worker. */
  get failed(): boolean {
    return this.failure !== null;
  }
}

let shared: HashWorker | undefined;

/** Whether hashes run on the worker: more than one core, unless `MYSQL_BACKUP_HASH_INLINE=1` says otherwise. */
export function hashesOffloaded(): boolean {
  return availableParallelism() > 1 && process.env.MYSQL_BACKUP_HASH_INLINE !== "1";
}

/**
 * A new streamed SHA-256: on the shared worker thread when `offload` (by default `hashesOffloaded()`), else
 * inline. Should the worker fail, the hash fails with a PipelineError of `kind`: a fault of this host, not of
 * the bytes hashed.
 */
export function sha256Stream(kind: ExitCodeName, offload = hashesOffloaded()): StreamHash {
  if (!offload) return inlineHash(createHash("sha256"));
  // A worker that failed takes down the hashes it held, not those of the next backup or message.
  if (shared === undefined || shared.failed) shared = new HashWorker();
  return offloadedHash(shared, kind);
}

function inlineHash(hash: Hash): StreamHash {
  return {
    update: async (data) => {
      hash.update(data);
    },
    digest: async () => hash.digest("hex"),
  };
}

function offloadedHash(worker: HashWorker, kind: ExitCodeName): StreamHash {
  const named = <T>(work: () => Promise<T>): Promise<T> =>
    work().catch((cause: unknown) => {
      throw new PipelineError(
        kind,
        messageOf(cause),
        "a fault of this host (memory, Node), not of the data: the run can be retried",
        { cause },
      );
    });
  const id = worker.open();
  let staged: ArrayBuffer | null = null;
  let used = 0;
  const send = async () => {
    if (staged === null || used === 0) return;
    const full = staged;
    const bytes = used;
    staged = null;
    used = 0;
    await worker.send(id, full, bytes);
  };
  return {
    update: (data) =>
      named(async () => {
        for (let at = 0; at < data.length;) {
          staged ??= worker.stage();
          const take = Math.min(STAGE_BYTES - used, data.length - at);
          new Uint8Array(staged, used, take).set(data.subarray(at, at + take));
          used += take;
          at += take;
          if (used === STAGE_BYTES) await send();
        }
      }),
    digest: () =>
      named(async () => {
        await send();
        return worker.digest(id);
      }),
  };
}
