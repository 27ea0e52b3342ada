// switchyard dashboard: the only script. No dependencies, nothing fetched but the
// dashboard's own URLs and the API's event streams.
//
// A section with `data-stream` follows that /api/v1 event stream:
// - it mints a short-lived stream token through the dashboard (POST /ui/stream-token,
//   with the page's CSRF token) and opens an EventSource with it;
// - when the connection drops (or the token expires) it mints a new token and resumes
//   with `last_event_id` = the last id it saw, and ignores any frame whose id it has
//   already seen, so no line is lost or repeated;
// - each event is added to the section's `.log`, dispatched as a `sy:event` DOM event,
//   and (debounced) the section's `[data-fragment]` is re-rendered from `data-refresh`.
"use strict";
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const MAX_LOG_LINES = 500;

  function summary(name, data) {
    const d = (data && data.data) || {};
    const parts = [];
    for (const key of ["seq", "status", "version", "phase", "processed", "total", "title", "subject", "summary", "error"]) {
      if (d[key] !== undefined && d[key] !== null) parts.push(key + "=" + (typeof d[key] === "object" ? JSON.stringify(d[key]) : d[key]));
    }
    return parts.join(" ");
  }

  function follow(section) {
    const path = section.dataset.stream;
    const names = (section.dataset.events || "").split(" ").filter(Boolean);
    const log = section.querySelector(".log");
    const state = section.querySelector(".stream-state");
    let last = null, source = null, delay = 500, timer = null;

    const say = (text) => {
      section.dataset.state = text;
      if (state) state.textContent = text;
    };
    const refresh = () => {
      const url = section.dataset.refresh;
      const target = section.querySelector("[data-fragment]");
      if (!url || !target) return;
      clearTimeout(timer);
      timer = setTimeout(async () => {
        try {
          const r = await fetch(url, {credentials: "same-origin", headers: {"accept": "text/html"}});
          if (r.ok) target.innerHTML = await r.text();
        } catch (_) { /* the next event refreshes again */ }
      }, 150);
    };
    const append = (name, id, data) => {
      if (!log) return;
      const line = document.createElement("li");
      line.dataset.id = String(id);
      line.dataset.event = name;
      const code = document.createElement("code");
      code.textContent = "#" + id;
      const kind = document.createElement("b");
      kind.textContent = " " + name + " ";
      line.append(code, kind, document.createTextNode(summary(name, data)));
      log.prepend(line);
      while (log.children.length > MAX_LOG_LINES) log.lastElementChild.remove();
    };
    const handle = (name, event) => {
      const id = Number(event.lastEventId);
      if (Number.isFinite(id) && last !== null && id <= last && name !== "snapshot") return;
      if (Number.isFinite(id)) last = id;
      section.dataset.lastEventId = String(last);
      let data = event.data;
      try { data = JSON.parse(event.data); } catch (_) { /* keep the text */ }
      if (name !== "snapshot") append(name, id, data);
      section.dispatchEvent(new CustomEvent("sy:event", {detail: {name, id, data}}));
      refresh();
    };
    const reopen = () => setTimeout(open, delay = Math.min(delay * 2, 10000));
    const open = async () => {
      say("connecting");
      let token;
      try {
        const r = await fetch("/ui/stream-token", {
          method: "POST",
          credentials: "same-origin",
          headers: {"content-type": "application/x-www-form-urlencoded"},
          body: new URLSearchParams({csrf: csrf(), path}),
        });
        const body = await r.json().catch(() => ({}));
        if (r.status === 401) { say("signed out: sign in again"); return; }
        if (!r.ok) throw new Error(body.error?.message ?? ("HTTP " + r.status));
        token = body.token;
      } catch (err) {
        say("offline (" + err.message + "); retrying");
        reopen();
        return;
      }
      let url = path + "?token=" + encodeURIComponent(token);
      if (last !== null) url += "&last_event_id=" + last;
      source = new EventSource(url);
      source.onopen = () => { delay = 500; say("live"); };
      for (const name of names) source.addEventListener(name, (e) => handle(name, e));
      source.onerror = () => {
        source.close();
        say("reconnecting");
        reopen();
      };
    };
    section.syDrop = () => { if (source) source.onerror(); };
    open();
  }

  // The topology page's live table: each mutation seen on the stream, pending until
  // its mutation.applied or mutation.failed.
  function mutationRows(section) {
    const table = section.querySelector("table.live-mutations tbody");
    if (!table) return;
    section.addEventListener("sy:event", ({detail: {name, data}}) => {
      const d = (data && data.data) || {};
      if (!d.mutation_id) return;
      let row = table.querySelector('tr[data-mutation="' + d.mutation_id + '"]');
      if (!row) {
        row = document.createElement("tr");
        row.dataset.mutation = d.mutation_id;
        for (const _ of [0, 1, 2, 3]) row.append(document.createElement("td"));
        row.children[0].textContent = d.seq;
        row.children[1].textContent = d.mutation_id;
        table.prepend(row);
      }
      const status = name === "mutation.enqueued" ? "pending" : (d.status || name.split(".")[1]);
      // An enqueued frame replayed after the outcome never moves a row back.
      if (status === "pending" && row.dataset.status && row.dataset.status !== "pending") return;
      row.dataset.status = status;
      row.children[2].innerHTML = "";
      const badge = document.createElement("span");
      badge.className = "badge status-" + status;
      badge.textContent = status;
      row.children[2].append(badge);
      row.children[3].textContent = d.error || (d.version !== undefined ? "version " + d.version : "");
    });
  }

  // The graph page's progress bar, moved by migration events as they arrive.
  function progressBar(section) {
    section.addEventListener("sy:event", ({detail: {name, data}}) => {
      const d = (data && data.data) || {};
      if (!name.startsWith("migration.") || !d.total) return;
      const bar = section.querySelector("progress.migration");
      const label = section.querySelector("#progress-text");
      if (bar) { bar.max = d.total; bar.value = d.processed; }
      if (label) label.textContent = d.processed + " / " + d.total + " nodes";
    });
  }

  // Forms with data-confirm ask first.
  document.addEventListener("submit", (e) => {
    const message = e.target.dataset.confirm;
    if (message && !window.confirm(message)) e.preventDefault();
  });

  for (const section of document.querySelectorAll("[data-stream]")) {
    mutationRows(section);
    progressBar(section);
    follow(section);
  }
  // Pages with data-poll re-render their fragment every that many milliseconds.
  for (const section of document.querySelectorAll("[data-poll]")) {
    const target = section.querySelector("[data-fragment]");
    setInterval(async () => {
      try {
        const r = await fetch(section.dataset.refresh, {credentials: "same-origin"});
        if (r.ok && target) target.innerHTML = await r.text();
      } catch (_) { /* next time */ }
    }, Number(section.dataset.poll));
  }
})();
