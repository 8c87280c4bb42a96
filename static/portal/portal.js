/* The promoter portal's small scripts: copy buttons and the live dashboard. No framework. */
(function () {
  "use strict";

  function announce(text) {
    var live = document.getElementById("live");
    if (live) { live.textContent = ""; window.setTimeout(function () { live.textContent = text; }, 50); }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    var done = function () { button.textContent = "Copied"; announce("Copied to the clipboard"); window.setTimeout(function () { button.textContent = "Copy"; }, 2000); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.focus(); field.select();
      try { if (document.execCommand("copy")) done(); } catch (e) { /* the text stays selected */ }
    }
  });

  var dash = document.getElementById("dashboard");
  if (!dash) return;
  var url = dash.getAttribute("data-summary-url");
  var every = parseInt(dash.getAttribute("data-poll-ms") || "5000", 10);
  var initial = JSON.parse(document.getElementById("summary-data").textContent);
  var chart = null;
  var canvas = document.getElementById("chart");
  if (canvas && window.Chart) {
    chart = new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: initial.days.map(function (d) { return d.slice(5); }),
        datasets: [
          { type: "line", label: "Earned (" + initial.currency + ")", data: initial.series.earned.map(Number), yAxisID: "money", borderColor: "#17663a", backgroundColor: "#17663a", tension: 0.2 },
          { label: "Clicks", data: initial.series.clicks, yAxisID: "count", backgroundColor: "#9db4ef" },
          { label: "Purchases", data: initial.series.purchases, yAxisID: "count", backgroundColor: "#1849c6" }
        ]
      },
      options: {
        maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false },
        scales: {
          count: { type: "linear", position: "left", beginAtZero: true, ticks: { precision: 0 } },
          money: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false } }
        }
      }
    });
  }

  var last = JSON.stringify(initial);
  function render(data) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var value = el.getAttribute("data-field").split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, data);
      el.textContent = value == null ? "–" : value;
    });
    if (chart) {
      chart.data.labels = data.days.map(function (d) { return d.slice(5); });
      chart.data.datasets[0].data = data.series.earned.map(Number);
      chart.data.datasets[1].data = data.series.clicks;
      chart.data.datasets[2].data = data.series.purchases;
      chart.update();
    }
  }

  function poll() {
    if (document.hidden) { window.setTimeout(poll, every); return; }
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        var before = JSON.parse(last), now = JSON.stringify(data);
        if (now !== last) {
          var moneyChanged = JSON.stringify(before.balance) !== JSON.stringify(data.balance);
          render(data);
          if (moneyChanged) announce("Your balance changed: " + data.balance.pending + " " + data.currency + " pending.");
          last = now;
        }
      })
      .catch(function () { /* offline or logged out: try again later */ })
      .then(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
})();
