/**
 * A lab for one integration test file: `withLab()` brings a fresh lab up in its own directory under /tmp
 * before the file's tests and tears it down after them (also when they fail), checking nothing is left.
 *
 *   const lab = withLab({ load: true });
 *   test("...", async () => { await sql(lab(), "replica", "SELECT 1"); });
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labUp, leftovers, type Lab, type LabOptions } from "../../lab/lab";

/** How long bringing a small lab up or down may take in a test hook. */
export const LAB_HOOK_TIMEOUT_MS = 180_000;

/** A fresh, empty directory for a lab (never the default `.lab`, which a person may be using). */
export async function freshLabDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "mysql-backup-lab-"));
}

/**
 * Registers beforeAll/afterAll hooks that bring a lab up and down; returns a getter for it (it throws
 * when called before the lab is up, e.g. because `labUp` failed: that failure is the one to read).
 */
export function withLab(opts: Omit<LabOptions, "dir"> = {}): () => Lab {
  let lab: Lab | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await freshLabDir();
    lab = await labUp({ ...opts, dir });
  }, LAB_HOOK_TIMEOUT_MS);
  afterAll(async () => {
    if (dir === undefined) return;
    await labDown(dir);
    const left = await leftovers(dir);
    const dirty = Object.values(left).some((items) => items.length > 0);
    if (dirty) throw new Error(`the lab in ${dir} left things behind: ${JSON.stringify(left)}`);
  }, LAB_HOOK_TIMEOUT_MS);
  return () => {
    if (lab === undefined) throw new Error("the lab is not up (see the beforeAll failure above)");
    return lab;
  };
}
