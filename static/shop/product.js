// Product page: − / + buttons beside the quantity, and the running total (quantity × price).
// The total is worked out in whole fen (integers), never in floating-point yuan, so ¥0.10 × 3
// shows ¥0.30. It is only a preview: the server computes the order's total again.
(function () {
  "use strict";
  var total = document.getElementById("checkout-total");
  var input = document.getElementById("id_quantity");
  if (!total || !input) { return; }
  var unitFen = yuanToFen(total.getAttribute("data-unit-price"));
  var min = parseInt(input.getAttribute("min"), 10) || 1;
  var max = parseInt(input.getAttribute("max"), 10) || min;

  function yuanToFen(text) {
    var match = /^(\d+)(?:\.(\d{1,2}))?$/.exec((text || "").trim());
    if (!match) { return null; }
    return parseInt(match[1], 10) * 100 + parseInt(((match[2] || "") + "00").slice(0, 2), 10);
  }
  function fenToYuan(fen) {
    var cents = fen % 100;
    return Math.floor(fen / 100) + "." + (cents < 10 ? "0" : "") + cents;
  }
  function quantity() {
    var text = input.value.trim();
    if (!/^\d{1,6}$/.test(text)) { return null; }
    var n = parseInt(text, 10);
    return n >= min && n <= max ? n : null;
  }
  function show() {
    var n = quantity();
    // Prices have at most 10 digits and quantities 6: the product stays far below 2^53.
    if (unitFen === null || n === null) {
      total.textContent = total.getAttribute("data-invalid");
      total.classList.add("invalid");
    } else {
      total.textContent = "¥" + fenToYuan(unitFen * n);
      total.classList.remove("invalid");
    }
    minus.disabled = n !== null && n <= min;
    plus.disabled = n !== null && n >= max;
  }
  function stepper(label, text, step) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "step";
    button.textContent = text;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", function () {
      var n = quantity();
      n = n === null ? min : Math.min(max, Math.max(min, n + step));
      input.value = String(n);
      show();
    });
    return button;
  }
  var wrap = document.createElement("div");
  wrap.className = "quantity-stepper";
  input.parentNode.insertBefore(wrap, input);
  var minus = stepper("−1", "−", -1);
  var plus = stepper("+1", "+", 1);
  wrap.appendChild(minus);
  wrap.appendChild(input);
  wrap.appendChild(plus);
  input.addEventListener("input", show);
  input.addEventListener("change", show);
  show();
})();
