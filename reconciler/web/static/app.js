// flow-reconciler status page: live updates. Vendored with the package, loaded from this server only
// (the Content-Security-Policy allows no other script, and nothing inline).
// On every "run" event of GET /events the page fetches itself again and swaps its <main> for the new
// one (rendered and escaped by the server, as a reload would be); open <details> stay open. A lost
// stream is reopened with a backoff (1 s, doubling, at most 30 s), and the page is fetched again then,
// since events may have been missed. Without JavaScript every page still works: reload it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.getElementById("main");
  if (!main || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var delay = 1000, maxDelay = 30000, source = null, watchdog = null, pending = null, heartbeat = 15;
  var refreshes = 0;

  function show(state, text) {
    if (live) { live.setAttribute("data-state", state); live.textContent = text; }
    document.documentElement.setAttribute("data-live", state);
  }

  function openDetails() {
    var open = {};
    main.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }

  function refresh() {
    pending = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) { return; }
        var open = openDetails();
        fresh.querySelectorAll("details[id]").forEach(function (d) {
          if (Object.prototype.hasOwnProperty.call(open, d.id)) { d.open = open[d.id]; }
        });
        main.replaceWith(fresh);
        main = fresh;
        document.title = doc.title;
        refreshes += 1;
        document.documentElement.setAttribute("data-refreshes", String(refreshes));
      })
      .catch(function () { /* the next event or reconnect tries again */ });
  }

  function soon() {
    if (pending === null) { pending = window.setTimeout(refresh, 30); }
  }

  function alive() {
    if (watchdog !== null) { window.clearTimeout(watchdog); }
    // Three heartbeats missed: the connection is dead even if the browser has not noticed.
    watchdog = window.setTimeout(reconnect, heartbeat * 3000 + 1000);
  }

  function reconnect() {
    if (source) { source.close(); source = null; }
    if (watchdog !== null) { window.clearTimeout(watchdog); watchdog = null; }
    show("waiting", "reconnecting…");
    window.setTimeout(connect, delay);
    delay = Math.min(delay * 2, maxDelay);
  }

  function connect() {
    var first = source === null && refreshes === 0 && delay === 1000;
    source = new EventSource("/events");
    source.addEventListener("hello", function (ev) {
      try { heartbeat = JSON.parse(ev.data).heartbeat || heartbeat; } catch (e) { /* keep the default */ }
      show("on", "live");
      alive();
      if (!first) { soon(); }
      first = false;
      delay = 1000;
    });
    source.addEventListener("heartbeat", alive);
    source.addEventListener("run", function () { alive(); soon(); });
    source.addEventListener("resync", function () { alive(); soon(); });
    source.onerror = function () { reconnect(); };
  }

  connect();
}());
