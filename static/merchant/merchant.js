/* The merchant dashboard's chart: the last 30 days of a program, drawn by the vendored
   Chart.js from the figures in the page (also in the table below it). No framework. */
(function () {
  "use strict";
  var canvas = document.getElementById("merchant-chart");
  var source = document.getElementById("chart-data");
  if (!canvas || !source || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.days.map(function (d) { return d.slice(5); }),
      datasets: [
        { type: "line", label: "Revenue (" + data.currency + ")", data: data.revenue.map(Number), yAxisID: "money", borderColor: "#17663a", backgroundColor: "#17663a", tension: 0.2 },
        { label: "Clicks", data: data.clicks, yAxisID: "count", backgroundColor: "#9db4ef" },
        { label: "Purchases", data: data.purchases, yAxisID: "count", backgroundColor: "#1849c6" }
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
})();
