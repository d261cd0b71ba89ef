/**
 * The chain proof's comparison with snapshot B: a table whose checksum differs, one that only one side has,
 * and one B recorded without a checksum; and the metrics a verdict emits.
 */
import type { ChainVerdict, RestoredTable } from "../../contracts";
import { chainMetrics, compareChecksums } from "../../hostscripts/verify/chain-compare";

const table = (name: string, checksum: number | null | undefined): RestoredTable => {
  const [schema, t] = name.split(".");
  return {
    schema,
    table: t,
    engine: "InnoDB",
    rows: 1,
    check: "OK",
    ...(checksum === undefined ? {} : { checksum }),
  };
};

test("equal checksums compare clean; each difference names its table and both values", () => {
  const recorded = [
    table("app.a", 1),
    table("app.b", 2),
    table("app.c", 3),
    table("app.seq", null),
    table("old.t", undefined),
  ];
  expect(
    compareChecksums(
      recorded,
      new Map([
        ["app.a", 1],
        ["app.b", 2],
        ["app.c", 3],
      ]),
    ),
  ).toEqual({
    compared: 3,
    differing: [],
  });
  expect(
    compareChecksums(
      recorded,
      new Map([
        ["app.a", 1],
        ["app.b", 7],
        ["app.d", 4],
      ]),
    ),
  ).toEqual({
    compared: 3,
    differing: [
      "app.b (checksum 7 after the replay, 2 in B)",
      "app.c (in B, missing after the replay)",
      "app.d (after the replay, not in B)",
    ],
  });
});

test("a verified chain emits PitrChainVerified and the proven point's age; a failed one PitrChainFailed", () => {
  const end = {
    backupId: "20261130T100000Z-aaaaaa",
    host: "r1",
    gtid: "0-1-5",
    takenAt: "2026-11-30T10:00:00.000Z",
  };
  const verdict: ChainVerdict = {
    formatVersion: 1,
    bucket: "b",
    cluster: "orders",
    from: end,
    to: end,
    verdict: "verified",
    failure: null,
    replay: null,
    tablesCompared: 1,
    seconds: 1,
    verifiedAt: "2026-11-30T10:10:00.000Z",
    verifier: { host: "v" },
  };
  const now = new Date("2026-11-30T11:00:00.000Z");
  expect(chainMetrics(verdict, now).map((d) => [d.name, d.value, d.dimensions])).toEqual([
    ["PitrChainVerified", 1, { Cluster: "orders" }],
    ["PitrVerifiedUntilSeconds", 3600, { Cluster: "orders" }],
  ]);
  expect(chainMetrics({ ...verdict, verdict: "failed" }, now).map((d) => d.name)).toEqual([
    "PitrChainFailed",
  ]);
});
