import { readFile, writeFile } from "node:fs/promises";

/**
 * The sections each suite writes into BENCHMARKS.md between its own markers: replaced in place, so suites run
 * apart never overwrite each other's figures, or added the first time.
 */

/**
 * `existing` with the text from `begin` to `end` (markers included) replaced by `section`, which carries its
 * markers; without them, `section` goes right after the `after` marker when there is one, else at the end.
 */
export function replaceSection(
  existing: string,
  markers: { begin: string; end: string; after?: string },
  section: string,
): string {
  const at = existing.indexOf(markers.begin);
  const end = existing.indexOf(markers.end);
  if (at >= 0 && end > at) return existing.slice(0, at) + section + existing.slice(end + markers.end.length);
  const after = markers.after === undefined ? -1 : existing.indexOf(markers.after);
  if (after < 0) return `${existing.trimEnd()}\n\n${section}\n`;
  const cut = after + markers.after!.length;
  return `${existing.slice(0, cut)}\n\n${section}\n${existing.slice(cut)}`;
}

/** Writes `section` into the report at `path` (see replaceSection), formatted as the project's prettier says. */
export async function writeSection(
  path: string,
  markers: { begin: string; end: string; after?: string },
  section: string,
): Promise<void> {
  const existing = await readFile(path, "utf8").catch(() => "# Benchmarks\n");
  // Loaded here: the unit tests' runner cannot load prettier, and it tests the renderers that import this.
  const { format, resolveConfig } = await import("prettier");
  const style = (await resolveConfig(path)) ?? {};
  await writeFile(
    path,
    await format(replaceSection(existing, markers, section), { ...style, parser: "markdown" }),
  );
}
