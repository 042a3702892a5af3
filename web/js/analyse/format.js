// How the analysis page writes times, sizes and dates.

/** Media time for tables and tooltips: "1.60" (seconds, two decimals). */
export function formatSeconds(t) {
  return Number.isFinite(t) ? t.toFixed(2) : "–";
}

/** A duration for people: "3.2 s", "1:05", "1:02:05". */
export function formatDuration(t) {
  if (!Number.isFinite(t)) return "–";
  if (t < 60) return `${t < 10 ? t.toFixed(1) : Math.round(t)} s`;
  const s = Math.round(t);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** A timeline axis tick: "0", "1.5", "1:30". */
export function formatTick(t, step) {
  if (t >= 60) return formatDuration(t);
  return step < 1 ? t.toFixed(1) : String(Math.round(t));
}

/** "1.2 MB" */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 || value >= 100 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** An ISO time as the browser's local date and time, short ("26 Nov, 12:00"). */
export function formatWhen(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/** A ×realtime figure: "7.9× realtime". */
export function formatRealtime(x) {
  return Number.isFinite(x) && x > 0 ? `${x >= 10 ? Math.round(x) : x.toFixed(1)}× realtime` : "";
}
