// The layout every page shares: the title and the navigation between the pages, rendered into the page's
// <header data-layout="header" data-page="…" data-subtitle="…">, in front of what the page put there itself
// (its status badge). One place for the navigation, so the pages cannot drift apart; the current page is
// marked with aria-current="page". Loaded as the first module of each page, so it runs before the page's own.

/** The pages, in navigation order: [key, path, data-testid, link text]. */
export const PAGES = [
  ["live", "/", "nav-live", "Live camera"],
  ["analyse", "/analyse", "nav-analyse", "Analyse a video"],
  ["cameras", "/cameras", "nav-cameras", "Cameras"],
  ["events", "/events", "nav-events", "Events"],
];

/** The page's key: data-page, else found from the path ("/" and "/index.html" are the live page). */
function currentPage(header) {
  if (header.dataset.page) return header.dataset.page;
  const path = location.pathname.replace(/\/index\.html$/, "/").replace(/\.html$/, "");
  return PAGES.find(([, href]) => href === path)?.[0] ?? null;
}

/** Fill `header` with the title and the navigation (idempotent: a second call changes nothing). */
export function renderHeader(header) {
  if (header.querySelector(".topnav")) return;
  const current = currentPage(header);

  const title = document.createElement("h1");
  title.append("har-stream");
  if (header.dataset.subtitle) {
    const subtitle = document.createElement("span");
    subtitle.className = "subtitle";
    subtitle.textContent = header.dataset.subtitle;
    title.append(" ", subtitle);
  }

  const nav = document.createElement("nav");
  nav.className = "topnav";
  nav.setAttribute("aria-label", "Pages");
  for (const [key, href, testid, text] of PAGES) {
    const link = document.createElement("a");
    link.href = href;
    link.dataset.testid = testid;
    link.textContent = text;
    if (key === current) link.setAttribute("aria-current", "page");
    nav.append(link);
  }
  header.prepend(title, nav);
}

const header = document.querySelector('[data-layout="header"]');
if (header) renderHeader(header);
