// One WebRTC peer: the camera's video track goes to the server, label messages come back on the "labels"
// data channel. Non-trickle (web/js/webrtc.js): the offer is sent once ICE gathering is complete, so
// signalling is one POST.
// A peer is used once; reconnecting means closing it and making a new one (see session.js).

import { postOffer } from "./api.js";
import { TimerSet } from "./timers.js";
import { DISCONNECT_GRACE_MS, gatherOffer, offlinePeerConnection } from "./webrtc.js";

const OPEN_TIMEOUT_MS = 15000; // answer set but the channel never opens: treat as a failed connection

export class LivePeer {
  /**
   * @param {MediaStream} stream the camera
   * @param {object} options model / labels / custom_labels / stride, sent with the offer
   * @param {{onMessage(msg: object): void, onOpen(): void, onLost(reason: string): void}} handlers
   */
  constructor(stream, options, handlers) {
    this.stream = stream;
    this.options = options;
    this.handlers = handlers;
    this.pc = null;
    this.channel = null;
    this.peerId = null;
    this.closed = false;
    this.timers = new TimerSet();
  }

  /** Offer, POST, answer. Throws ApiError / NetworkError from the POST; connection trouble later calls onLost. */
  async connect() {
    const pc = offlinePeerConnection();
    this.pc = pc;
    const channel = pc.createDataChannel("labels", { ordered: true }); // before the offer, so it is in the SDP
    this.channel = channel;
    for (const track of this.stream.getVideoTracks()) pc.addTrack(track, this.stream);

    channel.addEventListener("open", () => {
      this.timers.clear();
      if (!this.closed) this.handlers.onOpen();
    });
    channel.addEventListener("message", (event) => this.receive(event.data));
    channel.addEventListener("close", () => this.lose("the label channel closed"));
    pc.addEventListener("connectionstatechange", () => this.connectionChanged());

    await gatherOffer(pc);
    if (this.closed) return;
    const answer = await postOffer({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, ...this.options });
    if (this.closed) return;
    this.peerId = answer.peer_id ?? null;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    this.timers.later(OPEN_TIMEOUT_MS, () => {
      if (channel.readyState !== "open") this.lose("the connection did not open in time");
    });
  }

  /** Send a JSON message if the channel is open; false otherwise. */
  send(message) {
    if (this.closed || this.channel?.readyState !== "open") return false;
    this.channel.send(JSON.stringify(message));
    return true;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.timers.clear();
    try {
      this.channel?.close();
    } catch {
      // already closing
    }
    this.pc?.close();
  }

  receive(data) {
    if (this.closed) return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not ours to show: the server only sends JSON
    }
    if (message && typeof message === "object") this.handlers.onMessage(message);
  }

  connectionChanged() {
    const state = this.pc?.connectionState;
    if (state === "failed") this.lose("the connection failed");
    else if (state === "closed") this.lose("the connection closed");
    else if (state === "disconnected") {
      this.timers.later(DISCONNECT_GRACE_MS, () => {
        if (this.pc?.connectionState === "disconnected") this.lose("the connection dropped");
      });
    }
  }

  lose(reason) {
    if (this.closed) return;
    this.close();
    this.handlers.onLost(reason);
  }
}
