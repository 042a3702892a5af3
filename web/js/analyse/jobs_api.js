// The server's jobs API (POST/GET/DELETE /api/jobs…). Errors come back as {"error": "..."} and are thrown as
// ApiError / NetworkError (web/js/api.js), so the page shows the server's own words.

import { errorFromBody, NetworkError, parseReply, requestJson } from "../api.js";
import { ensureSession, needsSignIn, signIn } from "../auth.js";

const jobPath = (id) => `/api/jobs/${encodeURIComponent(id)}`;

/** @returns {Promise<{jobs: object[], concurrency: number, queued: number, running: number}>} */
export function listJobs(signal) {
  return requestJson("/api/jobs", { signal });
}

/** One job; it carries "result" once it is done. */
export function getJob(id, signal) {
  return requestJson(jobPath(id), { signal });
}

/** Removes a finished job with its files (→ {deleted: id}); a queued/running one is cancelled instead. */
export function deleteJob(id) {
  return requestJson(jobPath(id), { method: "DELETE" });
}

/** Cancels a queued/running job (→ the job, "cancelled"); a job that finished meanwhile is left as it is. */
export function cancelJob(id) {
  return requestJson(`${jobPath(id)}/cancel`, { method: "POST" });
}

/** A job for a URL: JSON body {url, ...options}. */
export function createUrlJob(url, options, signal) {
  return requestJson("/api/jobs", { method: "POST", body: { url, ...options }, signal });
}

/**
 * Upload a file as a new job (multipart: `video` plus option fields). XMLHttpRequest rather than fetch: it
 * reports upload progress, which is most of the wait for a large file.
 * @param {File} file
 * @param {Record<string, string>} fields option fields, already as text
 * @param {{onProgress?: (fraction: number) => void, signal?: AbortSignal}} hooks
 */
export async function uploadJob(file, fields, { onProgress, signal } = {}) {
  await ensureSession(); // sign in before sending a large file, not after it was refused
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
      if (needsSignIn(xhr.status)) { // the session ended meanwhile (a new token): sign in, send again
        signIn(errorFromBody(xhr.responseText, xhr.status).message)
          .then(() => uploadJob(file, fields, { onProgress, signal })).then(resolve, reject);
        return;
      }
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(errorFromBody(xhr.responseText, xhr.status, xhr.statusText));
        return;
      }
      try {
        resolve(parseReply(xhr.responseText, "/api/jobs", xhr.status));
      } catch (err) {
        reject(err);
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
