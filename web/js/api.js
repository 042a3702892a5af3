// The server's HTTP API (GET /api/models, POST /api/webrtc/offer). Errors come back as {"error": "..."}:
// the page shows that text as is, because the server already says what went wrong and what to do.

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

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string" && body.error) return body.error;
  } catch {
    // not JSON: fall through to the status line
  }
  return `The server answered ${response.status} ${response.statusText || ""}`.trim() + ".";
}

async function request(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { cache: "no-store", ...init });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new NetworkError("The server could not be reached. Check that `har-stream serve` is running.");
  }
  if (!response.ok) throw new ApiError(await errorText(response), response.status);
  try {
    return await response.json();
  } catch {
    throw new ApiError(`The server sent a reply that is not JSON (from ${path}).`, response.status);
  }
}

/** @returns {Promise<{default: string, label_sets: string[], models: object[]}>} */
export function fetchModels(signal) {
  return request("/api/models", { signal });
}

/**
 * Send the browser's offer (ICE gathering complete) with the chosen model and labels.
 * @param {{sdp: string, type: string, model?: string, labels?: string|null, custom_labels?: string[], stride?: number}} body
 * @returns {Promise<{sdp: string, type: string, peer_id: string}>}
 */
export function postOffer(body, signal) {
  return request("/api/webrtc/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}
