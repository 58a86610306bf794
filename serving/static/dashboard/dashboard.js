/* pycemaker dashboard: reads only the public API (/api/v1/status, /health, /forecast, /models/{version}).
 * Plain JS, no build step. API data is written with textContent only. */
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  // Observed health per minute for short windows; per 5 / 30 minutes (mean of the minutes) for long ones.
  var WINDOWS = {
    "1h": { hours: 1, step: 1, caption: "last hour, per minute" },
    "6h": { hours: 6, step: 1, caption: "last 6 h, per minute" },
    "24h": { hours: 24, step: 5, caption: "last 24 h, mean per 5 min" },
    "7d": { hours: 168, step: 30, caption: "last 7 days, mean per 30 min" },
  };
  var STREAMS = ["cpu", "memory", "request_rate", "response_time"];
  // `/?service=NAME` (the fleet page's links): that service's routes; without it, the default service's.
  var SERVICE = new URLSearchParams(location.search).get("service");
  var API = SERVICE ? "api/v1/services/" + encodeURIComponent(SERVICE) + "/" : "api/v1/";

  var state = {
    windowKey: "1h",
    status: null, // last good /api/v1/status body
    statusAt: null, // Date.now() when it arrived: the countdown ticks from there
    statusError: null,
    health: null,
    healthError: null,
    forecast: null,
    forecastError: null,
    card: null, // /api/v1/models/{version}
    cardVersion: null,
    busy: false,
    again: false,
    timer: null,
    ticker: null,
    loaded: false,
  };
  var charts = { health: null, sparks: {} };

  // ---- formatting (tests/dashboard mirrors these) --------------------------------------

  var pad = window.pycemakerFormat.pad, pct = window.pycemakerFormat.pct, countdown = window.pycemakerFormat.countdown;

  function horizonText(minutes) {
    if (minutes % 60 === 0) return minutes / 60 + " h";
    if (minutes < 60) return minutes + " min";
    return (minutes / 60).toFixed(1) + " h";
  }

  function parseTime(text) {
    // The API writes microseconds; Date.parse wants at most milliseconds.
    return text == null ? null : Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
  }

  function sameDay(a, b) {
    var x = new Date(a), y = new Date(b);
    return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate();
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // "1 Mar", with the year when it is not the reference's (no hyphens: the text wraps between words).
  function dateText(ms, referenceMs) {
    var d = new Date(ms);
    var sameYear = referenceMs != null && new Date(referenceMs).getFullYear() === d.getFullYear();
    return d.getDate() + " " + MONTHS[d.getMonth()] + (sameYear ? "" : " " + d.getFullYear());
  }

  // "19:34", or "1 Mar 19:34" when not on the reference day (the server's "now"; null: always dated).
  function clockText(ms, referenceMs, withSeconds) {
    var d = new Date(ms);
    var text = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (withSeconds ? ":" + pad(d.getSeconds()) : "");
    return referenceMs != null && sameDay(ms, referenceMs) ? text : dateText(ms, referenceMs) + " " + text;
  }

  function durationText(seconds) {
    var s = Math.abs(seconds);
    if (s < 90) return Math.round(s) + " s";
    if (s < 90 * 60) return Math.round(s / 60) + " min";
    if (s < 48 * 3600) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function flagText(flag) {
    if (flag == null) return "flag ?";
    return "flag " + (Number.isInteger(flag) ? String(flag) : flag.toFixed(1));
  }

  function rateText(value) {
    if (value == null) return "?";
    if (value >= 10000) return (value / 1000).toFixed(0) + "k";
    return value.toFixed(value < 10 ? 2 : 1);
  }

  function secondsText(value) {
    if (value == null) return "?";
    if (value >= 100) return durationText(value);
    return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(2) + " s";
  }

  // ---- the API ------------------------------------------------------------------------

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  function getJSON(path) {
    return fetch(path, { cache: "no-store", headers: { Accept: "application/json" } }).then(
      function (response) {
        return response.text().then(function (text) {
          var body = null;
          try {
            body = text ? JSON.parse(text) : null;
          } catch (e) {
            body = null;
          }
          if (!response.ok) {
            var message = body && body.message ? body.message : response.statusText || "error";
            throw new ApiError(response.status, message);
          }
          return body;
        });
      },
      function () {
        throw new ApiError(0, "cannot reach the API");
      }
    );
  }

  function errorText(error) {
    if (!error) return "";
    return error.status ? error.status + ": " + error.message : error.message || String(error);
  }

  function isoQuery(ms) {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function healthQuery(asOfMs) {
    var w = WINDOWS[state.windowKey];
    var stepMs = w.step * 60000;
    // Buckets aligned on the step (stable between refreshes), never longer than the window.
    var start = Math.ceil((asOfMs - w.hours * 3600000 + 60000) / stepMs) * stepMs;
    return API + "health?start=" + encodeURIComponent(isoQuery(start)) + "&step=" + w.step;
  }

  function refresh() {
    if (state.busy) {
      state.again = true; // e.g. a window picked mid-refresh: fetch it right after
      return Promise.resolve();
    }
    state.busy = true;
    state.again = false;
    document.body.setAttribute("data-busy", "true"); // (tests wait for a refresh to settle on it)
    clearTimeout(state.timer);
    return getJSON(API + "status")
      .then(
        function (body) {
          state.status = body;
          state.statusAt = Date.now();
          state.statusError = null;
          // Tick in step with the status: the countdown shows whole seconds from its arrival.
          clearInterval(state.ticker);
          state.ticker = setInterval(renderTimeToFailure, 1000);
        },
        function (error) {
          state.statusError = error;
        }
      )
      .then(function () {
        renderNow();
        if (!state.status) return null;
        var asOf = parseTime(state.status.as_of);
        var version = state.status.model ? state.status.model.version : null;
        var stale = !!(state.status.data && state.status.data.stale);
        var wanted = [
          getJSON(healthQuery(asOf)),
          // The status makes no prediction from stale data; neither does the page.
          stale ? Promise.reject(new ApiError(0, "the data is stale")) : getJSON(API + "forecast"),
          version && version !== state.cardVersion ? getJSON("api/v1/models/" + encodeURIComponent(version)) : null,
        ];
        return Promise.allSettled(wanted).then(function (results) {
          settle(results[0], "health");
          settle(results[1], "forecast");
          if (results[2].status === "fulfilled" && results[2].value) {
            state.card = results[2].value;
            state.cardVersion = version;
          } else if (!version) {
            state.card = null;
            state.cardVersion = null;
          }
        });
      })
      .then(function () {
        renderChart();
        renderStreams();
        renderModel();
        if (state.status && !state.loaded) {
          state.loaded = true;
          document.body.setAttribute("data-loaded", "true");
        }
      })
      .catch(function (error) {
        showBanner("dashboard error: " + (error && error.message ? error.message : String(error)), true);
      })
      .then(function () {
        state.busy = false;
        state.timer = setTimeout(refresh, state.again ? 0 : REFRESH_MS);
        document.body.setAttribute("data-busy", "false");
      });
  }

  function settle(result, name) {
    if (result.status === "fulfilled") {
      state[name] = result.value;
      state[name + "Error"] = null;
    } else {
      state[name + "Error"] = result.reason;
      // A forecast that cannot be made now (no model, no data) must not linger from before.
      if (name === "forecast") state.forecast = null;
    }
  }

  // ---- rendering ------------------------------------------------------------------------

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, text) {
    var el = byId(id);
    if (el.textContent !== text) el.textContent = text;
    return el;
  }

  function setTone(el, tone) {
    el.classList.remove("bad", "good", "unknown", "message");
    (tone || "").split(" ").forEach(function (t) {
      if (t) el.classList.add(t);
    });
  }

  function showBanner(text, bad) {
    var banner = byId("banner");
    if (!text) {
      banner.hidden = true;
      banner.textContent = "";
      return;
    }
    banner.hidden = false;
    banner.textContent = text;
    banner.classList.toggle("bad", !!bad);
  }

  // Seconds from the status's as_of to a crossing, minus the time since the status arrived.
  function secondsUntil(crossing) {
    var status = state.status;
    var elapsed = (Date.now() - state.statusAt) / 1000;
    return (parseTime(crossing.at) - parseTime(status.as_of)) / 1000 - elapsed;
  }

  function renderNow() {
    var status = state.status;
    var asOfEl = byId("as-of");
    if (state.statusError) {
      var when = state.status ? " (showing " + clockText(parseTime(status.as_of), Date.now(), true) + ")" : "";
      showBanner("API " + errorText(state.statusError) + when + "; retrying every " + REFRESH_MS / 1000 + " s", true);
    } else if (status && status.data && status.data.stale) {
      var since = parseTime(status.data.stale_since);
      var streams = (status.data.stale_streams || []).join(", ");
      showBanner("No new samples" + (since ? " since " + clockText(since, parseTime(status.as_of)) : "") +
        (streams ? " (" + streams + ")" : "") + ": current health is unknown.", false);
    } else {
      showBanner("");
    }
    if (!status) {
      setText("as-of", state.statusError ? "no status yet" : "loading…");
      setText("current-health", "unknown");
      setTone(byId("current-health"), "unknown");
      setText("ttf-main", "unknown: " + (state.statusError ? errorText(state.statusError) : "loading"));
      setTone(byId("ttf-main"), "unknown message");
      return;
    }
    var asOf = parseTime(status.as_of);
    setText("as-of", "as of " + clockText(asOf, Date.now(), true)).title = status.as_of;
    var threshold = status.threshold;

    var current = status.current || {};
    var health = current.health;
    setTone(setText("current-health", pct(health)), health == null ? "unknown" : health <= threshold ? "bad" : "");
    var minute = parseTime(current.minute);
    setText("current-sub", minute ? "minute " + clockText(minute, asOf) + " · coverage " + Math.round((current.coverage || 0) * 100) + "%" : "no scored minute");

    var predicted = status.predicted_current;
    var p50 = predicted ? predicted.p50 : null;
    setTone(setText("predicted-health", pct(p50)), p50 == null ? "unknown" : p50 <= threshold ? "bad" : "");
    setText("predicted-sub", predicted ? "P10–P90 " + pct(predicted.p10) + " – " + pct(predicted.p90) : reasonText(status));
    renderTimeToFailure();
  }

  function reasonText(status) {
    var since = status.data ? parseTime(status.data.stale_since) : null;
    switch (status.reason) {
      case "stale_data":
        return "data stale since " + (since ? clockText(since, parseTime(status.as_of)) : "?");
      case "no_model":
        return "no model yet";
      case "insufficient_data":
        return "too little history for a first model";
      case "no_data":
        return "no data yet";
      case "model_error":
        return "model error";
      default:
        return status.reason || "unknown";
    }
  }

  function renderTimeToFailure() {
    var status = state.status;
    if (!status) return;
    var main = byId("ttf-main");
    var ttf = status.time_to_failure || {};
    var asOf = parseTime(status.as_of);
    var threshold = pct(status.threshold);
    var range = "", detail = "", tone = "message", text;
    if (status.state === "failure_predicted" && ttf.expected) {
      text = countdown(secondsUntil(ttf.expected));
      tone = "bad";
      range = "range " + (ttf.earliest ? countdown(secondsUntil(ttf.earliest)) : "?") + " – " +
        (ttf.latest ? countdown(secondsUntil(ttf.latest)) : "beyond the horizon");
      detail = "health expected at or below " + threshold + " at " + clockText(parseTime(ttf.expected.at), asOf) +
        " (P10 path " + (ttf.earliest ? clockText(parseTime(ttf.earliest.at), asOf) : "?") +
        ", P90 path " + (ttf.latest ? clockText(parseTime(ttf.latest.at), asOf) : "not within " + horizonText(status.horizon.minutes)) + ")";
    } else if (status.state === "failing_now") {
      text = "failing now";
      tone = "bad message";
      range = ttf.expected ? "since " + clockText(parseTime(ttf.expected.at), asOf) : "";
      detail = "health at or below " + threshold;
    } else if (status.state === "no_failure_within_horizon") {
      text = "no failure expected in the next " + horizonText(status.horizon.minutes);
      tone = "good message";
      if (ttf.earliest) {
        range = "risk: the P10 path crosses in " + countdown(secondsUntil(ttf.earliest));
        detail = "pessimistic crossing at " + clockText(parseTime(ttf.earliest.at), asOf);
      }
    } else {
      text = "unknown: " + reasonText(status);
      tone = "unknown message";
      if (status.reason !== "stale_data") detail = status.detail || ""; // stale: the banner says which streams
    }
    if (status.driver) detail += (detail ? " · " : "") + "driver: " + streamName(status.driver);
    setTone(setText("ttf-main", text), tone);
    main.title = status.detail || "";
    setText("ttf-range", range || "\u00a0");
    setText("ttf-detail", detail || "\u00a0");
  }

  function streamName(stream) {
    return { cpu: "CPU", memory: "memory", request_rate: "request rate", response_time: "response time" }[stream] || stream;
  }

  // ---- charts ---------------------------------------------------------------------------

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartHeight(width) {
    return width < 520 ? 220 : 300;
  }

  function axisStyle() {
    var grid = cssVar("--chart-grid");
    return {
      stroke: cssVar("--chart-axis"),
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: "12px system-ui, sans-serif",
    };
  }

  function healthChartOptions(width) {
    var forecast = cssVar("--chart-forecast");
    var timeValue = function (u, v) {
      return v == null ? "–" : clockText(v * 1000, null);
    };
    var band = cssVar("--chart-band");
    var legendValue = function (u, v) {
      return v == null ? "–" : (v * 100).toFixed(1) + "%";
    };
    var xAxis = axisStyle();
    xAxis.values = timeAxisValues;
    var yAxis = axisStyle();
    yAxis.size = 50;
    yAxis.splits = function () {
      return [0, 0.25, 0.5, 0.75, 1];
    };
    yAxis.values = function (u, splits) {
      return splits.map(function (v) {
        return Math.round(v * 100) + "%";
      });
    };
    return {
      width: width,
      height: chartHeight(width),
      scales: {
        x: {
          time: true,
          range: function (u, min, max) {
            return state.xRange || [min, max];
          },
        },
        y: { range: [0, 1.04] },
      },
      series: [
        { label: "time", value: timeValue },
        { label: "observed", stroke: cssVar("--chart-observed"), width: 2, value: legendValue, points: { show: false } },
        { label: "P10", stroke: band, width: 1, value: legendValue, points: { show: false } },
        { label: "forecast P50", stroke: forecast, width: 2, dash: [6, 4], value: legendValue, points: { show: false } },
        { label: "P90", stroke: band, width: 1, value: legendValue, points: { show: false } },
        { label: "threshold", stroke: cssVar("--chart-threshold"), width: 1.5, dash: [3, 3], value: legendValue, points: { show: false } },
      ],
      bands: [{ series: [4, 2], fill: band }],
      axes: [xAxis, yAxis],
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [drawNowLine] },
    };
  }

  // 24-hour clock; the date on midnight ticks and when ticks are days apart.
  function timeAxisValues(u, splits, axisIdx, space, incr) {
    return splits.map(function (v) {
      var d = new Date(v * 1000);
      var day = dateText(v * 1000, v * 1000);
      var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
      return incr >= 86400 || hm === "00:00" ? day : hm;
    });
  }

  function drawNowLine(u) {
    if (!state.status) return;
    var x = u.valToPos(parseTime(state.status.as_of) / 1000, "x", true);
    var box = u.bbox;
    if (!(x >= box.left && x <= box.left + box.width)) return;
    var ctx = u.ctx;
    var dpr = window.devicePixelRatio || 1;
    ctx.save();
    ctx.strokeStyle = cssVar("--chart-now");
    ctx.fillStyle = cssVar("--chart-now");
    ctx.lineWidth = dpr;
    ctx.setLineDash([2 * dpr, 3 * dpr]);
    ctx.beginPath();
    ctx.moveTo(x, box.top);
    ctx.lineTo(x, box.top + box.height);
    ctx.stroke();
    ctx.font = 11 * dpr + "px system-ui, sans-serif";
    ctx.textAlign = x > box.left + box.width - 40 * dpr ? "right" : "left";
    ctx.fillText("now", x + (ctx.textAlign === "left" ? 4 : -4) * dpr, box.top + 12 * dpr);
    ctx.restore();
  }

  function healthChartData() {
    var observed = new Map();
    var predicted = new Map();
    ((state.health && state.health.points) || []).forEach(function (p) {
      observed.set(parseTime(p.time) / 1000, p.health);
    });
    ((state.forecast && state.forecast.points) || []).forEach(function (p) {
      predicted.set(parseTime(p.time) / 1000, p.health);
    });
    var xs = Array.from(new Set(Array.from(observed.keys()).concat(Array.from(predicted.keys())))).sort(function (a, b) {
      return a - b;
    });
    var threshold = state.status ? state.status.threshold : null;
    var pick = function (map, key) {
      return function (x) {
        var v = map.get(x);
        return v == null ? null : key ? v[key] : v;
      };
    };
    return [
      xs,
      xs.map(pick(observed)),
      xs.map(pick(predicted, "p10")),
      xs.map(pick(predicted, "p50")),
      xs.map(pick(predicted, "p90")),
      xs.map(function () {
        return threshold;
      }),
    ];
  }

  function updateXRange() {
    var status = state.status;
    if (!status) return;
    var asOf = parseTime(status.as_of) / 1000;
    var start = state.health ? parseTime(state.health.start) / 1000 : asOf - WINDOWS[state.windowKey].hours * 3600;
    var end = asOf;
    var points = state.forecast && state.forecast.points;
    if (points && points.length) end = Math.max(end, parseTime(points[points.length - 1].time) / 1000);
    state.xRange = [start, end];
  }

  function renderChart() {
    var w = WINDOWS[state.windowKey];
    setText("chart-caption", "· " + w.caption + (state.forecast ? " · forecast " + horizonText(state.forecast.horizon_minutes) + " ahead" : ""));
    var notes = [];
    if (state.healthError) notes.push("observed health unavailable: " + errorText(state.healthError));
    if (state.forecastError) notes.push("no forecast: " + errorText(state.forecastError));
    else if (state.forecast && state.forecast.input_coverage < 1)
      notes.push("forecast input " + Math.round(state.forecast.input_coverage * 100) + "% observed");
    else if (state.forecast) notes.push("forecast by " + state.forecast.model_version + ": median (P50) with the P10–P90 band; threshold " + pct(state.forecast.threshold));
    setText("chart-note", notes.join(" · ") || "\u00a0");
    if (typeof window.uPlot !== "function") {
      setText("chart-note", "chart library not loaded (static/dashboard/vendor/uPlot.iife.min.js)");
      return;
    }
    updateXRange();
    var el = byId("health-chart");
    var data = healthChartData();
    if (!charts.health) {
      charts.health = new window.uPlot(healthChartOptions(el.clientWidth || 600), data, el);
    } else {
      charts.health.setData(data);
    }
    el.setAttribute("data-points", String(data[0].length));
  }

  function sparkOptions(width) {
    return {
      width: width,
      height: 48,
      padding: [4, 2, 2, 2],
      legend: { show: false },
      cursor: { show: false },
      scales: {
        x: {
          time: true,
          range: function (u, min, max) {
            return state.xRange ? [state.xRange[0], parseTime(state.status.as_of) / 1000] : [min, max];
          },
        },
        y: { range: [0, 3.1] },
      },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: cssVar("--chart-observed"), fill: cssVar("--chart-band"), width: 1.5, paths: window.uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
    };
  }

  function renderStreams() {
    var status = state.status;
    var flags = status && status.current ? status.current.flags || {} : {};
    var points = (state.forecast && state.forecast.points) || [];
    var first = points[0], last = points[points.length - 1];
    var ahead = state.forecast ? "in " + horizonText(state.forecast.horizon_minutes) : "";
    STREAMS.forEach(function (stream) {
      var panel = document.querySelector('.stream[data-stream="' + stream + '"]');
      var flag = flags[stream];
      var badge = panel.querySelector(".flag");
      badge.textContent = flagText(flag == null ? null : flag);
      badge.className = "flag" + (flag == null ? "" : " f" + Math.min(3, Math.round(flag)));
      var driver = !!status && status.driver === stream;
      panel.classList.toggle("driver", driver);
      panel.querySelector(".driver-tag").hidden = !driver;
      panel.querySelector(".values").textContent = streamValues(stream, first, last, ahead);
      if (typeof window.uPlot !== "function") return;
      var spark = panel.querySelector(".spark");
      var hp = (state.health && state.health.points) || [];
      var data = [
        hp.map(function (p) {
          return parseTime(p.time) / 1000;
        }),
        hp.map(function (p) {
          return p.flags ? p.flags[stream] : null;
        }),
      ];
      if (!charts.sparks[stream]) {
        charts.sparks[stream] = new window.uPlot(sparkOptions(spark.clientWidth || 200), data, spark);
      } else {
        charts.sparks[stream].setData(data);
      }
    });
  }

  function streamValues(stream, first, last, ahead) {
    if (!first) return state.forecastError ? "no forecast" : "\u00a0";
    var p = function (point, name) {
      return point[name] ? point[name].p50 : null;
    };
    var ratio = function (v) {
      return pct(v);
    };
    var now, later;
    if (stream === "cpu" || stream === "memory") {
      now = ratio(p(first, stream));
      later = ratio(p(last, stream));
    } else if (stream === "request_rate") {
      now = rateText(p(first, "req_success")) + " ok/s, " + rateText(p(first, "req_fail")) + " fail/s";
      later = rateText(p(last, "req_success")) + " ok/s, " + rateText(p(last, "req_fail")) + " fail/s";
    } else {
      now = secondsText(p(first, "response_time"));
      later = secondsText(p(last, "response_time"));
    }
    return "now " + now + " → " + ahead + " " + later + " (P50)";
  }

  var KIND_NAMES = { lstm: "LSTM", seasonal_naive: "seasonal naive", ets: "damped-trend ETS" };

  /** "health MAE 0.028, band holds 79% (60 min, held-back windows)": how the model scored in its training run
   * (its RMSE for a model from before the MAE was recorded). */
  function qualityText(q) {
    if (!q) return "–";
    var mae = q.health_mae !== null && q.health_mae !== undefined;
    var error = mae ? q.health_mae : q.health_rmse;
    if (error === null || error === undefined) return "–";
    return "health " + (mae ? "MAE " : "RMSE ") + error.toFixed(3) + ", band holds " + (q.coverage === null ? "–" : Math.round(q.coverage * 100) + "%") +
      " (" + q.horizon_minutes + " min, " + (q.held_back ? "held-back windows" : "in sample: no held-back data yet") + ")";
  }

  function renderModel() {
    var status = state.status;
    var card = state.card;
    var model = status ? status.model || {} : {};
    setText("model-version", model.version || "none loaded" + (model.wanted ? " (wanted " + model.wanted + ")" : ""));
    setText("model-kind", model.kind ? (KIND_NAMES[model.kind] || model.kind) + (model.trained_on ? ", fitted on " + durationText(model.trained_on.minutes * 60) + " of history" : "") : "–");
    setText("model-quality", qualityText(model.quality));
    if (card && card.version === model.version) {
      var created = parseTime(card.created_at);
      var asOf = status ? parseTime(status.as_of) : Date.now();
      setText("model-trained", clockText(created, null) + " (" + durationText((asOf - created) / 1000) + (asOf >= created ? " ago" : " ahead") + ")");
      setText("model-window", card.input_minutes + " min → " + card.horizon_minutes + " min ahead");
    } else {
      setText("model-trained", model.version ? "…" : "–");
      setText("model-window", "–");
    }
    setText("model-threshold", status ? "health ≤ " + pct(status.threshold) + " is a failure" : "–");
    var problem = byId("model-problem");
    problem.hidden = !model.problem;
    problem.textContent = model.problem ? "model problem: " + model.problem : "";
  }

  // ---- layout, theme, window ------------------------------------------------------------

  function resizeCharts() {
    if (charts.health) {
      var width = byId("health-chart").clientWidth;
      charts.health.setSize({ width: width, height: chartHeight(width) });
    }
    Object.keys(charts.sparks).forEach(function (stream) {
      var el = document.querySelector('.stream[data-stream="' + stream + '"] .spark');
      charts.sparks[stream].setSize({ width: el.clientWidth, height: 48 });
    });
  }

  function rebuildCharts() {
    if (charts.health) charts.health.destroy();
    Object.keys(charts.sparks).forEach(function (stream) {
      charts.sparks[stream].destroy();
    });
    charts = { health: null, sparks: {} };
    if (state.status) {
      renderChart();
      renderStreams();
    }
  }

  function selectWindow(key, fetchNow) {
    if (!WINDOWS[key]) key = "1h";
    state.windowKey = key;
    document.querySelectorAll(".windows button").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-window") === key));
    });
    if (location.hash !== "#" + key) history.replaceState(null, "", "#" + key);
    if (fetchNow) {
      state.health = null;
      refresh();
    }
  }

  function start() {
    setText("tz", Intl.DateTimeFormat().resolvedOptions().timeZone || "local time");
    if (SERVICE) {
      setText("service-name", SERVICE);
      document.title = SERVICE + " · pycemaker dashboard";
    }
    selectWindow(location.hash.slice(1), false);
    document.querySelectorAll(".windows button").forEach(function (button) {
      button.addEventListener("click", function () {
        selectWindow(button.getAttribute("data-window"), true);
      });
    });
    var resizeTimer = null;
    var onResize = function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(resizeCharts, 100);
    };
    if (window.ResizeObserver) new ResizeObserver(onResize).observe(document.querySelector("main"));
    else window.addEventListener("resize", onResize);
    var dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
    if (dark && dark.addEventListener) dark.addEventListener("change", rebuildCharts);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
