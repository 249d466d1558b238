/**
 * FNV-1a over UTF-16 code units: stable across processes and machines (unlike a hash seeded
 * per process), which the default partition function needs.
 */
export function stableHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function defaultPartition(key: string, reduces: number): number {
  return stableHash(key) % reduces;
}
