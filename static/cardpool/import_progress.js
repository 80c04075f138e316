// Import batch page: poll the batch's status while it is being checked or imported, move the
// progress bar, and reload the page when the status changes (preview ready, done, refused).
(function () {
  "use strict";
  var root = document.getElementById("import-batch");
  if (!root) return;
  var initial = root.dataset.status;
  if (initial !== "analysing" && initial !== "importing") return;
  var bar = document.getElementById("import-progress");
  var text = document.getElementById("import-progress-text");
  var added = document.getElementById("import-added");

  function poll() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (!state) return;
        if (state.status !== initial || (state.stalled && root.dataset.stalled !== "1")) { window.location.reload(); return; }
        if (bar) bar.value = state.percent;
        if (text) text.textContent = state.rows_done + " / " + state.rows_total;
        if (added) added.textContent = state.added;
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 1000); });
  }
  window.setTimeout(poll, 1000);
})();
