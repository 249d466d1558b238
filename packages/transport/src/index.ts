export type { Clock, Timer } from "./clock.js";
export { systemClock } from "./clock.js";
export type { MessageHandler, NodeId, PeerInfo, Transport, TransportErrorCode, TransportStats } from "./transport.js";
export { emptyStats, TransportError } from "./transport.js";
