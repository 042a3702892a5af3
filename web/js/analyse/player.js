// The result's <video> and what follows its playhead. Every frame shown (requestVideoFrameCallback where the
// browser has it), every seek and every timeupdate report the media time, so the overlay, the timeline and
// the chart move with the picture, paused or playing.

export class Player {
  /**
   * @param {HTMLVideoElement} video
   * @param {(t: number) => void} onTime
   */
  constructor(video, onTime) {
    this.video = video;
    this.onTime = onTime;
    this.frameHandle = null;
    const report = () => this.onTime(video.currentTime);
    for (const name of ["timeupdate", "seeking", "seeked", "loadedmetadata", "emptied"]) {
      video.addEventListener(name, report);
    }
    video.addEventListener("play", () => this.followFrames());
  }

  /** Play `src` (null: unload). */
  load(src) {
    const { video } = this;
    this.stopFollowing();
    if (!src) {
      video.removeAttribute("src");
      video.load();
      video.hidden = true;
      return;
    }
    if (video.getAttribute("src") !== src) {
      video.src = src;
      video.load();
    }
    video.hidden = false;
  }

  /** Jump to `t` seconds; the page updates at once, not only when the browser has found the frame. */
  seek(t) {
    this.video.currentTime = t;
    this.onTime(t);
  }

  followFrames() {
    const { video } = this;
    if (!("requestVideoFrameCallback" in video) || this.frameHandle !== null) return;
    const tick = (_now, frame) => {
      this.onTime(frame.mediaTime ?? video.currentTime);
      this.frameHandle = video.paused || video.ended ? null : video.requestVideoFrameCallback(tick);
    };
    this.frameHandle = video.requestVideoFrameCallback(tick);
  }

  stopFollowing() {
    if (this.frameHandle !== null && "cancelVideoFrameCallback" in this.video) {
      this.video.cancelVideoFrameCallback(this.frameHandle);
    }
    this.frameHandle = null;
  }
}
