import { type NodeFlags, nodeConfigFromFlags } from "../node/config.js";
import { startNode } from "../node/start-node.js";

/** `quorum node`: runs one node in the foreground until SIGTERM or SIGINT. */
export async function runNode(flags: NodeFlags): Promise<void> {
  const config = nodeConfigFromFlags(flags);
  const node = await startNode(config);
  process.stdout.write(
    `${config.name} serving etcd clients on ${node.clientAddress}, peers on ${node.peerAddress}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`${config.name}: ${signal}, stopping\n`);
      node.stop().then(resolve, (err: Error) => {
        process.stderr.write(`${config.name}: error while stopping: ${err.message}\n`);
        resolve();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
