/**
 * Parts of the archiver that decide what survives a crash and what on-call sees: the spool and state read
 * back after `kill -9`, and the lag, which measures exposure (an idle server is not late).
 */
import { mkdtemp, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MetricDatum } from "../../contracts";
import { ArchiveMetrics } from "../../hostscripts/binlog/metrics";
import {
  loadState,
  readSpool,
  saveState,
  spoolFiles,
  type ArchiverState,
} from "../../hostscripts/binlog/state";
import { PipelineError } from "../../hostscripts/common/errors";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "binlog-state-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const EPOCH = "20261130T162631Z-3fa9c1";
const state = (sequence: number): ArchiverState => ({
  formatVersion: 1,
  cluster: "lab",
  host: "replica1",
  server: { flavor: "mariadb", version: "10.11.19", serverId: 2, serverUuid: null },
  epoch: EPOCH,
  epochStartedAt: "2026-11-30T16:26:31.000Z",
  epochFirstCommitAt: null,
  sequence,
  previousLedgerKey: null,
  gtid: "0-1-10",
  tail: { file: "mysql-bin.000001", identity: "a".repeat(64), offset: 900, endsFile: false },
  lastCommitAt: null,
});

async function spool(sequence: number, partial = false): Promise<void> {
  const files = spoolFiles(dir, EPOCH, sequence);
  await mkdir(files.dir, { recursive: true });
  if (partial) {
    await writeFile(files.partial, "half a segment");
    return;
  }
  await writeFile(files.binlog, "segment");
  await writeFile(files.ledger, JSON.stringify({ sequence, bytes: 7 }));
}

it("after a crash, uploads what the state names, and drops what it does not (a cut interrupted before its commit)", async () => {
  await saveState(dir, state(2));
  await writeFile(spoolFiles(dir, EPOCH, 1).epoch, "{}").catch(async () => {
    await mkdir(spoolFiles(dir, EPOCH, 1).dir, { recursive: true });
    await writeFile(spoolFiles(dir, EPOCH, 1).epoch, JSON.stringify({ epoch: EPOCH }));
  });
  await spool(1);
  await spool(2);
  await spool(3);
  await spool(4, true);
  const items = await readSpool(dir, await loadState(dir));
  expect(items.map((i) => (i.kind === "epoch" ? "epoch" : i.sequence))).toEqual(["epoch", 1, 2]);
  expect((await readdir(spoolFiles(dir, EPOCH, 1).dir)).sort()).toEqual([
    "0000000001.binlog",
    "0000000001.ledger.json",
    "0000000002.binlog",
    "0000000002.ledger.json",
    "epoch.json",
  ]);
});

it("refuses a state file it cannot read instead of starting a chain that would archive GTIDs twice", async () => {
  await writeFile(join(dir, "state.json"), "{ not json");
  await expect(loadState(dir)).rejects.toThrow(PipelineError);
  await expect(loadState(dir)).rejects.toMatchObject({
    kind: "BinlogFailed",
    message: expect.stringMatching(/state\.json cannot be read/),
    hint: expect.stringMatching(/move it aside to start a new chain/),
  });
  expect(await loadState(join(dir, "none"))).toBeNull();
});

describe("the lag", () => {
  const sent: MetricDatum[][] = [];
  const sink = { put: async (data: MetricDatum[]) => void sent.push(data) };
  const T = Date.parse("2026-11-30T12:00:00Z");

  it("is the age of the oldest commit not yet in S3, and no age at all on an idle server that is caught up", async () => {
    const metrics = new ArchiveMetrics(sink, { cluster: "lab", host: "replica1" }, T);
    metrics.observe(T + 1000, T - 6000, 0);
    expect(metrics.lagSeconds(T + 1000)).toBe(7);
    metrics.observe(T + 2000, null, 0);
    expect(metrics.lagSeconds(T + 62_000)).toBe(60);
    metrics.observe(T + 62_000, null, 0);
    expect(metrics.lagSeconds(T + 62_000)).toBe(0);
  });

  it("includes the replica's delay behind its source when everything it has is archived", () => {
    const metrics = new ArchiveMetrics(sink, { cluster: "lab", host: "replica1" }, T);
    metrics.observe(T, null, 12);
    expect(metrics.lagSeconds(T)).toBe(12);
  });

  it("reports the minute's worst lag, the gaps and the window, per host and per cluster", async () => {
    const metrics = new ArchiveMetrics(sink, { cluster: "lab", host: "replica1" }, T);
    metrics.observe(T + 1000, T - 9000, null);
    metrics.observe(T + 2000, null, null);
    metrics.gapFound();
    metrics.archived(4096);
    expect(await metrics.flush(T + 30_000, 3600)).toEqual([]);
    metrics.observe(T + 60_000, null, null);
    const data = await metrics.flush(T + 60_000, 3600);
    const byName = (dims: object) =>
      Object.fromEntries(
        data
          .filter((d) => JSON.stringify(d.dimensions) === JSON.stringify(dims))
          .map((d) => [d.name, d.value]),
      );
    expect(byName({ Cluster: "lab" })).toEqual({
      BinlogArchiveLagSeconds: 10,
      BinlogGaps: 1,
      PitrWindowSeconds: 3600,
      BinlogSegmentsArchived: 1,
      BinlogArchivedBytes: 4096,
    });
    expect(byName({ Cluster: "lab", Host: "replica1" }).BinlogGaps).toBe(1);
    const next = await metrics.flush(T + 120_000, 3600, true);
    expect(next.find((d) => d.name === "BinlogGaps")!.value).toBe(0);
  });
});
