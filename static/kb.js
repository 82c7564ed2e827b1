// Progressive enhancement: copy buttons on code, in-place run advancing, confirmation dialog.
(function () {
  "use strict";

  function addCopyButtons(root) {
    root.querySelectorAll("pre > code").forEach(function (code) {
      var pre = code.parentElement;
      if (pre.querySelector(".copy")) return;
      var b = document.createElement("button");
      b.type = "button";
      b.className = "copy";
      b.textContent = "Copy";  // the visible word is the button's name (WCAG 2.5.3); the title says more
      b.title = "Copy this code to the clipboard";
      b.addEventListener("click", function () {
        var done = function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(code.innerText).then(done);
        } else {
          var t = document.createElement("textarea");
          t.value = code.innerText; document.body.appendChild(t); t.select();
          try { document.execCommand("copy"); done(); } finally { t.remove(); }
        }
      });
      pre.classList.add("has-copy");  // room above the first line, so the button never covers code
      pre.appendChild(b);
    });
  }

  function confirmDialog() {
    var dlg = document.getElementById("confirm-dialog");
    return new Promise(function (resolve) {
      if (!dlg || !dlg.showModal) { resolve(window.confirm("Run this action? It changes the database.")); return; }
      dlg.querySelectorAll("[data-dialog]").forEach(function (btn) {
        btn.onclick = function () { dlg.close(); resolve(btn.getAttribute("data-dialog") === "yes"); };
      });
      dlg.addEventListener("cancel", function () { resolve(false); }, { once: true });
      dlg.showModal();
      dlg.querySelector("[data-dialog=no]").focus();
    });
  }

  function enhanceRun() {
    var run = document.getElementById("run");
    if (!run) return;
    run.querySelectorAll("form.advance").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var submitter = ev.submitter;
        var data = new FormData(form);
        if (submitter && submitter.name) data.set(submitter.name, submitter.value);
        data.set("js", "1");
        var go = Promise.resolve(true);
        if (submitter && submitter.name === "confirm" && submitter.value === "yes") go = confirmDialog();
        go.then(function (ok) {
          if (!ok) return;
          form.classList.add("busy");
          form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
          fetch(form.action, { method: "POST", body: data, headers: { "X-CSRF-Token": data.get("csrf_token") || "" } })
            .then(function (resp) { return resp.text().then(function (html) { return { resp: resp, html: html }; }); })
            .then(function (r) {
              var doc = new DOMParser().parseFromString(r.html, "text/html");
              var fresh = doc.getElementById("run");
              if (fresh) {
                run.replaceWith(fresh);
                history.replaceState(null, "", "/runs/" + fresh.getAttribute("data-run"));
                addCopyButtons(fresh);
                enhanceRun();
                var cur = document.getElementById("current");
                if (cur) { cur.scrollIntoView({ block: "start" }); cur.focus({ preventScroll: true }); }
              } else {
                document.open(); document.write(r.html); document.close();
              }
            })
            .catch(function () { form.submit(); });
        });
      });
    });
  }

  function enhanceSearch() {
    var ta = document.getElementById("q");
    if (!ta) return;
    ta.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); ta.form.submit(); }
    });
  }

  function enhanceFilter() {
    // /errors: the same words the server filters on (?filter=), narrowed as they are typed
    var box = document.querySelector("input[data-filter-for]");
    if (!box) return;
    var table = document.getElementById(box.getAttribute("data-filter-for"));
    var count = document.getElementById("entries-count");
    if (!table) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    box.addEventListener("input", function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.getAttribute("data-filter") || "";
        var ok = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (count) count.textContent = shown + (shown === 1 ? " entry" : " entries");
      var url = new URL(window.location.href);
      if (box.value.trim()) url.searchParams.set("filter", box.value.trim()); else url.searchParams.delete("filter");
      history.replaceState(null, "", url.pathname + url.search);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhanceFilter();
    addCopyButtons(document);
    enhanceRun();
    enhanceSearch();
  });
})();
