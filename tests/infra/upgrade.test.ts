/**
 * A host-script upgrade deploys cleanly: the stack program run twice under the mocks, with two different
 * bundles, as two `pulumi up`s would. The bundle object keeps its URN, bucket and key (the inputs that make
 * the provider replace an S3 object, deleting every version of the old one, which the object lock
 * refuses): only its content changes, an in-place update that writes a new version. The launch template then
 * boots that exact version, and the object is retained if it is ever removed from the stack.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MysqlBackupPipeline, pipelineName, readStackSettings } from "../../components";
import { BUNDLE_PATH } from "../../scripts/bundle";
import {
  readStackConfig,
  simulateProgram,
  simulateStack,
  type RegisteredResource,
  type StackRun,
} from "../../policies/stackSimulator";

let work: string;
beforeAll(() => (work = fs.mkdtempSync(path.join(os.tmpdir(), "infra-upgrade-"))));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** The prod stack with a given bundle file, as index.ts builds it. */
async function deployWith(bundlePath: string): Promise<StackRun> {
  const { config, secretKeys } = readStackConfig("Pulumi.prod.yaml");
  const sha256 = createHash("sha256").update(fs.readFileSync(bundlePath)).digest("hex");
  const secrets = Object.fromEntries(secretKeys.map((k) => [k, config[k]]));
  return simulateProgram(
    () => {
      const settings = readStackSettings();
      const pipeline = new MysqlBackupPipeline(pipelineName(settings.environment), {
        ...settings,
        bundle: { path: bundlePath, sha256 },
      });
      return { bucketName: pipeline.bucketName, bundleSha256: sha256 };
    },
    { ...config, ...secrets },
  );
}

const bundleOf = (run: StackRun): RegisteredResource =>
  run.resources.find((r) => r.type === "aws:s3/bucketObjectv2:BucketObjectv2")!;
const userData = (run: StackRun): string =>
  Buffer.from(
    run.resources.find((r) => r.type === "aws:ec2/launchTemplate:LaunchTemplate")!.inputs.userData as string,
    "base64",
  ).toString("utf8");

test("a second run with another bundle updates the same object (a new version) and boots that version", async () => {
  await simulateStack("Pulumi.prod.yaml"); // builds dist/ from hostscripts/ as a deployment would
  const v1 = path.join(work, "v1.cjs");
  const v2 = path.join(work, "v2.cjs");
  fs.copyFileSync(BUNDLE_PATH, v1);
  fs.writeFileSync(v2, `${fs.readFileSync(BUNDLE_PATH, "utf8")}\n// the next release\n`);
  const first = await deployWith(v1);
  const second = await deployWith(v2);

  const [a, b] = [bundleOf(first), bundleOf(second)];
  expect(b.urn).toBe(a.urn);
  // bucket and key force a replacement of aws_s3_object; neither moves.
  expect([b.inputs.bucket, b.inputs.key]).toEqual([a.inputs.bucket, a.inputs.key]);
  expect(b.inputs.sourceHash).not.toBe(a.inputs.sourceHash);
  expect(b.inputs.sourceHash).toBe(second.outputs.bundleSha256);
  expect(b.state.versionId).not.toBe(a.state.versionId);
  for (const run of [first, second]) expect(bundleOf(run).options.retainOnDelete).toBe(true);

  // Each launch template boots its own run's version, checked against its own run's hash.
  for (const [run, object] of [
    [first, a],
    [second, b],
  ] as const) {
    expect(userData(run)).toContain(`--version-id ${object.state.versionId as string} `);
    expect(userData(run)).toContain(
      `echo "${run.outputs.bundleSha256 as string}  /usr/local/bin/mysql-backup.download"`,
    );
  }
}, 120_000);
