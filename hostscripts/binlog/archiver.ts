import { mkdir, stat } from "node:fs/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { Connection } from "mysql2/promise";
import {
  BINLOG_DEFAULTS,
  DEFAULT_PREFIX,
  type BackupConfig,
  type BinlogArchiveConfig,
  type BinlogServer,
} from "../../contracts";
import { BinlogFormatError } from "../common/binlog-events";
import type { Checkpoint } from "../common/checkpoint";
import type { Query } from "../common/dialect";
import { PipelineError, messageOf } from "../common/errors";
import { parseState } from "../common/gtid-state";
import type { Logger } from "../common/log";
import type { MetricsSink } from "../common/metrics";
import { query as runQuery } from "../common/mysql";
import { acquireRunLock } from "../common/runlock";
import { HeaderNotReady, readBinlogHeader } from "./binlog-file";
import { ArchiveChain, type ChainSettings, type StartedEpoch } from "./chain";
import { firstRun, resumeChain, type Continuation } from "./continuity";
import { FileCursor } from "./cursor";
import { ArchiveMetrics } from "./metrics";
import { serverProbe } from "./probe";
import {
  listBinlogs,
  readBinlogEnd,
  readReplicaLag,
  readServerFacts,
  type BinlogEnd,
  type BinlogServerFacts,
} from "../common/binlog-server";
import { loadState, readSpool, spooledBytes, statePaths } from "./state";
import { uploadItem, type UploadTarget } from "./uploader";

/**
 * `mysql-backup binlog`: the server's binary log, including the file it is still writing, in write-once
 * segments in S3, each committed transaction there within the RPO. Every poll (`pollIntervalMs`) reads the
 * committed end of the binlog (`SHOW MASTER STATUS`), reads the new bytes of the files from disk, appends
 * whole events to the open segment in the spool, cuts it once its oldest transaction has waited half the RPO
 * (or it reached `segmentMaxMiB`, or its file ended), and uploads what is cut, in order. See docs/pitr.md.
 */

/** What the archiver runs on; a test injects what it must control. */
export interface ArchiverDeps {
  /** Opens a session on the local server. */
  connect(): Promise<Connection>;
  s3: S3Client;
  sqs: SQSClient;
  metrics: MetricsSink;
  log: Logger;
  now(): Date;
  /** Waits `ms`, or less when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** SIGTERM: the archiver cuts what it read, uploads it and returns. */
  signal?: AbortSignal;
  /** Pause points for the crash tests. Defaults to none. */
  checkpoint?: Checkpoint;
}

/** How long the archiver runs. */
export interface ArchiverRun {
  /** Archive everything the server has committed, upload it, and return (tests, the benchmark, catching up). */
  once: boolean;
}

/** What a run did, as `--json` prints it. */
export interface ArchiverResult {
  epoch: string | null;
  /** The last segment cut. */
  sequence: number;
  segmentsArchived: number;
  bytesArchived: number;
  /** Epochs this run began, and why. */
  epochsStarted: Array<{ epoch: string; reason: string; missing: string | null }>;
  gaps: number;
  /** The exposure when the run ended. */
  lagSeconds: number;
  /** Segments cut but not yet uploaded when the run ended (they go up on the next start). */
  spooled: number;
}

/** Errors a later poll cannot fix: the archiver stops (systemd restarts it, on-call reads why). */
function isFatal(error: unknown): boolean {
  if (error instanceof BinlogFormatError) return true;
  return error instanceof PipelineError && (error.kind === "BinlogFailed" || error.kind === "Config");
}

export async function runArchiver(
  config: BackupConfig,
  run: ArchiverRun,
  deps: ArchiverDeps,
): Promise<ArchiverResult> {
  const archiver = new Archiver(config, run, deps);
  return archiver.run();
}

class Archiver {
  private readonly settings: Required<Omit<BinlogArchiveConfig, "retentionDays">> &
    Pick<BinlogArchiveConfig, "retentionDays">;
  private readonly prefix: string;
  private readonly stateDir: string;
  private chain!: ArchiveChain;
  private facts: BinlogServerFacts | null = null;
  private session: Connection | null = null;
  private cursor: FileCursor | null = null;
  /**
   * `--once`: the server's binlog end at the first poll. The run ends once everything up to it is in S3, even
   * when the server goes on writing faster than this run reads (it would otherwise never catch up).
   */
  private onceEnd: { file: string; position: number } | null = null;
  private readonly metrics: ArchiveMetrics;
  private lastWarningMs = 0;
  private lastArchivedCommitMs: number | null = null;
  private readonly result: ArchiverResult = {
    epoch: null,
    sequence: 0,
    segmentsArchived: 0,
    bytesArchived: 0,
    epochsStarted: [],
    gaps: 0,
    lagSeconds: 0,
    spooled: 0,
  };

  constructor(
    private readonly config: BackupConfig,
    private readonly runMode: ArchiverRun,
    private readonly deps: ArchiverDeps,
  ) {
    this.settings = { ...BINLOG_DEFAULTS, ...config.binlog };
    this.prefix = config.s3.prefix ?? DEFAULT_PREFIX;
    this.stateDir = this.settings.stateDir;
    this.metrics = new ArchiveMetrics(
      deps.metrics,
      { cluster: config.cluster, host: config.host },
      deps.now().getTime(),
    );
  }

  private get log(): Logger {
    return this.deps.log;
  }

  private get server(): BinlogServer {
    return this.facts!.server;
  }

  async run(): Promise<ArchiverResult> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const lock = await acquireRunLock(statePaths(this.stateDir).lock);
    try {
      const state = await loadState(this.stateDir);
      this.chain = new ArchiveChain(this.chainSettings(), state, await readSpool(this.stateDir, state));
      if (this.chain.queue.length > 0)
        this.log.info("uploading what an earlier run cut", { items: this.chain.queue.length });
      await this.drain();
      while (this.deps.signal?.aborted !== true) {
        const started = this.deps.now().getTime();
        const caughtUp = await this.poll();
        await this.metrics.flush(this.deps.now().getTime(), this.windowSeconds());
        if (this.runMode.once && caughtUp) break;
        const rest = this.settings.pollIntervalMs - (this.deps.now().getTime() - started);
        if (rest > 0) await this.deps.sleep(rest, this.deps.signal);
      }
      await this.finish();
      return this.result;
    } finally {
      await lock.release();
      this.session?.destroy();
    }
  }

  private chainSettings(): ChainSettings {
    return {
      stateDir: this.stateDir,
      prefix: this.prefix,
      cluster: this.config.cluster,
      host: this.config.host,
      cutAfterMs: (this.settings.rpoSeconds * 1000) / 2,
      maxBytes: this.settings.segmentMaxMiB * 1024 * 1024,
      log: this.log,
      now: this.deps.now,
      checkpoint: this.deps.checkpoint,
    };
  }

  /** The cursor has read up to `point` (binlog file names of one server sort in their order). */
  private cursorPast(point: { file: string; position: number }): boolean {
    const c = this.cursor;
    if (c === null) return false;
    return c.file.name > point.file || (c.file.name === point.file && c.position >= point.position);
  }

  /** One poll; true when everything the server has committed is in S3. */
  private async poll(): Promise<boolean> {
    let caughtUp = false;
    let replicaLag: number | null = null;
    try {
      const query = await this.query();
      if (this.cursor === null && !(await this.position(query))) throw new Waiting();
      const end = await readBinlogEnd(query, this.facts!);
      replicaLag = await readReplicaLag(query, this.facts!);
      if (spooledBytes(this.chain.queue) < this.settings.spoolMaxMiB * 1024 * 1024)
        await this.readTo(end, query);
      else this.warn("the spool is full: reading waits until S3 takes what is spooled");
      if (this.runMode.once && this.onceEnd === null)
        this.onceEnd = { file: end.file, position: end.position };
      const atEnd = this.cursor?.file.name === end.file && this.cursor.position === end.position;
      const done = atEnd || (this.onceEnd !== null && this.cursorPast(this.onceEnd));
      await this.chain.cutIfDue(this.server, this.runMode.once && done);
      caughtUp = done && !this.chain.isOpen;
    } catch (error) {
      if (isFatal(error)) throw error instanceof BinlogFormatError ? corrupt(error) : error;
      if (!(error instanceof Waiting)) {
        this.warn("this poll failed; the next one tries again", { error: messageOf(error) });
        this.session?.destroy();
        this.session = null;
      }
    }
    await this.drain();
    this.metrics.observe(this.deps.now().getTime(), this.chain.oldestUnarchivedCommit(), replicaLag);
    return caughtUp && this.chain.queue.length === 0;
  }

  /** A session on the server, opened (and its settings checked) when there is none. */
  private async query(): Promise<Query> {
    if (this.session === null) {
      this.session = await this.deps.connect();
      const session = this.session;
      this.facts = await readServerFacts((sql) => runQuery(session, sql));
    }
    const session = this.session;
    return (sql) => runQuery(session, sql);
  }

  /** Decides where reading goes on (at start, or after the chain's file vanished); false to wait. */
  private async position(query: Query): Promise<boolean> {
    const facts = this.facts!;
    const probe = serverProbe(query, facts.binlogDir, facts.server.flavor);
    const state = this.chain.state;
    let decision: Continuation;
    try {
      decision =
        state === null
          ? await firstRun(probe, this.settings.startFrom)
          : await resumeChain(probe, { ...state.tail, gtid: parseState(facts.server.flavor, state.gtid) });
    } catch (error) {
      if (error instanceof HeaderNotReady) return false;
      throw error;
    }
    if (decision.kind === "wait") {
      this.warn(`waiting: ${decision.detail}`);
      return false;
    }
    const header = await readBinlogHeader(facts.binlogDir, decision.file);
    if (decision.kind === "new-epoch")
      this.report(await this.chain.startEpoch(decision, header.identity, facts.server), decision.detail);
    else {
      if (decision.note !== null)
        this.log.warn(`the chain goes on: ${decision.note}`, { epoch: state!.epoch });
      await this.chain.moveTo(decision.file, header.identity, decision.offset);
    }
    this.cursor = new FileCursor(header, decision.offset);
    this.result.epoch = this.chain.state!.epoch;
    this.log.info("archiving", {
      epoch: this.result.epoch,
      file: decision.file,
      offset: decision.offset,
      gtid: this.chain.state!.gtid,
      rpoSeconds: this.settings.rpoSeconds,
    });
    return true;
  }

  private report(started: StartedEpoch, detail: string): void {
    this.result.epochsStarted.push(started);
    const fields = { epoch: started.epoch, reason: started.reason };
    if (started.reason !== "gap") {
      this.log.warn(`a new binlog chain (epoch) begins: ${detail}`, fields);
      return;
    }
    this.metrics.gapFound();
    this.result.gaps++;
    this.log.error(`GAP in the binlog archive: ${detail}`, {
      ...fields,
      missing: started.missing,
      hint: "a restore across the missing GTIDs is impossible from this host's archive; take a snapshot now so recovery points after it are covered, and find out why binlogs were purged before the archiver read them",
    });
  }

  /** Reads the binlog up to `end`, across the files that were closed since the last poll. */
  private async readTo(end: BinlogEnd, query: Query): Promise<void> {
    for (;;) {
      const cursor = this.cursor!;
      if (cursor.file.name === end.file) {
        await this.chain.consume(cursor.readTo(end.position), cursor, this.server);
        return;
      }
      const size = await stat(cursor.file.path).then(
        (s) => s.size,
        () => null,
      );
      if (size === null) {
        await this.lostFile(query);
        return;
      }
      await this.chain.consume(cursor.readTo(size), cursor, this.server);
      const dropped = (await this.chain.endOfFile(true, this.server)) + cursor.pendingBytes;
      if (dropped > 0)
        this.log.warn(
          `binlog ${cursor.file.name} ends inside a transaction the server never completed; its ${dropped} bytes are not archived`,
          { file: cursor.file.name, transaction: cursor.tracker.openGtid },
        );
      if (!(await this.nextFile(query))) return;
    }
  }

  /** Moves to the file after the one just finished, when it continues the chain; else decides anew. */
  private async nextFile(query: Query): Promise<boolean> {
    const files = await listBinlogs(query);
    const at = files.findIndex((f) => f.name === this.cursor!.file.name);
    const next = at >= 0 ? files[at + 1] : undefined;
    if (next !== undefined) {
      const header = await readBinlogHeader(this.facts!.binlogDir, next.name).catch((error: unknown) => {
        if (error instanceof HeaderNotReady) return null;
        throw error;
      });
      if (header === null) return false;
      const running = parseState(this.server.flavor, this.chain.state!.gtid);
      if (header.announced.covers(running) && running.covers(header.announced)) {
        await this.chain.moveTo(header.name, header.identity, header.bodyOffset);
        this.cursor = new FileCursor(header, header.bodyOffset);
        return true;
      }
    }
    this.cursor = null;
    return this.position(query);
  }

  /** The file being read vanished (purged while the archiver was behind): cut what was read, decide anew. */
  private async lostFile(query: Query): Promise<void> {
    const cursor = this.cursor!;
    await this.chain.endOfFile(false, this.server);
    this.log.warn(`binlog ${cursor.file.name} was removed before it was read to its end`, {
      file: cursor.file.name,
      readUpTo: cursor.position,
    });
    this.cursor = null;
    await this.position(query);
  }

  /** Uploads the spool in order; stops at the first failure (the next poll retries it). */
  private async drain(): Promise<void> {
    const target: UploadTarget = {
      bucket: this.config.s3.bucket,
      prefix: this.prefix,
      kmsKeyId: this.config.s3.kmsKeyId,
      announceQueueUrl: this.settings.announce ? this.config.sqs.queueUrl : null,
    };
    const queue = this.chain.queue;
    while (queue.length > 0) {
      let entry;
      try {
        entry = await uploadItem(queue[0], target, this.deps);
      } catch (error) {
        this.warn("uploading to S3 failed; the spool keeps the segment and the next poll tries again", {
          error: messageOf(error),
          spooled: queue.length,
        });
        return;
      }
      queue.shift();
      if (entry === null) continue;
      this.metrics.archived(entry.bytes);
      this.result.segmentsArchived++;
      this.result.bytesArchived += entry.bytes;
      this.result.sequence = entry.sequence;
      this.lastArchivedCommitMs =
        Date.parse(entry.transactions.lastCommitAt ?? "") || this.lastArchivedCommitMs;
      this.log.info("segment archived", {
        key: entry.segmentKey,
        bytes: entry.bytes,
        transactions: entry.transactions.count,
        gtidAfter: entry.gtid.after,
      });
    }
  }

  /** The archived window: from the epoch's first archived commit to the newest, capped at the retention. */
  private windowSeconds(): number {
    const first = Date.parse(this.chain.state?.epochFirstCommitAt ?? "");
    if (Number.isNaN(first) || this.lastArchivedCommitMs === null) return 0;
    const span = Math.max(0, (this.lastArchivedCommitMs - first) / 1000);
    const retention = this.settings.retentionDays;
    return retention === undefined ? span : Math.min(span, retention * 86_400);
  }

  /** On stop: what was read is cut and uploaded, so a restart loses no time. */
  private async finish(): Promise<void> {
    if (this.facts !== null) await this.chain.close(this.server);
    await this.drain();
    const now = this.deps.now().getTime();
    await this.metrics.flush(now, this.windowSeconds(), true).catch((error: unknown) => {
      this.log.warn("cannot send the last metrics", { error: messageOf(error) });
    });
    this.result.lagSeconds = this.metrics.lagSeconds(now);
    this.result.spooled = this.chain.queue.length;
  }

  /** A warning at most every 30 s (a server that stays down must not flood the journal). */
  private warn(message: string, fields: Record<string, unknown> = {}): void {
    const now = this.deps.now().getTime();
    if (now - this.lastWarningMs < 30_000) return;
    this.lastWarningMs = now;
    this.log.warn(message, { ...fields, lagSeconds: Math.round(this.metrics.lagSeconds(now)) });
  }
}

/** The server gives no place to go on from yet (a file being created, a reset binlog with no transaction). */
class Waiting extends Error {}

function corrupt(error: BinlogFormatError): PipelineError {
  return new PipelineError(
    "BinlogFailed",
    `the binlog cannot be read: ${error.message}`,
    "nothing after this point is archived: check the server's disk and error log; if the file is damaged, take a snapshot now (restores past this point need it) and purge the file",
    { cause: error },
  );
}
