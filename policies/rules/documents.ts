/**
 * Reading IAM-style policy documents (IAM role and managed policies, S3 bucket policies) as the
 * policy engine sees them: a `policy` input is either a JSON string or an object, and every field
 * of a statement may be a single value or a list.
 */

/** One statement with its list-or-single fields normalised to lists. */
export interface Statement {
  sid?: string;
  effect: "Allow" | "Deny";
  actions: string[];
  notActions: string[];
  resources: string[];
  notResources: string[];
  principals: string[];
  condition: Record<string, Record<string, unknown>>;
}

/** A policy document that could not be read; the rule reports it instead of guessing. */
export class UnreadableDocument extends Error {}

/** The statements of a policy document given as a JSON string or an object. */
export function statementsOf(policy: unknown): Statement[] {
  const document = typeof policy === "string" ? parseJson(policy) : policy;
  if (!isRecord(document)) {
    throw new UnreadableDocument("the policy document is neither a JSON object nor a JSON string");
  }
  return list(document.Statement).map(toStatement);
}

/** True when an IAM action pattern (`s3:*`, `s3:Put*`, `*`) matches an action; IAM compares case-insensitively. */
export function actionMatches(pattern: string, action: string): boolean {
  const regex = "^" + pattern.split("*").map(escapeRegex).join(".*").replace(/\?/g, ".") + "$";
  return new RegExp(regex, "i").test(action);
}

/** True when the statement grants `action` (ignoring resources and conditions, which only narrow it). */
export function allows(statement: Statement, action: string): boolean {
  if (statement.effect !== "Allow") return false;
  if (statement.notActions.length > 0) return !statement.notActions.some((p) => actionMatches(p, action));
  return statement.actions.some((p) => actionMatches(p, action));
}

/** A value as a list: `undefined` is empty, a scalar is a list of one. */
export function list(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

/** True for a plain object (not an array, not null). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function toStatement(raw: unknown): Statement {
  if (!isRecord(raw)) throw new UnreadableDocument("a Statement entry is not an object");
  const effect = raw.Effect;
  if (effect !== "Allow" && effect !== "Deny") {
    throw new UnreadableDocument(`a Statement has Effect ${JSON.stringify(effect)}; use "Allow" or "Deny"`);
  }
  return {
    sid: typeof raw.Sid === "string" ? raw.Sid : undefined,
    effect,
    actions: strings(raw.Action),
    notActions: strings(raw.NotAction),
    resources: strings(raw.Resource),
    notResources: strings(raw.NotResource),
    principals: principalsOf(raw.Principal),
    condition: isRecord(raw.Condition) ? (raw.Condition as Statement["condition"]) : {},
  };
}

/** `"*"`, `{ AWS: "*" }`, `{ Service: [...] }` → the flat list of principal values. */
function principalsOf(principal: unknown): string[] {
  if (typeof principal === "string") return [principal];
  if (!isRecord(principal)) return [];
  return Object.values(principal).flatMap(strings);
}

function strings(value: unknown): string[] {
  return list(value).filter((v): v is string => typeof v === "string");
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UnreadableDocument(`the policy document is not valid JSON (${(error as Error).message})`);
  }
}

function escapeRegex(text: string): string {
  return text.replace(/[.+^${}()|[\]\\]/g, "\\$&");
}
