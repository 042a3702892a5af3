// One camera on the cameras page: its live video (a WebRTC viewer), the current action over it, its state,
// reconnects, error and open event, the top-5 chart (on hover, or pinned by a click), and a Remove button.
// Built from the page's <template id="camera-tile">; update(camera) redraws it from the server's camera JSON.

import { formatPercent } from "../metrics.js";
import { drawTop5 } from "../top5.js";
import { formatClock, formatCount, formatDuration, PICTURE_NOTE, STATE_MESSAGE, STATE_TEXT } from "./format.js";
import { CameraViewer } from "./viewer.js";

const CONFIRM_MS = 4000; // how long "Remove?" waits for the second click
const FROZEN_MS = 1500; // no new frame presented for this long: the picture is frozen (the last one received)

function plural(n, word) {
  return `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;
}

export class CameraTile {
  /**
   * @param {HTMLTemplateElement} template
   * @param {object} camera the camera JSON
   * @param {{palette: import("./palette.js").LabelPalette, remove: (name: string) => Promise<void>}} deps
   */
  constructor(template, camera, deps) {
    this.name = camera.name;
    this.deps = deps;
    this.camera = null;
    this.root = template.content.firstElementChild.cloneNode(true);
    this.root.dataset.name = camera.name;
    this.root.id = `camera-${camera.name}`;
    const $ = (id) => this.root.querySelector(`[data-testid="${id}"]`);
    this.el = {
      stage: $("camera-stage"), video: $("camera-video"), overlay: $("camera-overlay"), label: $("camera-label"),
      confidence: $("camera-confidence"), raw: $("camera-raw-label"), message: $("camera-video-message"),
      top5Panel: $("camera-top5-panel"), top5: $("camera-top5"), top5Time: $("camera-top5-time"),
      name: $("camera-name"), state: $("camera-state"), reconnects: $("camera-reconnects"), url: $("camera-url"),
      retry: $("camera-retry"), error: $("camera-error"), event: $("camera-event"), meta: $("camera-meta"),
      top5Toggle: $("camera-top5-toggle"), eventsLink: $("camera-events-link"), remove: $("camera-remove"),
    };
    this.el.name.textContent = camera.name;
    this.el.video.setAttribute("aria-label", `${camera.name}: live video`);
    this.el.eventsLink.href = `/events?stream=${encodeURIComponent(camera.name)}`;
    this.hovered = false;
    this.pinned = false;
    this.retryKey = null;
    this.retryAt = null;
    this.retryTicker = null;
    this.confirmTimer = null;
    this.viewerDetail = "";
    this.moving = false; // frames are being presented now (requestVideoFrameCallback), not a frozen picture
    this.frozenTimer = null;
    this.frameCallback = null;
    this.viewer = new CameraViewer(camera.name, this.el.video, (state, detail) => {
      this.root.dataset.viewer = state;
      this.viewerDetail = detail;
      this.drawVideoMessage();
    });
    this.root.dataset.viewer = "idle";
    this.root.dataset.video = "none";
    this.wire();
    this.update(camera);
  }

  wire() {
    const { el } = this;
    el.stage.addEventListener("pointerenter", () => this.hover(true));
    el.stage.addEventListener("pointerleave", () => this.hover(false));
    el.stage.addEventListener("click", () => this.pin(!this.pinned));
    el.top5Toggle.addEventListener("click", () => this.pin(!this.pinned));
    el.remove.addEventListener("click", () => this.removeClicked());
    const video = el.video;
    for (const name of ["playing", "loadeddata", "waiting", "emptied", "pause", "stalled"]) {
      video.addEventListener(name, () => this.videoChanged());
    }
    this.watchFrames();
  }

  /** Note each frame the video presents, so a frozen picture (no new frame for FROZEN_MS) can be told apart. */
  watchFrames() {
    const video = this.el.video;
    if (typeof video.requestVideoFrameCallback !== "function") return; // then "playing" is all there is to go by
    const tick = () => {
      this.frameCallback = video.requestVideoFrameCallback(tick);
      clearTimeout(this.frozenTimer);
      this.frozenTimer = setTimeout(() => {
        this.moving = false;
        this.drawVideoMessage();
      }, FROZEN_MS);
      if (!this.moving) {
        this.moving = true;
        this.drawVideoMessage();
      }
    };
    this.frameCallback = video.requestVideoFrameCallback(tick);
  }

  // -- the server's view of the camera ----------------------------------------------------------------------

  /** Redraw from the camera JSON (every websocket push / poll). */
  update(camera) {
    this.camera = camera;
    const { el, root } = this;
    const state = camera.state ?? "connecting";
    root.dataset.state = state;
    el.state.dataset.state = state;
    el.state.textContent = STATE_TEXT[state] ?? state;
    el.state.title = camera.since ? `${STATE_TEXT[state] ?? state} since ${formatClock(camera.since)}` : "";
    // "reconnects" counts the times the stream came back after it was lost; before it was ever live there is
    // nothing to come back to, and the retry line counts the failed tries to connect instead.
    const reconnects = camera.reconnects ?? 0;
    const everLive = this.everLive(camera);
    el.reconnects.textContent = everLive ? plural(reconnects, "reconnect") : "not live yet";
    el.reconnects.title = everLive ? "times the stream was lost and came back" : "no picture from this camera yet";
    el.reconnects.dataset.count = String(reconnects);
    el.url.textContent = camera.url ?? "";
    el.url.title = camera.url ?? "";

    this.followRetry(camera);

    // The source keeps its last error after it recovers: while live it is history, not an alarm.
    el.error.hidden = !camera.error;
    el.error.classList.toggle("past", state === "live");
    el.error.textContent = camera.error ? `${state === "live" ? "Last error: " : ""}${camera.error}` : "";

    if (camera.video?.width && camera.video?.height) {
      el.stage.style.setProperty("--aspect", `${camera.video.width} / ${camera.video.height}`);
    }
    this.drawCurrent(camera);
    this.drawEvent(camera.event);
    this.drawMeta(camera);
    this.viewer.follow(state === "live");
    this.drawVideoMessage();
  }

  /** Whether the camera has ever sent a picture (live now, frames counted, or it came back before). */
  everLive(camera) {
    return camera.state === "live" || (camera.frames ?? 0) > 0 || (camera.reconnects ?? 0) > 0;
  }

  /** retry_in is the wait before the next try, as of the push that carried it: count it down here. */
  followRetry(camera) {
    const waiting = Number.isFinite(camera.retry_in) && ["reconnecting", "connecting"].includes(camera.state);
    const key = waiting ? `${camera.attempt}|${camera.retry_in}|${camera.since}` : null;
    if (key !== this.retryKey) {
      this.retryKey = key;
      this.retryAt = waiting ? Date.now() + camera.retry_in * 1000 : null;
      clearInterval(this.retryTicker);
      this.retryTicker = waiting ? setInterval(() => this.drawRetry(), 1000) : null;
    }
    this.drawRetry();
  }

  drawRetry() {
    const camera = this.camera;
    const parts = [];
    if (["reconnecting", "connecting"].includes(camera.state)) {
      if (camera.attempt) {
        const what = this.everLive(camera) ? "to reconnect" : "to connect";
        parts.push(`${camera.attempt} failed tr${camera.attempt === 1 ? "y" : "ies"} ${what}`);
      }
      if (this.retryAt !== null) {
        const left = Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
        parts.push(left > 0 ? `next try in ${left} s` : "trying again…");
      } else if (camera.state === "reconnecting") parts.push("trying now…");
    }
    if (camera.since) parts.push(`${STATE_TEXT[camera.state] ?? camera.state} since ${formatClock(camera.since)}`);
    this.el.retry.textContent = parts.join(" · ");
  }

  drawCurrent(camera) {
    const { el, root } = this;
    const current = camera.current;
    el.overlay.hidden = !current;
    root.dataset.label = current?.smoothed_label ?? current?.label ?? "";
    if (!current) {
      el.top5.replaceChildren();
      el.top5Time.textContent = "· no label yet";
      return;
    }
    const shown = current.smoothed_label ?? current.label;
    const { palette } = this.deps;
    palette.add((current.top5 ?? []).map(([name]) => name).concat([shown, current.label]));
    el.label.textContent = shown;
    el.label.style.setProperty("--band", palette.colour(shown));
    // The smoothed label holds through a change; the newest window's own label and confidence say what is
    // coming (the smoothed label's share of that window is no figure to show beside it).
    const differs = Boolean(current.label) && current.label !== shown;
    el.confidence.textContent = differs ? "" : formatPercent(current.confidence);
    el.confidence.hidden = differs;
    el.raw.textContent = differs ? `latest window: ${current.label} ${formatPercent(current.confidence)}` : "";
    el.overlay.classList.toggle("stale", camera.state !== "live");
    el.overlay.dataset.at = current.at ?? "";
    drawTop5(el.top5, current.top5, { colour: (name) => palette.colour(name) });
    el.top5Time.textContent = current.at ? `at ${formatClock(current.at)}` : "";
  }

  drawEvent(event) {
    const { el } = this;
    el.event.hidden = !event;
    if (!event) {
      el.event.replaceChildren();
      delete el.event.dataset.label;
      return;
    }
    el.event.dataset.label = event.label;
    el.event.dataset.eventId = event.id ?? "";
    const chip = document.createElement("span");
    chip.className = "event-chip";
    chip.textContent = event.label;
    chip.style.background = this.deps.palette.colour(event.label);
    chip.style.color = this.deps.palette.textOn(event.label);
    const parts = [`for ${formatDuration(event.duration)}`];
    if (Number.isFinite(event.peak_confidence)) parts.push(`peak ${formatPercent(event.peak_confidence)}`);
    if (event.started_at) parts.push(`since ${formatClock(event.started_at)}`);
    const link = document.createElement("a");
    link.href = `/events?stream=${encodeURIComponent(this.name)}&state=open`;
    link.textContent = "Open event";
    link.title = "This camera's open events";
    const figures = document.createElement("span");
    figures.className = "cam-event-figures";
    figures.textContent = parts.join(" · ");
    el.event.replaceChildren(link, chip, figures);
  }

  drawMeta(camera) {
    const bits = [];
    if (camera.model) bits.push(camera.model);
    if (camera.labels) bits.push(camera.labels);
    if (camera.stride) {
      const now = camera.effective_stride;
      bits.push(Number.isFinite(now) && now !== camera.stride ? `stride ${now} (adaptive, asked ${camera.stride})`
                                                              : `stride ${camera.stride}`);
    }
    if (camera.video?.width) bits.push(`${camera.video.width}×${camera.video.height}`);
    const fps = camera.video?.fps ?? camera.fps;
    if (Number.isFinite(fps)) bits.push(`${Math.round(fps * 10) / 10} fps`);
    if (Number.isFinite(camera.frames)) bits.push(plural(camera.frames, "frame"));
    if (camera.dropped) bits.push(`${formatCount(camera.dropped)} dropped`);
    if (Number.isFinite(camera.viewers)) bits.push(plural(camera.viewers, "viewer"));
    if (camera.label_filter?.length) bits.push(`events for: ${camera.label_filter.join(", ")}`);
    this.el.meta.textContent = bits.join(" · ");
  }

  // -- the video ----------------------------------------------------------------------------------------------

  videoChanged() {
    const video = this.el.video;
    const playing = video.readyState >= 2 && !video.paused && video.srcObject !== null;
    this.root.dataset.video = playing ? "playing" : video.srcObject ? "waiting" : "none";
    this.drawVideoMessage();
  }

  /**
   * What the video area says. With no picture, a message in the middle ("No picture from the camera:
   * reconnecting…"); over a picture that is showing, never that: a small note in the corner instead, which says
   * whether the picture still moves or is the last one received.
   */
  drawVideoMessage() {
    const state = this.camera?.state ?? "connecting";
    const playing = this.root.dataset.video === "playing";
    const viewer = this.root.dataset.viewer;
    const supported = typeof this.el.video.requestVideoFrameCallback === "function";
    const moving = playing && (this.moving || !supported);
    let text = "";
    let place = "center";
    if (state !== "live") {
      if (playing) {
        place = "corner";
        text = (moving ? PICTURE_NOTE.moving : PICTURE_NOTE.frozen)(STATE_TEXT[state] ?? state);
      } else text = STATE_MESSAGE[state] ?? state;
    } else if (!playing || viewer !== "connected") {
      const detail = this.viewerDetail;
      // connected but no picture yet: the first frame is on its way
      text = detail && viewer !== "connected" ? `${detail[0].toUpperCase()}${detail.slice(1)}` : STATE_MESSAGE.live;
      if (playing) place = "corner";
    }
    const { message, stage } = this.el;
    message.hidden = !text;
    message.textContent = text;
    message.dataset.place = place;
    stage.dataset.picture = playing ? (moving ? "moving" : "frozen") : "no";
  }

  // -- top 5 ---------------------------------------------------------------------------------------------------

  hover(on) {
    this.hovered = on;
    this.showTop5();
  }

  pin(on) {
    this.pinned = on;
    this.el.top5Toggle.setAttribute("aria-expanded", String(on));
    this.el.top5Toggle.classList.toggle("active", on);
    this.showTop5();
  }

  showTop5() {
    const open = this.hovered || this.pinned;
    this.root.dataset.top5 = open ? "open" : "closed";
    this.el.top5Panel.hidden = !open;
  }

  // -- removal --------------------------------------------------------------------------------------------------

  async removeClicked() {
    const button = this.el.remove;
    if (button.dataset.confirm !== "yes") {
      button.dataset.confirm = "yes";
      // a config-file camera comes back when the server restarts; one added here is forgotten for good
      button.textContent = this.camera?.origin === "config" ? `Stop ${this.name} until the next restart?`
        : `Remove ${this.name}?`;
      clearTimeout(this.confirmTimer);
      this.confirmTimer = setTimeout(() => this.resetRemove(), CONFIRM_MS);
      return;
    }
    clearTimeout(this.confirmTimer);
    button.disabled = true;
    button.textContent = "Removing…";
    try {
      await this.deps.remove(this.name);
    } finally {
      if (this.root.isConnected) { // still here: the removal failed, and the page said why
        button.disabled = false;
        this.resetRemove();
      }
    }
  }

  resetRemove() {
    const button = this.el.remove;
    delete button.dataset.confirm;
    button.textContent = "Remove";
  }

  destroy() {
    clearTimeout(this.confirmTimer);
    clearInterval(this.retryTicker);
    clearTimeout(this.frozenTimer);
    if (this.frameCallback !== null) this.el.video.cancelVideoFrameCallback?.(this.frameCallback);
    this.viewer.close();
    this.root.remove();
  }
}
