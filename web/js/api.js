// The server's HTTP API, shared by every page: JSON requests with the server's own error text, and the
// live page's calls (GET /api/models, POST /api/webrtc/offer). Errors come back as {"error": "..."}: the page
// shows that text as is, because the server already says what went wrong and what to do.

import { needsSignIn, signIn } from "./auth.js";

const UNREACHABLE = "The server could not be reached. Check that `har-stream serve` is running.";

/** The server answered with an error status; `message` is its own one-line explanation. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }

  /** Worth trying again later (overloaded, model still loading, server trouble), not a request to fix. */
  get retryable() {
    return this.status === 429 || this.status >= 500;
  }
}

/** The server could not be reached at all (down, restarting, network gone). */
export class NetworkError extends Error {
  constructor(message) {
    super(message);
    this.name = "NetworkError";
  }

  get retryable() {
    return true;
  }
}

/**
 * An error reply as an ApiError: the server's one-line error, or a line naming the status when the body is not
 * the usual JSON. Exported for XMLHttpRequest callers (uploads with progress), which read the body themselves.
 */
export function errorFromBody(text, status, statusText = "") {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string" && body.error) return new ApiError(body.error, status);
  } catch {
    // not JSON: fall through to the status line
  }
  return new ApiError(`The server answered ${status} ${statusText || ""}`.trim() + ".", status);
}

/** A successful reply's text as JSON, or an ApiError saying it was not JSON. */
export function parseReply(text, path, status) {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(`The server sent a reply that is not JSON (from ${path}).`, status);
  }
}

/**
 * fetch `path` and parse its JSON reply; `body` (an object) is sent as JSON. Throws ApiError for an error
 * status, NetworkError when the server cannot be reached, and lets an AbortError through. A 401 (the server
 * wants its token) shows the sign-in dialog (web/js/auth.js) and sends the request again once signed in.
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
  if (needsSignIn(response.status, path)) {
    await signIn(errorFromBody(text, response.status).message);
    return requestJson(path, { method, body, signal });
  }
  if (!response.ok) throw errorFromBody(text, response.status, response.statusText);
  return parseReply(text, path, response.status);
}

/** ws:// or wss:// for a path of this server. */
export function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** @returns {Promise<{default: string, label_sets: string[], models: object[]}>} */
export function fetchModels(signal) {
  return requestJson("/api/models", { signal });
}

/**
 * Send the browser's offer (ICE gathering complete) with the chosen model and labels.
 * @param {{sdp: string, type: string, model?: string, labels?: string|null, custom_labels?: string[], stride?: number}} body
 * @returns {Promise<{sdp: string, type: string, peer_id: string}>}
 */
export function postOffer(body, signal) {
  return requestJson("/api/webrtc/offer", { method: "POST", body, signal });
}
