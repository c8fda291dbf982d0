// jobyard console: live pages and log search. No inline script (the CSP forbids it).
//
// An element with data-live="URL" follows a Server-Sent Events stream of the console:
//   rows  -> the jobs list's rows (innerHTML of #jobs-live)
//   board -> the dashboard's live block (innerHTML of #dash-live)
//   head  -> a job's status, facts, buttons, timeline, outputs (innerHTML of #job-head)
//   log   -> text the job printed, appended to #log-text
//   end   -> the job ended: the stream is closed
//   session/bye -> the session ended or the server stops: reconnect once, then poll
// If the stream cannot be opened or breaks (401, 429, network), the page falls back to
// polling: it sends "jobyard:poll" to the element, whose hx-get/hx-select make htmx
// fetch the page again (and follow HX-Redirect to the login page when the session is over).
(function () {
  "use strict";

  function announce(root) {
    // console.js shows <time> in the browser's zone on every htmx:load.
    root.dispatchEvent(new CustomEvent("htmx:load", { bubbles: true }));
  }

  // -- log search -------------------------------------------------------------------
  var logText = null; // the log's raw text (the <pre> shows it, maybe highlighted)

  function escapeHtml(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function renderLog() {
    var pre = document.getElementById("log-text");
    if (!pre) return;
    if (logText === null) logText = pre.textContent;
    var q = document.getElementById("log-q");
    var only = document.getElementById("log-only");
    var count = document.getElementById("log-count");
    var needle = q ? q.value : "";
    if (!needle) {
      pre.textContent = logText;
      if (count) count.textContent = "";
      return;
    }
    var lower = needle.toLowerCase();
    var lines = logText.split("\n");
    var out = [];
    var hits = 0;
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      var at = line.toLowerCase().indexOf(lower);
      if (at < 0) {
        if (!(only && only.checked)) out.push(escapeHtml(line));
        continue;
      }
      hits++;
      var html = "";
      var from = 0;
      while (at >= 0) {
        html += escapeHtml(line.slice(from, at)) + "<mark>" +
          escapeHtml(line.slice(at, at + needle.length)) + "</mark>";
        from = at + needle.length;
        at = line.toLowerCase().indexOf(lower, from);
      }
      out.push(html + escapeHtml(line.slice(from)));
    }
    pre.innerHTML = out.join("\n");
    if (count) count.textContent = hits === 1 ? "1 matching line" : hits + " matching lines";
  }

  function appendLog(text) {
    var pre = document.getElementById("log-text");
    if (!pre) return;
    if (logText === null) logText = pre.textContent;
    var follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    logText += text;
    var shown = [pre, document.getElementById("log-meta"),
                 document.querySelector(".log-search")];
    for (var i = 0; i < shown.length; i++) if (shown[i]) shown[i].hidden = false;
    var note = document.getElementById("log-note");
    if (note) note.hidden = true;
    renderLog();
    if (follow) pre.scrollTop = pre.scrollHeight;
  }

  document.addEventListener("input", function (event) {
    if (event.target && (event.target.id === "log-q" || event.target.id === "log-only")) renderLog();
  });
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "log-only") renderLog();
  });
  // A polled page brings a new <pre>: read its text again and keep the search applied.
  document.addEventListener("htmx:afterSettle", function () { logText = null; renderLog(); });

  // -- live streams -----------------------------------------------------------------
  function follow(el) {
    var url = el.getAttribute("data-live");
    var id = el.id;
    var source = null;
    var failures = 0;
    var polling = null;
    var period = id === "jobs-live" ? 5000 : id === "dash-live" ? 10000 : 2000;

    function poll() {
      if (source) { source.close(); source = null; }
      if (polling) return;
      el.setAttribute("data-live-state", "polling");
      polling = setInterval(function () {
        var current = document.getElementById(id);
        if (!current || !current.hasAttribute("hx-get")) { clearInterval(polling); return; }
        current.dispatchEvent(new CustomEvent("jobyard:poll"));
      }, period);
    }

    // Keyboard users keep their place: the focused link or button is found again in
    // the new content (by its href, or its form's action) and focused.
    function focusKey(target) {
      var active = document.activeElement;
      if (!active || !target.contains(active)) return null;
      var href = active.getAttribute("href");
      if (href) return 'a[href="' + CSS.escape(href) + '"]';
      var form = active.form;
      if (form) return 'form[action="' + CSS.escape(form.getAttribute("action")) + '"] button';
      return null;
    }

    function swap(targetId, html) {
      var target = document.getElementById(targetId);
      if (!target) return;
      var keep = focusKey(target);
      target.innerHTML = html;
      if (window.htmx) window.htmx.process(target);
      announce(target);
      if (keep) {
        var again = target.querySelector(keep);
        if (again) again.focus();
      }
    }

    function open() {
      source = new EventSource(url);
      source.addEventListener("open", function () {
        failures = 0;
        el.setAttribute("data-live-state", "live");
      });
      source.addEventListener("rows", function (e) { swap("jobs-live", JSON.parse(e.data)); });
      source.addEventListener("board", function (e) { swap("dash-live", JSON.parse(e.data)); });
      source.addEventListener("head", function (e) { swap("job-head", JSON.parse(e.data)); });
      source.addEventListener("log", function (e) {
        appendLog(JSON.parse(e.data));
        // Reconnecting goes on from what was received, not from the page's offset.
        var received = new Blob([JSON.parse(e.data)]).size;
        url = url.replace(/offset=(\d+)/, function (_, n) { return "offset=" + (Number(n) + received); });
      });
      source.addEventListener("end", function () {
        source.close(); source = null;
        el.setAttribute("data-live-state", "ended");
      });
      // Any break (a refused stream: 401, 404, 429; a dropped one; the session or the
      // server ending it): reopen it ourselves, from the log offset reached, twice at
      // most in a row, then poll.
      function again() {
        if (!source) return;
        source.close(); source = null;
        if (failures >= 2) { poll(); return; }
        failures++;
        setTimeout(open, 1500);
      }
      source.addEventListener("session", again);
      source.addEventListener("bye", again);
      source.addEventListener("error", again);
    }

    if (!window.EventSource) { poll(); return; }
    open();
    window.addEventListener("pagehide", function () { if (source) source.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    renderLog();
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) follow(live[i]);
  });
})();
