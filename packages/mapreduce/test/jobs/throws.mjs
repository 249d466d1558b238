// A job whose map throws on one file.
export function map(fileName, contents) {
  if (fileName.endsWith("bad.txt")) throw new Error(`cannot parse ${fileName}`);
  return contents
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => [w, "1"]);
}

export function reduce(_key, values) {
  return String(values.length);
}
