// The page's frame around a job: the stage's state and message, the badge in the top bar, the status line
// and the error box. Server strings go in as text nodes (commands in backticks as <code>), never as HTML.

import { showMessage } from "../richtext.js";

export const IDLE_TEXT = "Choose a video, drop one here, or paste its URL: the labelled result opens here.";

const BADGE_TEXT = {
  idle: "no job open", loading: "opening…", uploading: "uploading", queued: "queued", running: "running",
  done: "done", failed: "failed", cancelled: "cancelled",
};

export class PageView {
  /** @param {(id: string) => HTMLElement} $ */
  constructor($) {
    this.el = {
      stage: $("stage"), message: $("stage-message"), stageText: $("stage-text"), status: $("status"),
      error: $("error"), badge: $("job-badge"), closeJob: $("new-job"),
    };
  }

  /** One line under the player; `state` colours it (working, done, error). */
  status(text, state = "") {
    this.el.status.textContent = text;
    this.el.status.dataset.state = state;
  }

  /** Show (or clear, with null) the error box; `kind` says where it came from (input, upload, job, …). */
  error(text, kind = "error") {
    const { error } = this.el;
    showMessage(error, text);
    error.dataset.kind = text ? kind : "";
  }

  get errorKind() {
    return this.el.error.dataset.kind;
  }

  get statusState() {
    return this.el.status.dataset.state;
  }

  /**
   * The stage and the badge: idle, loading, uploading, queued, running, done, failed or cancelled.
   * `text` replaces the stage's message (null keeps it, "" hides it); `jobOpen` shows "Close this job".
   */
  stage(state, text, jobOpen) {
    const { el } = this;
    el.stage.dataset.state = state;
    el.badge.dataset.state = state;
    el.badge.querySelector(".conn-text").textContent = BADGE_TEXT[state] ?? state;
    if (text !== null) el.stageText.textContent = text;
    el.stageText.hidden = text === "";
    el.message.hidden = state === "done";
    el.closeJob.hidden = !jobOpen;
  }

  get stageState() {
    return this.el.stage.dataset.state;
  }

  /** How the page hears of the open job ("websocket" or "poll"); null: no job followed. */
  transport(how) {
    if (how) this.el.stage.dataset.transport = how;
    else delete this.el.stage.dataset.transport;
  }
}
