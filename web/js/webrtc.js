// What both browser peers share (the live page's sending peer, web/js/peer.js, and the cameras page's
// receive-only viewer, web/js/cameras/viewer.js): an offline peer connection and non-trickle signalling, where
// the offer is sent once ICE gathering is complete, so signalling is one POST.

const GATHER_TIMEOUT_MS = 5000; // loopback gathering takes milliseconds; give up waiting after this

/** "disconnected" often recovers by itself; "failed" never does: how long to wait before calling it lost. */
export const DISCONNECT_GRACE_MS = 2500;

/** A peer connection without STUN/TURN: offline, host candidates on loopback / LAN only. */
export function offlinePeerConnection() {
  return new RTCPeerConnection({ iceServers: [] });
}

function waitForGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * Create and set the local offer, then wait for ICE gathering to complete (or time out), so that
 * pc.localDescription carries every candidate. The caller reads it after checking it still wants the peer.
 * @param {RTCPeerConnection} pc
 */
export async function gatherOffer(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitForGathering(pc);
}
