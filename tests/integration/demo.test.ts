import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { leftovers } from "../../lab/lab";
import { freshLabDir } from "../support/lab";

const run = promisify(execFile);
const repo = resolve(__dirname, "../..");

/** The end-to-end tier (DESIGN §6): the demo itself, exactly as a newcomer runs it. */
describe("npm run demo", () => {
  it("backs up the busy replica, verifies it, restores to a second between two snapshots, prints one JSON summary and leaves nothing behind", async () => {
    const dir = await freshLabDir();
    const { stdout } = await run(
      process.execPath,
      [resolve(repo, "node_modules/tsx/dist/cli.mjs"), "lab/demo.ts", "--json", "--dir", dir],
      { cwd: repo, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 },
    );
    const summary = JSON.parse(stdout.trim().split("\n").pop()!);
    expect(summary.verified).toBe(true);
    expect(summary.verification.verdict).toBe("verified");
    expect(
      summary.verification.checks.map((c: { name: string; passed: boolean }) => [c.name, c.passed]),
    ).toEqual([
      ["objects", true],
      ["startup", true],
      ["position", true],
      ["tables", true],
      ["pages", true],
    ]);
    expect(summary.verification.gtidCaptured).toMatch(/^0-1-\d+$/);
    expect(summary.verification.gtidRestored).toBe(summary.verification.gtidCaptured);
    expect(summary.backup.lockMs).toBeGreaterThan(0);
    expect(summary.backup.archiveBytes).toBeGreaterThan(0);
    expect(summary.verification.rows).toBeGreaterThan(0);
    // Point-in-time recovery: the restored server's newest marker is the one committed just before the point.
    expect(summary.pitr.markerIsTheExpectedOne).toBe(true);
    expect(summary.pitr.markerToPointSeconds).toBeGreaterThanOrEqual(0);
    expect(summary.pitr.markerToPointSeconds).toBeLessThanOrEqual(1);
    expect(summary.pitr.restoredFrom).toBe(summary.backup.backupId);
    expect(summary.pitr.lag.segments).toBeGreaterThan(0);
    expect(await leftovers(dir)).toEqual({
      mounts: [],
      loops: [],
      processes: [],
      snapshots: [],
      scratch: [],
    });
  }, 600_000);
});
