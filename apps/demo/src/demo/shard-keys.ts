import { ShardMap } from "@quorum/kv";

/**
 * One readable key prefix per shard, so that a workload can put keys in every shard on
 * purpose. With the default split (see @quorum/kv's ShardMap) keys starting with "/" or a
 * digit are in shard 0, upper case in shard 1, lower case in shard 2 of 3: `word` "bank"
 * gives "/bank/", "Bank/" and "bank/". Other shard counts fall back to "<c>bank/" with the
 * first printable character c of each shard.
 */
export function shardPrefixes(shards: number, word: string): string[] {
  const map = ShardMap.ofCount(shards);
  const shardOf = (prefix: string) => map.shardOf(Buffer.from(prefix));
  const candidates = [`/${word}/`, `${word[0]!.toUpperCase()}${word.slice(1)}/`, `${word}/`];
  for (let c = 0x21; c <= 0x7e; c++) candidates.push(`${String.fromCharCode(c)}${word}/`);
  return Array.from({ length: shards }, (_, shard) => {
    const prefix = candidates.find((p) => shardOf(p) === shard);
    // Unreachable with the default split points: each shard starts at a printable character.
    if (prefix === undefined) throw new Error(`no printable key prefix falls in shard ${shard}`);
    return prefix;
  });
}
