export { encodeCommand } from "./command.js";
export { EtcdError, etcdErrors, isEtcdError } from "./errors.js";
export type { KvServer, KvServiceOptions, MemberInfo } from "./server/kv-server.js";
export { KvService, startKvService } from "./server/kv-server.js";
export { defaultMaxRequestBytes, defaultMaxTxnOps } from "./server/validate.js";
export type { KeyRange } from "./store/keys.js";
export { inRange, keyRange, prefixEnd } from "./store/keys.js";
export type { ApplyResult, KvStoreOptions, RevisionChanges } from "./store/kv-store.js";
export { KvStore } from "./store/kv-store.js";
