/**
 * Every name the stack derives fits AWS's limit, for every config the schema accepts: the real program runs
 * with the longest names the config allows (an 18-character environment; cluster and host names of the 63
 * characters NAME_PATTERN allows, with every character it allows) and with random valid ones, and each
 * registered resource's physical name (explicit, or Pulumi's auto-name: the logical name and 8 characters)
 * is checked against components/names.ts, whose table must cover every resource type the stack registers.
 */
import { randomInt } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MAX_ENVIRONMENT_LENGTH, NAME_LIMITS, AUTONAME_SUFFIX_LENGTH } from "../../components";
import { NAME_PATTERN } from "../../contracts";
import {
  PROJECT_ROOT,
  readStackConfig,
  simulateStack,
  type RegisteredResource,
  type StackRun,
} from "../../policies/stackSimulator";

const FIRST = "abcdefghijklmnopqrstuvwxyz0123456789";
const REST = `${FIRST}._-`;

/** A name NAME_PATTERN accepts, of `length` characters drawn at random. */
function randomName(length: number): string {
  let name = FIRST[randomInt(FIRST.length)];
  while (name.length < length) name += REST[randomInt(REST.length)];
  expect(name).toMatch(new RegExp(NAME_PATTERN));
  return name;
}

/** The dev stack's clusters with the given names (each host keeps the dev replica's endpoint and snapshot). */
function clusters(names: Array<{ cluster: string; hosts: string[] }>): unknown[] {
  const [dev] = JSON.parse(
    readStackConfig("Pulumi.dev.yaml").config["mysql-backup-pipeline:clusters"],
  ) as Array<{
    replicas: object[];
  }>;
  return names.map(({ cluster, hosts }) => ({
    ...dev,
    name: cluster,
    replicas: hosts.map((host) => ({ ...dev.replicas[0], host })),
  }));
}

/** The name AWS will see: the explicit one, or Pulumi's auto-name (logical name, `-`, 7 characters). */
function physicalName(r: RegisteredResource): string {
  const explicit =
    {
      "aws:cloudwatch/dashboard:Dashboard": r.inputs.dashboardName,
      "aws:s3/bucket:Bucket": r.inputs.bucket,
      "aws:s3/bucketObjectv2:BucketObjectv2": r.inputs.key,
    }[r.type] ?? r.inputs.name;
  return typeof explicit === "string" ? explicit : `${r.name}-${"x".repeat(AUTONAME_SUFFIX_LENGTH - 1)}`;
}

function checkNames(run: StackRun): void {
  const aws = run.resources.filter((r) => r.custom && r.type.startsWith("aws:"));
  expect(aws.length).toBeGreaterThan(40);
  for (const r of aws) {
    expect({ type: r.type, listed: r.type in NAME_LIMITS }).toEqual({ type: r.type, listed: true });
    const limit = NAME_LIMITS[r.type];
    if (limit === null) continue;
    const name = physicalName(r);
    expect({ resource: r.name, name, fits: name.length <= limit }).toEqual({
      resource: r.name,
      name,
      fits: true,
    });
  }
  for (const r of aws.filter((x) => x.type.startsWith("aws:iam/")))
    expect(physicalName(r)).toMatch(/^[\w+=,.@-]+$/);
  const roleNames = aws.filter((r) => r.type === "aws:iam/role:Role").map(physicalName);
  expect(new Set(roleNames).size).toBe(roleNames.length);
}

test("the longest names the config accepts fit every AWS limit", async () => {
  const environment = "e".repeat(MAX_ENVIRONMENT_LENGTH);
  const long = (prefix: string) => `${prefix}${randomName(63 - prefix.length)}`.slice(0, 63);
  const run = await simulateStack("Pulumi.dev.yaml", {
    environment,
    clusters: clusters([
      { cluster: long("a"), hosts: [long("b"), long("c")] },
      // The names the issue found too long for IAM's 64 characters.
      { cluster: "payments-eu-west", hosts: ["payments-eu-west-db02"] },
    ]),
  });
  checkNames(run);
  const role = run.resources.find((r) => r.type === "aws:iam/role:Role" && r.name.includes("payments"))!;
  expect(physicalName(role)).toMatch(/^mysql-backups-e{18}-payments-eu-west-[a-z-]+-[0-9a-f]{8}$/);
  expect(physicalName(role)).toHaveLength(64);
}, 120_000);

test.each([1, 2])(
  "random valid names fit every AWS limit (draw %i)",
  async () => {
    const run = await simulateStack("Pulumi.dev.yaml", {
      environment: randomName(randomInt(1, MAX_ENVIRONMENT_LENGTH + 1)).replace(/[._]/g, "-"),
      clusters: clusters([{ cluster: randomName(randomInt(1, 64)), hosts: [randomName(randomInt(1, 64))] }]),
    });
    checkNames(run);
  },
  60_000,
);

test("explicit names are stable across runs and differ between stacks", async () => {
  const roles = (run: StackRun) =>
    run.resources.filter((r) => r.type === "aws:iam/role:Role").map((r) => r.inputs.name as string);
  const first = await simulateStack("Pulumi.dev.yaml");
  const again = await simulateStack("Pulumi.dev.yaml");
  expect(roles(again)).toEqual(roles(first));
  // The same environment deployed as another stack (another region of the account): no role collides.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "names-"));
  try {
    const copy = path.join(dir, "Pulumi.dev-us.yaml");
    fs.copyFileSync(path.join(PROJECT_ROOT, "Pulumi.dev.yaml"), copy);
    const other = await simulateStack(copy);
    expect(roles(other)).toHaveLength(roles(first).length);
    expect(roles(other).filter((n) => roles(first).includes(n))).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test("docs/infrastructure.md states every name limit of the table", () => {
  const docs = fs.readFileSync(path.join(PROJECT_ROOT, "docs", "infrastructure.md"), "utf8");
  for (const [type, limit] of Object.entries(NAME_LIMITS).filter(([, l]) => l !== null)) {
    expect({ type, stated: new RegExp(`\\| \`${type}\`\\s*\\| ${limit}\\s*\\|`).test(docs) }).toEqual({
      type,
      stated: true,
    });
  }
});
