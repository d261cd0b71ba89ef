import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "../../hostscripts/cli";
import { ExitCode, PipelineError } from "../../hostscripts/common/errors";

const run = promisify(execFile);
const bin = join(__dirname, "../../bin/mysql-backup.js");

/** Runs the real CLI in a child process and returns its exit code and output. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("parseArgs", () => {
  it("reads the subcommand, the config path and the common flags", () => {
    expect(parseArgs(["verify", "--config", "/etc/v.json", "--once", "--json"])).toEqual({
      command: "verify",
      configPath: "/etc/v.json",
      flags: { json: true, once: true, rest: [] },
    });
    expect(parseArgs(["restore", "list", "--config=/etc/r.json"]).flags.rest).toEqual(["list"]);
  });

  it.each([
    [["snapshot", "--config", "x"], /unknown command "snapshot"/],
    [["backup"], /backup needs --config FILE/],
    [["backup", "--config", "x", "--force-unlock"], /unknown flag "--force-unlock"/],
  ])("refuses %j", (argv, message) => {
    let error: unknown;
    try {
      parseArgs(argv);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).exitCode).toBe(ExitCode.Usage);
    expect((error as PipelineError).message).toMatch(message);
  });
});

describe("mysql-backup (the real CLI)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mbp-cli-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("exits with the config code and names every bad key of the file", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, JSON.stringify({ cluster: "Orders!", host: "db-1", lockTimeoutMs: "5s" }));
    const { code, stdout } = await cli(["backup", "--config", path, "--json"]);
    expect(code).toBe(ExitCode.Config);
    const result = JSON.parse(stdout.trim().split("\n").pop()!);
    expect(result).toMatchObject({ ok: false, error: "Config" });
    expect(result.message).toContain(path);
    expect(result.message).toContain('cluster must match pattern "^[a-z0-9][a-z0-9._-]{0,62}$"');
    expect(result.message).toContain("lockTimeoutMs must be integer");
    expect(result.message).toContain("mysql is required");
  });

  it("says when the config file is missing or not JSON", async () => {
    const missing = await cli(["verify", "--config", join(dir, "nope.json")]);
    expect(missing.code).toBe(ExitCode.Config);
    expect(missing.stderr).toMatch(/cannot read config file .*nope\.json/);
    const path = join(dir, "broken.json");
    await writeFile(path, "{ sqs: ");
    const broken = await cli(["verify", "--config", path]);
    expect(broken.code).toBe(ExitCode.Config);
    expect(broken.stderr).toMatch(/is not valid JSON/);
  });

  it("prints its usage on --help and exits 0", async () => {
    const { code, stdout } = await cli(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/usage: mysql-backup <command> --config FILE/);
    expect(stdout).toMatch(/backup/);
    expect(stdout).toMatch(/verify/);
  });
});
