/**
 * Words for the built-in jobs: maximal runs of Unicode letters (`\p{L}+`), case kept.
 *
 * A scan over UTF-16 code units rather than `text.matchAll(/\p{L}+/gu)`: the regular
 * expression allocates a match array per word, and on a 13 MB split that garbage, not the
 * matching, is most of a map task's time (and, with several workers, of their GC threads
 * competing for the same cores). The result is the same, word for word.
 */

const letterPattern = /^\p{L}$/u;

/** Per BMP code unit: 0 not yet known, 1 a letter, 2 not a letter. */
const bmpClass = new Uint8Array(0x10000);
for (let c = 0; c < 128; c++) {
  bmpClass[c] = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) ? 1 : 2;
}

function isBmpLetter(c: number): boolean {
  let k = bmpClass[c]!;
  if (k === 0) {
    k = letterPattern.test(String.fromCharCode(c)) ? 1 : 2;
    bmpClass[c] = k;
  }
  return k === 1;
}

const astralLetters = new Map<number, boolean>();

function isAstralLetter(codePoint: number): boolean {
  let known = astralLetters.get(codePoint);
  if (known === undefined) {
    known = letterPattern.test(String.fromCodePoint(codePoint));
    astralLetters.set(codePoint, known);
  }
  return known;
}

/** Calls `onWord` with each word of `text`, in order. */
export function forEachWord(text: string, onWord: (word: string) => void): void {
  const n = text.length;
  let start = -1;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    let width = 1;
    let letter: boolean;
    if (c < 0xd800 || c > 0xdfff) {
      letter = isBmpLetter(c);
    } else if (c <= 0xdbff && i + 1 < n) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        width = 2;
        letter = isAstralLetter(((c - 0xd800) << 10) + (low - 0xdc00) + 0x10000);
      } else {
        letter = false; // a lone surrogate is no letter
      }
    } else {
      letter = false;
    }
    if (letter) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      onWord(text.slice(start, i));
      start = -1;
    }
    i += width;
  }
  if (start >= 0) onWord(text.slice(start, n));
}
