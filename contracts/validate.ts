import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import type { SchemaFor } from "./schema";

/** One ajv instance for every contract, so formats and options never differ between the two sides. */
export const ajv = new Ajv({
  allErrors: true,
  strict: true,
  strictRequired: false,
  allowUnionTypes: true,
  discriminator: true,
});
addFormats(ajv);

/** Raised when a document does not match its contract; `problems` name each key and what it expected. */
export class ContractError extends Error {
  constructor(
    readonly document: string,
    readonly problems: string[],
  ) {
    super(`${document} is invalid:\n  - ${problems.join("\n  - ")}`);
    this.name = "ContractError";
  }
}

/** Turns ajv's errors into lines a person can act on: the dotted key, then what it must be. */
export function describeErrors(errors: ErrorObject[] | null | undefined, schema: object = {}): string[] {
  return (errors ?? []).map((e) => {
    const key = e.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(top level)";
    switch (e.keyword) {
      case "required":
        return `${key === "(top level)" ? "" : key + "."}${e.params.missingProperty} is required`;
      case "additionalProperties":
        return `${key}: unknown key "${e.params.additionalProperty}" (remove it or check its spelling)`;
      case "enum":
        return `${key} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
      case "pattern":
        return e.params.pattern === "^/" ? `${key} must be an absolute path` : `${key} ${e.message}`;
      case "discriminator": {
        const tag = String(e.params.tag);
        const parent = schemaAt(schema, e.schemaPath.replace(/\/discriminator$/, "")) as {
          oneOf?: Array<{ properties?: Record<string, { const?: unknown }> }>;
        };
        const branches = (parent?.oneOf ?? []).map((b) => JSON.stringify(b.properties?.[tag]?.const));
        return `${key}.${tag} must be one of ${branches.join(", ")} (got ${JSON.stringify(e.params.tagValue)})`;
      }
      case "const":
        return `${key} must be ${JSON.stringify(e.params.allowedValue)}`;
      default:
        return `${key} ${e.message ?? "is invalid"}`;
    }
  });
}

/** The subschema a JSON pointer such as `#/properties/snapshot` names. */
function schemaAt(schema: object, pointer: string): unknown {
  return pointer
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], schema);
}

/**
 * Returns a parser that throws a ContractError naming every bad key; what it returns has the type the schema
 * is tied to ({@link schemaFor}). The schema is compiled on the parser's first call, not at import: a process
 * loads every contract but parses a few (compiling all of them cost the binlog archiver ~13 MiB RSS for its
 * whole life).
 */
export function parser<T>(document: string, schema: SchemaFor<T>): (value: unknown) => T {
  let compiled: ValidateFunction | null = null;
  return (value: unknown): T => {
    const validate = (compiled ??= ajv.compile(schema));
    if (!validate(value)) throw new ContractError(document, describeErrors(validate.errors, schema));
    return value as T;
  };
}
