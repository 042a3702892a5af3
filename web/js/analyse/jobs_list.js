// The list of past jobs (GET /api/jobs, newest first): each opens with a #job=ID link, and has Cancel
// (queued / running) or Delete (finished).

import { formatBytes, formatDuration, formatWhen } from "./format.js";
import { isFinal } from "./watch.js";

export class JobsList {
  /**
   * @param {{list: HTMLElement, empty: HTMLElement, summary: HTMLElement, error: HTMLElement}} el
   * @param {(job: object) => void} onRemove asked to cancel or delete `job`
   */
  constructor(el, onRemove) {
    this.el = el;
    this.jobs = [];
    el.list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-job-id]");
      const job = button && this.jobs.find((j) => j.id === button.dataset.jobId);
      if (job) onRemove(job);
    });
  }

  /** @param {{jobs: object[], queued?: number, running?: number}} data */
  show(data, currentId) {
    const { el } = this;
    this.jobs = data.jobs ?? [];
    el.error.hidden = true;
    el.empty.hidden = this.jobs.length > 0;
    const busy = [data.running ? `${data.running} running` : "", data.queued ? `${data.queued} queued` : ""]
      .filter(Boolean).join(", ");
    el.summary.textContent = busy ? `(${busy})` : "";
    el.list.replaceChildren(...this.jobs.map((job) => this.row(job, job.id === currentId)));
  }

  /** Mark the open job's row without fetching the list again. */
  markCurrent(currentId) {
    for (const row of this.el.list.children) {
      const current = row.dataset.jobId === currentId;
      row.classList.toggle("current", current);
      row.querySelector("a")?.toggleAttribute("aria-current", current);
    }
  }

  failed(message) {
    this.el.error.hidden = false;
    this.el.error.textContent = `Could not load the job list: ${message}`;
  }

  row(job, current) {
    const li = document.createElement("li");
    li.dataset.testid = "job-row";
    li.dataset.jobId = job.id;
    li.dataset.state = job.state;
    li.classList.toggle("current", current);
    const link = document.createElement("a");
    link.href = `#job=${encodeURIComponent(job.id)}`;
    link.dataset.testid = "job-open";
    link.className = "job-name";
    link.textContent = job.source?.name || job.id;
    link.title = job.source?.name || job.id;
    if (current) link.setAttribute("aria-current", "true");
    const state = document.createElement("span");
    state.className = "job-state";
    state.dataset.state = job.state;
    state.textContent = job.state === "running" && Number.isFinite(job.progress)
      ? `running ${Math.round(job.progress * 100)}%` : job.state;
    const meta = document.createElement("span");
    meta.className = "job-meta";
    meta.textContent = [formatWhen(job.created), Number.isFinite(job.duration) ? formatDuration(job.duration) : "",
      job.source?.kind === "upload" ? formatBytes(job.source?.size) : job.source?.kind === "url" ? "URL" : "",
      job.options?.model ?? ""].filter(Boolean).join(" · ");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small";
    button.dataset.jobId = job.id;
    const finished = isFinal(job);
    button.dataset.testid = finished ? "job-delete" : "job-cancel";
    button.textContent = finished ? "Delete" : "Cancel";
    button.setAttribute("aria-label", `${finished ? "Delete" : "Cancel"} ${link.textContent}`);
    li.append(link, state, meta, button);
    if (job.state === "failed" && job.error) {
      const why = document.createElement("span");
      why.className = "job-error";
      why.textContent = job.error;
      li.append(why);
    }
    return li;
  }
}
