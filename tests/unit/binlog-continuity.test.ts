/**
 * Where the archiver's chain goes on after a restart, decided from the server's binlogs (given here as the
 * probe would read them): the same file when it is still the same file, the next one that opens with the
 * chain's state, the exact state found by a scan in a replaced file, or a new epoch that says why: a gap
 * (purged before archived, named by its GTIDs), RESET MASTER (the history goes on, skipped numbers, or numbers
 * that start over), another history, or a first run.
 */
import type { BinlogFileHeader } from "../../hostscripts/binlog/binlog-file";
import { firstRun, resumeChain, type BinlogProbe } from "../../hostscripts/binlog/continuity";
import { parseGtid, parseState, type GtidState } from "../../hostscripts/common/gtid-state";

interface FakeFile {
  name: string;
  size: number;
  identity: string;
  announced: string;
  first?: string;
  /** Where a scan finds each state (state text → offset). */
  states?: Record<string, number>;
}

function probe(files: FakeFile[], flavor: "mariadb" | "mysql" = "mariadb"): BinlogProbe {
  const header = (f: FakeFile): BinlogFileHeader =>
    ({
      name: f.name,
      identity: f.identity,
      announced: parseState(flavor, f.announced),
      bodyOffset: 256,
    }) as BinlogFileHeader;
  return {
    flavor,
    files: async () => files.map((f) => ({ name: f.name, size: f.size })),
    header: async (name) => header(files.find((f) => f.name === name)!),
    find: async (file: string, target: GtidState) => {
      for (const f of files.slice(files.findIndex((x) => x.name === file))) {
        const offset = f.states?.[target.toString()];
        if (offset !== undefined) return { file: f.name, offset };
      }
      return null;
    },
    firstTransaction: async (name) => {
      const first = files.find((f) => f.name === name)?.first;
      return first === undefined ? null : parseGtid(first);
    },
  };
}

const tail = (file: string, identity: string, offset: number, gtid: string) => ({
  file,
  identity,
  offset,
  gtid: parseState("mariadb", gtid),
});

it("a first run begins at the oldest (or the current) binlog, with the state it opens with", async () => {
  const files = [
    { name: "mysql-bin.000003", size: 900, identity: "c", announced: "0-1-40" },
    { name: "mysql-bin.000004", size: 500, identity: "d", announced: "0-1-90" },
  ];
  expect(await firstRun(probe(files), "oldest")).toMatchObject({
    kind: "new-epoch",
    reason: "first-run",
    file: "mysql-bin.000003",
    offset: 256,
    missing: null,
  });
  const current = await firstRun(probe(files), "current");
  expect(current).toMatchObject({ file: "mysql-bin.000004" });
  expect(current.kind === "new-epoch" && current.before.toString()).toBe("0-1-90");
  expect(await firstRun(probe([]), "oldest")).toMatchObject({ kind: "wait" });
});

it("goes on in the same file at the same byte when the file is still the one the chain read", async () => {
  const files = [{ name: "mysql-bin.000003", size: 900, identity: "c", announced: "0-1-40" }];
  expect(await resumeChain(probe(files), tail("mysql-bin.000003", "c", 800, "0-1-77"))).toEqual({
    kind: "continue",
    file: "mysql-bin.000003",
    offset: 800,
    note: null,
  });
});

it("goes on in the next file when the chain's file was purged after it was archived to its end", async () => {
  const files = [{ name: "mysql-bin.000004", size: 900, identity: "d", announced: "0-1-77" }];
  expect(await resumeChain(probe(files), tail("mysql-bin.000003", "c", 1000, "0-1-77"))).toMatchObject({
    kind: "continue",
    file: "mysql-bin.000004",
    offset: 256,
  });
});

it("finds the chain's exact state in a file that replaced the one it read", async () => {
  const files = [
    {
      name: "mysql-bin.000003",
      size: 9000,
      identity: "other",
      announced: "0-1-40",
      states: { "0-1-77": 4242 },
    },
  ];
  expect(await resumeChain(probe(files), tail("mysql-bin.000003", "c", 800, "0-1-77"))).toMatchObject({
    kind: "continue",
    file: "mysql-bin.000003",
    offset: 4242,
  });
});

it("begins a gap epoch, naming the lost GTIDs, when the binlogs after the chain were purged unread", async () => {
  const files = [{ name: "mysql-bin.000009", size: 900, identity: "i", announced: "0-1-150" }];
  const decision = await resumeChain(probe(files), tail("mysql-bin.000003", "c", 800, "0-1-77"));
  expect(decision).toMatchObject({
    kind: "new-epoch",
    reason: "gap",
    file: "mysql-bin.000009",
    missing: "0-*-78..0-1-150 (73 transactions of domain 0)",
  });
});

describe("after RESET MASTER (the binlog starts over with no GTID state)", () => {
  const reset = (first?: string) => [
    { name: "mysql-bin.000001", size: 900, identity: "new", announced: "", first },
  ];

  it("the history goes on: a new epoch continuing the chain, no gap", async () => {
    const decision = await resumeChain(probe(reset("0-1-78")), tail("mysql-bin.000007", "g", 800, "0-1-77"));
    expect(decision).toMatchObject({ kind: "new-epoch", reason: "reset-master", missing: null });
    expect(decision.kind === "new-epoch" && decision.before.toString()).toBe("0-1-77");
  });

  it("transactions were skipped: a gap", async () => {
    expect(
      await resumeChain(probe(reset("0-1-90")), tail("mysql-bin.000007", "g", 800, "0-1-77")),
    ).toMatchObject({
      reason: "gap",
      missing: "0-*-78..0-1-89 (12 transactions of domain 0)",
    });
  });

  it("the numbers start over: a new epoch a restore cannot cross into", async () => {
    const decision = await resumeChain(probe(reset("0-1-1")), tail("mysql-bin.000007", "g", 800, "0-1-77"));
    expect(decision).toMatchObject({ kind: "new-epoch", reason: "reset-master", missing: null });
    expect(decision.kind === "new-epoch" && decision.detail).toMatch(/restore cannot cross into this epoch/);
  });

  it("no transaction yet: wait", async () => {
    expect(await resumeChain(probe(reset()), tail("mysql-bin.000007", "g", 800, "0-1-77"))).toMatchObject({
      kind: "wait",
    });
  });
});

it("begins a new epoch when the server's binlogs hold another history", async () => {
  const files = [{ name: "mysql-bin.000001", size: 900, identity: "x", announced: "0-5-10" }];
  expect(await resumeChain(probe(files), tail("mysql-bin.000003", "c", 800, "0-1-77"))).toMatchObject({
    kind: "new-epoch",
    reason: "history-changed",
  });
});
