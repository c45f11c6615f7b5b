// Signed-in pages: told at once when this device is signed out (revoked from another device,
// "This wasn't me", the session's end), so nobody keeps approving on a page that no longer
// speaks for them. Plain script, no build step; without it the page's next form says the same.
(function () {
  "use strict";
  var SIGNED_OUT = 4001;
  var done = false;
  var tries = 0;
  var url = new URL("/session/live", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  function signedOut() {
    if (done) return;
    done = true;
    var note = document.createElement("p");
    note.id = "signed-out";
    note.className = "error";
    note.setAttribute("role", "alert");
    note.textContent = "This device has been signed out. ";
    var again = document.createElement("a");
    again.href = "/login";
    again.textContent = "Sign in again";
    note.appendChild(again);
    var main = document.querySelector("main");
    main.insertBefore(note, main.firstChild);
    document.querySelectorAll("main form button, main form input").forEach(function (el) {
      el.disabled = true;
    });
  }
  function connect() {
    var ws = new WebSocket(url.toString());
    ws.onopen = function () { tries = 0; };
    ws.onmessage = function (m) {
      try {
        if (JSON.parse(m.data).state === "signed_out") signedOut();
      } catch (e) { /* not ours */ }
    };
    ws.onclose = function (e) {
      if (e.code === SIGNED_OUT) return signedOut();
      // A restart or a network change: come back, a few times, more slowly each time.
      if (!done && tries < 6) {
        tries += 1;
        setTimeout(connect, 1000 * tries * tries);
      }
    };
  }
  connect();
})();
