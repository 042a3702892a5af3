// How the cameras and events pages write states, times and figures.

import { formatDuration } from "../analyse/format.js";

export const STATE_TEXT = {
  connecting: "connecting",
  live: "live",
  reconnecting: "reconnecting",
  failed: "failed",
  stopped: "stopped",
  waiting: "waiting for model",
  remote: "on another front end",  // --database: another front end holds its lease (owner)
};

/** What the video area says while there is no picture, by camera state. */
export const STATE_MESSAGE = {
  connecting: "Connecting to the camera…",
  live: "Starting the video…",
  reconnecting: "No picture from the camera: reconnecting…",
  failed: "The camera failed.",
  stopped: "The camera is stopped.",
  remote: "Watched by another front end sharing the database: open this page there to see its video.",
  waiting: "Waiting for the model to load…",
};

/** The corner note over a picture that is showing while the camera is not live (never "No picture"). */
export const PICTURE_NOTE = {
  moving: (state) => `${state[0].toUpperCase()}${state.slice(1)}…`,
  frozen: (state) => `Last picture received · ${state}…`,
};

function date(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

/** A wall-clock time, local: "13:00:05", with the date in front when it is not today ("26 Nov 13:00:05"). */
export function formatClock(iso) {
  const d = date(iso);
  if (!d) return "–";
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

/** How long ago `iso` was, for people: "12 s", "3:05", "1:02:05" (empty when unknown or in the future). */
export function formatSince(iso, now = Date.now()) {
  const d = date(iso);
  if (!d) return "";
  const s = (now - d.getTime()) / 1000;
  return s >= 0 ? formatDuration(Math.round(s)) : "";
}

export { formatDuration };

/** "1,234" */
export function formatCount(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}
