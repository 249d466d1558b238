export declare const distEntry: string;
export declare function distBuilt(): boolean;
export declare function freePort(): Promise<number>;

export interface NodeStatus {
  readonly role: string;
  readonly term: number;
  readonly leader: string | undefined;
  readonly commit: number;
  readonly applied: number;
  readonly count: number;
  readonly digest: string;
  readonly lastIndex: number;
}

export interface ProposeReport {
  readonly committed: number;
  readonly failed: number;
  readonly errors: Record<string, number>;
  readonly elapsedMs: number;
  readonly p50us: number;
  readonly p90us: number;
  readonly p99us: number;
  readonly maxUs: number;
  readonly indexes?: [number, string][];
}

export declare class ProcessCluster {
  constructor(options?: {
    size?: number;
    mode?: "record" | "count";
    execArgv?: Record<string, string[]>;
    stdio?: "inherit" | "ignore";
  });
  readonly dir: string;
  readonly ids: string[];
  start(): Promise<void>;
  spawn(id: string): Promise<void>;
  alive(id: string): boolean;
  liveIds(): string[];
  pid(id: string): number | undefined;
  call(id: string, op: "status"): Promise<NodeStatus>;
  call(
    id: string,
    op: "propose",
    args: {
      count?: number;
      durationMs?: number;
      concurrency: number;
      bytes?: number;
      timeoutMs?: number;
      prefix?: string;
    },
  ): Promise<ProposeReport>;
  call(id: string, op: "applied"): Promise<{ commands: [number, string][]; applied: number }>;
  call(id: string, op: string, args?: Record<string, unknown>): Promise<Record<string, unknown>>;
  kill(id: string): Promise<void>;
  freeze(id: string): void;
  statuses(): Promise<Record<string, NodeStatus>>;
  waitForLeader(timeoutMs?: number, exclude?: string): Promise<string>;
  waitApplied(index: number, timeoutMs?: number): Promise<Record<string, NodeStatus>>;
  destroy(): Promise<void>;
}
