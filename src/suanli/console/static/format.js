// Money and time as the page shows them. Money is the API's exact decimal string behind a "¥"; where the
// page must add amounts it adds the integer nano values as BigInt and formats them as the API does
// (nano_to_cny: 9 decimals, trailing zeros trimmed). No float ever touches an amount.

const NANO_PER_CNY = 1000000000n;

export function cny(text) {
  return `¥${text}`;
}

/** nano-CNY (BigInt, or an integer string) as the API's decimal string: 1500000n -> "0.0015". */
export function nanoToCny(nano) {
  const value = BigInt(nano);
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  const whole = abs / NANO_PER_CNY;
  const frac = abs % NANO_PER_CNY;
  if (frac === 0n) return `${sign}${whole}`;
  return `${sign}${whole}.${frac.toString().padStart(9, "0").replace(/0+$/, "")}`;
}

export function sumNano(values) {
  return values.reduce((total, value) => total + BigInt(value), 0n);
}

export function integer(value, lang) {
  return value === null || value === undefined ? "—" : new Intl.NumberFormat(lang).format(value);
}

export function dateTime(ms, lang) {
  if (ms === null || ms === undefined) return "—";
  return new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" }).format(new Date(ms));
}

export function date(ms, lang) {
  if (ms === null || ms === undefined) return "—";
  return new Intl.DateTimeFormat(lang, { dateStyle: "medium" }).format(new Date(ms));
}

/** "1d 02:03:04" until `ms`, counted from `nowMs`; never negative. */
export function countdown(ms, nowMs, dayWord) {
  let left = Math.max(0, Math.floor((ms - nowMs) / 1000));
  const days = Math.floor(left / 86400);
  left -= days * 86400;
  const hh = String(Math.floor(left / 3600)).padStart(2, "0");
  const mm = String(Math.floor((left % 3600) / 60)).padStart(2, "0");
  const ss = String(left % 60).padStart(2, "0");
  return `${days > 0 ? `${days}${dayWord} ` : ""}${hh}:${mm}:${ss}`;
}

/** The local date and hour of an API bucket's ISO start ("2026-12-02T04:00:00+08:00"), as written. */
export function bucketLabel(iso, period) {
  const [day, time] = iso.split("T");
  const monthDay = day.slice(5);
  return period === "hour" ? `${monthDay} ${time.slice(0, 5)}` : monthDay;
}

export function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "Asia/Shanghai";
}
