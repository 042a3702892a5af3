// Everything the live session shows: the stage over the video (label, warm-up), status and error lines,
// the top-5 chart and the live figures. Server strings go in as text nodes, never as HTML.

import { byTestId } from "./dom.js";
import { formatCount, formatMs, formatPercent, formatRate, formatStride } from "./metrics.js";
import { showMessage } from "./richtext.js";
import { drawTop5 } from "./top5.js";

const STAGE_MESSAGES = {
  idle: "Press Start camera to see what you are doing, labelled live.",
  camera: "Waiting for the camera… (allow it if the browser asks)",
  connecting: "Connecting to the server…",
  warming: "Warming up…",
  reconnecting: "Connection lost. Reconnecting…",
  error: "Stopped: see the message below.",
};

const CONNECTION_TEXT = {
  idle: "not connected",
  camera: "camera starting",
  connecting: "connecting",
  warming: "connected · warming up",
  live: "live",
  reconnecting: "reconnecting",
  error: "stopped",
};

/** Write only changes: live regions then announce a new label once, not every half second. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export class View {
  constructor(root = document) {
    const $ = (id) => byTestId(id, root);
    this.el = {
      stage: $("stage"), video: $("video"), overlay: $("overlay"), label: $("current-label"),
      confidence: $("current-confidence"), source: $("label-source"), windowLabel: $("window-label"),
      stageMessage: $("stage-message"), warmup: $("warmup"), warmupProgress: $("warmup-progress"),
      warmupCount: $("warmup-count"), status: $("status"), error: $("error"), connection: $("connection"),
      top5: $("top5"), top5Empty: $("top5-empty"), sessionInfo: $("session-info"),
      start: $("start"), stop: $("stop"),
      latencyLast: $("latency-last"), latencyP50: $("latency-p50"), latencyP95: $("latency-p95"),
      rtt: $("rtt"), rttP50: $("rtt-p50"), fpsIn: $("fps-in"), windowsPerS: $("windows-per-s"),
      strideEffective: $("stride-effective"),
      framesReceived: $("frames-received"), framesDropped: $("frames-dropped"),
    };
    this.stageText = this.el.stageMessage.querySelector(".stage-message-text");
    this.onRunning = null; // the page's hook: called with true / false when a session starts or ends
  }

  /** The session's phase: idle, camera, connecting, warming, live, reconnecting, error. */
  phase(state, text) {
    const { el } = this;
    setText(el.status, text);
    el.status.dataset.state = state;
    el.stage.dataset.state = state;
    el.connection.dataset.state = state;
    el.connection.querySelector(".conn-text").textContent = CONNECTION_TEXT[state] ?? state;
    el.stageMessage.hidden = state === "live";
    if (STAGE_MESSAGES[state]) this.stageText.textContent = STAGE_MESSAGES[state];
    if (state !== "warming") el.warmup.hidden = true;
    el.overlay.classList.toggle("stale", state === "reconnecting" || state === "connecting");
  }

  /** Show (or clear, with null) the error line. `kind`: camera kinds, server, stream, connection. */
  error(text, { kind = "error" } = {}) {
    const { error } = this.el;
    showMessage(error, text);
    error.dataset.kind = text ? kind : "";
  }

  camera(stream) {
    this.el.video.srcObject = stream;
    if (!stream) {
      this.el.overlay.hidden = true;
      this.el.label.textContent = "";
      this.el.sessionInfo.textContent = "";
    }
  }

  running(isRunning) {
    this.el.start.disabled = isRunning;
    this.el.stop.disabled = !isRunning;
    this.onRunning?.(isRunning);
  }

  hello(message) {
    const parts = [
      `model ${message.model}`,
      Array.isArray(message.labels) ? `${message.labels.length}${message.labels.length >= 1000 ? "+" : ""} labels` : null,
      message.window ? `window ${message.window}` : null,
      message.stride ? `stride ${message.stride}` : null,
      message.fps ? `${message.fps} fps` : null,
    ].filter(Boolean);
    this.el.sessionInfo.textContent = parts.join(" · ");
    this.el.sessionInfo.dataset.peerId = message.peer_id ?? "";
  }

  warmup(frames, needed) {
    const { el } = this;
    el.warmup.hidden = false;
    el.warmupProgress.max = Math.max(1, needed || 1);
    el.warmupProgress.value = Math.min(frames || 0, el.warmupProgress.max);
    el.warmupCount.textContent = `${frames || 0} / ${needed || "?"} frames`;
    this.stageText.textContent = "Warming up: filling the first window of frames…";
  }

  /**
   * One label event (LabelEvent.to_json): the overlay and the top-5 chart. The headline is the smoothed label
   * (steady over the last few windows: what the analyse page's timeline and the cameras' events use); the
   * newest window's own label, when it differs, is the secondary line and says so. The top 5 is that window's.
   */
  label(event) {
    const { el } = this;
    el.overlay.hidden = false;
    const raw = event.label;
    const steady = event.smoothed_label || raw;
    setText(el.label, steady);
    el.label.dataset.window = String(event.window_index ?? ""); // changes with every event, unlike the text
    el.label.dataset.raw = raw ?? "";
    // A figure beside the headline only when the newest window agrees with it: while the steady label holds
    // through a change, that window's share of it says nothing useful (often ~0 %); the secondary line then
    // gives the window's own label and figure.
    const rows = Array.isArray(event.top5) ? event.top5 : [];
    const share = steady === raw ? event.confidence : null;
    el.confidence.hidden = !Number.isFinite(share);
    el.confidence.textContent = Number.isFinite(share) ? formatPercent(share) : "";
    el.confidence.dataset.value = Number.isFinite(share) ? String(share) : "";
    el.confidence.title = "how sure the model is of it in the newest window";
    const source = event.source === "clip" ? "clip" : "model";
    el.source.textContent = source === "clip" ? "CLIP" : "model";
    el.source.dataset.source = source;
    el.source.title = source === "clip" ? "CLIP zero-shot chose this label" : "the selected model chose this label";
    setText(el.windowLabel, steady !== raw ? `this window: ${raw} ${formatPercent(event.confidence)}` : "");
    el.windowLabel.hidden = !el.windowLabel.textContent;
    this.top5(rows);
  }

  top5(rows) {
    const { el } = this;
    el.top5Empty.hidden = drawTop5(el.top5, rows) > 0;
  }

  figures({ latency, rtt, stats }) {
    const { el } = this;
    el.latencyLast.textContent = formatMs(latency.last);
    el.latencyP50.textContent = formatMs(latency.percentile(50));
    el.latencyP95.textContent = formatMs(latency.percentile(95));
    el.rtt.textContent = formatMs(rtt.last);
    el.rttP50.textContent = rtt.count ? `p50 ${formatMs(rtt.percentile(50))}` : "";
    el.fpsIn.textContent = formatRate(stats?.fps_in);
    el.windowsPerS.textContent = formatRate(stats?.windows_per_s);
    el.strideEffective.textContent = formatStride(stats);
    el.framesReceived.textContent = formatCount(stats?.frames_received);
    el.framesDropped.textContent = formatCount(stats?.frames_dropped);
    el.framesDropped.classList.toggle("warn", (stats?.frames_dropped ?? 0) > 0);
  }
}
