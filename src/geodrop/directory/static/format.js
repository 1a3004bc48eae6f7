// How sizes, rates and times read on the page.

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Bytes in decimal units, as file managers show them: "20.0 MB". */
export function formatBytes(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** A duration in seconds, roughly: "45 s", "3 min", "2 h 5 min". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  return `${Math.round(hours / 24)} days`;
}

/** How long ago a Unix time was: "just now", "5 min ago". */
export function formatAge(unixSeconds, now = Date.now() / 1000) {
  const age = now - unixSeconds;
  return age < 45 ? 'just now' : `${formatDuration(age)} ago`;
}

/** How long until a Unix time: "in 6 days", or "expired". */
export function formatUntil(unixSeconds, now = Date.now() / 1000) {
  const left = unixSeconds - now;
  return left <= 0 ? 'expired' : `in ${formatDuration(left)}`;
}

/** A Unix time as a local date and time, for title attributes. */
export function formatTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString();
}
