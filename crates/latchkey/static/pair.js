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
  var tick = setInterval(function () {
    left -= 1;
    if (left <= 0) {
      countdown.textContent = "expired";
      clearInterval(tick);
      return;
    }
    countdown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
  }, 1000);
  var shown = document.querySelector("#status dl") !== null;
  function poll() {
    fetch("/pair/" + encodeURIComponent(id) + "/status", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        if (s.requester && !shown && s.state === "pending") {
          var t = document.getElementById("joined").content.cloneNode(true);
          var r = s.requester;
          t.querySelector(".seen").textContent = r.browser + " on " + r.os + ", from " + r.ip + ", " + r.seconds_ago + " seconds ago";
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
