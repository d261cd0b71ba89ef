import { readEvents } from "../common/binlog-events";
import { TransactionTracker } from "../common/binlog-transactions";
import type { Query } from "../common/dialect";
import type { Gtid, GtidState } from "../common/gtid-state";
import { readBinlogHeader, readRange, unreadable, type BinlogFileHeader } from "./binlog-file";
import type { BinlogProbe } from "./continuity";
import { listBinlogs } from "../common/binlog-server";
import { READ_BYTES } from "./cursor";

/**
 * The continuity decision's view of the live server: its binlog list, file headers, and scans of whole files
 * (only when the chain's file is gone or replaced, so rarely, and once).
 */

/** Walks the transactions of `file` from its start; `visit` returns true to stop (with the boundary). */
async function walk(
  header: BinlogFileHeader,
  visit: (gtid: Gtid, end: number, state: GtidState) => boolean,
): Promise<number | null> {
  const tracker = new TransactionTracker(header.fde.flavor, `binlog ${header.path}`);
  const state = header.announced.clone();
  let offset = header.bodyOffset;
  let leftover = Buffer.alloc(0);
  for (;;) {
    const chunk = await readRange(header.path, offset, offset + READ_BYTES).catch((error: unknown) => {
      throw unreadable(header.path, error);
    });
    if (chunk.length === 0) return null;
    const origin = offset - leftover.length;
    const buffer = Buffer.concat([leftover, chunk]);
    offset += chunk.length;
    const { events, end } = readEvents(buffer, 0, header.fde, { what: `binlog ${header.path}`, origin });
    for (const event of events) {
      const done = tracker.accept(event);
      if (done === null) continue;
      state.add(done.gtid);
      if (visit(done.gtid, origin + done.end, state)) return origin + done.end;
    }
    leftover = Buffer.from(buffer.subarray(end));
  }
}

const same = (a: GtidState, b: GtidState) => a.covers(b) && b.covers(a);

/** The probe of the server reached through `query`, whose binlogs are in `dir`. */
export function serverProbe(query: Query, dir: string, flavor: BinlogProbe["flavor"]): BinlogProbe {
  return {
    flavor,
    files: () => listBinlogs(query),
    header: (name) => readBinlogHeader(dir, name),
    async find(file, target) {
      const files = await listBinlogs(query);
      for (const listed of files.slice(
        Math.max(
          0,
          files.findIndex((f) => f.name === file),
        ),
      )) {
        const header = await readBinlogHeader(dir, listed.name);
        if (!target.covers(header.announced)) return null;
        if (same(header.announced, target)) return { file: listed.name, offset: header.bodyOffset };
        const offset = await walk(header, (_gtid, _end, state) => same(state, target));
        if (offset !== null) return { file: listed.name, offset };
      }
      return null;
    },
    async firstTransaction(file) {
      let first: Gtid | null = null;
      await walk(await readBinlogHeader(dir, file), (gtid) => {
        first = gtid;
        return true;
      });
      return first;
    },
  };
}
