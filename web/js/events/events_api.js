// The server's events API (GET /api/events…): recorded action events of the cameras, newest first.

import { requestJson } from "../api.js";

/**
 * @param {{stream?: string, label?: string, since?: string, until?: string, state?: string, limit?: number,
 *          offset?: number}} query empty values are left out
 * @returns {Promise<{events: object[], total: number}>}
 */
export function listEvents(query, signal) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const search = params.toString();
  return requestJson(`/api/events${search ? `?${search}` : ""}`, { signal });
}

/** One event (fresh), or an ApiError with status 404 when it is gone. */
export function getEvent(id, signal) {
  return requestJson(`/api/events/${encodeURIComponent(id)}`, { signal });
}
