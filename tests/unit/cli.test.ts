import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { main, parseInvocation, type CliIo } from "../../hostscripts/cli";
import { editDistance, nearestName } from "../../hostscripts/common/args";
import { ExitCode, PipelineError } from "../../hostscripts/common/errors";
import { renderTable, stdoutIsJournal } from "../../hostscripts/common/output";
import { version } from "../../package.json";

const run = promisify(execFile);
const bin = join(__dirname, "../../bin/mysql-backup.js");
const COMMANDS = ["backup", "verify", "restore", "binlog", "status", "check"];

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

/** The CLI in this process, with its output captured. */
async function inProcess(
  argv: string[],
  journal = false,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    journal,
    stderrIsTty: false,
  };
  const code = await main(argv, undefined, io);
  return { code, stdout, stderr };
}

function usageError(argv: string[]): PipelineError {
  try {
    parseInvocation(argv);
  } catch (e) {
    expect(e).toBeInstanceOf(PipelineError);
    expect((e as PipelineError).exitCode).toBe(ExitCode.Usage);
    return e as PipelineError;
  }
  throw new Error(`${argv.join(" ")} was accepted`);
}

describe("parseInvocation", () => {
  it("reads the subcommand, the config path, its own flags and its arguments", () => {
    const verify = parseInvocation(["verify", "--config", "/etc/v.json", "--once", "--json"]);
    expect(verify).toMatchObject({
      kind: "run",
      configPath: "/etc/v.json",
      flags: { json: true, options: { once: true }, positionals: [] },
    });
    expect(verify.kind === "run" && verify.command.name).toBe("verify");
    const list = parseInvocation(["restore", "list", "--config=/etc/r.json"]);
    expect(list).toMatchObject({ flags: { json: false, options: {}, positionals: ["list"] } });
    const target = parseInvocation(["restore", "--config", "/r.json", "--target=/srv/m", "--force"]);
    expect(target).toMatchObject({ flags: { options: { target: "/srv/m", force: true } } });
  });

  it("results are JSON when stdout is the journal, without --json", () => {
    expect(parseInvocation(["backup", "--config", "/b.json"], true)).toMatchObject({ flags: { json: true } });
    expect(parseInvocation(["--version"], true)).toEqual({ kind: "version", json: true });
  });

  it("--help and -h anywhere after a command show that command's help", () => {
    for (const argv of [
      ["backup", "--help"],
      ["restore", "-h"],
      ["verify", "--config", "x", "--help"],
    ]) {
      const parsed = parseInvocation(argv);
      expect(parsed.kind).toBe("help");
      expect(parsed.kind === "help" && parsed.text).toContain(`usage: mysql-backup ${argv[0]} `);
    }
  });

  it.each([
    [["snapshot", "--config", "x"], /unknown command "snapshot"$/],
    [["bakcup", "--config", "x"], /unknown command "bakcup" \(did you mean backup\?\)/],
    [["backup"], /backup needs --config FILE \(the replica's backup config/],
    [["backup", "--config"], /--config needs a value \(--config FILE\)/],
    [["backup", "--config", "--json"], /--config needs a value/],
    [["backup", "--config="], /--config needs a value/],
    [["backup", "--config", "x", "--jsno"], /unknown flag --jsno \(did you mean --json\?\)/],
    [["backup", "--config", "x", "--confg=y"], /unknown flag --confg \(did you mean --config\?\)/],
    [["restore", "--config", "x", "--targte", "/x"], /unknown flag --targte \(did you mean --target\?\)/],
    [["verify", "--config", "x", "--onec"], /unknown flag --onec \(did you mean --once\?\)/],
    [["backup", "--config", "x", "--force-unlock"], /unknown flag --force-unlock$/],
    [["backup", "--config", "x", "--once"], /unknown flag --once$/],
    [["backup", "--config", "x", "-v"], /unknown flag -v$/],
    [["backup", "--config", "x", "--json=yes"], /--json takes no value/],
    [["backup", "--config", "x", "--config", "y"], /--config is given twice/],
    [["backup", "--config", "x", "now"], /unexpected argument "now" \(it takes no arguments, only flags\)/],
    [["--version", "--verbose"], /--version takes only --json/],
  ])("refuses %j", (argv, message) => {
    const error = usageError(argv);
    expect(error.message).toMatch(message);
    expect(error.hint).toMatch(/--help|mysql-backup --version/);
  });
});

describe("suggestions", () => {
  it("count a transposition as one edit, as a person does", () => {
    expect(editDistance("json", "jsno")).toBe(1);
    expect(editDistance("target", "traget")).toBe(1);
    expect(editDistance("config", "config")).toBe(0);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("kitten", "sitting")).toBe(3);
  });

  it("name the nearest flag only when it is near enough to be the one meant", () => {
    expect(nearestName("bakup", ["backup", "verify", "restore"])).toBe("backup");
    expect(nearestName("restor", ["backup", "verify", "restore"])).toBe("restore");
    expect(nearestName("xyz", ["backup", "verify", "restore"])).toBeNull();
    expect(nearestName("until-gtd", ["until", "until-gtid"])).toBe("until-gtid");
  });
});

describe("output for people and for machines", () => {
  it("tables pad every column but the last", () => {
    expect(renderTable(["A", "LONG HEADER", "C"], [["wide cell", "x", "last"]]).split("\n")).toEqual([
      "A          LONG HEADER  C",
      "wide cell  x            last",
    ]);
  });

  it("stdout is the journal only when JOURNAL_STREAM names stdout's own device and inode", () => {
    const stat = () => ({ dev: 25, ino: 4711 });
    expect(stdoutIsJournal({ JOURNAL_STREAM: "25:4711" }, stat)).toBe(true);
    expect(stdoutIsJournal({ JOURNAL_STREAM: "25:4712" }, stat)).toBe(false);
    expect(stdoutIsJournal({}, stat)).toBe(false);
    expect(stdoutIsJournal({ JOURNAL_STREAM: "garbage" }, stat)).toBe(false);
  });

  it("an error is a sentence with what to do on a terminal, and a JSON object under the journal", async () => {
    const text = await inProcess(["verify", "--config", "/nonexistent/verify.json"]);
    expect(text.code).toBe(ExitCode.Config);
    expect(text.stdout).toBe("");
    expect(text.stderr).toMatch(
      /^mysql-backup: cannot read config file \/nonexistent\/verify\.json: .*ENOENT/,
    );
    expect(text.stderr).toMatch(/\nwhat to do: check the --config path \(Config, exit 3\)\n$/);

    const journal = await inProcess(["verify", "--config", "/nonexistent/verify.json"], true);
    expect(journal.code).toBe(ExitCode.Config);
    expect(JSON.parse(journal.stdout)).toMatchObject({
      ok: false,
      error: "Config",
      hint: "check the --config path",
    });
    expect(JSON.parse(journal.stderr.trim())).toMatchObject({ level: "error", error: "Config", exitCode: 3 });
  });
});

describe("mysql-backup (the real CLI)", () => {
  // Each case starts node and tsx: seconds on a loaded machine.
  jest.setTimeout(30_000);
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

  it("prints its commands on --help and exits 0; with no command, on stderr with exit 2", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: mysql-backup <command> --config FILE/);
    // Exactly these commands: one the help lists is covered by the per-command tests below.
    const listed = help.stdout.split("commands:\n")[1]!.split("\n\n")[0]!.split("\n");
    expect(listed.map((line) => line.trim().split(/\s+/)[0])).toEqual(COMMANDS);
    const bare = await cli([]);
    expect(bare.code).toBe(ExitCode.Usage);
    expect(bare.stdout).toBe("");
    expect(bare.stderr).toMatch(/usage: mysql-backup <command>/);
  });

  it.each(COMMANDS)("`%s --help` exits 0 and shows its usage, every flag and an example", async (name) => {
    const { code, stdout } = await cli([name, "--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain(`usage: mysql-backup ${name} --config FILE`);
    expect(stdout).toMatch(/^flags:\n {2}--config FILE {2,}\S/m);
    expect(stdout).toMatch(/^ {2}--json {2,}print the result as one JSON object/m);
    expect(stdout).toMatch(/^ {2}-h, --help {2,}show this help/m);
    expect(stdout).toMatch(
      new RegExp(`^examples:\\n {2}mysql-backup ${name} --config /etc/mysql-backup/`, "m"),
    );
  });

  it("`restore --help` lists its own flags and the `list` argument", async () => {
    const { stdout } = await cli(["restore", "--help"]);
    for (const flag of ["--target DIR", "--backup BACKUP_ID", "--force"]) {
      expect(stdout).toMatch(new RegExp(`^ {2}${flag} {2,}\\S`, "m"));
    }
    expect(stdout).toMatch(/^arguments:\n {2}list {2,}list the cluster's backups/m);
  });

  it("--version prints the package version; from source there is no bundle to hash", async () => {
    const text = await cli(["--version"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(`mysql-backup ${version}\nrunning from source (not a bundle: no sha256)\n`);
    const json = await cli(["--version", "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ version, bundle: null });
  });

  it("a typo'd flag names the nearest one, with exit 2", async () => {
    const { code, stderr } = await cli(["restore", "--config", "/r.json", "--bakup", "x"]);
    expect(code).toBe(ExitCode.Usage);
    expect(stderr).toContain("mysql-backup: restore: unknown flag --bakup (did you mean --backup?)");
  });
});
