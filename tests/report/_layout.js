// Measures the report's layout once plotly has drawn, and writes the findings as JSON into a pre element
// with id layout-check in the parent page (the report runs in an iframe of the width under test, as
// headless Chromium's window is at least 500 px wide; the parent is read back from --dump-dom). Three kinds of faults:
//   outside: a visible box whose right edge passes the viewport, unless inside a horizontal scroll container;
//   clipped: a box cut off by an ancestor that hides its overflow (its content cannot be reached);
//   overlap: two boxes (tables, figures, figure captions, warnings, headings, paragraphs) that are not nested
//            and intersect.
// Plotly refits a figure to its box asynchronously (a ResizeObserver on the page): the measure waits until no
// figure is drawn wider than its box, or 5 s, so a slow machine measures the settled page, not a frame in between;
// a figure still wider on a retry is asked to refit (Plotly.Plots.resize, what the page's observer calls), as the
// observer's callback can come after the check on a loaded machine.
const wider = () => [...document.querySelectorAll(".js-plotly-plot")].filter((plot) => {
  const box = plot.getBoundingClientRect();
  return [...plot.querySelectorAll(".main-svg")].some((svg) => svg.getBoundingClientRect().right > box.right + 1);
});
const settled = (then, tries = 50) => {
  const late = wider();
  if (tries === 0 || late.length === 0) return then();
  if (tries < 40 && window.Plotly) late.forEach((plot) => window.Plotly.Plots.resize(plot));
  setTimeout(() => settled(then, tries - 1), 100);
};
window.addEventListener("load", () => setTimeout(() => settled(() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const hides = (el) => ["hidden", "clip"].includes(getComputedStyle(el).overflowX);
  const visible = (r) => r.width > 0 && r.height > 0;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "")
    + (el.closest("section") ? " in section#" + el.closest("section").id : "");
  const inScroller = (el) => { for (let a = el.parentElement; a; a = a.parentElement) if (scrolls(a)) return a; return null; };
  const out = {width, scrollWidth: document.documentElement.scrollWidth, outside: [], clipped: [], overlap: [],
               scrollers: 0};
  const all = [...document.body.querySelectorAll("*")].filter(
    (el) => !(el.parentElement && el.parentElement.closest(".js-plotly-plot")) && !el.closest("script, style"));
  for (const el of all) {
    const r = el.getBoundingClientRect();
    if (!visible(r)) continue;
    if (r.right > width + 1 && !inScroller(el)) out.outside.push([name(el), Math.round(r.right)]);
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (scrolls(a)) break;
      if (hides(a) && !a.classList.contains("js-plotly-plot") && !a.closest(".js-plotly-plot")) {
        const b = a.getBoundingClientRect();
        if (r.right > b.right + 1 || r.left < b.left - 1) out.clipped.push([name(el), name(a)]);
        break;
      }
    }
  }
  for (const plot of document.querySelectorAll(".js-plotly-plot")) {  // drawn wider than its box
    const box = plot.getBoundingClientRect();
    for (const svg of plot.querySelectorAll(".main-svg")) {
      const r = svg.getBoundingClientRect();
      if (visible(r) && (r.right > box.right + 1 || r.left < box.left - 1)) out.outside.push([name(plot), Math.round(r.right)]);
    }
  }
  const boxes = [...document.querySelectorAll(
    "section table, section figure, section figcaption, .warnings, section > h2, section > p, .table-box")]
    .filter((el) => !el.closest("details") && visible(el.getBoundingClientRect()));
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.contains(b) || b.contains(a)) continue;
      const p = a.getBoundingClientRect(), q = b.getBoundingClientRect();
      const dx = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const dy = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (dx > 1 && dy > 1) out.overlap.push([name(a), name(b)]);
    }
  }
  out.scrollers = [...document.querySelectorAll(".table-box")].filter((el) => el.scrollWidth > el.clientWidth + 1)
    .map((el) => (el.querySelector("caption") || el).textContent.slice(0, 40) + " in section#" + el.closest("section, body").id);
  const pre = document.createElement("pre");
  pre.id = "layout-check";
  pre.textContent = JSON.stringify(out);
  window.parent.document.body.appendChild(pre);
}), 500));
