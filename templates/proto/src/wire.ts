import { Greeting } from "./gen/quorum/__protoname__/v1/__protoname__.js";

export type { Greeting };

/** Encodes a Greeting for the wire (protobuf, from proto/quorum/__protoname__/v1/__protoname__.proto). */
export function encodeGreeting(greeting: Greeting): Uint8Array {
  return Greeting.encode(greeting).finish();
}

/** Decodes a Greeting; bytes that are not one throw (callers drop and count them). */
export function decodeGreeting(bytes: Uint8Array): Greeting {
  return Greeting.decode(bytes);
}
