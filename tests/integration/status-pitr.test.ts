/**
 * `mysql-backup status` on the lab with the binlog archiver running (and the marker writing one row a second
 * on the primary, the heartbeat an idle cluster needs): after a verified backup the host's archive is ok with
 * its restorable window starting at that backup and no proven window yet; with the archiver stopped the lag
 * grows past the RPO (warning) and past ten times the RPO (critical, exit 2); a host the config expects with
 * no archive is critical. RPOs are chosen from the lag status itself reports, so a slow machine cannot flip
 * a state.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { parseStatusConfig, parseStatusReport, type StatusReport } from "../../contracts";
import { stopArchiver } from "../../lab/pitr";
import { waitUntil } from "../../lab/processes";
import { withLab } from "../support/lab";
import { runLabVerifier } from "./verify-support";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const lab = withLab({ pitr: true });

jest.setTimeout(400_000);

async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  return run(process.execPath, [join(repo, "bin", "mysql-backup.js"), ...args], { timeout: 240_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
  );
}

let configs = 0;

/** `status --json` with the lab's config, PITR on for the lab cluster at `rpoSeconds`. */
async function status(
  rpoSeconds: number,
  extra: string[] = [],
): Promise<{ code: number; report: StatusReport }> {
  const base = parseStatusConfig(JSON.parse(await readFile(lab().statusConfigPath, "utf8")));
  const config = {
    ...base,
    clusters: (base.clusters ?? []).map((c) => ({ ...c, pitr: { enabled: true, rpoSeconds } })),
  };
  const path = join(lab().dir, `status-pitr-${++configs}.json`);
  await writeFile(path, JSON.stringify(config));
  const { code, stdout } = await cli(["status", "--config", path, "--json", ...extra]);
  return { code, report: parseStatusReport(JSON.parse(stdout)) };
}

const archiveOf = (report: StatusReport) => report.clusters[0].hosts[0].binlog!;

test("after a verified backup the archive is ok: lag, the window from that backup, nothing proven yet", async () => {
  const backup = await cli(["backup", "--config", lab().backupConfigPath, "--json"]);
  expect(backup.code).toBe(0);
  const { backupId } = JSON.parse(backup.stdout) as { backupId: string };
  expect((await runLabVerifier(lab(), { once: true })).result.outcome).toBe("verified");
  // The archiver cuts a segment within half its RPO (10 s): wait until one beyond the backup is in S3.
  let report: StatusReport | undefined;
  const windowed = await waitUntil(
    async () => {
      report = (await status(3600)).report;
      return archiveOf(report).archivedWindow !== null;
    },
    120_000,
    1000,
  );
  expect({ windowed, archive: report && archiveOf(report) }).toMatchObject({ windowed: true });
  const archive = archiveOf(report!);
  expect(report!.clusters[0].hosts[0].health).toBe("ok");
  expect(archive).toMatchObject({
    rpoSeconds: 3600,
    expected: true,
    epochs: 1,
    gaps: [],
    provenWindow: null,
    lastDrill: null,
    archivedWindow: { fromBackupId: backupId },
  });
  expect(archive.lagSeconds).toEqual(expect.any(Number));
  expect(archive.newestSegment?.sequence).toBeGreaterThan(0);
  expect(Date.parse(archive.archivedWindow!.to)).toBeGreaterThanOrEqual(
    Date.parse(archive.archivedWindow!.from),
  );

  const text = await cli(["status", "--config", lab().statusConfigPath]);
  expect(text.stdout).toMatch(/BINLOG LAG .* RESTORABLE FROM .* PROVEN/);
  expect(text.stdout).toMatch(/not proven yet/);
});

test("the archiver stopped: the lag passes the RPO (warning), then ten times the RPO (critical, exit 2)", async () => {
  await stopArchiver(lab().dir);
  let lag = 0;
  const grown = await waitUntil(
    async () => {
      lag = archiveOf((await status(3600)).report).lagSeconds ?? 0;
      return lag > 40;
    },
    120_000,
    2000,
  );
  expect({ grown, lag }).toMatchObject({ grown: true });
  // Judged against an RPO a third of the lag: above it, far from ten times it.
  const late = await status(Math.ceil(lag / 3));
  expect(late.code).toBe(1);
  expect(late.report.clusters[0].hosts[0].reasons).toEqual([
    {
      state: "warning",
      message: expect.stringMatching(
        /^binlog archive: the newest archived commit is .* old, above the RPO of \d+ s:/,
      ),
    },
  ]);
  const behind = await status(2);
  expect(behind.code).toBe(2);
  expect(behind.report.clusters[0].hosts[0].reasons[0]).toEqual({
    state: "critical",
    message: expect.stringMatching(/above the RPO of 2 s ten times over.*mysql-backup-binlog\.service/),
  });
});

test("a host the config expects with no archive is critical, naming what to look at", async () => {
  const { code, report } = await status(10, ["--cluster", "lab", "--host", "replica9"]);
  expect(code).toBe(2);
  const [host] = report.clusters[0].hosts;
  expect(host.binlog).toMatchObject({ expected: true, lagSeconds: null, archivedWindow: null });
  expect(host.reasons.map((r) => r.message)).toContainEqual(
    expect.stringMatching(
      /^binlog archive: none under s3:\/\/mysql-backups-lab\/backups\/lab\/binlogs\/replica9\//,
    ),
  );
});
