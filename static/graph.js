// Draws runbook graphs: the DOT in a [data-dot] element is laid out by the vendored Graphviz build
// (static/vendor/viz) into an SVG. Without JavaScript or WebAssembly the graph stays hidden and the
// step list below it is the page.
(function () {
  "use strict";

  var MIN_SCALE = 0.65; // fitting a wide graph to a phone never shrinks its text below ~10px
  var PT = 4 / 3; // Graphviz sizes in points; CSS pixels are 3/4 of a point
  var ready = null;
  var VIZ_SRC = document.currentScript && document.currentScript.getAttribute("data-viz");

  function viz() {
    if (!ready) ready = window.Viz.instance();
    return ready;
  }

  function size(section) {
    var canvas = section.querySelector(".graph-canvas");
    var svg = canvas && canvas.querySelector("svg");
    if (!svg) return;
    var natural = parseFloat(svg.getAttribute("data-width"));
    var full = section.classList.contains("full-size");
    var pad = window.getComputedStyle(canvas);
    var room = canvas.clientWidth - parseFloat(pad.paddingLeft) - parseFloat(pad.paddingRight);
    var scale = full ? 1 : Math.min(1, Math.max(MIN_SCALE, room / natural));
    svg.style.width = Math.round(natural * scale) + "px";
  }

  // scroll the canvas (not the page) so the node named by data-focus is in view
  function reveal(canvas, svg) {
    var id = canvas.getAttribute("data-focus");
    var node = id && svg.querySelector("#" + CSS.escape(id));
    if (!node) return;
    var box = canvas.getBoundingClientRect();
    var r = node.getBoundingClientRect();
    if (r.left < box.left || r.right > box.left + canvas.clientWidth) {
      canvas.scrollLeft += r.left - box.left - (canvas.clientWidth - r.width) / 2;
    }
    if (r.top < box.top || r.bottom > box.top + canvas.clientHeight) {
      canvas.scrollTop += r.top - box.top - (canvas.clientHeight - r.height) / 2;
    }
  }

  function draw(section) {
    var canvas = section.querySelector("[data-dot]");
    if (!canvas || canvas.getAttribute("data-drawn")) return;
    canvas.setAttribute("data-drawn", "pending");
    viz().then(function (v) {
      var svg = v.renderSVGElement(canvas.getAttribute("data-dot"));
      // keep the viewBox and let CSS size it: the graph scales with its container
      svg.setAttribute("data-width", String(parseFloat(svg.getAttribute("width")) * PT));
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
      svg.setAttribute("focusable", "false");
      canvas.appendChild(svg);
      canvas.setAttribute("data-drawn", "yes");
      section.hidden = false;
      size(section);
      reveal(canvas, svg);
      var zoom = section.querySelector("[data-graph-zoom]");
      if (zoom) {
        zoom.addEventListener("click", function () {
          var full = section.classList.toggle("full-size");
          zoom.setAttribute("aria-pressed", full ? "true" : "false");
          zoom.textContent = full ? "Fit to width" : "Full size";
          size(section);
        });
      }
    }).catch(function (err) {
      canvas.setAttribute("data-drawn", "failed");
      if (window.console) console.warn("runbook graph not drawn:", err);
    });
  }

  function drawAll(root) {
    if (!window.Viz) return;
    root.querySelectorAll("[data-graph]").forEach(draw);
  }

  // Graphviz is fetched after the page has loaded (it is most of a graph page's bytes), then draws every graph
  function loadViz() {
    if (window.Viz || !VIZ_SRC || !document.querySelector("[data-graph]")) { drawAll(document); return; }
    var s = document.createElement("script");
    s.src = VIZ_SRC;
    s.onload = function () { drawAll(document); };
    s.onerror = function () { if (window.console) console.warn("runbook graph not drawn: Graphviz did not load"); };
    document.head.appendChild(s);
  }

  // ...when the graph's place comes near the screen (a phone reads the page first), or a few seconds
  // after the page has loaded, so the graph is ready by the time anyone scrolls to it
  function loadVizSoon() {
    var section = document.querySelector("[data-graph]");
    var once = function () { if (!loadVizSoon.done) { loadVizSoon.done = true; loadViz(); } };
    if (!section || !("IntersectionObserver" in window)) { once(); return; }
    var mark = document.createElement("div");  // the section is hidden until drawn: watch a mark in its place
    section.parentNode.insertBefore(mark, section);
    new IntersectionObserver(function (seen, obs) {
      if (seen.some(function (e) { return e.isIntersecting; })) { obs.disconnect(); once(); }
    }, { rootMargin: "0px" }).observe(mark);
    var later = function () { setTimeout(once, 5000); };
    if (document.readyState === "complete") later(); else window.addEventListener("load", later);
  }

  document.addEventListener("DOMContentLoaded", function () {
    loadVizSoon();
    // the run page replaces its content in place after each step: draw the fresh graph too
    new MutationObserver(function () { drawAll(document); }).observe(document.body, { childList: true, subtree: true });
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { document.querySelectorAll("[data-graph]").forEach(size); }, 100);
    });
  });
})();
