/**
 * `npm run bench -- --large` in miniature (0.3 then 0.5 GB instead of 2 then 20): the replica grown by
 * transportable-tablespace copies, each size backed up, verified in full and restored, the report section
 * written, and nothing left behind. It proves the harness — not the figures, which `npm run bench` records.
 */
import { execFile } from "node:child_process";
import { access, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { leftovers } from "../../lab/lab";
import type { LargeResults } from "../../bench/large";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const tsx = join(repo, "node_modules", ".bin", "tsx");

describe("npm run bench -- --large, in miniature", () => {
  let out: string;
  let dir: string;
  let results: LargeResults;
  let report: string;

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "bench-large-out-"));
    dir = await mkdtemp(join(tmpdir(), "bench-large-lab-"));
    await run(
      tsx,
      [
        join(repo, "bench", "run.ts"),
        "--large",
        "--gb",
        "0.5",
        "--base-gb",
        "0.3",
        "--dir",
        dir,
        "--out",
        out,
      ],
      { cwd: repo, env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } },
    );
    results = JSON.parse(await readFile(join(out, "results-large.json"), "utf8")) as LargeResults;
    report = await readFile(join(out, "BENCHMARKS.md"), "utf8");
  }, 600_000);

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  test("the lab, its snapshots and scratch servers are gone", async () => {
    const left = await leftovers(dir);
    expect(left).toEqual({ mounts: [], loops: [], processes: [], snapshots: [], scratch: [] });
    await expect(access(dir)).rejects.toThrow();
  });

  test("each size holds the data asked for, made of copies, and is backed up, verified and restored whole", () => {
    expect(results.finishedAt).toBeDefined();
    expect(results.sizes.map((s) => s.targetGb)).toEqual([0.3, 0.5]);
    let copies = 0;
    for (const size of results.sizes) {
      expect(size.datadirBytes).toBeGreaterThanOrEqual(size.targetGb * 1e9);
      // The second size grows the first: more copies, all of them restored and checksummed by the verifier.
      expect(size.copiedTables).toBeGreaterThan(copies);
      copies = size.copiedTables;
      expect(size.backup?.rawBytes).toBeGreaterThan(size.targetGb * 1e9 * 0.9);
      // Real rows compress, but not like zeros.
      const ratio = size.backup!.rawBytes! / size.backup!.archiveBytes!;
      expect(ratio).toBeGreaterThan(1.5);
      expect(ratio).toBeLessThan(10);
      expect(size.verify?.verdict).toBe("verified");
      expect(size.verify?.copies).toBe(size.copiedTables);
      expect(size.verify?.checksums).toBeGreaterThanOrEqual(size.copiedTables + 2);
      expect(size.restore?.bytes).toBeGreaterThan(size.backup!.rawBytes! * 0.95);
      expect(size.emulatorPeakRssBytes).toBeGreaterThan(size.backup!.archiveBytes!);
    }
  });

  test("the report's section shows both sizes and the scaling ratio", () => {
    expect(report).toContain("<!-- bench:large-run:start -->");
    expect(report).toMatch(/\| 0\.5 GB \| restore /);
    expect(report).toMatch(
      /Scaling, seconds per byte at 0\.5 GB ÷ at 0\.3 GB .*backup [\d.]+ \(CPU [\d.]+\)/,
    );
  });
});
