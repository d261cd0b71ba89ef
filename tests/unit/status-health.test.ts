/**
 * The judgement of `mysql-backup status` on constructed scans: every rule that turns a host warning or
 * critical, and the table a person reads.
 */
import { backupIdTime, newBackupId, parseStatusReport, type Verdict } from "../../contracts";
import { judgeHost, worst, type HealthPolicy } from "../../hostscripts/status/health";
import type { HostScan, Read } from "../../hostscripts/status/scan";
import { summarizeStatus } from "../../hostscripts/status/status";
import { syntheticManifest, syntheticReport } from "../../lab/synthetic";

const NOW = new Date("2026-11-24T12:00:00Z");
const POLICY: HealthPolicy = { windowHours: 26, verifyWithinHours: 6 };
const WHERE = { url: "s3://b/backups/orders/replica1/", cluster: "orders" };

/** One backup `hoursAgo` before NOW, and what exists of it. */
interface Made {
  hoursAgo: number;
  verdict?: Verdict | "invalid" | null;
  complete?: boolean;
}

/** A scan of replica1 as the S3 reader would return it for these backups (newest first). */
function scan(made: Made[], opts: { invalidManifest?: boolean } = {}): HostScan {
  const ref = (backupId: string) => ({ prefix: "backups", cluster: "orders", host: "replica1", backupId });
  const backups = made
    .map((m) => {
      const backupId = newBackupId(new Date(NOW.getTime() - m.hoursAgo * 3_600_000));
      return {
        backupId,
        takenAt: backupIdTime(backupId),
        complete: m.complete ?? true,
        archiveBytes: 2048,
        hasVerdict: (m.verdict ?? null) !== null,
        hasChainVerdict: false,
        made: m,
      };
    })
    .sort((a, b) => b.backupId.localeCompare(a.backupId));
  const verdicts = new Map<string, Read<ReturnType<typeof syntheticReport>>>();
  for (const b of backups.filter((x) => x.complete && x.hasVerdict)) {
    const v = b.made.verdict as Verdict | "invalid";
    verdicts.set(
      b.backupId,
      v === "invalid"
        ? {
            key: `backups/orders/replica1/${b.backupId}/verification.json`,
            error: "verdict must be one of …",
          }
        : { value: syntheticReport(ref(b.backupId), "b", v, { restoreSeconds: 73 }) },
    );
    if (v === "verified") break;
  }
  const newest = backups.find((b) => b.complete);
  return {
    host: "replica1",
    backups: backups.map(({ made: _made, ...b }) => b),
    newestManifest:
      newest === undefined
        ? null
        : opts.invalidManifest
          ? { key: `backups/orders/replica1/${newest.backupId}/manifest.json`, error: "lock is required" }
          : { value: syntheticManifest(ref(newest.backupId), { lockMs: 38 }) },
    verdicts,
    verdictsNotRead: 0,
  };
}

const judge = (made: Made[], policy = POLICY) => judgeHost(scan(made), policy, NOW, WHERE);

test("a host whose newest backup is fresh and verified is ok, with its figures", () => {
  const host = judge([
    { hoursAgo: 1, verdict: null },
    { hoursAgo: 2, verdict: "verified" },
    { hoursAgo: 26, verdict: "verified" },
  ]);
  expect(host.health).toBe("ok");
  expect(host.reasons).toEqual([
    { state: "ok", message: "newest backup 60 min old, newest verified 2.0 h old (restored in 73 s)" },
  ]);
  expect(host.newestBackup).toMatchObject({
    ageSeconds: 3600,
    archiveBytes: 2048,
    lockMs: 38,
    verdict: null,
  });
  expect(host.newestVerified).toMatchObject({ ageSeconds: 7200, restoreSeconds: 73 });
  expect(host.sinceVerified).toEqual([
    expect.objectContaining({ state: "unverified", ageSeconds: 3600, failedCheck: null }),
  ]);
  expect(host.backups).toBe(3);
});

test("a verified backup older than the window is a warning while newer backups wait within their time", () => {
  const host = judge([
    { hoursAgo: 1, verdict: null },
    { hoursAgo: 27, verdict: "verified" },
  ]);
  expect(host.health).toBe("warning");
  expect(host.reasons[0].message).toMatch(
    /the newest verified backup \S+ is 27\.0 h old \(window 26 h\): check the verifier fleet/,
  );
});

test("a verified backup older than twice the window is critical", () => {
  expect(
    judge([
      { hoursAgo: 2, verdict: null },
      { hoursAgo: 53, verdict: "verified" },
    ]).health,
  ).toBe("critical");
});

test("a failed verdict since the newest verified backup is critical and names the check and the report", () => {
  const host = judge([
    { hoursAgo: 1, verdict: "failed" },
    { hoursAgo: 5, verdict: "verified" },
  ]);
  expect(host.health).toBe("critical");
  expect(host.reasons[0].message).toMatch(
    /^backup \S+ failed verification \(check "tables"\): read s3:\/\/b\/backups\/orders\/replica1\/\S+\/verification\.json; treat it as lost/,
  );
  expect(host.sinceVerified).toEqual([expect.objectContaining({ state: "failed", failedCheck: "tables" })]);
});

test("a failure followed by a verified backup is history", () => {
  expect(
    judge([
      { hoursAgo: 1, verdict: "verified" },
      { hoursAgo: 5, verdict: "failed" },
    ]).health,
  ).toBe("ok");
});

test("an unsupported verdict is critical: nobody has proven the backup", () => {
  const host = judge([
    { hoursAgo: 1, verdict: "unsupported" },
    { hoursAgo: 5, verdict: "verified" },
  ]);
  expect(host.health).toBe("critical");
  expect(host.reasons[0].message).toMatch(
    /no verifier could restore backup .* run a verifier with the backup's server/,
  );
});

test("no complete backup within the window is critical, whatever was verified before", () => {
  const host = judge([{ hoursAgo: 30, verdict: "verified" }]);
  expect(host.health).toBe("critical");
  expect(host.reasons.map((r) => r.message)).toContainEqual(
    expect.stringMatching(
      /newest complete backup \S+ is 30\.0 h old \(window 26 h\): check mysql-backup\.timer/,
    ),
  );
});

test("a host with no backup at all, or only archives without a manifest, is critical", () => {
  expect(judge([]).reasons).toEqual([
    {
      state: "critical",
      message: expect.stringMatching(/^no backup at all under s3:\/\/b\/backups\/orders\/replica1\//),
    },
  ]);
  const broken = judge([{ hoursAgo: 1, complete: false }]);
  expect(broken.health).toBe("critical");
  expect(broken.reasons[0].message).toMatch(/no complete backup: 1 archive\(s\) without a manifest/);
});

test("a backup waiting for its verdict longer than verifyWithinHours is a warning; a young one is not", () => {
  const waiting = judge([
    { hoursAgo: 7, verdict: null },
    { hoursAgo: 8, verdict: "verified" },
  ]);
  expect(waiting.health).toBe("warning");
  expect(waiting.reasons[0].message).toMatch(
    /1 backup\(s\) without a verdict after 6 h, the oldest \S+ \(7\.0 h\): check the verification queue/,
  );
  expect(
    judge([
      { hoursAgo: 5, verdict: null },
      { hoursAgo: 8, verdict: "verified" },
    ]).health,
  ).toBe("ok");
});

test("an archive left without a manifest is a warning once it cannot be an upload in progress", () => {
  const stale = judge([
    { hoursAgo: 7, complete: false },
    { hoursAgo: 8, verdict: "verified" },
  ]);
  expect(stale.health).toBe("warning");
  expect(stale.reasons[0].message).toMatch(/1 backup\(s\) with an archive but no manifest/);
  expect(stale.sinceVerified).toEqual([expect.objectContaining({ state: "incomplete" })]);
  expect(
    judge([
      { hoursAgo: 0.5, complete: false },
      { hoursAgo: 8, verdict: "verified" },
    ]).health,
  ).toBe("ok");
});

test("no verified backup yet: a warning while the verifiers have time, critical after", () => {
  expect(judge([{ hoursAgo: 2, verdict: null }]).reasons[0]).toEqual({
    state: "warning",
    message: "no backup verified yet (the first is 2.0 h old; verifiers have 6 h)",
  });
  const never = judge([
    { hoursAgo: 2, verdict: null },
    { hoursAgo: 9, verdict: "failed" },
  ]);
  expect(never.health).toBe("critical");
  expect(never.reasons.map((r) => r.message)).toContainEqual(
    expect.stringMatching(/^no verified backup among the 2 complete backups: check the verifier fleet/),
  );
});

test("a verdict or manifest that is not a valid document is critical and names the object", () => {
  const badVerdict = judge([
    { hoursAgo: 1, verdict: "invalid" },
    { hoursAgo: 5, verdict: "verified" },
  ]);
  expect(badVerdict.health).toBe("critical");
  expect(badVerdict.reasons[0].message).toMatch(
    /verification\.json is not a valid verification report .*delete it/,
  );
  const badManifest = judgeHost(
    scan([{ hoursAgo: 1, verdict: "verified" }], { invalidManifest: true }),
    POLICY,
    NOW,
    WHERE,
  );
  expect(badManifest.health).toBe("critical");
  expect(badManifest.reasons[0].message).toMatch(
    /manifest\.json is not a valid manifest \(lock is required\)/,
  );
});

test("a backup dated after the clock (a skewed host) counts as just taken", () => {
  const host = judge([{ hoursAgo: -2, verdict: "verified" }]);
  expect(host.newestBackup?.ageSeconds).toBe(0);
  expect(host.health).toBe("ok");
});

test("the worst state wins", () => {
  expect(worst([])).toBe("ok");
  expect(worst(["ok", "warning", "ok"])).toBe("warning");
  expect(worst(["warning", "critical", "ok"])).toBe("critical");
});

test("the summary's first line is the Nagios status line, then the table, then what is wrong", () => {
  const ok = judge([{ hoursAgo: 1, verdict: "verified" }]);
  const bad = {
    ...judge([
      { hoursAgo: 1, verdict: "failed" },
      { hoursAgo: 5, verdict: "verified" },
    ]),
    host: "replica2",
  };
  const report = parseStatusReport({
    formatVersion: 1,
    generatedAt: NOW.toISOString(),
    bucket: "b",
    prefix: "backups",
    health: "critical",
    exitCode: 2,
    clusters: [{ cluster: "orders", health: "critical", windowHours: 26, reasons: [], hosts: [ok, bad] }],
    reads: { listRequests: 3, keysListed: 10, objectsFetched: 4 },
  });
  const lines = summarizeStatus(report).split("\n");
  expect(lines[0]).toMatch(
    /^CRITICAL: 2 host\(s\) in 1 cluster\(s\): 1 ok, 1 critical — orders\/replica2: backup \S+ failed verification/,
  );
  expect(lines[2]).toMatch(
    /^CLUSTER\s+HOST\s+HEALTH\s+NEWEST BACKUP\s+AGE\s+SIZE\s+LOCK\s+NEWEST VERIFIED\s+AGE\s+RESTORE\s+SINCE VERIFIED$/,
  );
  expect(lines[3]).toMatch(
    /^orders\s+replica1\s+ok\s+\S+\s+60 min\s+2\.00 KiB\s+38 ms\s+\S+\s+60 min\s+73 s\s+-$/,
  );
  expect(lines[4]).toMatch(/^orders\s+replica2\s+CRITICAL\s+.*\s+1 failed$/);
  expect(lines.slice(6)).toEqual([
    expect.stringMatching(/^orders\/replica2: CRITICAL backup \S+ failed verification/),
  ]);
});
