// Passkeys in the browser: sign in on /login (a button, and the browser's autofill where it
// offers passkeys), add one on /account, and confirm an approval with one (step-up) on /device,
// /pair and /q/{id}. The server keeps every ceremony's state; this script only carries WebAuthn's
// options in and the authenticator's answer out. Without WebAuthn the passkey controls stay
// hidden and the pages work as before. Plain script, no build step.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) return;

  function csrf() {
    var input = document.querySelector("input[name=csrf]");
    var holder = document.querySelector("[data-csrf]");
    return input ? input.value : holder ? holder.getAttribute("data-csrf") : "";
  }

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      if (r.status === 204) return {};
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error(j.detail || j.title || ("the server answered " + r.status));
        return j;
      });
    });
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = toBytes(pk.challenge);
    pk.user.id = toBytes(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = toBytes(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: pk };
  }

  function attestation(c) {
    return {
      id: c.id, rawId: toB64url(c.rawId), type: c.type,
      response: { clientDataJSON: toB64url(c.response.clientDataJSON), attestationObject: toB64url(c.response.attestationObject) },
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {}
    };
  }

  function assertion(c) {
    var r = c.response;
    return {
      id: c.id, rawId: toB64url(c.rawId), type: c.type,
      response: {
        clientDataJSON: toB64url(r.clientDataJSON), authenticatorData: toB64url(r.authenticatorData),
        signature: toB64url(r.signature), userHandle: r.userHandle ? toB64url(r.userHandle) : null
      },
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {}
    };
  }

  function say(near, text) {
    var p = near.querySelector(".passkey-error");
    if (!p) {
      p = document.createElement("p");
      p.className = "error passkey-error";
      p.setAttribute("role", "alert");
      near.appendChild(p);
    }
    p.textContent = text;
  }

  function why(e) {
    // The person closed the dialog or it timed out: say so plainly, not as a failure.
    if (e && e.name === "NotAllowedError") return "The passkey prompt was closed or timed out. Try again.";
    return (e && e.message) || "The passkey could not be used.";
  }

  // --- /login ------------------------------------------------------------------------------
  var login = document.getElementById("passkey-login");
  if (login) {
    var next = login.getAttribute("data-next") || "/account";
    var conditional = null;
    var finish = function (started, cred) {
      return post("/login/passkey/finish", { challenge_id: started.challenge_id, credential: assertion(cred), next: next })
        .then(function (r) { window.location.assign(r.redirect || "/account"); });
    };
    login.hidden = false;
    login.addEventListener("click", function () {
      if (conditional) conditional.abort();
      login.disabled = true;
      post("/login/passkey/start").then(function (started) {
        var opts = requestOptions(started.options);
        return navigator.credentials.get(opts).then(function (cred) { return finish(started, cred); });
      }).catch(function (e) { say(login.parentNode, why(e)); }).then(function () { login.disabled = false; });
    });
    // Autofill: the browser offers the passkeys it has for this site in the e-mail field.
    if (PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (!ok || !window.AbortController) return;
        conditional = new AbortController();
        post("/login/passkey/start").then(function (started) {
          var opts = requestOptions(started.options);
          opts.mediation = "conditional";
          opts.signal = conditional.signal;
          return navigator.credentials.get(opts).then(function (cred) { return finish(started, cred); });
        }).catch(function (e) { if (e && e.name !== "AbortError") say(login.parentNode, why(e)); });
      });
    }
  }

  // --- /account: add a passkey -------------------------------------------------------------
  var add = document.getElementById("passkey-add");
  if (add) {
    add.hidden = false;
    add.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = add.querySelector("input[name=name]").value;
      var button = add.querySelector("button");
      button.disabled = true;
      post("/passkeys/register/start", { name: name || null }).then(function (started) {
        return navigator.credentials.create(creationOptions(started.options)).then(function (cred) {
          return post("/passkeys/register/finish", { challenge_id: started.challenge_id, credential: attestation(cred) });
        });
      }).then(function () { window.location.reload(); })
        .catch(function (e) { say(add, why(e)); button.disabled = false; });
    });
  }

  // --- approvals: a fresh passkey assertion before Approve ---------------------------------
  // Delegated: /pair adds its Allow form when someone joins, after this script ran.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.matches || !form.matches("form[data-step-up]")) return;
    var submitter = ev.submitter;
    if (form.getAttribute("data-stepped") === "yes") return;
    if (submitter && submitter.value === "deny") return;
    ev.preventDefault();
    post("/passkeys/step-up/start").then(function (started) {
      return navigator.credentials.get(requestOptions(started.options)).then(function (cred) {
        return post("/passkeys/step-up/finish", { challenge_id: started.challenge_id, credential: assertion(cred) });
      });
    }).then(function () {
      form.setAttribute("data-stepped", "yes");
      if (form.requestSubmit && submitter) form.requestSubmit(submitter); else form.submit();
    }).catch(function (e) { say(form, why(e)); });
  });
})();
