/* The merchant's insight charts, drawn by the vendored Chart.js from the figures in the
   page (which are also in its tables): LTV and CAC per channel, the segments' scatter,
   keyword lift with its lower bound. No framework. */
(function () {
  "use strict";
  if (!window.Chart) return;
  var palette = ["#1849c6", "#17663a", "#b5462b", "#7a4fb3", "#9a7400", "#2f7f8f", "#5c5c5c"];

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  var value = data("value-data"), valueCanvas = document.getElementById("value-chart");
  if (value && valueCanvas) {
    new window.Chart(valueCanvas, {
      type: "bar",
      data: {
        labels: value.labels,
        datasets: [
          { label: "LTV", data: value.ltv, backgroundColor: palette[1] },
          { label: "CAC", data: value.cac, backgroundColor: palette[2] }
        ]
      },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } } }
    });
  }

  var segments = data("segments-data"), segmentsCanvas = document.getElementById("segments-chart");
  if (segments && segmentsCanvas) {
    new window.Chart(segmentsCanvas, {
      type: "scatter",
      data: {
        datasets: segments.segments.map(function (s, i) {
          return { label: s.name, data: s.points, backgroundColor: palette[i % palette.length], pointRadius: 3 };
        })
      },
      options: {
        maintainAspectRatio: false, animation: false,
        scales: {
          x: { title: { display: true, text: "Conversion rate" }, beginAtZero: true },
          y: { title: { display: true, text: "Average order value" }, beginAtZero: true }
        }
      }
    });
  }

  var keywords = data("keywords-data"), keywordsCanvas = document.getElementById("keywords-chart");
  if (keywords && keywordsCanvas) {
    new window.Chart(keywordsCanvas, {
      type: "bar",
      data: {
        labels: keywords.labels,
        datasets: [
          { label: "Lift", data: keywords.lift, backgroundColor: palette[0] },
          { label: "Lift, 95% lower bound", data: keywords.lift_lower, backgroundColor: "#9db4ef" }
        ]
      },
      options: { indexAxis: "y", maintainAspectRatio: false, animation: false, scales: { x: { beginAtZero: true } } }
    });
  }
})();
