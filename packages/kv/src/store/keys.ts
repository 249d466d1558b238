/**
 * Key ranges as etcd encodes them: an empty `rangeEnd` is the single key; `"\0"` means every
 * key >= key; anything else is the half-open interval [key, rangeEnd).
 */
export type KeyRange =
  | { readonly kind: "one"; readonly key: Buffer }
  | { readonly kind: "from"; readonly key: Buffer }
  | { readonly kind: "between"; readonly key: Buffer; readonly end: Buffer };

export function keyRange(key: Buffer, rangeEnd: Buffer): KeyRange {
  if (rangeEnd.length === 0) return { kind: "one", key };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { kind: "from", key };
  return { kind: "between", key, end: rangeEnd };
}

/** Whether `key` is in the range (for watch filtering and txn range compares). */
export function inRange(range: KeyRange, key: Buffer): boolean {
  switch (range.kind) {
    case "one":
      return Buffer.compare(key, range.key) === 0;
    case "from":
      return Buffer.compare(key, range.key) >= 0;
    case "between":
      return Buffer.compare(key, range.key) >= 0 && Buffer.compare(key, range.end) < 0;
  }
}

/** The range_end that selects every key with this prefix (etcdctl's `--prefix`). */
export function prefixEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = prefix[i]! + 1;
      return end;
    }
  }
  return Buffer.from([0]);
}
