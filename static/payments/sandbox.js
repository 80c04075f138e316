// Sandbox pay page: post the signed notification, then go to the order page.
(function () {
  "use strict";
  var form = document.getElementById("sandbox-pay");
  if (!form) { return; }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    form.querySelector("button").disabled = true;
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "omit" })
      .finally(function () { window.location.href = form.getAttribute("data-next"); });
  });
})();
