export function map() {
  return [];
}
