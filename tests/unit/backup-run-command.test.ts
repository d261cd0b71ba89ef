/**
 * The real command runner of the snapshot drivers (`runCommand`), on harmless commands: argv without a shell,
 * the exit code and both outputs, a command that does not exist, and an abort that ends the command and
 * what it started.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { runCommand } from "../../hostscripts/common/snapshot";

test("runs argv as given, without a shell, and returns the exit code and both outputs", async () => {
  const result = await runCommand(["sh", "-c", 'echo "$1"; echo oops >&2; exit 3', "sh", "a b; $(x)"]);
  expect(result).toEqual({ exitCode: 3, signal: null, stdout: "a b; $(x)\n", stderr: "oops\n" });
});

test("a command that cannot be started ends with exit 127 and says why", async () => {
  const result = await runCommand(["mysql-backup-no-such-command"]);
  expect(result.exitCode).toBe(127);
  expect(result.stderr).toContain("mysql-backup-no-such-command");
});

test("an abort ends the command and its children, and the promise settles", async () => {
  const marker = "61.4321"; // a duration nobody else uses, to find a leftover process by it
  const abort = new AbortController();
  const running = runCommand(["sh", "-c", `sleep ${marker} & sleep ${marker}; wait`], {
    signal: abort.signal,
  });
  await new Promise((r) => setTimeout(r, 200));
  abort.abort();
  const result = await running;
  expect(result.signal).toBe("SIGTERM");
  await new Promise((r) => setTimeout(r, 100));
  const left = await promisify(execFile)("pgrep", ["-f", `sleep ${marker}`]).then(
    ({ stdout }) => stdout.trim(),
    () => "",
  );
  expect(left).toBe("");
});
