// The server's token, asked once: when the server answers 401 (or says up front that it wants a token), the
// page shows a small dialog, posts the token to /api/auth/login and carries on. The server then keeps a session
// cookie (HttpOnly, so this script never sees it), which also reaches what cannot carry a header: websockets,
// <video> and <img>. Every caller waiting for a sign-in shares the one dialog.

const LOGIN = "/api/auth/login";
const STATUS = "/api/auth";

let prompt = null; // the open dialog's promise, shared by every caller that got a 401 meanwhile
let session = null; // resolves once this page may use the API (signed in, or no token needed)

/** True for the replies that mean "sign in": the API's 401 (not the login route's own). */
export function needsSignIn(status, path = "") {
  return status === 401 && !String(path).startsWith(LOGIN);
}

/**
 * Resolves once this page may use the API: asks the server whether it wants a token and, when this browser
 * holds no session, shows the dialog. Openers of websockets and uploads call it first, because a websocket
 * refused with 401 cannot say why, and an upload should not be sent twice.
 */
export function ensureSession() {
  if (!session) {
    session = checkSession().catch((err) => {
      session = null;
      throw err;
    });
  }
  return session;
}

async function checkSession() {
  let state;
  try {
    const reply = await fetch(STATUS, { cache: "no-store" });
    if (!reply.ok) return; // let the real request say what is wrong
    state = await reply.json();
  } catch {
    return; // unreachable: the real request reports it
  }
  if (state?.required && !state.authenticated) await signIn();
}

/**
 * Show the dialog (once, however many callers ask) and resolve when the server accepted a token.
 * @param {string} [reason] the server's words for why it asked
 */
export function signIn(reason = "") {
  session = null;
  if (!prompt) {
    prompt = showDialog(reason).finally(() => {
      prompt = null;
    });
    session = prompt;
  }
  return prompt;
}

function loadStyle() {
  if (document.querySelector("link[data-auth-style]")) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("../auth.css", import.meta.url).href;
  link.dataset.authStyle = "";
  document.head.append(link);
}

function build() {
  loadStyle();
  const dialog = document.createElement("dialog");
  dialog.className = "auth-dialog";
  dialog.dataset.testid = "auth-dialog";
  dialog.innerHTML = `
    <form method="dialog" class="auth-form">
      <h2>This server needs its token</h2>
      <p class="auth-why">It was started with <code>--token</code>. Enter that token once; this browser then
        stays signed in to it.</p>
      <label>Token <input type="password" name="token" autocomplete="current-password" required
        data-testid="auth-token"></label>
      <p class="auth-error" role="alert" data-testid="auth-error"></p>
      <button type="submit" data-testid="auth-submit">Sign in</button>
    </form>`;
  // Nothing works without the token: Escape does not close the dialog.
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  document.body.append(dialog);
  return dialog;
}

function showDialog(reason) {
  const dialog = document.querySelector("dialog.auth-dialog") ?? build();
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input");
  const error = dialog.querySelector(".auth-error");
  const button = dialog.querySelector("button");
  error.textContent = reason && !/needs its token/.test(reason) ? reason : "";
  input.value = "";
  return new Promise((resolve) => {
    async function submit(event) {
      event.preventDefault();
      button.disabled = true;
      error.textContent = "";
      try {
        const reply = await fetch(LOGIN, {
          method: "POST", cache: "no-store", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ token: input.value }),
        });
        if (reply.ok) {
          form.removeEventListener("submit", submit);
          dialog.close();
          resolve();
          return;
        }
        let message = `The server answered ${reply.status}.`;
        try {
          message = (await reply.json()).error || message;
        } catch {
          // not JSON: the status line it is
        }
        error.textContent = message;
        input.select();
      } catch {
        error.textContent = "The server could not be reached. Check that `har-stream serve` is running.";
      } finally {
        button.disabled = false;
      }
    }
    form.addEventListener("submit", submit);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}
