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
//   and (debounced) the section's `[data-fragment]` is re-rendered from `data-refresh`;
//   only the newest re-render is applied, however the answers arrive.
// - `reset` and `lagged` frames carry no id: they are logged as such.
// When the session has ended (expired, signed out elsewhere), every live part stops and
// the page says so, with a link to sign in again.
"use strict";
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const MAX_LOG_LINES = 500;
  const sections = [];

  // The session is over: stop following, say so once.
  function sessionEnded() {
    for (const section of sections) section.syHold?.();
    if (document.querySelector("#session-ended")) return;
    const banner = document.createElement("div");
    banner.id = "session-ended";
    banner.className = "banner error";
    banner.setAttribute("role", "alert");
    const link = document.createElement("a");
    link.href = "/ui/sign-in?ended=true&next=" + encodeURIComponent(location.pathname + location.search);
    link.textContent = "Sign in again";
    banner.append("Your session has ended, so this page no longer updates. ", link, ".");
    document.querySelector("main")?.prepend(banner);
  }

  // GETs a dashboard fragment; null when there is none to show (and the session
  // ended, if that is why).
  async function fragment(url) {
    const r = await fetch(url, {credentials: "same-origin", redirect: "manual", headers: {"accept": "text/html"}});
    if (r.type === "opaqueredirect" || r.status === 401) { sessionEnded(); return null; }
    return r.ok ? r.text() : null;
  }

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
    let last = null, source = null, delay = 500, timer = null, asked = 0, held = false;

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
        const mine = ++asked;
        try {
          const html = await fragment(url);
          // An older answer arriving after a newer one is dropped.
          if (html !== null && mine === asked) target.innerHTML = html;
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
      const id = event.lastEventId === "" ? NaN : Number(event.lastEventId);
      if (Number.isNaN(id)) {
        // reset (a fresh snapshot follows) or lagged (the server disconnects; the page
        // resumes after the last id it saw): no id, so never "already seen".
        append(name, "-", {data: {summary: event.data}});
        if (name === "reset") last = null;
        return;
      }
      if (last !== null && id <= last && name !== "snapshot") return;
      last = id;
      section.dataset.lastEventId = String(last);
      let data = event.data;
      try { data = JSON.parse(event.data); } catch (_) { /* keep the text */ }
      if (name !== "snapshot") append(name, id, data);
      section.dispatchEvent(new CustomEvent("sy:event", {detail: {name, id, data}}));
      refresh();
    };
    const reopen = () => { if (!held) setTimeout(open, delay = Math.min(delay * 2, 10000)); };
    const open = async () => {
      if (held) return;
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
        if (r.status === 401) { say("signed out"); sessionEnded(); return; }
        if (!r.ok) throw new Error(body.error?.message ?? ("HTTP " + r.status));
        token = body.token;
      } catch (err) {
        say("offline (" + err.message + "); retrying");
        reopen();
        return;
      }
      // Held (or resumed twice) while the token was being minted: open nothing more.
      if (held || (source && source.readyState !== EventSource.CLOSED)) return;
      let url = path + "?token=" + encodeURIComponent(token);
      if (last !== null) url += "&last_event_id=" + last;
      const mine = new EventSource(url);
      source = mine;
      mine.onopen = () => { delay = 500; say("live"); };
      for (const name of names) mine.addEventListener(name, (e) => handle(name, e));
      mine.onerror = () => {
        mine.close();
        if (source !== mine) return;
        say("reconnecting");
        reopen();
      };
    };
    // For tests and for sessionEnded: drop the connection (it resumes by itself), or
    // hold it closed until syResume.
    section.syDrop = () => { if (source) source.onerror(); };
    section.syHold = () => { held = true; if (source) source.close(); say("paused"); };
    section.syResume = () => { held = false; delay = 500; open(); };
    sections.push(section);
    open();
  }

  // The topology page's live table: each mutation seen on the stream, pending until
  // its mutation.applied or mutation.failed.
  function mutationRows(section) {
    const table = section.querySelector("table.live-mutations tbody");
    if (!table) return;
    section.addEventListener("sy:event", ({detail: {name, data}}) => {
      // The snapshot's pending mutations, as if each had just been enqueued.
      if (name === "snapshot") {
        for (const m of (data && data.pending) || []) {
          section.dispatchEvent(new CustomEvent("sy:event", {detail: {
            name: "mutation.enqueued", data: {data: {mutation_id: m.id, seq: m.seq}}}}));
        }
        return;
      }
      const d = (data && data.data) || {};
      if (!d.mutation_id) return;
      let row = table.querySelector('tr[data-mutation="' + CSS.escape(String(d.mutation_id)) + '"]');
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
    let asked = 0;
    const timer = setInterval(async () => {
      const mine = ++asked;
      try {
        const html = await fragment(section.dataset.refresh);
        if (html === null && document.querySelector("#session-ended")) clearInterval(timer);
        // A slow answer arriving after a newer one is dropped.
        else if (html !== null && target && mine === asked) target.innerHTML = html;
      } catch (_) { /* next time */ }
    }, Number(section.dataset.poll));
  }
})();
