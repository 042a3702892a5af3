// The "Your own labels (CLIP)" box of the live and analyse pages. Typed labels need this server's CLIP model,
// so while /api/models does not list CLIP as ready the box is disabled and its hint says why, in the server's
// own words (missing weights come with the command that imports them). The pages poll /api/models while a
// model loads, so the box comes alive by itself once CLIP is ready.

import { formatPercent } from "./metrics.js";
import { messageNodes } from "./richtext.js";

/** Why typed labels cannot be used now, as nodes for the hint; null when CLIP is ready. */
export function clipProblem(clip) {
  if (!clip) return ["Typed labels need CLIP, and this server lists no CLIP model."];
  switch (clip.status) {
    case "ready":
      return null;
    case "loading":
      return ["CLIP is still loading on this server; typed labels can be used once it is ready."];
    case "downloading":
      return [`CLIP is downloading${Number.isFinite(clip.progress) ? ` (${formatPercent(clip.progress)})` : ""}; `
        + "typed labels can be used once it is ready."];
    case "missing":
      return ["CLIP is not available on this server, so typed labels cannot be used: ",
        ...messageNodes(clip.message, clip.import_command)];
    case "error":
      return ["CLIP failed to load on this server, so typed labels cannot be used: ", ...messageNodes(clip.message)];
    default:
      return [`CLIP is ${clip.status} on this server; typed labels can be used once it is ready.`];
  }
}

/**
 * Enable `textarea` only while CLIP is ready (its data-clip says CLIP's state); returns the problem nodes
 * (null when usable). A disabled box's text is kept, but the pages send no typed labels while it is disabled.
 */
export function syncClipBox(textarea, clip) {
  const problem = clipProblem(clip);
  textarea.disabled = problem !== null;
  textarea.dataset.clip = clip?.status ?? "none";
  return problem;
}
