// /login: sign in by scanning a QR code with a signed-in phone. The browser's secret stays in
// an HttpOnly cookie; this script only shows the QR, listens on the socket, and hands the
// one-time code back. Plain script, no build step.
(function () {
  "use strict";
  var panel = document.getElementById("qr-login");
  if (!panel || !window.WebSocket || !window.fetch) return;
  var csrf = panel.getAttribute("data-csrf");
  var next = panel.getAttribute("data-next") || "/account";
  var image = document.getElementById("qr-image");
  var status = document.getElementById("qr-status");
  var number = document.getElementById("qr-number");
  var timer = null;
  var socket = null;

  function say(text) { status.textContent = text; }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {})
    });
  }

  function countdown(seconds) {
    clearInterval(timer);
    var left = seconds;
    function show() {
      if (number.hidden) say("Waiting for your phone… " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0"));
    }
    // At once: the QR is already on screen, so "Preparing a code…" would be wrong for a second.
    show();
    timer = setInterval(function () {
      left -= 1;
      if (left <= 0) { clearInterval(timer); return; }
      show();
    }, 1000);
  }

  function start() {
    if (socket) {
      // Closed on purpose: not the "lost connection" case below.
      socket.onclose = null;
      try { socket.close(); } catch (e) { /* already closed */ }
      socket = null;
    }
    clearInterval(timer);
    number.hidden = true;
    say("Preparing a code…");
    post("/login/qr").then(function (r) {
      if (!r.ok) throw new Error("status " + r.status);
      return r.json();
    }).then(function (q) {
      var img = document.createElement("img");
      img.src = "data:image/svg+xml;base64," + btoa(q.qr_svg);
      img.alt = "QR code to sign in with your phone";
      img.id = "qr-img";
      img.setAttribute("data-url", q.url);
      image.textContent = "";
      image.appendChild(img);
      number.textContent = q.match_code;
      countdown(q.expires_in);
      listen(q.id);
    }).catch(function () {
      say("Signing in with a phone is not available right now.");
      setTimeout(start, 10000);
    });
  }

  function listen(id) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/api/v1/qr-logins/" + encodeURIComponent(id) + "/events");
    var ended = false;
    socket = ws;
    // The server closes the socket after an end state. Closed before one (a restart, a proxy's
    // timeout, a network change), nothing would ever arrive: the QR on screen would be dead.
    ws.onclose = function () {
      if (ended || socket !== ws) return;
      clearInterval(timer);
      number.hidden = true;
      say("Lost the connection. A new code follows.");
      setTimeout(function () { if (socket === ws) start(); }, 5000);
    };
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "approved" || m.type === "denied" || m.type === "expired") ended = true;
      if (m.type === "scanned") {
        say("Scanned on " + (m.device || "your phone") + ": check that it shows");
        number.hidden = false;
      } else if (m.type === "approved") {
        clearInterval(timer);
        say("Approved. Signing in…");
        post("/login/qr/handoff", { id: id, handoff_code: m.handoff_code, next: next }).then(function (r) {
          if (!r.ok) throw new Error("status " + r.status);
          return r.json();
        }).then(function (d) { location.assign(d.redirect || "/account"); })
          .catch(function () { say("Could not finish signing in. Try again."); setTimeout(start, 3000); });
      } else if (m.type === "denied") {
        clearInterval(timer);
        number.hidden = true;
        say("The sign-in was denied on the phone. A new code follows.");
        setTimeout(start, 4000);
      } else if (m.type === "expired") {
        start();
      }
    };
  }

  start();
})();
