// kairos dashboard: keeps the live parts of a page fresh without reloading it.
// Every element with a data-live URL is re-fetched every 2 s (while the tab is visible) and
// its content replaced when it changed. Written for this dashboard; no library.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== el.innerHTML) {
          el.innerHTML = html;
          el.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-live]");
    live.forEach(function (el) {
      setInterval(function () { refresh(el); }, PERIOD_MS);
    });
  });
})();
