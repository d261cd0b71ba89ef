import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import {
  BinlogFormatError,
  EVENT_HEADER_BYTES,
  parseFormatDescription,
  readEvents,
  readHeader,
  type FormatDescription,
} from "../common/binlog-events";
import { PipelineError, messageOf } from "../common/errors";
import { positionOfList, type GtidState } from "../common/gtid-state";

/**
 * A binlog file on the server's disk, read with plain file reads: its header (magic number and FDE, which
 * every segment cut from the file starts with), the identity that tells it apart from another file of the
 * same name, the GTID state it opens with, and byte ranges of it.
 */

/** The start of a binlog file. */
export interface BinlogFileHeader {
  name: string;
  path: string;
  fde: FormatDescription;
  /** Magic number and FDE: the first bytes of every segment cut from this file. */
  header: Buffer;
  /**
   * sha256 of the name, the header and the event after it (GTID_LIST / PREVIOUS_GTIDS), which the server
   * writes when it creates the file: a file recreated under the same name (RESET MASTER, a restored host)
   * has another FDE timestamp or another GTID state, so another identity.
   */
  identity: string;
  /** The GTID state the file opens with (MariaDB: the position its GTID_LIST stands for). */
  announced: GtidState;
  /** Where the events after the FDE start: the first segment of the file begins here. */
  bodyOffset: number;
}

/** Reads bytes `[from, to)` of a file; fewer when the file is shorter. */
export async function readRange(path: string, from: number, to: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(Math.max(0, to - from));
  return buffer.subarray(0, await readInto(path, buffer, 0, buffer.length, from));
}

/**
 * Reads `length` bytes of a file from byte `from` into `buffer` at `at`; returns how many it read (fewer when
 * the file is shorter). Lets a reader of a long file reuse one buffer instead of allocating one per read.
 */
export async function readInto(
  path: string,
  buffer: Buffer,
  at: number,
  length: number,
  from: number,
): Promise<number> {
  const handle = await open(path, "r");
  try {
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await handle.read(buffer, at + filled, length - filled, from + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled;
  } finally {
    await handle.close();
  }
}

/** Thrown when a file's first events are not all written yet (a file the server is creating): try again. */
export class HeaderNotReady extends Error {}

/** Reads and checks the header of binlog `name` in `dir`. */
export async function readBinlogHeader(dir: string, name: string): Promise<BinlogFileHeader> {
  const path = join(dir, name);
  const what = `binlog ${path}`;
  const start = await readRange(path, 0, 4 + EVENT_HEADER_BYTES).catch((error: NodeJS.ErrnoException) => {
    throw unreadable(path, error);
  });
  if (start.length < 4 + EVENT_HEADER_BYTES) throw new HeaderNotReady(`${what} has no whole FDE yet`);
  const fdeLength = readHeader(start, 4).length;
  const withFde = await readRange(path, 0, 4 + fdeLength + EVENT_HEADER_BYTES);
  if (withFde.length < 4 + fdeLength + EVENT_HEADER_BYTES)
    throw new HeaderNotReady(`${what} has no whole header yet`);
  const fde = parseFormatDescription(withFde, what);
  const nextLength = readHeader(withFde, 4 + fdeLength).length;
  const bytes = await readRange(path, 0, 4 + fdeLength + nextLength);
  const { events } = readEvents(bytes, 4 + fdeLength, fde, { what, origin: 0 });
  const opening = events[0];
  if (opening === undefined) throw new HeaderNotReady(`${what} has no whole GTID_LIST / PREVIOUS_GTIDS yet`);
  let announced: GtidState;
  if (opening.detail.kind === "gtid-list") announced = positionOfList(opening.detail.gtids);
  else if (opening.detail.kind === "previous-gtids") announced = opening.detail.set;
  else
    throw new BinlogFormatError(
      `${what}: the event after the FDE is of type ${opening.header.type}, not GTID_LIST / PREVIOUS_GTIDS; is it a binlog of a server with GTIDs?`,
      opening.offset,
    );
  const identity = createHash("sha256").update(`${name}\n`).update(bytes).digest("hex");
  return {
    name,
    path,
    fde,
    header: Buffer.from(bytes.subarray(0, 4 + fdeLength)),
    identity,
    announced,
    bodyOffset: 4 + fdeLength,
  };
}

/** A binlog file that cannot be read is the host's problem (permissions, a disk), not the server's. */
export function unreadable(path: string, error: unknown): PipelineError {
  return new PipelineError(
    "BinlogFailed",
    `cannot read binlog ${path}: ${messageOf(error)}`,
    "the archiver runs on the database host and reads the binlog files itself: check the file's permissions and the unit's ReadOnlyPaths",
    { cause: error },
  );
}
