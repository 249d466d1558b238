/**
 * How the key space is split into shards: N contiguous ranges, so that a prefix or a range
 * touches few shards and results merge in key order by concatenation.
 *
 * The default split points for N shards are single bytes spread evenly over printable ASCII
 * (0x21 '!' .. 0x7e '~'), where etcd keys usually start:
 *
 *     point_i = 0x21 + floor(i * 94 / N)      for i = 1 .. N-1
 *
 * Shard 0 owns ["", point_1), shard i owns [point_i, point_{i+1}), the last shard owns
 * [point_{N-1}, +inf). For N = 3 the points are "@" (0x40) and "_" (0x5f): keys starting with
 * "/" or a digit go to shard 0, upper case letters to shard 1, "_" and lower case to shard 2.
 * Every node of a cluster must use the same N (and the same points).
 */
export function defaultSplitPoints(n: number): Buffer[] {
  if (!Number.isInteger(n) || n < 1 || n > 94) throw new RangeError(`shard count must be 1..94, got ${n}`);
  const points: Buffer[] = [];
  for (let i = 1; i < n; i++) points.push(Buffer.from([0x21 + Math.floor((i * 94) / n)]));
  return points;
}

const infinity = Buffer.from([0]);

function isInfinity(end: Buffer): boolean {
  return end.length === 1 && end[0] === 0;
}

export class ShardMap {
  readonly count: number;
  private readonly points: readonly Buffer[];

  constructor(points: readonly Buffer[]) {
    for (let i = 1; i < points.length; i++) {
      if (Buffer.compare(points[i - 1]!, points[i]!) >= 0) throw new RangeError("split points must ascend");
    }
    if (points.some((p) => p.length === 0)) throw new RangeError("a split point cannot be empty");
    this.points = points;
    this.count = points.length + 1;
  }

  static ofCount(n: number): ShardMap {
    return new ShardMap(defaultSplitPoints(n));
  }

  /** [start, end) of a shard; `end` undefined for the last shard (unbounded). */
  bounds(shard: number): { start: Buffer; end: Buffer | undefined } {
    return {
      start: shard === 0 ? Buffer.alloc(0) : this.points[shard - 1]!,
      end: shard === this.count - 1 ? undefined : this.points[shard]!,
    };
  }

  /** The shard that owns `key`. */
  shardOf(key: Buffer): number {
    let lo = 0;
    let hi = this.points.length;
    // The number of points <= key.
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Buffer.compare(this.points[mid]!, key) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The shards an etcd range (key, range_end) touches, ascending: empty `rangeEnd` is one key,
   * `"\0"` every key from `key`. An empty range (key >= end) touches none.
   */
  shardsOf(key: Buffer, rangeEnd: Buffer): number[] {
    const first = this.shardOf(key);
    if (rangeEnd.length === 0) return [first];
    let last: number;
    if (isInfinity(rangeEnd)) last = this.count - 1;
    else {
      if (Buffer.compare(key, rangeEnd) >= 0) return [];
      // The last shard whose start is below rangeEnd.
      last = 0;
      for (let i = 0; i < this.points.length; i++)
        if (Buffer.compare(this.points[i]!, rangeEnd) < 0) last = i + 1;
    }
    const out: number[] = [];
    for (let s = first; s <= last; s++) out.push(s);
    return out;
  }

  /** The part of the range (key, range_end) inside `shard`, as an etcd (key, range_end). */
  clip(key: Buffer, rangeEnd: Buffer, shard: number): { key: Buffer; rangeEnd: Buffer } {
    if (rangeEnd.length === 0) return { key, rangeEnd };
    const { start, end } = this.bounds(shard);
    const k = Buffer.compare(key, start) >= 0 ? key : start;
    let e: Buffer;
    if (end === undefined) e = rangeEnd;
    else if (isInfinity(rangeEnd) || Buffer.compare(rangeEnd, end) > 0) e = end;
    else e = rangeEnd;
    return { key: k, rangeEnd: e };
  }
}

export { infinity as fromKeyEnd };
