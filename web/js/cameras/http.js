// JSON over HTTP for the cameras and events pages. Errors come back as {"error": "..."} and are thrown as the
// live page's ApiError / NetworkError, so the pages show the server's own words.

import { ApiError, NetworkError } from "../api.js";

const UNREACHABLE = "The server could not be reached. Check that `har-stream serve` is running.";

/** The server's one-line error, or a line naming the status when the body is not the usual JSON. */
function errorFromBody(text, status, statusText = "") {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string" && body.error) return new ApiError(body.error, status);
  } catch {
    // not JSON: fall through to the status line
  }
  return new ApiError(`The server answered ${status} ${statusText}`.trim() + ".", status);
}

/**
 * fetch `path` and parse its JSON reply; `body` (an object) is sent as JSON.
 * @param {string} path
 * @param {{method?: string, body?: object, signal?: AbortSignal}} options
 */
export async function requestJson(path, { method = "GET", body, signal } = {}) {
  const init = { method, cache: "no-store", signal };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new NetworkError(UNREACHABLE);
  }
  const text = await response.text();
  if (!response.ok) throw errorFromBody(text, response.status, response.statusText);
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`The server sent a reply that is not JSON (from ${path}).`, response.status);
  }
}

/** ws:// or wss:// for a path of this server. */
export function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
