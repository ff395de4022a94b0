// @ts-check
/** Small text helpers shared by the views. */

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** A unix time (seconds) as "3 minutes ago". @param {number | null | undefined} seconds */
export function ago(seconds) {
  if (!seconds) return "";
  const diff = seconds - Date.now() / 1000;
  const abs = Math.abs(diff);
  if (abs < 60) return relative.format(Math.round(diff), "second");
  if (abs < 3600) return relative.format(Math.round(diff / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(diff / 3600), "hour");
  return relative.format(Math.round(diff / 86400), "day");
}

/** @param {number | null | undefined} seconds */
export function dateTime(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

/** @param {number} n @param {string} one @param {string} [many] */
export function count(n, one, many = `${one}s`) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** @param {string | null | undefined} title */
export function titleOf(title) {
  return title && title.trim() ? title : "Untitled conversation";
}

export const ROLE_NAMES = /** @type {Record<string, string>} */ ({
  user: "User",
  assistant: "Assistant",
  system: "System",
  developer: "Developer",
  tool: "Tool",
});
