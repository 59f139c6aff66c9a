// dtk ui: makes a run in progress live on a service page. Everything else on the page is
// plain HTML rendered by the server; without this script the page still reads whole.
//
// The server sends server-sent events from /api/services/NAME/events (see dtk-cli/JSON.md):
//   run    dtk.ui.live/v1   a run was found (at once if one is in progress): its tasks
//   tasks  dtk.ui.tasks/v1  task changes since the last event
//   end    dtk.ui.end/v1    the run ended
// Every element of a task carries data-task="ID" and data-state="STATE" (the timeline's
// rows, the task table's rows, the DAG's boxes); the stylesheet colours them by state.
(function () {
  "use strict";
  var body = document.body;
  if (!body || body.getAttribute("data-page") !== "service" || !window.EventSource) {
    return;
  }
  var service = body.getAttribute("data-service");
  var selected = body.getAttribute("data-selected");
  var live = {
    run: body.getAttribute("data-live-run") || null,
    events: 0,
    ended: null,
    kind: null,
  };
  window.dtkLive = live;

  function all(sel, f) {
    Array.prototype.forEach.call(document.querySelectorAll(sel), f);
  }
  function q(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, "\\$&");
  }
  function dur(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.floor((ms % 60000) / 1000) + " s";
  }
  function timeline() {
    var t = document.getElementById("timeline");
    return t && t.getAttribute("data-live") === "true" ? t : null;
  }
  function runStart() {
    var t = timeline();
    var s = t && t.getAttribute("data-run-start");
    return s ? Number(s) : null;
  }
  function badge(cell, text, cls) {
    if (!cell) return;
    var b = cell.querySelector(".badge");
    if (b) {
      b.textContent = text;
      b.className = "badge " + cls;
    }
  }

  // One task's new state; `at` is when (ms since the epoch).
  function setTask(id, state, startAt, endAt, detail) {
    var base = runStart();
    all('[data-task="' + q(id) + '"]', function (el) {
      el.setAttribute("data-state", state);
      var rel = function (at) { return base !== null && at ? Math.max(0, at - base) : null; };
      var s = rel(startAt), e = rel(endAt);
      if (el.tagName === "TR") {
        badge(el.querySelector("td.state"), state, state);
        if (s !== null) el.querySelector("td.start").textContent = dur(s);
        if (e !== null) el.querySelector("td.end").textContent = dur(e);
        var s0 = el.getAttribute("data-start");
        if (s !== null) el.setAttribute("data-start", s);
        var from = s !== null ? s : (s0 !== null ? Number(s0) : null);
        if (e !== null && from !== null) el.querySelector("td.took").textContent = dur(e - from);
        if (detail) {
          var cell = el.querySelector("td.state");
          var d = cell.querySelector(".error") || cell.appendChild(document.createElement("div"));
          d.className = "error";
          d.textContent = detail;
        }
        component(el.getAttribute("data-component"), state);
      } else if (el.classList.contains("task")) {
        if (s !== null) el.setAttribute("data-start", s);
        if (e !== null) el.setAttribute("data-end", e);
      }
    });
  }

  // A component's row follows its converge task.
  function component(id, taskState) {
    if (!id || live.kind !== "converge") return;
    var map = { done: ["converged", "up to date"], unchanged: ["converged", "up to date"],
                failed: ["failed", "failed"], running: ["running", "running"] };
    var m = map[taskState];
    if (!m) return;
    all('tr[data-component="' + q(id) + '"]', function (row) {
      if (row.closest("#components")) {
        row.setAttribute("data-state", m[0]);
        badge(row.querySelector("td.state"), m[1], m[0]);
      }
    });
  }

  // Moves the timeline's bars and axis to the time now.
  function layout() {
    var t = timeline();
    var base = runStart();
    if (!t || base === null) return;
    var label = Number(t.getAttribute("data-label"));
    var bars = Number(t.getAttribute("data-bars"));
    var now = live.ended ? 0 : Date.now() - base;
    var span = Math.max(now, 1);
    all("#timeline g.task", function (g) {
      var e = g.getAttribute("data-end");
      if (e !== null) span = Math.max(span, Number(e));
    });
    var scale = bars / span;
    all("#timeline g.task", function (g) {
      var s = g.getAttribute("data-start");
      var e = g.getAttribute("data-end");
      var rect = g.querySelector("rect.bar");
      if (s === null) {
        rect.setAttribute("width", "0");
        return;
      }
      var end = e !== null ? Number(e) : (g.getAttribute("data-state") === "running" ? span : Number(s));
      rect.setAttribute("x", (label + Number(s) * scale).toFixed(1));
      rect.setAttribute("width", Math.max(2, (end - Number(s)) * scale).toFixed(1));
    });
    var axis = t.querySelector("g.axis");
    if (!axis) return;
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    var step = 1;
    outer: for (var p = 1; ; p *= 10) {
      var ms = [1, 2, 5];
      for (var i = 0; i < ms.length; i++) {
        if (span / (p * ms[i]) <= 6) { step = p * ms[i]; break outer; }
      }
    }
    var h = Number(t.getAttribute("height"));
    var ns = "http://www.w3.org/2000/svg";
    for (var x = 0; x <= span; x += step) {
      var px = (label + x * scale).toFixed(1);
      var line = document.createElementNS(ns, "line");
      line.setAttribute("x1", px); line.setAttribute("x2", px);
      line.setAttribute("y1", "20"); line.setAttribute("y2", String(h - 4));
      var text = document.createElementNS(ns, "text");
      text.setAttribute("x", px); text.setAttribute("y", "14");
      text.textContent = dur(x);
      axis.appendChild(line); axis.appendChild(text);
    }
  }

  function banner(state, html) {
    var b = document.getElementById("live");
    if (!b) return;
    b.setAttribute("data-state", state);
    b.className = "banner " + state;
    b.textContent = "";
    b.appendChild(html);
  }
  function text(tag, s) {
    var el = document.createElement(tag);
    el.textContent = s;
    return el;
  }
  function progress(finished, total) {
    var p = document.getElementById("live-progress");
    if (p) p.textContent = finished + "/" + total;
  }

  var src = new EventSource("/api/services/" + encodeURIComponent(service) + "/events");
  var timer = null;

  src.addEventListener("run", function (ev) {
    live.events++;
    var doc = JSON.parse(ev.data);
    var run = doc.run;
    if (!run) return;
    live.kind = run.kind;
    if (run.run !== live.run) {
      if (!selected && run.running) {
        // A run started after this page was made: show it.
        window.location.reload();
        return;
      }
      if (run.running) {
        var f = document.createDocumentFragment();
        f.appendChild(text("strong", run.kind + " " + run.run));
        f.appendChild(document.createTextNode(" is running. "));
        var a = text("a", "Follow it live");
        a.href = "?";
        f.appendChild(a);
        banner("running", f);
      }
      return;
    }
    run.tasks.forEach(function (t) {
      setTask(t.id, t.state, t.started_at_ms, t.ended_at_ms, t.detail);
    });
    var done = run.tasks.filter(function (t) { return t.state !== "pending" && t.state !== "running"; }).length;
    progress(done, run.tasks.length);
    layout();
    if (run.running && !timer) timer = window.setInterval(layout, 500);
  });

  src.addEventListener("tasks", function (ev) {
    live.events++;
    var doc = JSON.parse(ev.data);
    if (doc.run !== live.run) return;
    doc.changes.forEach(function (c) {
      var running = c.state === "running";
      setTask(c.id, c.state, running ? c.at_ms : null, running ? null : c.at_ms, c.detail);
    });
    progress(doc.finished, doc.tasks);
    layout();
  });

  src.addEventListener("end", function (ev) {
    live.events++;
    var doc = JSON.parse(ev.data);
    if (doc.run !== live.run) return;
    live.ended = doc.status;
    if (timer) {
      window.clearInterval(timer);
      timer = null;
    }
    var f = document.createDocumentFragment();
    f.appendChild(text("strong", (live.kind || "run") + " " + doc.run));
    f.appendChild(document.createTextNode(" ended: "));
    f.appendChild(text("span", doc.status));
    f.lastChild.className = "badge " + doc.status;
    f.lastChild.id = "live-status";
    f.appendChild(document.createTextNode(". "));
    var a = text("a", "Reload for its recorded report");
    a.href = "?";
    f.appendChild(a);
    banner("ended", f);
    var rs = document.getElementById("run-status");
    if (rs) {
      rs.textContent = doc.status;
      rs.className = "badge " + doc.status;
    }
    body.setAttribute("data-run-ended", doc.status);
    layout();
  });
})();
