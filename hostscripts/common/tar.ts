/**
 * The tar format as the archive writes it and the restore reads it: POSIX ustar headers, with a pax extended
 * header (`x`) before an entry whose name, link target, size or ids do not fit ustar's fields. The reader
 * also takes GNU tar's headers (`ustar  ` magic, `L`/`K` long names, base-256 numbers) and skips global pax
 * headers, so archives written by GNU tar or by tar-stream (format 1) read the same way.
 */

/** tar's unit: headers and data are whole blocks of this size. */
export const BLOCK = 512;

/** The end of an archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** The entry kinds a datadir snapshot holds; anything else is read as "other" and refused by the restore. */
export type EntryType = "file" | "directory" | "symlink" | "other";

/** One entry's header as written or read. */
export interface TarHeader {
  name: string;
  type: EntryType;
  /** Data bytes that follow the header (0 but for files). */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  /** A symlink's target. */
  linkname?: string;
  /** The typeflag as read, for an error about an "other" entry. */
  typeflag?: string;
}

/** Bytes of padding after `size` bytes of data, up to the next block. */
export function paddingAfter(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

const TYPEFLAG: Record<Exclude<EntryType, "other">, string> = { file: "0", directory: "5", symlink: "2" };
/** The largest numbers the ustar fields hold in octal: 11 digits for size and mtime, 7 for ids. */
const MAX_OCTAL_11 = 0o77777777777;
const MAX_OCTAL_7 = 0o7777777;

/**
 * The header blocks of one entry: a pax header first when a field does not fit ustar (a long or non-ASCII
 * name or link, a size of 8 GiB or more, a large id), then the ustar header.
 */
export function encodeHeader(header: TarHeader): Buffer {
  const pax: Array<[string, string]> = [];
  const name = header.type === "directory" && !header.name.endsWith("/") ? `${header.name}/` : header.name;
  const split = splitName(name);
  if (split === null) pax.push(["path", name]);
  const linkname = header.linkname ?? "";
  if (!fitsAscii(linkname, 100)) pax.push(["linkpath", linkname]);
  if (header.size > MAX_OCTAL_11) pax.push(["size", String(header.size)]);
  if (header.uid > MAX_OCTAL_7) pax.push(["uid", String(header.uid)]);
  if (header.gid > MAX_OCTAL_7) pax.push(["gid", String(header.gid)]);
  const ustar = ustarBlock({
    name: split?.name ?? asciiStandIn(name),
    prefix: split?.prefix ?? "",
    typeflag: header.type === "other" ? "0" : TYPEFLAG[header.type],
    size: header.size > MAX_OCTAL_11 ? 0 : header.size,
    mode: header.mode,
    uid: Math.min(header.uid, MAX_OCTAL_7),
    gid: Math.min(header.gid, MAX_OCTAL_7),
    mtime: Math.max(0, Math.min(Math.floor(header.mtime.getTime() / 1000), MAX_OCTAL_11)),
    linkname: fitsAscii(linkname, 100) ? linkname : asciiStandIn(linkname),
  });
  if (pax.length === 0) return ustar;
  const records = Buffer.from(pax.map(([key, value]) => paxRecord(key, value)).join(""), "utf8");
  const paxHeader = ustarBlock({
    name: asciiStandIn(`PaxHeader/${split?.name ?? name}`),
    prefix: "",
    typeflag: "x",
    size: records.length,
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 0,
    linkname: "",
  });
  return Buffer.concat([paxHeader, records, Buffer.alloc(paddingAfter(records.length)), ustar]);
}

/** `"<length> key=value\n"`, where the length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bytes = Buffer.byteLength(body, "utf8");
  let length = bytes + String(bytes).length;
  if (String(length).length !== String(bytes).length) length = bytes + String(length).length;
  return `${length}${body}`;
}

function fitsAscii(text: string, bytes: number): boolean {
  return text.length <= bytes && /^[\x20-\x7e]*$/.test(text);
}

/** ASCII readers without pax support see this in place of a name only pax can hold. */
function asciiStandIn(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "_").slice(-100);
}

/** ustar's name/prefix split of a name (at a `/`), or null when it needs pax. */
function splitName(name: string): { name: string; prefix: string } | null {
  if (!/^[\x20-\x7e]*$/.test(name)) return null;
  if (name.length <= 100) return { name, prefix: "" };
  for (let at = name.indexOf("/"); at !== -1; at = name.indexOf("/", at + 1)) {
    if (at <= 155 && name.length - at - 1 <= 100 && at < name.length - 1)
      return { name: name.slice(at + 1), prefix: name.slice(0, at) };
  }
  return null;
}

interface UstarFields {
  name: string;
  prefix: string;
  typeflag: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
}

function ustarBlock(f: UstarFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(f.name, 0, 100, "latin1");
  writeOctal(block, f.mode & 0o7777, 100, 8);
  writeOctal(block, f.uid, 108, 8);
  writeOctal(block, f.gid, 116, 8);
  writeOctal(block, f.size, 124, 12);
  writeOctal(block, f.mtime, 136, 12);
  block.fill(0x20, 148, 156);
  block.write(f.typeflag, 156, 1, "latin1");
  block.write(f.linkname, 157, 100, "latin1");
  block.write("ustar\u000000", 257, 8, "latin1");
  block.write(f.prefix, 345, 155, "latin1");
  writeOctal(block, checksum(block), 148, 7);
  return block;
}

/** Zero-padded octal digits and a NUL in a field of `width` bytes. */
function writeOctal(block: Buffer, value: number, offset: number, width: number): void {
  block.write(value.toString(8).padStart(width - 1, "0"), offset, width - 1, "latin1");
  block[offset + width - 1] = 0;
}

/** The header checksum: the sum of its bytes with the checksum field read as spaces. */
function checksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum;
}

/** Why a block cannot be a header; thrown by `decodeHeader`. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

/** A decoded header block: a real entry, or one of the headers that describe the next one. */
export type DecodedBlock =
  | { kind: "entry"; header: TarHeader }
  | { kind: "pax" | "global-pax" | "gnu-longname" | "gnu-longlink"; size: number };

/** Whether a block is all zeros (the end of the archive). */
export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Decodes one header block; throws TarFormatError for a block that is not one (corrupt or not tar). */
export function decodeHeader(block: Buffer): DecodedBlock {
  const magic = block.toString("latin1", 257, 263);
  const gnu = magic === "ustar " && block[263] === 0x20;
  if (magic !== "ustar\u0000" && !gnu)
    throw new TarFormatError("a header without the ustar magic: not a tar header");
  const stored = readNumber(block, 148, 8);
  if (stored !== checksum(block))
    throw new TarFormatError(`a header whose checksum is ${stored}, not ${checksum(block)}`);
  const typeflag = String.fromCharCode(block[156] || 0x30);
  const size = readNumber(block, 124, 12);
  switch (typeflag) {
    case "x":
      return { kind: "pax", size };
    case "g":
      return { kind: "global-pax", size };
    case "L":
      return { kind: "gnu-longname", size };
    case "K":
      return { kind: "gnu-longlink", size };
  }
  const name = readString(block, 0, 100);
  const prefix = gnu ? "" : readString(block, 345, 155);
  const type: EntryType =
    typeflag === "0" || typeflag === "7"
      ? "file"
      : typeflag === "5"
        ? "directory"
        : typeflag === "2"
          ? "symlink"
          : "other";
  return {
    kind: "entry",
    header: {
      name: prefix ? `${prefix}/${name}` : name,
      type,
      size: type === "file" ? size : 0,
      mode: readNumber(block, 100, 8),
      uid: readNumber(block, 108, 8),
      gid: readNumber(block, 116, 8),
      mtime: new Date(readNumber(block, 136, 12) * 1000),
      linkname: readString(block, 157, 100),
      typeflag,
    },
  };
}

/** Applies what pax records and GNU long names said to the entry that follows them. */
export function applyExtended(header: TarHeader, extended: Record<string, string>): TarHeader {
  const out = { ...header };
  if (extended.path !== undefined) out.name = extended.path;
  if (extended.linkpath !== undefined) out.linkname = extended.linkpath;
  if (extended.size !== undefined && out.type === "file") out.size = paxNumber("size", extended.size);
  if (extended.uid !== undefined) out.uid = paxNumber("uid", extended.uid);
  if (extended.gid !== undefined) out.gid = paxNumber("gid", extended.gid);
  return out;
}

function paxNumber(key: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new TarFormatError(`a pax ${key} that is not a number: "${value}"`);
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new TarFormatError(`a pax ${key} too large: ${value}`);
  return number;
}

/** The records of a pax header's data. */
export function decodePax(data: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const space = data.indexOf(0x20, at);
    const length = space === -1 ? NaN : Number(data.toString("latin1", at, space));
    if (!Number.isInteger(length) || length <= space - at || at + length > data.length)
      throw new TarFormatError("a pax header whose records are malformed");
    const record = data.toString("utf8", space + 1, at + length - 1);
    const equals = record.indexOf("=");
    if (equals === -1) throw new TarFormatError("a pax record without '='");
    records[record.slice(0, equals)] = record.slice(equals + 1);
    at += length;
  }
  return records;
}

/** A GNU long name's data: the name, NUL-terminated. */
export function decodeLongName(data: Buffer): string {
  const end = data.indexOf(0);
  return data.toString("utf8", 0, end === -1 ? data.length : end);
}

function readString(block: Buffer, offset: number, width: number): string {
  const end = block.indexOf(0, offset);
  return block.toString("utf8", offset, end === -1 || end > offset + width ? offset + width : end);
}

/** An octal field (space- or NUL-terminated), or GNU's base-256 when its first byte has the high bit. */
function readNumber(block: Buffer, offset: number, width: number): number {
  if (block[offset] & 0x80) {
    let value = block[offset] & 0x7f;
    for (let i = 1; i < width; i++) value = value * 256 + block[offset + i];
    if (!Number.isSafeInteger(value)) throw new TarFormatError("a base-256 number too large");
    return value;
  }
  const text = block
    .toString("latin1", offset, offset + width)
    .replace(/[\0 ]+$/, "")
    .trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`a numeric field that is not octal: "${text}"`);
  return parseInt(text, 8);
}
