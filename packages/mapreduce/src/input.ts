import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { isAbsolute, join, resolve, sep } from "node:path";
import type { MapSplit } from "./core/task-table.js";
import { MapReduceError } from "./errors.js";

export interface InputFile {
  /** Absolute path. */
  path: string;
  /** The name as the user gave it (or as the glob matched it). */
  fileName: string;
  size: number;
}

const magic = /[*?[]/;

function segmentRegExp(segment: string): RegExp {
  let re = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = segment.indexOf("]", i + 1);
      if (end === -1) re += "\\[";
      else {
        re += `[${segment
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

function listDir(dir: string): { name: string; isDir: boolean }[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).map((d) => {
      let isDir = d.isDirectory();
      if (d.isSymbolicLink()) {
        try {
          isDir = statSync(join(dir, d.name)).isDirectory();
        } catch {
          isDir = false;
        }
      }
      return { name: d.name, isDir };
    });
  } catch {
    return [];
  }
}

/** A small glob: `*`, `?`, `[abc]` within a path segment, and `**` for any depth of folders. */
export function glob(pattern: string, cwd = process.cwd()): string[] {
  const absolute = isAbsolute(pattern);
  const segments = pattern.split("/").filter((s, i) => s !== "" || i === 0);
  const start = absolute ? "/" : "";
  const parts = absolute ? segments.slice(1) : segments;
  const out = new Set<string>();
  const walk = (rel: string, i: number): void => {
    const dirPath = resolve(cwd, rel === "" ? "." : rel);
    if (i === parts.length) {
      out.add(rel);
      return;
    }
    const seg = parts[i]!;
    const join2 = (name: string) => (rel === "" ? name : rel.endsWith("/") ? rel + name : `${rel}/${name}`);
    if (seg === "**") {
      walk(rel, i + 1);
      for (const e of listDir(dirPath)) if (e.isDir && !e.name.startsWith(".")) walk(join2(e.name), i);
      return;
    }
    if (!magic.test(seg)) {
      walk(join2(seg), i + 1);
      return;
    }
    const re = segmentRegExp(seg);
    for (const e of listDir(dirPath)) {
      if (e.name.startsWith(".") && !seg.startsWith(".")) continue;
      if (re.test(e.name) && (i === parts.length - 1 || e.isDir)) walk(join2(e.name), i + 1);
    }
  };
  walk(start, 0);
  return [...out].sort();
}

/**
 * Expands the user's inputs (paths or globs) into files. Each pattern must match at least
 * one regular file, and every file must be readable.
 */
export function expandInputs(patterns: readonly string[], cwd = process.cwd()): InputFile[] {
  if (patterns.length === 0) throw new MapReduceError("NO_INPUT", "no input files given");
  const files = new Map<string, InputFile>();
  for (const pattern of patterns) {
    const names = magic.test(pattern) ? glob(pattern, cwd) : [pattern];
    let matched = 0;
    for (const name of names) {
      const path = resolve(cwd, name);
      let size: number;
      try {
        const st = statSync(path);
        if (st.isDirectory()) {
          if (magic.test(pattern)) continue;
          throw new MapReduceError("UNREADABLE_INPUT", `input ${name} is a directory, not a file`);
        }
        size = st.size;
        closeSync(openSync(path, "r"));
      } catch (error) {
        if (error instanceof MapReduceError) throw error;
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" && !magic.test(pattern)) {
          throw new MapReduceError("NO_INPUT", `no file matches ${pattern}`);
        }
        throw new MapReduceError("UNREADABLE_INPUT", `cannot read input ${name}: ${code ?? String(error)}`);
      }
      matched++;
      if (!files.has(path)) files.set(path, { path, fileName: name.split(sep).join("/"), size });
    }
    if (matched === 0) throw new MapReduceError("NO_INPUT", `no file matches ${pattern}`);
  }
  return [...files.values()];
}

/** The offset just past the first newline at or after `from`, or the file size. */
function nextLineStart(fd: number, from: number, size: number): number {
  const buf = Buffer.allocUnsafe(64 * 1024);
  let pos = from;
  while (pos < size) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
    if (n <= 0) break;
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl !== -1) return pos + nl + 1;
    pos += n;
  }
  return size;
}

/**
 * One map task per file; a file larger than `splitBytes` is cut into pieces of about that
 * size, each ending just after a newline so no line (and no UTF-8 character) is cut.
 */
export function computeSplits(files: readonly InputFile[], splitBytes: number): MapSplit[] {
  if (!(splitBytes >= 1))
    throw new MapReduceError("BAD_OPTION", `split size must be >= 1 byte, got ${splitBytes}`);
  const splits: MapSplit[] = [];
  for (const file of files) {
    if (file.size <= splitBytes) {
      splits.push({ path: file.path, fileName: file.fileName, offset: 0, length: file.size });
      continue;
    }
    const fd = openSync(file.path, "r");
    try {
      let offset = 0;
      while (offset < file.size) {
        const end =
          offset + splitBytes >= file.size
            ? file.size
            : nextLineStart(fd, offset + splitBytes - 1, file.size);
        splits.push({ path: file.path, fileName: file.fileName, offset, length: end - offset });
        offset = end;
      }
    } finally {
      closeSync(fd);
    }
  }
  return splits;
}
