import { open, rename } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * Small local files that must outlive a crash of the process or the host whole or not at all (a backup's
 * progress files, the binlog archiver's state and ledger drafts): written to `<name>.partial`, fsynced,
 * renamed into place, and the directory fsynced. A leftover `.partial` is garbage that the owner's next start
 * removes.
 */

/** Writes `data` to `path` (mode 0600) atomically and durably. */
export async function writeDurably(path: string, data: string | Buffer): Promise<void> {
  const partial = `${path}.partial`;
  const file = await open(partial, "w", 0o600);
  try {
    await file.writeFile(data);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(partial, path);
  await syncDirectory(dirname(path));
}

/** Fsyncs a directory, so a rename, a new file or a removal in it outlives a crash of the host. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
