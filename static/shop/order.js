// Order page: poll the status until the keys arrive, then reload to show them; copy buttons.
(function () {
  "use strict";
  var order = document.getElementById("order");
  if (!order) { return; }
  var waiting = ["pending", "paid"];
  var url = order.getAttribute("data-status-url");
  var status = order.getAttribute("data-status");
  var hasKeys = order.getAttribute("data-has-keys") === "1";
  var delay = 1000;
  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (body.status !== status || body.has_keys !== hasKeys) {
          var next = order.getAttribute("data-next");
          if (next) { window.location.href = next; } else { window.location.reload(); }
          return;
        }
        delay = Math.min(delay * 1.3, body.status === "pending" ? 5000 : 2000);
        setTimeout(poll, delay);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (waiting.indexOf(status) !== -1 && !hasKeys) { setTimeout(poll, delay); }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) { return; }
    var text = button.getAttribute("data-copy");
    var done = function () { button.textContent = "✓"; };
    if (navigator.clipboard) { navigator.clipboard.writeText(text).then(done); }
    else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      document.execCommand("copy"); document.body.removeChild(area); done();
    }
  });
})();
