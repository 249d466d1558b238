import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCa {
  dir: string;
  caFile: string;
  /** Issues a certificate for `name`, valid as server and client for IP 127.0.0.1. */
  issue(name: string): { certFile: string; keyFile: string };
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** A throwaway CA made with the openssl CLI in a temp dir (EC keys: fast to generate). */
export function makeTestCa(name: string): TestCa {
  const dir = mkdtempSync(join(tmpdir(), `quorum-tls-${name}-`));
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(dir, [
    "req",
    "-x509",
    ...ecKey,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "1",
    "-subj",
    `/CN=${name}`,
  ]);
  writeFileSync(
    join(dir, "ext.cnf"),
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
  );
  return {
    dir,
    caFile: join(dir, "ca.crt"),
    issue(node) {
      openssl(dir, [
        "req",
        "-new",
        ...ecKey,
        "-keyout",
        `${node}.key`,
        "-out",
        `${node}.csr`,
        "-subj",
        `/CN=${node}`,
      ]);
      openssl(dir, [
        "x509",
        "-req",
        "-in",
        `${node}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        `${node}.crt`,
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
      ]);
      readFileSync(join(dir, `${node}.crt`)); // fail here, clearly, if openssl produced nothing
      return { certFile: join(dir, `${node}.crt`), keyFile: join(dir, `${node}.key`) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
