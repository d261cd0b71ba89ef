import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { Shell } from "zx";
import {
  CHECKS,
  VERIFY_DEFAULTS,
  type BackupCreatedMessage,
  type BackupManifest,
  type BackupRef,
  type CheckName,
  type CheckResult,
  type RecoveryPoint,
  type RestoredTable,
  type VerifiedObjects,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { CheckFailure, judgeObjects } from "../restore/objects";
import {
  StartupFailure,
  mapSourcePath,
  planScratchServer,
  prepareScratchTree,
  removeReplicationState,
  startScratchServer,
  type ScratchServer,
} from "../restore/scratch-server";
import { findServerBinary, readServerBuild, whyCannotRun, type ServerBuild } from "../common/server-binary";
import { catchUp, type CatchUpOptions } from "./catchup";
import {
  checkPages,
  checkTable,
  compareInventory,
  judgeTables,
  readRecoveryPoint,
  readRestoredTables,
  type RestoredPosition,
} from "./checks";
import { downloadAndExtract, fetchManifest } from "./objects";
import { judgePosition, readRestoredPosition } from "./position";
import type { RestoreTimings } from "./report";
import { noTimings } from "./result";

/**
 * The backup restored into a fresh scratch directory and checked (DESIGN §1 steps 11–13): the checks of §4
 * in CHECKS order, the first failure ends the restore. What was found, up to where it stopped, is what the
 * report is built from.
 */

/** What a restore and its checks run on. */
export interface RestoreAndCheckDeps {
  s3: S3Client;
  $: Shell;
  /** SIGTERM: stops the scratch server at once; what was found then says nothing about the backup. */
  signal?: AbortSignal;
  /**
   * Given the restored tree of a backup whose every check passed, once its scratch server is stopped: may move
   * it away (the verifier keeps the newest verified tree for the next chain proof, kept.ts). Defaults to none.
   */
  keep?: (root: string, manifest: BackupManifest) => Promise<void>;
}

/** What a restore found, whatever check it stopped at. */
export interface Findings {
  manifest: BackupManifest | null;
  /** The objects exactly as they were read, as far as the restore got: the verdict is bound to them. */
  objects: VerifiedObjects;
  checks: CheckResult[];
  restored: RestoredPosition | null;
  tables: RestoredTable[];
  serverVersion: string | null;
  timings: RestoreTimings;
  /** Set when this verifier cannot run the backup's server; nothing was restored. */
  unsupportedReason: string | null;
  recoveryPoint: RecoveryPoint | null;
}

/** Runs the checks in order into a fresh scratch directory, removed again in every case. */
export async function verifyBackup(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: RestoreAndCheckDeps,
): Promise<Findings> {
  const findings: Findings = {
    manifest: null,
    objects: { manifest: null, archive: null },
    checks: [],
    restored: null,
    tables: [],
    serverVersion: null,
    timings: noTimings(),
    unsupportedReason: null,
    recoveryPoint: null,
  };
  const binary = await findServerBinary(config.mysqld?.binary);
  const build = await readServerBuild(binary);
  const work = await mkdtemp(join(config.scratchDir, `${ref.backupId}-`)).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot create a scratch directory in ${config.scratchDir}: ${messageOf(error)}`,
      "check that scratchDir exists, is writable and has free space",
      { cause: error },
    );
  });
  const started = performance.now();
  try {
    await restoreAndCheck(config, message, ref, { ...deps, binary, build, work }, findings);
    if (deps.keep && findings.manifest && allPassed(findings.checks) && !deps.signal?.aborted)
      await deps.keep(join(work, "root"), findings.manifest);
  } catch (error) {
    if (error instanceof Unsupported) {
      findings.unsupportedReason = error.message;
      return findings;
    }
    if (!(error instanceof CheckFailure)) throw error;
    findings.checks.push({ name: error.check, passed: false, detail: error.message });
  } finally {
    findings.timings.restoreSeconds = seconds(started);
    await rm(work, { recursive: true, force: true, maxRetries: 3 });
  }
  return findings;
}

const seconds = (from: number) => (performance.now() - from) / 1000;

const allPassed = (checks: CheckResult[]) =>
  CHECKS.every((name) => checks.some((c) => c.name === name && c.passed)) && checks.every((c) => c.passed);

const allPassedBut = (last: CheckName, checks: CheckResult[]) =>
  CHECKS.filter((name) => name !== last).every((name) => checks.some((c) => c.name === name && c.passed));

/** The backup needs a server this verifier cannot run: the verdict is "unsupported". */
class Unsupported extends Error {}

/** The checks in CHECKS order; the first failure throws a CheckFailure that ends the restore. */
async function restoreAndCheck(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: RestoreAndCheckDeps & { binary: string; build: ServerBuild; work: string },
  findings: Findings,
): Promise<void> {
  const started = performance.now();
  const manifest = await fetchManifest(deps.s3, message, ref, findings.objects);
  findings.manifest = manifest;
  const unsupported = whyCannotRun(deps.build, manifest.server);
  if (unsupported !== null) throw new Unsupported(`${unsupported} (${deps.binary})`);
  const root = join(deps.work, "root");
  await mkdir(root, { mode: 0o750 });
  const extraction = await downloadAndExtract(
    deps.s3,
    message.bucket,
    manifest,
    root,
    { ...VERIFY_DEFAULTS.download, ...config.download, signal: deps.signal },
    findings.objects,
  );
  findings.checks.push(judgeObjects(manifest, extraction));
  findings.timings.downloadExtractSeconds = seconds(started);

  if (config.catchUp !== undefined) {
    // The source replica's own connection would stand in the way of the catch-up's CHANGE MASTER.
    await removeReplicationState(
      mapSourcePath(manifest.snapshot.sourceRoot, root, manifest.settings.datadir),
    );
  }
  const recovering = performance.now();
  const user = config.mysqld?.user ?? VERIFY_DEFAULTS.mysqld.user;
  const server = await startRestoredServer(
    manifest,
    deps,
    user,
    (config.mysqld?.startTimeoutSeconds ?? VERIFY_DEFAULTS.mysqld.startTimeoutSeconds) * 1000,
    config.mysqld?.bufferPoolMiB,
  );
  if (deps.signal?.aborted) await server.stop(5_000);
  findings.timings.recoverySeconds = seconds(recovering);
  findings.checks.push({
    name: "startup",
    passed: true,
    detail: `crash recovery finished in ${findings.timings.recoverySeconds.toFixed(1)}s`,
  });
  const checking = performance.now();
  try {
    await checkRestoredServer(
      server,
      manifest,
      findings,
      catchUpOptions(config),
      config.checks?.extended ?? VERIFY_DEFAULTS.checks.extended,
    );
    await server.stop();
    if (allPassedBut("pages", findings.checks) && !deps.signal?.aborted) {
      const datadir = mapSourcePath(manifest.snapshot.sourceRoot, root, manifest.settings.datadir);
      findings.checks.push(await checkPages(datadir, manifest.settings.innodbPageSize));
    }
  } finally {
    await server.stop();
    findings.timings.checksSeconds = seconds(checking);
  }
}

/** Prepares the restored tree (binlog index, owner) and starts the server; a failure is "startup". */
async function startRestoredServer(
  manifest: BackupManifest,
  deps: RestoreAndCheckDeps & { binary: string; work: string },
  user: string,
  timeoutMs: number,
  bufferPoolMiB: number | undefined,
): Promise<ScratchServer> {
  try {
    const plan = planScratchServer(manifest, deps.work, { binary: deps.binary, user, bufferPoolMiB });
    await prepareScratchTree(manifest, plan);
    await deps.$`chown -R ${user}: ${deps.work}`.quiet().catch((error: unknown) => {
      throw new PipelineError(
        "VerifierInfrastructure",
        `cannot give the scratch directory to the OS user "${user}": ${messageOf(error)}`,
        "check that mysqld.user exists on the verifier host",
        { cause: error },
      );
    });
    return await startScratchServer(plan, timeoutMs, deps.signal);
  } catch (error) {
    if (error instanceof StartupFailure) throw new CheckFailure("startup", error.message);
    throw error;
  }
}

/** The catch-up settings with their defaults, or null when catch-up is off. */
function catchUpOptions(config: VerifyConfig): CatchUpOptions | null {
  if (config.catchUp === undefined) return null;
  return {
    optionFile: config.catchUp.optionFile,
    timeoutSeconds: config.catchUp.timeoutSeconds ?? VERIFY_DEFAULTS.catchUp.timeoutSeconds,
  };
}

/** "position", "tables", the recovery point and (when configured) "replication" against the running server. */
async function checkRestoredServer(
  server: ScratchServer,
  manifest: BackupManifest,
  findings: Findings,
  catchUpWith: CatchUpOptions | null,
  extended: boolean,
): Promise<void> {
  const conn = await server.connect();
  try {
    const [version] = (await conn.query("SELECT @@version AS version"))[0] as Array<{ version: string }>;
    findings.serverVersion = version.version;
    findings.restored = await readRestoredPosition(conn, manifest.server.flavor);
    const position = judgePosition(manifest, findings.restored);
    findings.checks.push(position);
    if (!position.passed) return;
    const comparison = compareInventory(manifest.tables, await readRestoredTables(conn));
    const missing = new Set(comparison.missing);
    const tables = [];
    const clock = { ms: 0 };
    for (const table of manifest.tables) {
      if (!missing.has(`${table.schema}.${table.table}`))
        tables.push(await checkTable(conn, table, extended, clock));
    }
    findings.timings.checksumSeconds = clock.ms / 1000;
    findings.tables = tables.map(({ passed: _passed, ...table }) => table);
    findings.checks.push(judgeTables(comparison, tables, extended));
    findings.recoveryPoint = await readRecoveryPoint(conn, manifest.tables, new Date(manifest.startedAt));
    if (catchUpWith !== null && findings.checks.every((c) => c.passed)) {
      findings.checks.push(await catchUp(conn, manifest, catchUpWith));
    }
  } finally {
    await conn.end().catch(() => undefined);
  }
}
