// One camera's video in the browser: a receive-only WebRTC peer to POST /api/streams/{name}/viewer.
// Non-trickle like the live page's peer (web/js/webrtc.js): the offer goes out once ICE gathering is
// complete, so signalling is one POST. The server relays its own decode of the camera, so the track outlives
// the camera's reconnects; what can fail is this peer. A failed or closed peer is offered again with backoff
// while the camera is live; while it is not, the viewer waits and starts over when the camera comes back live.

import { TimerSet } from "../timers.js";
import { DISCONNECT_GRACE_MS, gatherOffer, offlinePeerConnection } from "../webrtc.js";
import { postViewerOffer } from "./streams_api.js";

const CONNECT_TIMEOUT_MS = 15000; // answer set but never connected: treat as failed
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];

/**
 * state: "idle" (not wanted) | "connecting" | "connected" (track received, peer up) | "retrying" | "failed"
 * (the server refused the offer and waits for the camera to come back live) — shown as the tile's data-video.
 */
export class CameraViewer {
  /**
   * @param {string} name the camera
   * @param {HTMLVideoElement} video where the track plays
   * @param {(state: string, detail: string) => void} onState
   */
  constructor(name, video, onState) {
    this.name = name;
    this.video = video;
    this.onState = onState;
    this.pc = null;
    this.wanted = false;
    this.closed = false;
    this.attempt = 0;
    this.timers = new TimerSet();
    this.state = "idle";
    this.generation = 0; // bumps with each peer, so a late answer for an old one is dropped
  }

  /**
   * Follow the camera: `live` true while it is live. Becoming live starts a peer (at once, resetting the
   * backoff) unless one is up or on its way; a peer that is up stays up while the camera reconnects.
   */
  follow(live) {
    if (this.closed) return;
    const wasWanted = this.wanted;
    this.wanted = live;
    if (!live) {
      if (this.state === "retrying" && this.timers.size) { // no offers while the camera is down: wait for live
        this.timers.clear();
        this.set("retrying", "the video reconnects when the camera is live again");
      }
      return;
    }
    if (!wasWanted && !this.peerAlive()) {
      this.attempt = 0;
      this.timers.clear();
      this.connect();
    } else if (this.state === "idle") {
      this.connect();
    }
  }

  peerAlive() {
    const state = this.pc?.connectionState;
    return this.pc !== null && state !== "failed" && state !== "closed";
  }

  async connect() {
    if (this.closed) return;
    this.dropPeer();
    const generation = ++this.generation;
    this.set("connecting", this.attempt ? `connecting the video again (try ${this.attempt + 1})…`
      : "connecting the video…");
    const pc = offlinePeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (event) => {
      if (generation !== this.generation) return;
      this.video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      this.video.play().catch(() => {}); // muted autoplay is allowed; a refusal leaves the poster, not an error
    });
    pc.addEventListener("connectionstatechange", () => this.connectionChanged(pc, generation));
    try {
      await gatherOffer(pc);
      if (generation !== this.generation || this.closed) return;
      const answer = await postViewerOffer(this.name, { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
      if (generation !== this.generation || this.closed) return;
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    } catch (err) {
      if (generation !== this.generation || this.closed) return;
      // 404: the camera is gone (its tile goes too); other 4xx but 429: this offer will not do better later.
      const status = err?.status ?? 0;
      const hopeless = status >= 400 && status < 500 && status !== 429;
      this.lose(err?.message || "the video connection could not be set up", hopeless);
      return;
    }
    this.timers.later(CONNECT_TIMEOUT_MS, () => {
      if (generation === this.generation && pc.connectionState !== "connected") {
        this.lose("the video connection did not open in time");
      }
    });
  }

  connectionChanged(pc, generation) {
    if (generation !== this.generation || this.closed) return;
    const state = pc.connectionState;
    if (state === "connected") {
      this.attempt = 0;
      this.timers.clear();
      this.set("connected", "");
    } else if (state === "failed" || state === "closed") {
      this.lose(`the video connection ${state === "failed" ? "failed" : "closed"}`);
    } else if (state === "disconnected") {
      this.timers.later(DISCONNECT_GRACE_MS, () => {
        if (generation === this.generation && pc.connectionState === "disconnected") {
          this.lose("the video connection dropped");
        }
      });
    }
  }

  /** The peer is lost: offer again with backoff while the camera is live; otherwise wait for it to be. */
  lose(reason, hopeless = false) {
    if (this.closed) return;
    this.dropPeer();
    this.timers.clear();
    if (hopeless) {
      this.set("failed", reason);
      return;
    }
    if (!this.wanted) {
      this.set("retrying", `${reason}; it reconnects when the camera is live again`);
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.set("retrying", `${reason}; trying again in ${Math.round(delay / 1000)} s`);
    this.timers.later(delay, () => this.connect());
  }

  dropPeer() {
    const pc = this.pc;
    this.pc = null;
    this.generation += 1;
    if (pc) {
      try {
        pc.close();
      } catch {
        // already closed
      }
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.timers.clear();
    this.dropPeer();
    this.video.srcObject = null;
  }

  set(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }
}
