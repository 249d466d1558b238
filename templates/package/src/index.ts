/**
 * The public API of @quorum/__name__: everything this file exports, and nothing else
 * (`package.json` blocks imports of internal files). Replace `greet` with the package's
 * first real entry point.
 */

/**
 * A greeting from @quorum/__name__. Rejects a blank `who` with a clear error, as every
 * public entry point validates its input (DESIGN.md, rule 5).
 */
export function greet(who: string): string {
  if (who.trim() === "") throw new RangeError("greet: `who` must not be blank");
  return `hello ${who.trim()}, from @quorum/__name__`;
}
