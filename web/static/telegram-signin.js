// Telegram returns from its sign-in page with the signed payload in the fragment
// (#tgAuthResult=<base64 JSON>), which never reaches the server: pass it on as the query
// string, where /signin/telegram checks it. Nothing else is read or sent.
(function () {
  var note = document.getElementById("telegram-signin");
  function fail() {
    if (note) { note.textContent = note.getAttribute("data-failed"); }
  }
  var match = /[#&]tgAuthResult=([A-Za-z0-9_\-+\/=%]+)/.exec(window.location.hash);
  if (!match) { fail(); return; }
  var text = decodeURIComponent(match[1]).replace(/-/g, "+").replace(/_/g, "/");
  while (text.length % 4) { text += "="; }
  var fields = null;
  try {
    fields = JSON.parse(decodeURIComponent(escape(window.atob(text))));
  } catch (error) {
    fields = null;
  }
  if (!fields || typeof fields !== "object") { fail(); return; }
  var query = [];
  Object.keys(fields).forEach(function (key) {
    query.push(encodeURIComponent(key) + "=" + encodeURIComponent(String(fields[key])));
  });
  window.location.replace("/signin/telegram?" + query.join("&"));
})();
