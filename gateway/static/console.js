// wabot's operator console: confirmations, and the live overview and customer state.
// Plain JavaScript, no build step; the pages work without it except for live updates.
"use strict";

(function () {
  var texts = JSON.parse(document.getElementById("console-texts").textContent || "{}");
  // Times in the operator's language and the bot's time zone (WABOT_TIMEZONE), as the server
  // renders them.
  var lang = document.documentElement.lang || undefined;
  var zone = document.body.getAttribute("data-timezone") || undefined;

  function when(date, options) {
    try {
      return date.toLocaleString(lang, Object.assign({ timeZone: zone }, options || {}));
    } catch (error) {
      return date.toLocaleString();
    }
  }

  function t(key) {
    return Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
  }

  function word(prefix, value) {
    if (value === null || value === undefined) return t("none");
    var key = prefix + "." + value;
    return Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : String(value);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return t("none");
    seconds = Math.max(0, seconds);
    if (seconds < 90) return Math.round(seconds) + " " + t("unit.s");
    if (seconds < 5400) return Math.round(seconds / 60) + " " + t("unit.min");
    if (seconds < 129600) return Math.round(seconds / 3600) + " " + t("unit.h");
    return Math.round(seconds / 86400) + " " + t("unit.d");
  }

  function mib(bytes) {
    return (bytes / 1048576).toFixed(0) + " MiB";
  }

  function localTime(iso) {
    if (!iso) return t("none");
    var date = new Date(iso);
    return isNaN(date.getTime()) ? iso : when(date);
  }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    }
    return node;
  }

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node) node.textContent = String(text);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // Every form with data-confirm asks first (pause, resume, reset).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // Polls url every interval ms and hands the JSON to render; a lost session goes to login.
  function poll(url, interval, render, onError) {
    function again() { window.setTimeout(tick, interval); }
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign(window.location.pathname.replace(/\/console.*$/, "/console/login"));
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) { if (data) render(data); again(); })
        .catch(function () { onError(); again(); });
    }
    again();
  }

  // -- the overview ------------------------------------------------------------------------

  function drawChart(svg, minutes) {
    var ns = "http://www.w3.org/2000/svg";
    clear(svg);
    var width = 600, height = 120, top = 12;
    var most = 1;
    minutes.forEach(function (m) { most = Math.max(most, m.turns, m.errors); });
    var step = width / Math.max(1, minutes.length);
    var axis = document.createElementNS(ns, "text");
    axis.setAttribute("x", "2"); axis.setAttribute("y", "10");
    axis.setAttribute("class", "axis");
    axis.textContent = String(most);
    svg.appendChild(axis);
    minutes.forEach(function (m, i) {
      var label = when(new Date(m.minute * 1000), { hour: "2-digit", minute: "2-digit" });
      [["turns", m.turns, 0], ["errors", m.errors, step * 0.45]].forEach(function (bar) {
        if (!bar[1]) return;
        var h = (height - top) * bar[1] / most;
        var rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", (i * step + bar[2]).toFixed(1));
        rect.setAttribute("y", (height - h).toFixed(1));
        rect.setAttribute("width", (step * 0.45).toFixed(1));
        rect.setAttribute("height", h.toFixed(1));
        rect.setAttribute("class", bar[0]);
        rect.setAttribute("data-minute", String(m.minute));
        var title = document.createElementNS(ns, "title");
        title.textContent = label + ": " + bar[1] + " " + t("overview." + bar[0]);
        rect.appendChild(title);
        svg.appendChild(rect);
      });
    });
    var base = document.createElementNS(ns, "line");
    base.setAttribute("x1", "0"); base.setAttribute("x2", String(width));
    base.setAttribute("y1", String(height - 0.5)); base.setAttribute("y2", String(height - 0.5));
    base.setAttribute("class", "base");
    svg.appendChild(base);
  }

  function renderOverview(data) {
    var status = document.getElementById("status");
    var customerUrl = status.getAttribute("data-customer-url");
    status.className = "status " + (data.ready ? "ok" : "bad");
    setText("status-text", data.draining ? t("overview.draining") : data.ready ? "" : t("overview.not_ready"));
    setText("updated", t("overview.updated") + " " + when(new Date(data.at * 1000), { hour: "2-digit", minute: "2-digit", second: "2-digit" }));
    setText("live", data.live);
    var groups = document.getElementById("groups");
    clear(groups);
    Object.keys(data.groups).forEach(function (group) {
      var item = el("li", null, { "data-group": group });
      item.appendChild(el("b", data.groups[group]));
      item.appendChild(document.createTextNode(" " + t("group." + group)));
      groups.appendChild(item);
    });
    setText("turns-last-minute", data.turns_last_minute);
    setText("turns-per-minute", data.turns_per_minute_hour);
    setText("hour-turns", data.last_hour.turns);
    setText("hour-errors", data.last_hour.errors);
    setText("hour-fallbacks", data.last_hour.fallbacks);
    setText("inbox", data.inbox_pending);
    var store = data.store;
    var storeText = (store.healthy ? t("overview.store_ok")
      : t("overview.store_down") + " " + t("ago").replace("{age}", age(store.outage_seconds)))
      + " · " + store.records + " " + t("overview.records") + " · "
      + (store.last_backup_seconds === null ? t("overview.no_backup")
        : t("overview.last_backup") + " " + t("ago").replace("{age}", age(store.last_backup_seconds)));
    var storeNode = document.getElementById("store");
    storeNode.textContent = storeText;
    storeNode.className = store.healthy ? "ok" : "bad";
    var memory = data.memory;
    var limit = memory.hard_bytes || memory.soft_bytes;
    setText("memory", mib(memory.rss_bytes) + " · " + t("overview.soft") + " "
      + (memory.soft_bytes ? mib(memory.soft_bytes) : t("overview.no_limit")) + " · "
      + t("overview.hard") + " " + (memory.hard_bytes ? mib(memory.hard_bytes) : t("overview.no_limit")));
    var bar = document.getElementById("memory-bar");
    bar.style.width = limit ? Math.min(100, 100 * memory.rss_bytes / limit).toFixed(0) + "%" : "0";
    bar.className = memory.level ? "bad" : "ok";
    var upstream = document.getElementById("upstream");
    clear(upstream);
    Object.keys(data.upstream).forEach(function (name) {
      var item = el("li", null, { "data-upstream": name, "data-health": data.upstream[name] });
      item.appendChild(el("b", name === "openai" ? "OpenAI" : "Whapi"));
      item.appendChild(document.createTextNode(" " + word("health", data.upstream[name])));
      item.className = "health " + data.upstream[name];
      upstream.appendChild(item);
    });
    drawChart(document.getElementById("chart"), data.chart);

    var active = document.querySelector("#active tbody");
    clear(active);
    data.active.forEach(function (row) {
      var tr = el("tr", null, { "data-user": row.user, "data-phase": row.phase });
      var link = el("a", row.user, { href: customerUrl + encodeURIComponent(row.user) });
      var cell = el("td"); cell.appendChild(link); tr.appendChild(cell);
      tr.appendChild(el("td", row.name || t("none")));
      tr.appendChild(el("td", word("phase", row.phase), { "class": "phase " + row.group }));
      tr.appendChild(el("td", age(row.since_seconds)));
      active.appendChild(tr);
    });
    document.getElementById("active-empty").hidden = data.active.length > 0;

    var recent = document.querySelector("#recent tbody");
    clear(recent);
    data.recent_turns.forEach(function (turn) {
      var tr = el("tr", null, { "data-user": turn.user, "data-outcome": turn.outcome });
      var link = el("a", turn.user, { href: customerUrl + encodeURIComponent(turn.user) });
      var cell = el("td"); cell.appendChild(link); tr.appendChild(cell);
      var outcome = el("td", word("outcome", turn.outcome), { "class": "outcome " + turn.outcome });
      if (turn.error) outcome.setAttribute("title", turn.error);
      tr.appendChild(outcome);
      tr.appendChild(el("td", t("ago").replace("{age}", age(turn.ago_seconds))));
      tr.appendChild(el("td", turn.seconds === null ? t("none") : turn.seconds.toFixed(1) + " " + t("unit.s")));
      recent.appendChild(tr);
    });
    document.getElementById("recent-empty").hidden = data.recent_turns.length > 0;
  }

  // -- a customer's state ------------------------------------------------------------------

  function renderState(state) {
    var phase = document.getElementById("phase");
    phase.textContent = word("phase", state.phase);
    phase.setAttribute("data-phase", state.phase);
    var details = document.getElementById("state-details");
    clear(details);
    function row(label, value) {
      details.appendChild(el("dt", label));
      details.appendChild(el("dd", value));
    }
    if (!state.live) {
      row(t("customer.now"), t("customer.not_live"));
    } else {
      var buffer = state.buffer || {};
      if (buffer.messages) {
        row(t("customer.buffer"), buffer.messages + " · " + t("ago").replace("{age}", age(buffer.age_seconds))
          + (buffer.due_in_seconds === null ? "" : " · " + t("customer.due_in") + " " + age(buffer.due_in_seconds)));
      }
      if (state.turn) {
        row(t("customer.turn"), word("phase", state.turn.stage) + " · " + age(state.turn.elapsed_seconds));
      }
      if (state.typing && state.typing.status) {
        row(t("customer.typing"), state.typing.status + " · " + t("ago").replace("{age}", age(state.typing.seconds_ago)));
      }
      row(t("customer.mailbox"), state.mailbox);
      if (state.restarts) row(t("customer.restarts"), state.restarts);
      if (state.last_turn) {
        row(t("customer.last_turn"), word("outcome", state.last_turn.outcome) + " · "
          + localTime(state.last_turn.ended_at) + (state.last_turn.error ? " · " + state.last_turn.error : ""));
      }
      if (state.last_reply) {
        row(t("customer.last_reply"), localTime(state.last_reply.at) + " · " + state.last_reply.parts + " "
          + t("customer.parts") + " · " + word("reply", state.last_reply.kind));
      }
    }
    var pause = document.getElementById("pause");
    pause.setAttribute("data-paused", state.pause ? "1" : "0");
    pause.textContent = state.pause
      ? t("customer.paused_until") + " " + localTime(state.pause.until) + " (" + t("customer.paused_by") + " " + state.pause.by + ")"
      : t("customer.not_paused");
  }

  var page = document.body.getAttribute("data-page");
  if (page === "overview") {
    var status = document.getElementById("status");
    renderOverview(JSON.parse(document.getElementById("overview-data").textContent));
    poll(status.getAttribute("data-url"), Number(status.getAttribute("data-poll-ms")), renderOverview,
      function () { status.className = "status bad"; setText("status-text", t("overview.stale")); });
  } else if (page === "customer") {
    var state = document.getElementById("state");
    renderState(JSON.parse(document.getElementById("state-data").textContent));
    poll(state.getAttribute("data-url"), Number(state.getAttribute("data-poll-ms")), renderState,
      function () {});
  }
})();
