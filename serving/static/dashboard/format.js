/* pycemaker: the formats both pages use (the service page, dashboard.js, and the fleet page, fleet.js).
 * tests/dashboard mirrors them. Loaded before either page's script; defines window.pycemakerFormat. */
(function () {
  "use strict";

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function pct(value) {
    return value == null ? "unknown" : (value * 100).toFixed(1) + "%";
  }

  function countdown(seconds) {
    var s = Math.max(0, Math.ceil(seconds));
    return Math.floor(s / 3600) + ":" + pad(Math.floor((s % 3600) / 60)) + ":" + pad(s % 60);
  }

  window.pycemakerFormat = { pad: pad, pct: pct, countdown: countdown };
})();
