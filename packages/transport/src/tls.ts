import { readFileSync } from "node:fs";
import { type ChannelCredentials, credentials, ServerCredentials } from "@grpc/grpc-js";
import { TransportError } from "./transport.js";

/**
 * Mutual TLS material, as PEM text/bytes or as file paths (one of each pair). Every node
 * has a certificate signed by the cluster's CA; servers demand client certificates, so
 * only holders of a certificate of that CA can open a stream.
 */
export interface TlsOptions {
  ca?: string | Buffer;
  caFile?: string;
  cert?: string | Buffer;
  certFile?: string;
  key?: string | Buffer;
  keyFile?: string;
}

/** The three PEM blobs, loaded. */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Resolves `TlsOptions` into PEM buffers, reading files; a missing piece is a clear error. */
export function loadTlsCredentials(options: TlsOptions): TlsMaterial {
  return {
    ca: pem("ca", options.ca, options.caFile),
    cert: pem("cert", options.cert, options.certFile),
    key: pem("key", options.key, options.keyFile),
  };
}

function pem(name: string, inline: string | Buffer | undefined, file: string | undefined): Buffer {
  if (inline !== undefined && file !== undefined) {
    throw new TransportError("INVALID_CONFIG", `tls: give either ${name} or ${name}File, not both`);
  }
  if (inline !== undefined) return Buffer.isBuffer(inline) ? inline : Buffer.from(inline);
  if (file === undefined)
    throw new TransportError("INVALID_CONFIG", `tls: ${name} or ${name}File is required`);
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TransportError(
      "INVALID_CONFIG",
      `tls: cannot read ${name}File ${file}: ${(err as Error).message}`,
    );
  }
}

/** Server credentials: TLS that requires and verifies client certificates, or plaintext. */
export function serverCredentials(tls: TlsOptions | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const { ca, cert, key } = loadTlsCredentials(tls);
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

/** Client credentials presenting our certificate and trusting only the cluster's CA, or plaintext. */
export function channelCredentials(tls: TlsOptions | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  const { ca, cert, key } = loadTlsCredentials(tls);
  return credentials.createSsl(ca, key, cert);
}
