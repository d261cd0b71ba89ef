import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { main } from "../../policies/run";
import { PROJECT_ROOT } from "../../policies/stackSimulator";

/** `npm run policy`: its exit code gates CI, and its config file sets levels and rule settings. */

const DEV = path.join(PROJECT_ROOT, "Pulumi.dev.yaml");
let printed: string[];
let dir: string;

beforeEach(() => {
  printed = [];
  jest.spyOn(console, "log").mockImplementation((line: string) => void printed.push(line));
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "policy-run-"));
});

afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

function configFile(config: unknown): string {
  const file = path.join(dir, "policy-config.json");
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

it("exits 0 when the stack passes", async () => {
  await expect(main(["--stack", DEV])).resolves.toBe(0);
  expect(printed.join("\n")).toContain("Policy check passed.");
}, 60_000);

it("exits 1 on a mandatory violation and prints it with rule, resource and what to change", async () => {
  const config = configFile({ "required-tags": { requiredTags: ["team"] } });
  await expect(main(["--config", config, "--stack", DEV])).resolves.toBe(1);
  const output = printed.join("\n");
  expect(output).toMatch(
    /- \[mandatory\] {2}required-tags {2}\(mysql-backups-dev-backups-bucket: aws:s3\/bucket:Bucket\)/,
  );
  expect(output).toContain("Missing tags: team. Pass tags: pipelineTags(pipeline, environment)");
  expect(output).toContain("Policy check FAILED");
}, 60_000);

it("exits 0 when the same violation is configured advisory", async () => {
  const config = configFile({ "required-tags": { enforcementLevel: "advisory", requiredTags: ["team"] } });
  await expect(main(["--config", config, "--stack", DEV])).resolves.toBe(0);
  expect(printed.join("\n")).toContain("- [advisory]  required-tags");
}, 60_000);

it("refuses an unknown flag, naming the ones it takes", async () => {
  await expect(main(["--stacks", DEV])).rejects.toThrow("unknown argument --stacks; use --config FILE");
});
