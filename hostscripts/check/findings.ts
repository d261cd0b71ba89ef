import type { CheckFinding, CheckReport, CheckStatus } from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { renderTable } from "../common/output";

/**
 * The findings of one `check` run, in the order they were made. A step that throws becomes a failed finding
 * with the error's message and hint: the same words the real run would have said, before it ran.
 */
export class Checklist {
  readonly findings: CheckFinding[] = [];

  pass(check: string, detail: string): void {
    this.add(check, "pass", detail, null);
  }

  warn(check: string, detail: string, fix: string): void {
    this.add(check, "warn", detail, fix);
  }

  fail(check: string, detail: string, fix: string): void {
    this.add(check, "fail", detail, fix);
  }

  /** A check that could not run because one it depends on failed. */
  skip(check: string, why: string): void {
    this.add(check, "skip", `not checked: ${why}`, null);
  }

  /**
   * Runs one step; the step records its own pass or warning. A throw is recorded as a failure of `check`
   * (its message and hint for a PipelineError, else the message and `fix`), and undefined is returned so the
   * caller can skip what depends on it.
   */
  async attempt<T>(
    check: string,
    step: () => Promise<T>,
    fix = "see the message above",
  ): Promise<T | undefined> {
    try {
      return await step();
    } catch (error) {
      if (error instanceof PipelineError) this.fail(check, error.message, error.hint);
      else this.fail(check, messageOf(error), fix);
      return undefined;
    }
  }

  /** True when nothing failed. */
  get ok(): boolean {
    return this.findings.every((f) => f.status !== "fail");
  }

  private add(check: string, status: CheckStatus, detail: string, fix: string | null): void {
    this.findings.push({ check, status, detail, fix });
  }
}

const MARK: Record<CheckStatus, string> = { pass: "ok", warn: "WARN", fail: "FAIL", skip: "skip" };

/** The report for people: a verdict line, then one row per finding and the fix under each that needs one. */
export function summarizeCheck(report: CheckReport): string {
  const count = (status: CheckStatus) => report.findings.filter((f) => f.status === status).length;
  const verdict = report.ok
    ? `${report.subject}: ready (${count("pass")} checks passed${count("warn") ? `, ${count("warn")} warning(s)` : ""})`
    : `${report.subject}: NOT READY (${count("fail")} of ${report.findings.length} checks failed)`;
  const rows = report.findings.flatMap((f) => {
    const row = [MARK[f.status], f.check, f.detail];
    return f.fix === null || f.status === "pass" ? [row] : [row, ["", "", `fix: ${f.fix}`]];
  });
  return [verdict, "", renderTable(["", "CHECK", "RESULT"], rows)].join("\n");
}
