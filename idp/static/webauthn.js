/* SatuID passkeys (WebAuthn): registration on the login security page, assertion on the step-up
 * page. Served from /static because the CSP forbids inline scripts. Options come from the server
 * as JSON with base64url fields (py_webauthn's options_to_json); responses go back the same way. */
(function () {
  "use strict";

  function b64uToBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function post(url, csrf, body) {
    var r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {})
    });
    var data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    return {ok: r.ok, data: data};
  }

  function say(text) {
    var status = document.getElementById("passkey-status");
    if (status) { status.textContent = text; }
  }

  function creationOptions(o) {
    o.challenge = b64uToBuf(o.challenge);
    o.user.id = b64uToBuf(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return o;
  }

  function requestOptions(o) {
    o.challenge = b64uToBuf(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return o;
  }

  function registrationJSON(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type,
      response: {
        clientDataJSON: bufToB64u(r.clientDataJSON),
        attestationObject: bufToB64u(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : []
      },
      clientExtensionResults: cred.getClientExtensionResults(),
      authenticatorAttachment: cred.authenticatorAttachment || undefined
    };
  }

  function assertionJSON(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type,
      response: {
        clientDataJSON: bufToB64u(r.clientDataJSON),
        authenticatorData: bufToB64u(r.authenticatorData),
        signature: bufToB64u(r.signature),
        userHandle: r.userHandle ? bufToB64u(r.userHandle) : undefined
      },
      clientExtensionResults: cred.getClientExtensionResults(),
      authenticatorAttachment: cred.authenticatorAttachment || undefined
    };
  }

  function follow(result, el) {
    if (result.data && result.data.redirect) { window.location.assign(result.data.redirect); return; }
    say((result.data && result.data.message) || el.dataset.failed);
  }

  var form = document.getElementById("passkey-register");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (!window.PublicKeyCredential) { say(form.dataset.unsupported); return; }
      try {
        var options = await post(form.dataset.options, form.dataset.csrf);
        if (!options.ok) { follow(options, form); return; }
        var cred = await navigator.credentials.create({publicKey: creationOptions(options.data)});
        var name = form.querySelector("input[name=name]").value;
        follow(await post(form.dataset.verify, form.dataset.csrf,
                          {credential: registrationJSON(cred), name: name}), form);
      } catch (e) {
        say(form.dataset.failed);
      }
    });
  }

  var button = document.getElementById("passkey-authenticate");
  if (button) {
    button.addEventListener("click", async function () {
      if (!window.PublicKeyCredential) { say(button.dataset.unsupported); return; }
      button.disabled = true;
      try {
        var options = await post(button.dataset.options, button.dataset.csrf);
        if (!options.ok) { follow(options, button); return; }
        var cred = await navigator.credentials.get({publicKey: requestOptions(options.data)});
        follow(await post(button.dataset.verify, button.dataset.csrf, assertionJSON(cred)), button);
      } catch (e) {
        say(button.dataset.failed);
      } finally {
        button.disabled = false;
      }
    });
  }
})();
