// Follows one job until it ends: the job's websocket first (the server pushes every change), polling
// GET /api/jobs/{id} once a second when the websocket cannot be opened or drops before the job ends.

import { socketUrl } from "../api.js";
import { ensureSession } from "../auth.js";
import { getJob } from "./jobs_api.js";

export const FINAL_STATES = new Set(["done", "failed", "cancelled"]);
const POLL_MS = 1000;

export function isFinal(job) {
  return FINAL_STATES.has(job?.state);
}

export class JobWatcher {
  /**
   * @param {object} job the job as last seen (its links.ws is the websocket's path)
   * @param {{update: (job: object) => void, final: (job: object) => void, trouble: (err: Error|null) => void}} hooks
   *   update: every change; final: once, with the job in its final state; trouble: a poll failed (null: fine again)
   */
  constructor(job, hooks) {
    this.id = job.id;
    this.wsPath = job.links?.ws ?? `/api/jobs/${encodeURIComponent(job.id)}/ws`;
    this.hooks = hooks;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
    this.transport = "none"; // "websocket" or "poll": shown on the page (data-transport) and in tests
  }

  start() {
    // A websocket refused for want of the token cannot say so: sign in first (at once when not needed).
    ensureSession().then(() => this.open(), () => this.poll());
  }

  open() {
    if (this.stopped) return;
    try {
      this.socket = new WebSocket(socketUrl(this.wsPath));
    } catch {
      this.poll();
      return;
    }
    this.transport = "websocket";
    this.socket.addEventListener("message", (event) => {
      let job;
      try {
        job = JSON.parse(event.data);
      } catch {
        return; // not a job: ignore, the next message or the fallback carries on
      }
      this.seen(job);
    });
    // Closed before a final state (it failed to open, the server restarted, a proxy cut it): poll instead.
    this.socket.addEventListener("close", () => {
      this.socket = null;
      if (!this.stopped) this.poll();
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
    }
  }

  seen(job) {
    if (this.stopped || job?.id !== this.id) return;
    this.hooks.update(job);
    if (isFinal(job)) {
      this.stop();
      this.hooks.final(job);
    }
  }

  poll() {
    if (this.stopped) return;
    this.transport = "poll";
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      try {
        const job = await getJob(this.id);
        this.hooks.trouble(null);
        this.seen(job);
      } catch (err) {
        this.hooks.trouble(err);
        if (err.status === 404) { // deleted meanwhile: nothing left to follow
          this.stop();
          return;
        }
      }
      this.poll();
    }, POLL_MS);
  }
}
