/**
 * How fast the link to the server is, measured on the bundles that cross it, so that the bulk
 * paths compress only where the link is slow enough for it to pay.
 */

/**
 * A link that carries this many bytes a second (or more) gets plain bundles instead of streamed
 * ones, both ways. Compressing the runs of small records costs both ends a zstd context and an
 * output buffer per frame (a pull of 50,000 files: about 3 s of the hub's CPU and 4 s of the
 * client's main thread, with garbage collection on top) to save a tenth of the bytes; on a
 * link this fast the bytes cost less time than that CPU. A slow link (the benchmark's is
 * 50 Mbit/s, about 6 MiB/s) stays well below it and keeps the compression.
 */
export const FAST_LINK_BYTES_PER_SECOND = 24 * 1024 * 1024;

/** Bytes transferred before the link's speed is judged (until then bundles are streamed). */
const LINK_SAMPLE_BYTES = 4 * 1024 * 1024;

/**
 * The speed of the link as a pull's downloads or a push's uploads see it: bytes over the time
 * during which at least one transfer was under way (bundles travel a few at a time, so each
 * one alone would see a share of the link).
 */
export class LinkMeter {
  #active = 0;
  #since = 0;
  #busyMs = 0;
  #bytes = 0;

  /** A transfer starts at `now` (milliseconds). */
  start(now: number): void {
    if (this.#active++ === 0) this.#since = now;
  }

  /** A transfer that started ends at `now` with `bytes` carried (0 if it failed). */
  end(now: number, bytes: number): void {
    this.#busyMs += now - this.#since;
    this.#since = now;
    this.#active--;
    this.#bytes += bytes;
  }

  /** Whether enough was measured to call the link fast (see FAST_LINK_BYTES_PER_SECOND). */
  get fast(): boolean {
    return this.#bytes >= LINK_SAMPLE_BYTES && this.#bytes * 1000 >= FAST_LINK_BYTES_PER_SECOND * Math.max(1, this.#busyMs);
  }
}
