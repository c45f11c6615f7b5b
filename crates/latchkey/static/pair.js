// /pair: copy button, countdown, and "who joined" shown live by polling the page's status.
// Plain script, no build step; the page works without it (reload to see who joined).
(function () {
  "use strict";
  var root = document.getElementById("pairing");
  if (!root) return;
  var id = root.getAttribute("data-id");
  var left = parseInt(root.getAttribute("data-expires-in"), 10) || 0;
  var countdown = document.getElementById("countdown");
  var copy = document.getElementById("copy");
  var code = document.getElementById("code");
  if (copy && code && navigator.clipboard) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(code.textContent.trim()).then(function () { copy.textContent = "Copied"; });
    });
  }
  function plural(n, one) {
    return n + " " + one + (n === 1 ? "" : "s");
  }
  function ago(secs) {
    if (secs < 60) return plural(secs, "second") + " ago";
    if (secs < 3600) return plural(Math.floor(secs / 60), "minute") + " ago";
    return plural(Math.floor(secs / 3600), "hour") + " ago";
  }
  function showLeft() {
    countdown.textContent = left > 0 ? Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") : "expired";
  }
  showLeft();
  var tick = setInterval(function () {
    left -= 1;
    showLeft();
    if (left <= 0) clearInterval(tick);
  }, 1000);
  var shown = document.querySelector("#status dl") !== null;
  function poll() {
    fetch("/pair/" + encodeURIComponent(id) + "/status", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.ok) return r.json();
        // A hiccup (busy server, rate limit) must not end the live view; a code that is gone does.
        if (r.status !== 404) setTimeout(poll, 5000);
        return null;
      })
      .then(function (s) {
        if (!s) return;
        // Once someone has typed the code, the time left is that of their request.
        if (left > 0 && typeof s.expires_in === "number") left = s.expires_in;
        if (s.requester && !shown && s.state === "pending") {
          var t = document.getElementById("joined").content.cloneNode(true);
          var r = s.requester;
          t.querySelector(".seen").textContent = r.browser + " on " + r.os + ", from " + r.ip + ", " + ago(r.seconds_ago);
          t.querySelector(".claimed").textContent = r.claimed_name ? "\u201c" + r.claimed_name + "\u201d" : "(no name)";
          var status = document.getElementById("status");
          status.textContent = "";
          status.appendChild(t);
          shown = true;
        }
        if (s.state === "waiting" || s.state === "pending") setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
