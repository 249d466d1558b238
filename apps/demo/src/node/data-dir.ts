import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, type NodeConfig } from "./config.js";

/** What a data dir was created with; a node started with other values would misread it. */
interface DataDirLayout {
  consensus: NodeConfig["consensus"];
  shards: number;
}

/**
 * Records the layout in `<data-dir>/quorum.json` on first start and refuses to start on a
 * data dir made with another consensus protocol or shard count (its files would not match
 * the key ranges, or would be ignored), with a message that says which.
 */
export function checkDataDir(config: NodeConfig): void {
  const path = join(config.dataDir, "quorum.json");
  const wanted: DataDirLayout = { consensus: config.consensus, shards: config.shards };
  if (!existsSync(path)) {
    writeFileSync(path, `${JSON.stringify(wanted)}\n`);
    return;
  }
  let found: Partial<DataDirLayout>;
  try {
    found = JSON.parse(readFileSync(path, "utf8")) as Partial<DataDirLayout>;
  } catch (err) {
    throw new ConfigError(
      `${path} is not valid JSON (${(err as Error).message}); is this a Quorum data dir?`,
    );
  }
  if (found.consensus !== wanted.consensus || found.shards !== wanted.shards) {
    throw new ConfigError(
      `data dir ${config.dataDir} was created with --consensus ${found.consensus} --shards ${found.shards}; ` +
        `this node was started with --consensus ${wanted.consensus} --shards ${wanted.shards}`,
    );
  }
}
