// A finished job on screen: the video with the current action over it, the timeline, the top-5 chart and the
// table of windows for the window under the playhead, the downloads and a one-line summary.

import { formatPercent } from "../metrics.js";
import { labelColours, resultLabels } from "./colours.js";
import { formatDuration, formatRealtime, formatSeconds } from "./format.js";
import { Player } from "./player.js";
import { SegmentsTable } from "./segments.js";
import { entryAt, Timeline } from "./timeline.js";
import { Top5Chart } from "./top5.js";

/**
 * The window to chart at `t`: the picked one while the playhead is inside it, else of the windows holding `t`
 * the one centred nearest (windows overlap), else the nearest one.
 */
export function segmentAt(segments, t, pinned = -1) {
  const pin = segments[pinned];
  if (pin && t >= pin.start && t <= pin.end) return pinned;
  let best = -1;
  let bestDistance = Infinity;
  let inside = false;
  segments.forEach((s, i) => {
    const holds = t >= s.start && t <= s.end;
    const distance = Math.abs((s.start + s.end) / 2 - t);
    if ((holds && !inside) || (holds === inside && distance < bestDistance)) {
      best = i;
      bestDistance = distance;
      inside = holds;
    }
  });
  return best;
}

function summaryText(result) {
  const settings = result.settings ?? {};
  const model = result.model ?? {};
  const parts = [
    `${formatDuration(result.duration)} of video`,
    `${result.segment_predictions?.length ?? 0} windows of ${settings.window ?? "?"} frames, `
      + `stride ${settings.stride ?? "?"} at ${settings.fps ?? "?"} fps`,
    model.name ? `model ${model.name}${model.labels ? ` (${model.labels})` : ""}` : null,
    settings.windows_refined_by_clip ? `${settings.windows_refined_by_clip} refined by CLIP` : null,
    Number.isFinite(result.elapsed_s)
      ? `analysed in ${result.elapsed_s.toFixed(1)} s${result.duration > 0 && result.elapsed_s > 0
        ? ` (${formatRealtime(result.duration / result.elapsed_s)})` : ""}` : null,
  ];
  return parts.filter(Boolean).join(" · ");
}

export class ResultView {
  /** @param {(id: string) => HTMLElement} $ the page's element lookup by data-testid */
  constructor($) {
    this.el = {
      stage: $("stage"), overlay: $("overlay"), label: $("overlay-label"), confidence: $("overlay-confidence"),
      range: $("overlay-range"), windowLine: $("overlay-window"), downloads: $("downloads-panel"), summary: $("result-summary"),
      json: $("download-json"), csv: $("download-csv"), annotated: $("download-annotated"),
      annotatedNote: $("annotated-note"),
    };
    this.result = null;
    this.colours = new Map();
    this.pinned = -1;
    this.player = new Player($("video"), (t) => this.at(t));
    this.timeline = new Timeline({
      block: $("timeline-block"), track: $("timeline"), bands: $("timeline-bands"), playhead: $("playhead"),
      tooltip: $("timeline-tooltip"), axis: $("timeline-axis"), legend: $("legend"),
    }, (t) => {
      this.pinned = -1;
      this.player.seek(t);
    });
    this.chart = new Top5Chart({ panel: $("chart-panel"), list: $("top5"), caption: $("top5-window") });
    this.table = new SegmentsTable({ panel: $("segments-panel"), body: $("segments-body"), count: $("segments-count") },
      (index) => this.pick(index));
    this.video = $("video");
    this.video.addEventListener("loadedmetadata", () => {
      const { videoWidth: w, videoHeight: h } = this.video;
      if (w && h) this.el.stage.style.aspectRatio = `${w} / ${h}`;
    });
  }

  /** Show a done job (GET /api/jobs/{id} with its result). */
  show(job) {
    const result = job.result;
    this.result = result;
    this.pinned = -1;
    this.colours = labelColours(resultLabels(result));
    const segments = result.segment_predictions ?? [];
    const duration = result.duration || job.duration || Math.max(0, ...segments.map((s) => s.end));
    this.timeline.show(result.timeline ?? [], duration, this.colours);
    this.table.show(segments, this.colours);
    this.chart.shown = null;
    this.showDownloads(job);
    this.el.summary.textContent = summaryText(result);
    this.player.load(job.links?.media ?? null);
    this.at(0);
  }

  clear() {
    this.result = null;
    this.player.load(null);
    this.el.stage.style.aspectRatio = "";
    this.el.overlay.hidden = true;
    this.timeline.clear();
    this.table.clear();
    this.chart.clear();
    this.el.downloads.hidden = true;
  }

  pick(index) {
    const segment = this.result?.segment_predictions?.[index];
    if (!segment) return;
    this.pinned = index;
    this.player.seek(segment.start);
  }

  /**
   * Everything that follows the playhead, at media time `t`. The overlay's headline is the timeline's segment
   * (the steady, smoothed action, with its mean confidence and its span); the window under the playhead, on
   * its own, is the secondary line when its label differs, and the top-5 chart and the table show that window.
   */
  at(t) {
    if (!this.result) return;
    const { el } = this;
    this.timeline.setTime(t);
    const segments = this.result.segment_predictions ?? [];
    const index = segmentAt(segments, t, this.pinned);
    if (index !== this.pinned) this.pinned = -1;
    const windowed = segments[index] ?? null;
    const entry = entryAt(this.result.timeline ?? [], t);
    el.overlay.hidden = !entry;
    if (entry) {
      if (el.label.textContent !== entry.label) el.label.textContent = entry.label;
      el.label.style.setProperty("--band", this.colours.get(entry.label) ?? "transparent");
      el.confidence.textContent = formatPercent(entry.confidence);
      el.confidence.dataset.value = String(entry.confidence);
      el.confidence.title = "mean confidence over this stretch";
      el.range.textContent = `steady ${formatSeconds(entry.start)}–${formatSeconds(entry.end)} s`;
    }
    const differs = Boolean(entry && windowed && windowed.label !== entry.label);
    const line = differs ? `window ${index + 1} alone: ${windowed.label} ${formatPercent(windowed.confidence)}` : "";
    if (el.windowLine.textContent !== line) el.windowLine.textContent = line;
    el.windowLine.hidden = !differs;
    el.overlay.dataset.time = t.toFixed(3);
    this.chart.show(windowed, index, this.colours);
    this.table.highlight(index);
  }

  showDownloads(job) {
    const { el } = this;
    const links = job.links ?? {};
    const set = (a, href) => {
      a.hidden = !href;
      if (href) a.href = href;
      else a.removeAttribute("href");
    };
    set(el.json, links.result_json);
    set(el.csv, links.result_csv);
    set(el.annotated, links.annotated);
    el.json.download = `har-${job.id}.json`;
    el.csv.download = `har-${job.id}.csv`;
    el.annotated.download = `har-${job.id}-annotated.mp4`;
    el.annotatedNote.hidden = Boolean(links.annotated);
    el.annotatedNote.textContent = job.options?.annotate === false
      ? "No annotated video: it was not asked for."
      : "No annotated video for this job.";
    el.downloads.hidden = false;
  }
}
