// Keeps the page's list of cameras current: the server pushes {"streams": [...]} on /api/streams/ws whenever
// anything changes; when that socket cannot be opened or drops, GET /api/streams once a second instead, and
// try the socket again now and then (a restarted server or a proxy that cut it).

import { socketUrl } from "../api.js";
import { ensureSession } from "../auth.js";
import { listStreams } from "./streams_api.js";

const POLL_MS = 1000;
const SOCKET_RETRY_MS = 10_000; // while polling, how often to try the websocket again

export class StreamsFeed {
  /**
   * @param {{update: (data: {streams: object[], max_streams?: number}) => void,
   *          transport: (kind: "websocket"|"poll"|"down", error?: Error|null) => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.socket = null;
    this.pollTimer = null;
    this.retryTimer = null;
    this.stopped = false;
    this.kind = "none";
  }

  start() {
    this.openSocket();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }

  /** Ask the server now (after the page changed something), whatever the transport. */
  async refresh() {
    try {
      this.hooks.update(await listStreams());
    } catch {
      // the feed itself reports trouble; a one-off refresh has nothing to add
    }
  }

  openSocket() {
    if (this.stopped || this.socket) return;
    // A websocket refused for want of the token cannot say so: sign in first (at once when not needed).
    ensureSession().then(() => this.openSocketNow(), () => this.poll());
  }

  openSocketNow() {
    if (this.stopped || this.socket) return;
    let socket;
    try {
      socket = new WebSocket(socketUrl("/api/streams/ws"));
    } catch {
      this.poll();
      return;
    }
    this.socket = socket;
    // The server sends the list as soon as the socket opens: the socket counts as working from that first
    // message (a proxy may accept the upgrade and close at once).
    let working = false;
    socket.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return; // not ours: the next message carries on
      }
      if (!data || !Array.isArray(data.streams)) return;
      if (!working) {
        working = true;
        clearTimeout(this.pollTimer);
        clearTimeout(this.retryTimer);
        this.set("websocket");
      }
      this.hooks.update(data);
    });
    socket.addEventListener("close", () => {
      if (this.socket === socket) this.socket = null;
      if (this.stopped) return;
      if (working) this.kind = "lost"; // polling takes over until the socket works again
      // Poll meanwhile; a socket that worked is tried again soon (a restarted server), one that never did
      // only now and then.
      this.poll();
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.openSocket(), working ? POLL_MS : SOCKET_RETRY_MS);
    });
  }

  poll() {
    if (this.stopped || this.kind === "websocket") return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(async () => {
      if (this.stopped || this.kind === "websocket") return;
      try {
        const data = await listStreams();
        if (this.kind === "websocket") return; // the socket came back meanwhile
        this.set("poll");
        this.hooks.update(data);
      } catch (err) {
        this.set("down", err);
      }
      this.poll();
    }, this.kind === "none" ? 0 : POLL_MS);
  }

  set(kind, error = null) {
    this.kind = kind;
    this.hooks.transport(kind, error);
  }
}
