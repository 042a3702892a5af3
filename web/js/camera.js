// Opening the camera, and turning the browser's error names into messages that say what to do.

/** The camera could not be opened; `message` is for the user, `kind` for the page's state. */
export class CameraError extends Error {
  constructor(message, kind) {
    super(message);
    this.name = "CameraError";
    this.kind = kind;
  }
}

// 640x480 at 15 fps is plenty: the models look at 112-224 px frames sampled at about 15 fps.
const CONSTRAINTS = {
  audio: false,
  video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 30 } },
};

/** @returns {Promise<MediaStream>} */
export async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new CameraError(
      "This browser cannot use a camera on this page: open it as http://127.0.0.1:PORT or http://localhost:PORT, "
        + "or over https (browsers only allow cameras on secure origins).",
      "insecure",
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  } catch (err) {
    throw explainCameraError(err);
  }
}

/** @param {any} err what getUserMedia threw */
export function explainCameraError(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return new CameraError(
        "Camera access was denied. Allow the camera for this site (the camera icon in the address bar), "
          + "then press Start camera again.",
        "denied",
      );
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return new CameraError(
        "No camera was found. Connect a camera (or enable it in your system settings), "
          + "then press Start camera again.",
        "missing",
      );
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return new CameraError(
        "The camera is busy or failed to start. Close other apps that use it, then press Start camera again.",
        "busy",
      );
    default:
      return new CameraError(`The camera could not start (${err?.name || "error"}: ${err?.message || err}).`,
        "other");
  }
}

/** Stop every track so the camera light goes off. */
export function stopCamera(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}
