// The triage page: a dropped or chosen file (or pasted text) is sent as the raw request body, so the
// server reads it as a stream while it uploads; the bar shows the upload, which the server reads as
// fast as it triages. Without JavaScript the form posts the file as multipart and the page comes back.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function megabytes(n) { return (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + " MB"; }

  ready(function () {
    var form = document.getElementById("triage-form");
    if (!form || !window.XMLHttpRequest) return;
    var zone = document.getElementById("dropzone");
    var fileInput = document.getElementById("triage-file");
    var text = document.getElementById("triage-text");
    var status = document.getElementById("triage-status");
    var bar = document.getElementById("triage-progress");
    var said = document.getElementById("triage-status-text");
    var button = document.getElementById("triage-go");
    var limit = parseInt(form.getAttribute("data-limit"), 10);
    var dropped = null;

    function say(msg, value) {
      status.hidden = false;
      said.textContent = msg;
      if (value === null) bar.removeAttribute("value"); else bar.value = value;
    }

    function send(body, name) {
      var size = body.size !== undefined ? body.size : body.length;
      if (size > limit) {
        say(name + " is " + megabytes(size) + ", more than the " + form.getAttribute("data-limit-text") +
            " this server accepts: gzip it, or run kb triage FILE where the log is.", 0);
        return;
      }
      var params = new URLSearchParams();
      var prefix = document.getElementById("triage-prefix").value;
      var format = document.getElementById("triage-format").value;
      if (prefix) params.set("prefix", prefix);
      if (format) params.set("format", format);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/triage" + (params.toString() ? "?" + params.toString() : ""));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "text/html");
      xhr.upload.onprogress = function (ev) {
        if (ev.lengthComputable) {
          say("Reading " + name + ": " + megabytes(ev.loaded) + " of " + megabytes(ev.total), 100 * ev.loaded / ev.total);
        }
      };
      xhr.upload.onload = function () { say("Read " + name + "; writing the report…", null); };
      xhr.onerror = function () { say("The upload failed (the connection closed). Try again, or gzip the log first.", 0); done(); };
      xhr.onload = function () {
        var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
        var fresh = doc.getElementById("triage-report");
        var target = document.getElementById("triage-report");
        if (fresh) {
          target.replaceWith(fresh);
          status.hidden = true;
        } else {
          var main = doc.querySelector("main .narrow") || doc.querySelector("main");
          target.innerHTML = "";
          if (main) {
            var box = document.createElement("div");
            box.className = "triage-error";
            box.setAttribute("role", "alert");
            Array.prototype.forEach.call(main.childNodes, function (n) {
              if (n.nodeName !== "P" || !n.querySelector || !n.querySelector("a[href='/']")) box.appendChild(n.cloneNode(true));
            });
            target.appendChild(box);
          }
          status.hidden = true;
        }
        done();
        var report = document.getElementById("triage-report");
        if (report) report.scrollIntoView({ block: "start" });
      };
      button.disabled = true;
      form.classList.add("busy");
      say("Sending " + name + "…", 0);
      xhr.send(body);
    }

    function done() { button.disabled = false; form.classList.remove("busy"); }

    ["dragenter", "dragover"].forEach(function (t) {
      zone.addEventListener(t, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (t) {
      zone.addEventListener(t, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (ev) {
      ev.preventDefault();
      var files = ev.dataTransfer && ev.dataTransfer.files;
      if (files && files.length) { dropped = files[0]; send(dropped, dropped.name); }
    });
    fileInput.addEventListener("change", function () { dropped = null; });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = fileInput.files && fileInput.files[0] ? fileInput.files[0] : dropped;
      if (file) { send(file, file.name); return; }
      if (text.value.trim()) { send(new Blob([text.value], { type: "text/plain" }), "the pasted text"); return; }
      say("Choose or drop a log file, or paste log lines.", 0);
    });
  });
})();
