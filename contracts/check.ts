import { schemaFor } from "./schema";
import { parser } from "./validate";

/**
 * What `mysql-backup check --json` prints: one finding per thing the run will need, each saying what was
 * proven or what is wrong and how to fix it. The ReplicaAgent reads the exit code; people and tools read this.
 */

/** `pass`: proven; `warn`: works, but something an operator should know; `fail`: the run would fail; `skip`: could not be checked because an earlier step failed. */
export type CheckStatus = "pass" | "warn" | "fail" | "skip";

/** One thing checked. */
export interface CheckFinding {
  /** A stable dotted name, e.g. `mysql.privileges`, `s3.write`. */
  check: string;
  status: CheckStatus;
  /** What was proven, or what is wrong and where. */
  detail: string;
  /** What to do; null when nothing is to be done. */
  fix: string | null;
}

/** `check --json`. */
export interface CheckReport {
  formatVersion: 1;
  /** `replica` for a backup config, `verifier` for a verify config. */
  role: "replica" | "verifier";
  /** What was checked: `replica <cluster>/<host>` or `verifier on <hostname>`. */
  subject: string;
  /** True when no finding failed (warnings allowed). */
  ok: boolean;
  findings: CheckFinding[];
}

export const checkReportSchema = schemaFor<CheckReport>()({
  $id: "https://mysql-backup-pipeline/check-v1.json",
  type: "object",
  additionalProperties: false,
  required: ["formatVersion", "role", "subject", "ok", "findings"],
  properties: {
    formatVersion: { const: 1 },
    role: { enum: ["replica", "verifier"] },
    subject: { type: "string", minLength: 1 },
    ok: { type: "boolean" },
    findings: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["check", "status", "detail", "fix"],
        properties: {
          check: { type: "string", pattern: "^[a-z0-9]+(\\.[a-z0-9-]+)*$" },
          status: { enum: ["pass", "warn", "fail", "skip"] },
          detail: { type: "string", minLength: 1 },
          fix: { type: ["string", "null"] },
        },
      },
    },
  },
});

export const parseCheckReport = parser("check report", checkReportSchema);
