// The progress card over the stage while a job uploads, waits or runs: state, phase, a bar, %, ×realtime.

import { formatPercent } from "../metrics.js";
import { formatRealtime } from "./format.js";

const STATE_TEXT = { queued: "Queued", running: "Running", done: "Done", failed: "Failed", cancelled: "Cancelled" };
const PHASE_TEXT = {
  resolving: "resolving the URL",
  analysing: "analysing the video",
  transcoding: "making a browser-playable copy",
  rendering: "rendering the annotated video",
};

export class ProgressView {
  /** @param {(id: string) => HTMLElement} $ */
  constructor($) {
    this.el = {
      box: $("progress"), state: $("progress-state"), phase: $("progress-phase"), bar: $("progress-bar"),
      percent: $("progress-percent"), realtime: $("progress-realtime"), cancel: $("cancel"),
    };
  }

  /** Bytes going up, before the server has a job. */
  uploading(fraction) {
    const { el } = this;
    el.box.hidden = false;
    el.box.dataset.state = "uploading";
    el.state.textContent = "Uploading";
    el.phase.textContent = "";
    this.bar(fraction);
    el.realtime.textContent = "";
    el.cancel.hidden = false;
  }

  /** A job as the server reports it. */
  job(job) {
    const { el } = this;
    el.box.hidden = false;
    el.box.dataset.state = job.state;
    el.box.dataset.phase = job.phase ?? "";
    el.state.textContent = STATE_TEXT[job.state] ?? job.state;
    el.phase.textContent = job.phase ? `· ${PHASE_TEXT[job.phase] ?? job.phase}` : "";
    this.bar(job.state === "queued" ? null : job.progress);
    el.realtime.textContent = formatRealtime(job.realtime);
    el.cancel.hidden = !(job.state === "queued" || job.state === "running");
  }

  bar(fraction) {
    const { el } = this;
    if (Number.isFinite(fraction)) {
      el.bar.value = Math.min(1, Math.max(0, fraction));
      el.percent.textContent = formatPercent(el.bar.value);
    } else {
      el.bar.removeAttribute("value"); // indeterminate: waiting, nothing to measure yet
      el.percent.textContent = "";
    }
  }

  hide() {
    this.el.box.hidden = true;
    this.el.cancel.hidden = true;
  }
}
