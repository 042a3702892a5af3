// The server's cameras API (/api/streams…): list, add, remove, and the WebRTC viewer offer.

import { requestJson } from "../api.js";

const cameraPath = (name) => `/api/streams/${encodeURIComponent(name)}`;

/** @returns {Promise<{streams: object[], max_streams: number}>} */
export function listStreams(signal) {
  return requestJson("/api/streams", { signal });
}

/**
 * Start watching a camera (→ 201 with the camera JSON; it connects in the background).
 * @param {{name: string, url: string, model?: string, labels?: string, stride?: number, label_filter?: string[]}} spec
 */
export function addStream(spec) {
  return requestJson("/api/streams", { method: "POST", body: spec });
}

/** Stop watching a camera and forget it (→ 202 {deleted: name} at once; it stops in the background, and its name is 409 until it has). */
export function deleteStream(name) {
  return requestJson(cameraPath(name), { method: "DELETE" });
}

/** The browser's receive-only offer (ICE gathering complete) in, the server's answer out. */
export function postViewerOffer(name, offer, signal) {
  return requestJson(`${cameraPath(name)}/viewer`, { method: "POST", body: offer, signal });
}
