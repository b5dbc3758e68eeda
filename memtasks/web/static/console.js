// The queues page's charts: the last hour of finished jobs from /api/series, drawn with
// uPlot (served from the package) and redrawn every few seconds.
(function () {
  "use strict";
  const config = () => window.memtasksCharts;
  const charts = {};

  function draw(id, data, series) {
    const el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") return;
    const width = Math.max(el.clientWidth, 320);
    if (charts[id]) {
      charts[id].setData(data);
      return;
    }
    charts[id] = new uPlot({ width: width, height: 220, series: [{}].concat(series), axes: [{}, { size: 50 }] }, data, el);
  }

  async function refresh() {
    const c = config();
    if (!c) return;
    const picked = document.getElementById("chart-queue");
    const queue = picked && picked.value ? "?queue=" + encodeURIComponent(picked.value) : "";
    const response = await fetch(c.series + queue, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const s = await response.json();
    const x = s.minute_ms.map((ms) => ms / 1000);
    draw("chart-throughput", [x, s.finished], [{ label: "finished", stroke: "#2d6cdf", fill: "rgba(45,108,223,.1)" }]);
    // Minutes without a finished job have no percentile: the lines span them, the points show.
    const line = (label, stroke) => ({ label: label, stroke: stroke, spanGaps: true, points: { show: true, size: 5 } });
    draw("chart-wait", [x, s.wait_p50_s, s.wait_p95_s], [line("wait p50", "#1e8449"), line("wait p95", "#c0392b")]);
    draw("chart-run", [x, s.run_p50_s, s.run_p95_s], [line("run p50", "#1e8449"), line("run p95", "#c0392b")]);
    document.body.dataset.chartsDrawn = String(Number(document.body.dataset.chartsDrawn || 0) + 1);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!config()) return;
    refresh();
    setInterval(refresh, config().every_s * 1000);
    const picked = document.getElementById("chart-queue");
    if (picked) picked.addEventListener("change", refresh);
  });
})();
