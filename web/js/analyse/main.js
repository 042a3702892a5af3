// The analysis page: upload a video (or give a URL), follow the job, then explore the result. The open job
// lives in the address (#job=ID), so a reload or a shared link reopens it.

import { fetchModels } from "../api.js";
import { byTestId } from "../dom.js";
import { ModelPicker } from "../models.js";
import { UploadForm } from "./form.js";
import { formatDuration } from "./format.js";
import { cancelJob, createUrlJob, deleteJob, getJob, listJobs, uploadJob } from "./jobs_api.js";
import { JobsList } from "./jobs_list.js";
import { IDLE_TEXT, PageView } from "./page_view.js";
import { ProgressView } from "./progress.js";
import { ResultView } from "./result.js";
import { isFinal, JobWatcher } from "./watch.js";

const MODELS_POLL_PENDING_MS = 2000;
const MODELS_POLL_RETRY_MS = 3000;
const JOBS_POLL_BUSY_MS = 3000; // while some job in the list is queued or running

function jobIdFromHash() {
  return new URLSearchParams(location.hash.slice(1)).get("job") || null;
}

class AnalysePage {
  constructor($) {
    this.$ = $;
    this.view = new PageView($);
    this.form = new UploadForm($, (file) => {
      this.view.status(`${file.name} is ready: press Analyse.`);
      $("analyse").focus({ preventScroll: true }); // Enter now starts it; the page stays where it is
    });
    this.progress = new ProgressView($);
    this.result = new ResultView($);
    this.jobs = new JobsList({ list: $("jobs-list"), empty: $("jobs-empty"), summary: $("jobs-summary"),
      error: $("jobs-error") }, (job) => this.remove(job));
    this.picker = new ModelPicker({ model: $("model-select"), labelSet: $("label-set-select"),
      status: $("model-status"), list: $("model-list") });
    this.currentId = null;
    this.generation = 0; // bumps whenever another job opens, so late answers about the old one are dropped
    this.watcher = null;
    this.upload = null; // AbortController of the upload in progress
    this.modelsTimer = null;
    this.jobsTimer = null;
  }

  start() {
    const { $ } = this;
    $("upload-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    $("cancel").addEventListener("click", () => this.cancel());
    $("new-job").addEventListener("click", () => this.navigate(null));
    this.form.acceptDrops($("dropzone"));
    this.form.acceptDrops($("stage"));
    // A file dropped beside the targets would make the browser leave the page to show it.
    for (const name of ["dragover", "drop"]) window.addEventListener(name, (event) => event.preventDefault());
    window.addEventListener("hashchange", () => this.route());
    window.addEventListener("focus", () => this.refreshJobs());
    this.loadModels();
    this.refreshJobs();
    this.route();
  }

  // -- routing: #job=ID is the open job -------------------------------------------------------------------

  /** Open `id` (null: none) by changing the address; the hashchange (or a direct call) does the rest. */
  navigate(id) {
    if (id) {
      if (jobIdFromHash() !== id) location.hash = `job=${encodeURIComponent(id)}`;
    } else if (location.hash) {
      history.pushState(null, "", location.pathname + location.search);
    }
    this.route();
  }

  route() {
    const id = jobIdFromHash();
    if (id === this.currentId) return;
    if (id) this.open(id);
    else this.close();
  }

  /** The stage in `state`, with `text` as its message (null: keep, "": none). */
  stage(state, text = null) {
    this.view.stage(state, text, this.currentId !== null);
  }

  close() {
    this.forget();
    this.view.status("Ready.");
    this.stage("idle", IDLE_TEXT);
    this.jobs.markCurrent(null);
  }

  /** Stop following the open job and clear its view. */
  forget(id = null) {
    this.generation += 1;
    this.watcher?.stop();
    this.watcher = null;
    this.currentId = id;
    this.view.transport(null);
    this.result.clear();
    this.progress.hide();
    this.view.error(null);
  }

  async open(id) {
    this.forget(id);
    const generation = this.generation;
    this.stage("loading", "Opening the job…");
    this.view.status(`Opening job ${id}…`);
    this.jobs.markCurrent(id);
    try {
      const job = await getJob(id);
      if (generation === this.generation) this.show(job);
    } catch (err) {
      if (generation !== this.generation) return;
      this.view.error(err.message, "job");
      this.view.status(err.status === 404 ? "There is no such job (deleted, or from another server)."
        : "Could not open the job.", "error");
      this.stage("idle", IDLE_TEXT);
    }
  }

  // -- a job's life -----------------------------------------------------------------------------------------

  show(job) {
    if (job.id !== this.currentId) return;
    if (isFinal(job)) this.finished(job);
    else this.working(job);
  }

  working(job) {
    this.stage(job.state, `${job.source?.name ?? "The video"}`);
    this.progress.job(job);
    this.view.status(job.state === "queued" ? "Waiting for a free worker…" : "Analysing…", "working");
    if (this.watcher) return;
    const generation = this.generation;
    this.watcher = new JobWatcher(job, {
      update: (update) => {
        if (generation !== this.generation) return;
        this.view.transport(this.watcher?.transport);
        const before = this.view.stageState;
        if (!isFinal(update)) this.working(update);
        if (update.state !== before) this.refreshJobs();
      },
      final: (final) => generation === this.generation && this.finished(final),
      trouble: (err) => {
        if (generation !== this.generation) return;
        if (err) this.view.status(`Lost touch with the job; trying again every second. ${err.message}`, "error");
        else if (this.view.statusState === "error") this.view.status("Analysing…", "working");
      },
    });
    this.watcher.start();
  }

  async finished(job) {
    const generation = this.generation;
    this.watcher?.stop();
    this.watcher = null;
    this.progress.hide();
    this.refreshJobs();
    if (job.state === "done") {
      let full = job;
      if (!job.result) { // the websocket's jobs carry no result: fetch it once
        try {
          full = await getJob(job.id);
        } catch (err) {
          if (generation === this.generation) {
            this.view.error(`The job is done, but its result could not be read: ${err.message}`, "job");
          }
          return;
        }
        if (generation !== this.generation) return;
      }
      this.stage("done", "");
      this.result.show(full);
      const actions = new Set((full.result.timeline ?? []).map((e) => e.label)).size;
      const plural = actions === 1 ? "" : "s";
      this.view.status(`Done: ${actions} action${plural} in ${formatDuration(full.result.duration)} of video.`, "done");
    } else if (job.state === "failed") {
      this.stage("failed", `${job.source?.name ?? "The video"} could not be analysed: the reason is below.`);
      this.view.error(`The analysis failed: ${job.error || "the server gave no reason."}`, "job-failed");
      this.view.status("Failed.", "error");
    } else {
      this.stage("cancelled", `${job.source?.name ?? "This job"}: cancelled before it finished.`);
      this.view.status("Cancelled.", "");
    }
  }

  async submit() {
    if (this.upload) return;
    const request = this.form.read();
    if (request.error) {
      this.view.error(request.error, "input");
      return;
    }
    this.navigate(null);
    this.view.error(null);
    const controller = new AbortController();
    this.upload = controller;
    this.form.busy(true);
    this.stage("uploading", request.file ? request.file.name : request.url);
    this.view.status(request.file ? "Uploading…" : "Sending the URL…", "working");
    this.progress.uploading(request.file ? 0 : null);
    try {
      const job = request.file
        ? await uploadJob(request.file, request.fields, {
          signal: controller.signal, onProgress: (f) => this.upload === controller && this.progress.uploading(f),
        })
        : await createUrlJob(request.url, request.options, controller.signal);
      this.forget(job.id);
      this.navigate(job.id);
      this.jobs.markCurrent(job.id);
      this.show(job);
    } catch (err) {
      this.progress.hide();
      this.stage("idle", IDLE_TEXT);
      if (err?.name === "AbortError") {
        this.view.status("Upload stopped.");
      } else {
        this.view.error(err.message, "upload");
        this.view.status(err.status ? "The server did not accept the job." : "The upload failed.", "error");
      }
    } finally {
      if (this.upload === controller) this.upload = null;
      this.form.busy(false);
      this.refreshJobs();
    }
  }

  async cancel() {
    if (this.upload) {
      this.upload.abort();
      return;
    }
    if (this.currentId) await this.remove({ id: this.currentId, state: "running" });
  }

  /** Cancel a queued / running job, delete a finished one. */
  async remove(job) {
    try {
      const answer = isFinal(job) ? await deleteJob(job.id) : await cancelJob(job.id);
      if (job.id === this.currentId) {
        if (answer?.deleted) this.navigate(null);
        else if (answer?.id) this.show(answer);
      }
    } catch (err) {
      this.view.error(`Could not ${isFinal(job) ? "delete" : "cancel"} the job: ${err.message}`, "delete");
    }
    this.refreshJobs();
  }

  // -- the job list and the model list --------------------------------------------------------------------

  async refreshJobs() {
    clearTimeout(this.jobsTimer);
    try {
      const data = await listJobs();
      this.jobs.show(data, this.currentId);
      if ((data.jobs ?? []).some((j) => !isFinal(j))) {
        this.jobsTimer = setTimeout(() => this.refreshJobs(), JOBS_POLL_BUSY_MS);
      }
    } catch (err) {
      this.jobs.failed(err.message);
    }
  }

  async loadModels() {
    clearTimeout(this.modelsTimer);
    try {
      const data = await fetchModels();
      this.picker.update(data);
      this.form.showCustomLabels(this.picker.clip);
      if (this.view.errorKind === "models") this.view.error(null);
      if (this.picker.pending) this.modelsTimer = setTimeout(() => this.loadModels(), MODELS_POLL_PENDING_MS);
    } catch (err) {
      this.view.error(`Could not load the model list: ${err.message}`, "models");
      this.modelsTimer = setTimeout(() => this.loadModels(), MODELS_POLL_RETRY_MS);
    }
  }
}

new AnalysePage(byTestId).start();
