// The cameras page: every camera the server watches as a tile with its live video and current action, kept
// current by the streams feed (websocket, polling as the fallback), and a form to add one.

import { fetchModels } from "../api.js";
import { byTestId } from "../dom.js";
import { ModelPicker } from "../models.js";
import { messageNodes, showMessage } from "../richtext.js";
import { StreamsFeed } from "./feed.js";
import { AddCameraForm } from "./form.js";
import { LabelPalette } from "./palette.js";
import { addStream, deleteStream } from "./streams_api.js";
import { CameraTile } from "./tile.js";

const MODELS_POLL_PENDING_MS = 2000;
const MODELS_POLL_RETRY_MS = 3000;

const TRANSPORT_TEXT = {
  websocket: "live updates",
  poll: "updates every second",
  down: "server unreachable",
};

class CamerasPage {
  constructor($) {
    this.$ = $;
    this.template = document.getElementById("camera-tile");
    this.palette = new LabelPalette();
    this.tiles = new Map(); // name → CameraTile, in the server's order
    this.removed = new Set(); // names deleted from this page whose removal the feed may not have seen yet
    this.maxStreams = null;
    this.picker = new ModelPicker({ model: $("model-select"), labelSet: $("label-set-select"),
      status: $("model-status"), list: $("model-list") });
    this.form = new AddCameraForm($, (spec) => this.add(spec));
    this.feed = new StreamsFeed({
      update: (data) => this.show(data),
      transport: (kind, error) => this.transport(kind, error),
    });
    this.modelsTimer = null;
  }

  start() {
    this.feed.start();
    this.feed.refresh(); // the socket carries the cameras, not the server's limit: one GET says both
    this.loadModels();
    window.addEventListener("pagehide", () => {
      this.feed.stop();
      for (const tile of this.tiles.values()) tile.destroy();
    });
    // Back from the back/forward cache with the feed and the viewers closed: start afresh.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) location.reload();
    });
  }

  // -- cameras ------------------------------------------------------------------------------------------------

  /** The server's list of cameras: add tiles for new ones, update the rest, drop those that are gone. */
  show(data) {
    const streams = data.streams ?? [];
    if (Number.isFinite(data.max_streams)) this.maxStreams = data.max_streams;
    const names = new Set(streams.map((c) => c.name));
    for (const name of this.removed) if (!names.has(name)) this.removed.delete(name);
    for (const [name, tile] of this.tiles) {
      if (!names.has(name)) {
        tile.destroy();
        this.tiles.delete(name);
      }
    }
    const grid = this.$("camera-grid");
    let previous = null;
    for (const camera of streams) {
      if (this.removed.has(camera.name)) continue; // a stale push from before our DELETE
      this.form.follow(camera);
      let tile = this.tiles.get(camera.name);
      if (tile) tile.update(camera);
      else {
        tile = new CameraTile(this.template, camera, { palette: this.palette, remove: (name) => this.remove(name) });
        this.tiles.set(camera.name, tile);
      }
      // keep the server's order without moving tiles that are in place (moving a <video> restarts it)
      const expected = previous ? previous.root.nextElementSibling : grid.firstElementChild;
      if (expected !== tile.root) grid.insertBefore(tile.root, expected);
      previous = tile;
    }
    this.drawSummary();
  }

  drawSummary() {
    const { $ } = this;
    const count = this.tiles.size;
    $("cameras-empty").hidden = count > 0;
    const live = [...this.tiles.values()].filter((t) => t.camera?.state === "live").length;
    const of = Number.isFinite(this.maxStreams) ? ` of ${this.maxStreams}` : "";
    $("cameras-count").textContent = count ? `${count}${of} · ${live} live` : "";
    $("cameras-count").dataset.count = String(count);
  }

  async add(spec) {
    const camera = await addStream(spec); // throws with the server's words
    this.removed.delete(camera.name);
    this.show({ streams: [...[...this.tiles.values()].map((t) => t.camera), camera] });
    this.feed.refresh();
    return camera;
  }

  async remove(name) {
    this.pageError("");
    try {
      await deleteStream(name);
    } catch (err) {
      if (err?.status !== 404) { // 404: gone already, which is what was asked
        this.pageError(`Could not remove ${name}: ${err?.message || err}`);
        return;
      }
    }
    this.removed.add(name);
    const tile = this.tiles.get(name);
    if (tile) {
      tile.destroy();
      this.tiles.delete(name);
    }
    this.drawSummary();
    this.$("page-status").textContent = `Removed ${name}.`;
  }

  // -- the connection to the server ---------------------------------------------------------------------------

  transport(kind, error) {
    const badge = this.$("feed-badge");
    badge.dataset.state = kind === "websocket" ? "live" : kind === "poll" ? "connecting" : "error";
    badge.dataset.transport = kind;
    badge.querySelector(".conn-text").textContent = TRANSPORT_TEXT[kind] ?? kind;
    this.pageError(kind === "down" ? error?.message || "The server could not be reached." : "");
  }

  /** The page's error line; a new error clears the status lines beside it ("Added …", "Removed …"). */
  pageError(text) {
    showMessage(this.$("page-error"), text);
    if (text) {
      this.form.say("");
      this.$("page-status").textContent = "";
    }
  }

  // -- models -----------------------------------------------------------------------------------------------

  async loadModels() {
    clearTimeout(this.modelsTimer);
    let delay = null;
    try {
      this.picker.update(await fetchModels());
      if (this.picker.pending) delay = MODELS_POLL_PENDING_MS;
    } catch (err) {
      this.$("model-status").replaceChildren(...messageNodes(`Could not load the models: ${err?.message || err}`));
      delay = MODELS_POLL_RETRY_MS;
    }
    if (delay !== null) this.modelsTimer = setTimeout(() => this.loadModels(), delay);
  }
}

new CamerasPage(byTestId).start();
