import type { PolicyReport, Violation } from "./harness";

/** What the printed report is about. */
export interface ReportHeading {
  /** The stack config the resources came from, e.g. `Pulumi.dev.yaml`. */
  stack: string;
  packName: string;
  packVersion: string;
}

/**
 * The report as `pulumi preview` prints policy results: per violation the level, the pack and the
 * rule, the resource (name and type) and its URN, the rule's description and the message; then the
 * rules that did not apply and a one-line verdict.
 */
export function formatReport(heading: ReportHeading, report: PolicyReport): string {
  const pack = `${heading.packName} v${heading.packVersion}`;
  const lines = [`Policies for ${heading.stack}:`];
  const mandatory = report.violations.filter((v) => v.enforcementLevel === "mandatory").length;
  lines.push(`    ${mandatory > 0 ? "❌" : "✅"} ${pack} (local: policies)`);
  for (const violation of report.violations) lines.push(...formatViolation(violation));
  for (const rule of report.notApplicable) {
    lines.push(
      `        - [not applicable]  ${rule.policyName}: ${rule.reasons.join("; ") || "no reason given"}`,
    );
  }
  for (const name of report.disabled) lines.push(`        - [disabled]  ${name}`);
  lines.push(
    `    ${report.applied.length} rules applied, ${report.notApplicable.length} not applicable, ` +
      `${report.disabled.length} disabled; ${mandatory} mandatory and ${report.violations.length - mandatory} other violations.`,
  );
  return lines.join("\n");
}

function formatViolation(violation: Violation): string[] {
  return [
    `        - [${violation.enforcementLevel}]  ${violation.policyName}  (${resourceOf(violation.urn)})`,
    `          ${violation.urn ?? "(the stack)"}`,
    `          ${violation.description}`,
    `          ${violation.message}`,
  ];
}

/** `urn:pulumi:dev::proj::parent$aws:s3/bucket:Bucket::backups` → `backups: aws:s3/bucket:Bucket`. */
function resourceOf(urn: string | undefined): string {
  if (!urn) return "stack";
  const parts = urn.split("::");
  const name = parts[parts.length - 1];
  const type = (parts[parts.length - 2] ?? "").split("$").pop();
  return `${name}: ${type}`;
}
