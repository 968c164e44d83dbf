/**
 * Strict ISO 8601 times, for every place that takes one from a user
 * (`reconcile_since`, `range_start`, bulk filters): `Date.parse` accepts "1"
 * (as 2001) and rolls 30 February over into March.
 */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/;

/**
 * An ISO 8601 time in ms: a date (`2026-11-01`, midnight UTC) or a date and
 * time with its zone (`2026-11-01T08:00:00Z`, `…+02:00`). Calendar fields are
 * checked (no 30 February, no hour 24): `Date.parse` would roll them over.
 */
export function parseIsoTime(s: string): number | null {
  const m = ISO_TIME.exec(s);
  if (m === null) return null;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  if (h !== undefined && zone === undefined) return null; // a time without a zone is ambiguous
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  const second = Number(sec ?? 0);
  const daysInMonth = [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return null;
  let offsetMin = 0;
  if (zone !== undefined && zone !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offsetMin = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om);
  }
  const ms = Math.floor(Number(frac ?? 0) * 1000);
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC: it maps years 0–99 to 1900–1999
  date.setUTCHours(hour, minute, second, ms);
  const utc = date.getTime() - offsetMin * 60_000;
  return Number.isFinite(utc) ? utc : null;
}
