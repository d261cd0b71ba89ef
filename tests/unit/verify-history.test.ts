/** Drift against the previous verified backup, the heartbeat's time, and the page checksums of tablespaces. */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkPages, checkedRanges, isTablespace, parseHeartbeat } from "../../hostscripts/verify/checks";
import { DEFAULT_DRIFT, findDrift } from "../../hostscripts/verify/history";
import { describeDrift } from "../../hostscripts/restore/verdicts";

const table = (name: string, rows: number | null) => ({
  schema: "shop",
  table: name,
  engine: "InnoDB",
  rows,
  check: "OK",
});

describe("drift since the previous verified backup", () => {
  const previous = [
    table("orders", 10_000),
    table("customers", 2_000),
    table("tiny", 10),
    table("gone", 500),
  ];

  test("a vanished table and one that lost more than the allowed share are flagged", () => {
    const findings = findDrift(
      previous,
      [table("orders", 4_999), table("customers", 1_001), table("tiny", 0), table("new", 5)],
      DEFAULT_DRIFT,
    );
    expect(findings).toEqual([
      { schema: "shop", table: "orders", kind: "shrank", previousRows: 10_000, rows: 4_999 },
      { schema: "shop", table: "gone", kind: "vanished", previousRows: 500, rows: null },
    ]);
    expect(
      describeDrift({
        previousBackupId: "20261124T020000Z-3fa9c1",
        maxShrinkShare: 0.5,
        findings,
        note: null,
      }),
    ).toBe(
      "shop.orders shrank from 10000 to 4999 rows since 20261124T020000Z-3fa9c1; shop.gone vanished (had 500 rows in 20261124T020000Z-3fa9c1)",
    );
  });

  test("growth, small tables and the configured share are respected", () => {
    const same = previous.map((t) => ({ ...t, rows: (t.rows ?? 0) * 2 }));
    expect(findDrift(previous, same, DEFAULT_DRIFT)).toEqual([]);
    expect(
      findDrift(previous, [...same.slice(0, 3), table("gone", 50)], { maxShrinkShare: 0.95, minRows: 100 }),
    ).toEqual([]);
    expect(
      findDrift(previous, [...same.slice(0, 3), table("gone", 400)], { maxShrinkShare: 0.1, minRows: 100 }),
    ).toEqual([{ schema: "shop", table: "gone", kind: "shrank", previousRows: 500, rows: 400 }]);
    expect(
      describeDrift({ previousBackupId: null, maxShrinkShare: 0.5, findings: [], note: "none" }),
    ).toBeNull();
  });
});

describe("the heartbeat's time", () => {
  test("pt-heartbeat's UTC text, a DATETIME, and an explicit zone", () => {
    expect(parseHeartbeat("2026-11-24T02:00:00.001230")?.toISOString()).toBe("2026-11-24T02:00:00.001Z");
    expect(parseHeartbeat("2026-11-24 02:00:00")?.toISOString()).toBe("2026-11-24T02:00:00.000Z");
    expect(parseHeartbeat("2026-11-24T03:00:00+01:00")?.toISOString()).toBe("2026-11-24T02:00:00.000Z");
  });

  test("nothing usable is null", () => {
    expect(parseHeartbeat(null)).toBeNull();
    expect(parseHeartbeat("yesterday")).toBeNull();
  });
});

describe("the pages check (the real innochecksum)", () => {
  let datadir: string;
  beforeEach(async () => {
    datadir = await mkdtemp(join(tmpdir(), "pages-"));
    await mkdir(join(datadir, "shop"));
    // Zero-filled pages are valid (freshly extended space); random bytes are not a tablespace.
    await writeFile(join(datadir, "ibdata1"), Buffer.alloc(65536));
    await writeFile(join(datadir, "shop", "orders.ibd"), randomBytes(65536));
    await writeFile(join(datadir, "shop", "orders.frm"), randomBytes(100));
  });
  afterEach(() => rm(datadir, { recursive: true, force: true }));

  test("only tablespaces are checked", () => {
    expect(["ibdata1", "undo001", "shop/orders.ibd", "mysql.ibd"].every(isTablespace)).toBe(true);
    expect(
      ["shop/orders.frm", "ib_logfile0", "aria_log.00000001", "ibtmp1", "mysql-bin.000001"].some(
        isTablespace,
      ),
    ).toBe(false);
  });

  test("the system tablespace's doublewrite extents are left out; other files are checked whole", () => {
    const mib = 1024 * 1024;
    expect(checkedRanges("ibdata1", 12 * mib, 16384)).toEqual([
      { start: 0, end: 63 },
      { start: 192, end: null },
    ]);
    expect(checkedRanges("ibdata1", 12 * mib, 4096)).toEqual([
      { start: 0, end: 255 },
      { start: 768, end: null },
    ]);
    expect(checkedRanges("ibdata1", 64 * 1024, 16384)).toEqual([{ start: 0, end: 3 }]);
    expect(checkedRanges("shop/orders.ibd", 12 * mib, 16384)).toEqual([{ start: 0, end: null }]);
  });

  test("a bad page fails the check, naming the file", async () => {
    const result = await checkPages(datadir, 16384);
    expect(result).toMatchObject({ name: "pages", passed: false });
    expect(result.detail).toMatch(/bad pages in 1 of 2 tablespaces: shop\/orders\.ibd: /);
  });

  test("valid tablespaces pass; a host without innochecksum passes with a note", async () => {
    await rm(join(datadir, "shop", "orders.ibd"));
    expect(await checkPages(datadir, 16384)).toEqual({
      name: "pages",
      passed: true,
      detail: "innochecksum: all pages of 1 tablespaces valid",
    });
    expect((await checkPages(datadir, 16384, "/nonexistent/innochecksum")).detail).toMatch(/not installed/);
  });
});
