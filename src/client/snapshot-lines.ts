/**
 * The layout in lines of a large snapshot (journal-file.ts: a whole tree's stat cache or base
 * manifest), which is written and read in bounded pieces instead of as one JSON string.
 *
 * The file is still one JSON document, so any JSON reader (an older cws too) reads it whole; its
 * large arrays, the sections, are laid out one item per line:
 *
 *   {"format":2,"journal":"…","ignoreRules":null,"entries":[     the head's fields, the first section
 *   ["files/a",3,…],                                             one item per line, a comma after all
 *   ["files/b",5,…]                                              but the last
 *   ],"unchecked":[                                              the next section
 *   ]}                                                           the end
 *
 * JSON.stringify never writes a raw newline inside a value, so a line break only ever separates
 * items, and an item never starts with `]` (items are arrays, objects, strings or numbers), so
 * a line that does is the end of a section. A reader takes the head from the first line, then
 * parses the items in groups of whole lines (one JSON.parse of up to GROUP_BYTES each, the
 * groups found with one search each rather than line by line) and hands them to the owner one
 * by one. A group is cut only at a line end, which JSON.stringify never puts inside an item, so
 * a cut inside one (a file written otherwise) does not parse; the commas must be where JSON puts
 * them and the ends of sections must be the expected lines, so a file this reader accepts is one
 * that JSON.parse accepts, with the same values. A file whose first line is not such a head (the
 * single line of an older cws, or a head too long for a block) is parsed whole, as before.
 */
import type { FileHandle } from "node:fs/promises";

/** How an owner takes a snapshot in this layout. */
export interface SnapshotSections {
  /** The document's fields written as sections (arrays), in order; at least one. */
  names: readonly string[];
  /**
   * Takes the next item of section `section` (an index into `names`). Returns false when the
   * item is not valid, which ends the read: the snapshot is then not valid.
   */
  item(section: number, json: unknown): boolean;
}

/** A snapshot parsed from its file. */
export interface ParsedSnapshot {
  /**
   * The document; when it was read in lines, its head only (the fields other than the sections,
   * whose items went to the owner). Undefined when the file is not a valid document.
   */
  json: unknown;
  /** Why the file is not valid JSON (or not valid in this layout), when `json` is undefined. */
  invalid?: string;
  /** True when the items of the sections went to the owner's `item`. */
  sectioned: boolean;
  /** The bytes read: the file's length. */
  bytes: number;
}

/** What is read from the file at once, and the most the head line may hold. */
const BLOCK_BYTES = 1024 * 1024;
/** Consecutive item lines parsed with one JSON.parse once they hold this many bytes. */
const GROUP_BYTES = 256 * 1024;
/** The longest item line accepted, far above any real item, so a damaged file cannot balloon. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;
const CLOSE_BRACKET = 0x5d;
/** A line that starts with `]`, seen from the end of the line before it. */
const SECTION_END = Buffer.from("\n]", "latin1");

/**
 * The text of a snapshot in this layout, in pieces: `head`'s fields, then the items of each
 * section in order. Each item is encoded when it is reached, so only one item's text and what
 * the writer buffers exist at a time.
 */
export function* snapshotLines(head: Record<string, unknown>, sections: ReadonlyArray<readonly [string, Iterable<unknown>]>): Generator<string> {
  const fields = JSON.stringify(head);
  let opening = fields === "{}" ? "{" : `${fields.slice(0, -1)},`;
  for (const [name, items] of sections) {
    yield `${opening}${JSON.stringify(name)}:[\n`;
    let previous: string | undefined;
    for (const item of items) {
      if (previous !== undefined) yield `${previous},\n`;
      previous = JSON.stringify(item);
    }
    if (previous !== undefined) yield `${previous}\n`;
    opening = "],";
  }
  yield "]}\n";
}

/**
 * Parses the snapshot open in `handle`: in lines when its first line
 * is the head of this layout for `sections`, else whole. Read errors are thrown.
 */
export async function parseSnapshot(handle: FileHandle, sections: SnapshotSections | undefined): Promise<ParsedSnapshot> {
  const first = Buffer.allocUnsafe(sections === undefined ? 0 : BLOCK_BYTES);
  const { bytesRead } = sections === undefined ? { bytesRead: 0 } : await handle.read(first, 0, first.length, 0);
  const headEnd = first.subarray(0, bytesRead).indexOf(NEWLINE);
  const head = sections === undefined || headEnd < 0 ? undefined : headOf(first.toString("utf8", 0, headEnd), sections.names[0]!);
  if (sections === undefined || head === undefined) return parseWhole(await handle.readFile());
  return new SectionReader(handle, sections, first, bytesRead, headEnd + 1).read(head);
}

function parseWhole(data: Buffer): ParsedSnapshot {
  try {
    // Decoded in one piece: readFile's own decoding goes chunk by chunk, 5x slower on 10 MB.
    return { json: JSON.parse(data.toString("utf8")), sectioned: false, bytes: data.length };
  } catch (error) {
    return { json: undefined, invalid: error instanceof Error ? error.message : String(error), sectioned: false, bytes: data.length };
  }
}

/** The head's fields of a first line in this layout (`{…,"name":[`), or undefined when it is not one. */
function headOf(line: string, name: string): Record<string, unknown> | undefined {
  const opening = `${JSON.stringify(name)}:[`;
  if (!line.startsWith("{") || !line.endsWith(opening)) return undefined;
  let fields = line.slice(0, -opening.length);
  if (fields !== "{") {
    if (!fields.endsWith(",")) return undefined;
    fields = fields.slice(0, -1);
  }
  try {
    const json: unknown = JSON.parse(`${fields}}`);
    return typeof json === "object" && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** One read of the sections after the head line: blocks of the file, lines, groups of items. */
class SectionReader {
  readonly #handle: FileHandle;
  readonly #sections: SnapshotSections;
  #buffer: Buffer;
  /** The unread part of the buffer is [#start, #end); #position is the file offset after #end. */
  #start: number;
  #end: number;
  #position: number;
  #eof = false;
  #section = 0;
  /** True when the last item parsed was followed by a comma: another item must come. */
  #moreItems = false;
  /** True once a section has an item. */
  #hasItems = false;

  constructor(handle: FileHandle, sections: SnapshotSections, first: Buffer, bytesRead: number, start: number) {
    this.#handle = handle;
    this.#sections = sections;
    this.#buffer = first;
    this.#start = start;
    this.#end = bytesRead;
    this.#position = bytesRead;
  }

  async read(head: Record<string, unknown>): Promise<ParsedSnapshot> {
    const invalid = (reason: string): ParsedSnapshot => ({ json: undefined, invalid: reason, sectioned: true, bytes: this.#position });
    const names = this.#sections.names;
    for (;;) {
      if (this.#start < this.#end && this.#buffer[this.#start] === CLOSE_BRACKET) {
        // A line that starts with `]`: the end of a section, whose items must have ended
        // without a comma. Only the end's own newline may be missing.
        let lineEnd = this.#buffer.indexOf(NEWLINE, this.#start);
        if (lineEnd < 0 || lineEnd >= this.#end) lineEnd = this.#eof ? this.#end : -1;
        if (lineEnd < 0) {
          if (this.#end - this.#start >= MAX_LINE_BYTES) return invalid(`a line is longer than ${MAX_LINE_BYTES} bytes`);
          await this.#fill();
          continue;
        }
        if (this.#moreItems) return invalid("a section ends after a comma");
        const line = this.#buffer.toString("utf8", this.#start, lineEnd);
        this.#start = Math.min(lineEnd + 1, this.#end);
        const last = this.#section === names.length - 1;
        if (line !== (last ? "]}" : `],${JSON.stringify(names[this.#section + 1])}:[`)) return invalid(`section "${names[this.#section]}" ends with an unexpected line`);
        if (!last) {
          this.#section++;
          this.#hasItems = false;
          continue;
        }
        // Nothing but white space may follow the end of the document.
        for (;;) {
          for (let i = this.#start; i < this.#end; i++) {
            const byte = this.#buffer[i];
            if (byte !== NEWLINE && byte !== 0x20 && byte !== 0x0d && byte !== 0x09) return invalid("data follows the end of the document");
          }
          this.#start = this.#end;
          if (this.#eof) return { json: head, sectioned: true, bytes: this.#position };
          await this.#fill();
        }
      }
      // The item lines up to the next line that starts with `]`, or else up to the last whole
      // line in the buffer: found with one search each, not line by line. Bytes past #end are
      // stale.
      const close = this.#buffer.indexOf(SECTION_END, this.#start);
      let itemsEnd = close >= 0 && close + 1 < this.#end ? close : this.#buffer.lastIndexOf(NEWLINE, this.#end - 1);
      if (itemsEnd < this.#start) itemsEnd = -1;
      if (itemsEnd < 0) {
        if (this.#eof) return invalid(`the file ends inside section "${names[this.#section]}"`);
        if (this.#end - this.#start >= MAX_LINE_BYTES) return invalid(`a line is longer than ${MAX_LINE_BYTES} bytes`);
        await this.#fill();
        continue;
      }
      if (!this.#items(this.#start, itemsEnd)) return invalid("an item is not valid");
      this.#start = itemsEnd + 1;
    }
  }

  /** Parses the whole item lines in [from, to) of the buffer in groups of about GROUP_BYTES, cut at line ends. */
  #items(from: number, to: number): boolean {
    for (let at = from; at < to; ) {
      let cut = to;
      if (to - at > GROUP_BYTES) {
        const end = this.#buffer.lastIndexOf(NEWLINE, at + GROUP_BYTES);
        if (end > at) cut = end;
      }
      if (!this.#group(this.#buffer.toString("utf8", at, cut))) return false;
      at = cut + 1;
    }
    return true;
  }

  /**
   * Parses one group of item lines and hands its items to the owner; false when not valid. A
   * group cut at a line end inside an item (which JSON.stringify never writes) does not parse.
   */
  #group(text: string): boolean {
    // Items follow one another only across a comma.
    if (this.#hasItems && !this.#moreItems) return false;
    this.#moreItems = text.endsWith(",");
    let items: unknown;
    try {
      items = JSON.parse(`[${this.#moreItems ? text.slice(0, -1) : text}]`);
    } catch {
      return false;
    }
    if (!Array.isArray(items)) return false;
    if (items.length > 0) this.#hasItems = true;
    for (const item of items) if (!this.#sections.item(this.#section, item)) return false;
    return true;
  }

  /** Moves the unread bytes to the front (growing the buffer when a line fills it) and reads on. */
  async #fill(): Promise<void> {
    const unread = this.#end - this.#start;
    if (unread === this.#buffer.length) {
      const larger = Buffer.allocUnsafe(this.#buffer.length * 2);
      this.#buffer.copy(larger, 0, this.#start, this.#end);
      this.#buffer = larger;
    } else if (this.#start > 0) {
      this.#buffer.copy(this.#buffer, 0, this.#start, this.#end);
    }
    this.#start = 0;
    this.#end = unread;
    const { bytesRead } = await this.#handle.read(this.#buffer, this.#end, this.#buffer.length - this.#end, this.#position);
    this.#end += bytesRead;
    this.#position += bytesRead;
    if (bytesRead === 0) this.#eof = true;
  }
}
