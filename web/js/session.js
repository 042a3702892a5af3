// A live session: the camera, the current peer, and what keeps it alive. It reconnects a dropped peer with
// backoff (the camera stays on), measures round trip with pings, and keeps the rolling latency figures.
// It knows nothing of the DOM: it reports to a `ui` object (see view.js).

import { openCamera, stopCamera } from "./camera.js";
import { Rolling } from "./metrics.js";
import { LivePeer } from "./peer.js";

const PING_EVERY_MS = 1000;
const SILENCE_MS = 8000; // the server sends stats every second; this long without a word means it is gone
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 5000; // a local server restarts in seconds: never leave the user waiting long after

/** Delay before reconnect attempt `attempt` (0-based): 0.5 s, 1 s, 2 s, 4 s, then 5 s, with ±20% jitter. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class LiveSession {
  /** @param {object} ui receives phase / error / camera / hello / warmup / label / figures / running calls */
  constructor(ui) {
    this.ui = ui;
    this.stream = null;
    this.peer = null;
    this.options = {};
    this.running = false;
    this.attempt = 0; // reconnect attempts since the last label; 0 while things work
    this.generation = 0; // bumps on every new peer or stop, so late callbacks of old peers are ignored
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastMessageAt = 0;
    this.shownIndex = -1;
    this.latency = new Rolling(100);
    this.rtt = new Rolling(100);
    this.stats = null;
    this.streamError = null; // the server's last stream-level error, shown while reconnecting
  }

  /** Open the camera, then connect. Camera errors end the session with a message; nothing is retried. */
  async start(options) {
    if (this.running) return;
    this.running = true;
    this.options = options;
    this.attempt = 0;
    this.resetFigures();
    this.ui.running(true);
    this.ui.error(null);
    this.ui.phase("camera", "Opening the camera…");
    let stream;
    try {
      stream = await openCamera();
    } catch (err) {
      this.running = false;
      this.ui.running(false);
      this.ui.error(err.message, { kind: err.kind ?? "camera" });
      this.ui.phase("error", "The camera did not start.");
      return;
    }
    if (!this.running) { // Stop pressed while the browser was asking for permission
      stopCamera(stream);
      return;
    }
    this.stream = stream;
    for (const track of stream.getVideoTracks()) {
      track.addEventListener("ended", () => {
        if (this.stream === stream) this.fail("The camera stopped (unplugged or turned off). Press Start camera to try again.");
      });
    }
    this.ui.camera(stream);
    await this.connect();
  }

  /** Switch model or labels while running: a new peer with the new options, same camera. */
  async restart(options) {
    this.options = options;
    if (!this.running || !this.stream) return;
    this.attempt = 0;
    this.resetFigures();
    this.ui.error(null);
    await this.connect();
  }

  stop(message = "Stopped.") {
    this.running = false;
    this.generation += 1;
    this.dropPeer();
    stopCamera(this.stream);
    this.stream = null;
    this.ui.camera(null);
    this.ui.running(false);
    this.ui.phase("idle", message);
  }

  async connect() {
    this.dropPeer();
    const generation = ++this.generation;
    const current = () => generation === this.generation && this.running;
    this.shownIndex = -1;
    this.ui.phase("connecting", this.attempt ? `Reconnecting (attempt ${this.attempt})…` : "Connecting to the server…");
    const peer = new LivePeer(this.stream, this.options, {
      onOpen: () => current() && this.opened(),
      onMessage: (message) => current() && this.handle(message),
      onLost: (reason) => current() && this.lost(reason),
    });
    this.peer = peer;
    try {
      await peer.connect();
    } catch (err) {
      if (!current()) return;
      peer.close();
      this.peer = null;
      if (this.attempt > 0 && err.retryable) this.retry(err.message);
      else this.fail(err.message || String(err));
    }
  }

  opened() {
    this.lastMessageAt = performance.now();
    this.ui.phase("warming", "Connected. Waiting for the first frames…");
    this.ping();
    this.pingTimer = setInterval(() => this.ping(), PING_EVERY_MS);
  }

  ping() {
    if (performance.now() - this.lastMessageAt > SILENCE_MS) {
      this.lost("the server went silent");
      return;
    }
    this.peer?.send({ type: "ping", t: performance.now() });
  }

  handle(message) {
    this.lastMessageAt = performance.now();
    switch (message.type) {
      case "hello":
        this.ui.hello(message);
        this.ui.phase("warming", "Connected. Filling the first window…");
        this.ui.warmup(0, message.window);
        break;
      case "status":
        if (message.state === "warming_up") {
          this.ui.warmup(message.frames, message.needed);
          this.ui.phase("warming", `Warming up: ${message.frames} of ${message.needed} frames.`);
        }
        break;
      case "label":
        this.label(message);
        break;
      case "stats":
        this.stats = message;
        this.figures();
        break;
      case "pong":
        if (Number.isFinite(message.t)) this.rtt.push(performance.now() - message.t);
        this.figures();
        break;
      case "error":
        this.streamError = message.error || "The server reported a stream error.";
        this.ui.error(this.streamError, { kind: "stream" });
        break;
      default:
        break; // newer servers may send more; ignore what we do not know
    }
  }

  label(event) {
    if (this.attempt || this.streamError) {
      this.attempt = 0;
      this.streamError = null;
      this.ui.error(null); // labels flow again: the reconnect worked
    }
    this.latency.push(event.latency_ms);
    // A CLIP refinement arrives after the model's label for the same window; show it only if no newer
    // window has been shown since.
    const index = Number.isInteger(event.refines) ? event.refines : event.window_index;
    if (!Number.isInteger(index) || index >= this.shownIndex) {
      this.shownIndex = Number.isInteger(index) ? index : this.shownIndex;
      this.ui.label(event);
      this.ui.phase("live", "Live.");
    }
    this.figures();
  }

  figures() {
    this.ui.figures({ latency: this.latency, rtt: this.rtt, stats: this.stats });
  }

  lost(reason) {
    if (!this.running) return;
    this.dropPeer();
    this.retry(`Connection lost: ${reason}.`);
  }

  retry(why) {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.ui.error(`${this.streamError ?? why} Reconnecting…`, { kind: "connection" });
    this.ui.phase("reconnecting", `Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${this.attempt})…`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.running) this.connect();
    }, delay);
  }

  fail(message) {
    this.stop("Stopped.");
    this.ui.error(message, { kind: "server" });
    this.ui.phase("error", "Stopped after an error.");
  }

  dropPeer() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.peer?.close();
    this.peer = null;
  }

  resetFigures() {
    this.latency.clear();
    this.rtt.clear();
    this.stats = null;
    this.figures();
  }
}
