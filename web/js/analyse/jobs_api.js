// The server's jobs API (POST/GET/DELETE /api/jobs…). Errors come back as {"error": "..."} and are thrown as
// the live page's ApiError / NetworkError, so the page shows the server's own words.

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

async function request(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { cache: "no-store", ...init });
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

const jobPath = (id) => `/api/jobs/${encodeURIComponent(id)}`;

/** @returns {Promise<{jobs: object[], concurrency: number, queued: number, running: number}>} */
export function listJobs(signal) {
  return request("/api/jobs", { signal });
}

/** One job; it carries "result" once it is done. */
export function getJob(id, signal) {
  return request(jobPath(id), { signal });
}

/** Removes a finished job with its files (→ {deleted: id}); a queued/running one is cancelled instead. */
export function deleteJob(id) {
  return request(jobPath(id), { method: "DELETE" });
}

/** Cancels a queued/running job (→ the job, "cancelled"); a job that finished meanwhile is left as it is. */
export function cancelJob(id) {
  return request(`${jobPath(id)}/cancel`, { method: "POST" });
}

/** A job for a URL: JSON body {url, ...options}. */
export function createUrlJob(url, options, signal) {
  return request("/api/jobs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ url, ...options }),
    signal,
  });
}

/**
 * Upload a file as a new job (multipart: `video` plus option fields). XMLHttpRequest rather than fetch: it
 * reports upload progress, which is most of the wait for a large file.
 * @param {File} file
 * @param {Record<string, string>} fields option fields, already as text
 * @param {{onProgress?: (fraction: number) => void, signal?: AbortSignal}} hooks
 */
export function uploadJob(file, fields, { onProgress, signal } = {}) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append("video", file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress?.(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(errorFromBody(xhr.responseText, xhr.status, xhr.statusText));
        return;
      }
      try {
        resolve(JSON.parse(xhr.responseText));
      } catch {
        reject(new ApiError("The server sent a reply that is not JSON (from /api/jobs).", xhr.status));
      }
    });
    // The server may refuse a too-large upload and close the connection while the browser is still sending.
    xhr.addEventListener("error", () => reject(new NetworkError(
      "The upload was cut off: the server could not be reached or closed the connection "
      + "(a file over the server's size limit is refused while it uploads).")));
    xhr.addEventListener("abort", () => reject(new DOMException("The upload was stopped.", "AbortError")));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(form);
  });
}
