/* pycemaker fleet page: reads only GET /api/v1/fleet. Plain JS, no build step; API data is written with textContent only. */
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var STATE_TEXT = {
    failing_now: "failing now",
    failure_predicted: "failure predicted",
    no_failure_within_horizon: "no failure in horizon",
    unknown: "unknown",
  };
  var state = { filter: "", timer: null, busy: false };

  // The same formats as the service page (static/dashboard/format.js).
  var pad = window.pycemakerFormat.pad, pct = window.pycemakerFormat.pct, countdown = window.pycemakerFormat.countdown;

  function bound(crossing) {
    return crossing ? countdown(crossing.seconds) : "beyond horizon";
  }

  function ttfText(entry) {
    var ttf = entry.time_to_failure;
    if (entry.state === "failing_now") return "failing";
    if (!ttf) return "–";
    return ttf.expected ? countdown(ttf.expected.seconds) : "beyond horizon";
  }

  function rangeText(entry) {
    var ttf = entry.time_to_failure;
    if (!ttf || entry.state === "failing_now") return "–";
    if (!ttf.earliest && !ttf.latest) return "–";
    return bound(ttf.earliest) + " – " + bound(ttf.latest);
  }

  function servicePage(name) {
    return "./?service=" + encodeURIComponent(name);
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function render(body) {
    var rows = document.getElementById("rows");
    var fresh = document.createDocumentFragment();
    body.services.forEach(function (entry) {
      var row = document.createElement("tr");
      row.className = entry.state;
      row.setAttribute("data-service", entry.service);
      var name = document.createElement("td");
      var link = document.createElement("a");
      link.href = servicePage(entry.service);
      link.textContent = entry.service;
      name.appendChild(link);
      row.appendChild(name);
      cell(row, STATE_TEXT[entry.state] || entry.state, "state").title = entry.detail || "";
      cell(row, pct(entry.health), "num health");
      cell(row, ttfText(entry), "num ttf");
      cell(row, rangeText(entry), "range");
      cell(row, entry.driver || "–", "driver");
      fresh.appendChild(row);
    });
    rows.replaceChildren(fresh);
    document.getElementById("count").textContent = "(" + body.count + ")";
    document.getElementById("as-of").textContent = "as of " + new Date(Date.parse(body.as_of)).toISOString().slice(11, 19) + " UTC";
  }

  function banner(text) {
    var el = document.getElementById("banner");
    el.textContent = text || "";
    el.hidden = !text;
  }

  function refresh() {
    if (state.busy) return Promise.resolve();
    state.busy = true;
    clearTimeout(state.timer);
    var url = "api/v1/fleet" + (state.filter ? "?state=" + encodeURIComponent(state.filter) : "");
    return fetch(url, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(response.status + ": " + (body && body.message ? body.message : response.statusText));
          return body;
        });
      })
      .then(
        function (body) {
          render(body);
          banner("");
          document.body.setAttribute("data-loaded", "true");
        },
        function (error) {
          banner("The fleet could not be read: " + (error && error.message ? error.message : String(error)));
        }
      )
      .then(function () {
        state.busy = false;
        state.timer = setTimeout(refresh, REFRESH_MS);
      });
  }

  function select(filter) {
    state.filter = filter;
    document.querySelectorAll(".windows button").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-state") === filter));
    });
  }

  function start() {
    select("");
    document.querySelectorAll(".windows button").forEach(function (button) {
      button.addEventListener("click", function () {
        select(button.getAttribute("data-state"));
        refresh();
      });
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
