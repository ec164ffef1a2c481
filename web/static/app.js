// Haldir dashboard: shows times in the viewer's zone and refreshes live
// regions by polling the page's own URL with ?partial=1. No inline script
// is needed anywhere, so the Content-Security-Policy forbids it.
(function () {
  "use strict";

  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.textContent = d.toLocaleString();
      }
    });
  }

  // A region is left alone while the person is typing in it.
  function busy(el) {
    if (el.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    var inputs = el.querySelectorAll("input:not([type=hidden]), textarea");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== "") {
        return true;
      }
    }
    return false;
  }

  function live(el) {
    var every = parseInt(el.getAttribute("data-poll"), 10) || 2000;
    var params = new URLSearchParams(location.search);
    params.delete("pos");
    params.set("partial", "1");
    var url = el.getAttribute("data-live") + "?" + params.toString();
    var last = null;
    function tick() {
      if (document.hidden) {
        setTimeout(tick, every);
        return;
      }
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) {
            location.assign("/dashboard/login?next=" + encodeURIComponent(location.pathname));
            return null;
          }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== last && !busy(el)) {
            last = html;
            el.innerHTML = html;
            localize(el);
            el.setAttribute("data-refreshed", String(Date.now()));
          }
        })
        .catch(function () { /* offline for a moment: try again */ })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    // Charts over time open at their newest end, also on a narrow screen.
    document.querySelectorAll("[data-scroll-end]").forEach(function (el) {
      el.scrollLeft = el.scrollWidth;
    });
    var el = document.getElementById("live");
    if (el) {
      live(el);
    }
  });
})();
