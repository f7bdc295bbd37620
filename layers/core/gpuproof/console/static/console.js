// gpuproof console: charts (Chart.js, served from this API) and live countdowns. The page's
// figures are all in its HTML; this only draws them and keeps countdowns current.
(function () {
  "use strict";

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var palette = ["#0b5cad", "#b3261e", "#0b6b2e", "#7a4b00", "#6a1b9a", "#00695c", "#ad1457", "#37474f"];

  function timeLabel(epoch) {
    return new Date(epoch * 1000).toISOString().slice(5, 19).replace("T", " ");
  }

  function chart(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas || typeof window.Chart === "undefined") { return; }
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    canvas.parentElement.style.height = "16rem";
    canvas.dataset.rendered = "true";
    new window.Chart(canvas, config);
  }

  function perDay() {
    var d = data("data-per-day");
    if (!d) { return; }
    chart("chart-per-day", {
      type: "bar",
      data: { labels: d.days, datasets: [
        { label: "passed", data: d.passed, backgroundColor: "#0b6b2e" },
        { label: "refused", data: d.refused, backgroundColor: "#b3261e" }
      ] },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }

  function proof() {
    var p = data("data-proof");
    if (!p || !p.gpus.length) { return; }
    var labels = p.gpus.map(function (g) { return "GPU " + g.gpu_index; });
    var sets = [{ label: "proven (lower bound)", data: p.gpus.map(function (g) { return g.proven_tops; }), backgroundColor: "#0b5cad" }];
    if (p.reference) {
      if (p.reference.expected_int8_tops !== null) {
        sets.push({ label: "expected for " + p.reference.model, data: p.gpus.map(function () { return p.reference.expected_int8_tops; }), backgroundColor: "#7a4b00" });
      }
      if (p.reference.int8_dense_tops !== null) {
        sets.push({ label: "datasheet dense int8", data: p.gpus.map(function () { return p.reference.int8_dense_tops; }), backgroundColor: "#9e9e9e" });
      }
    }
    chart("chart-proof", { type: "bar", data: { labels: labels, datasets: sets },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "int8 TOPS" } } } } });
  }

  function telemetry() {
    var t = data("data-telemetry");
    if (!t) { return; }
    var labels = t.times.map(timeLabel);
    t.charts.forEach(function (c) {
      chart("chart-" + c.id, {
        type: "line",
        data: { labels: labels, datasets: c.lines.map(function (line, i) {
          return { label: line.label, data: line.values, borderColor: palette[i % palette.length], pointRadius: 0, spanGaps: true };
        }) },
        options: { scales: { y: { title: { display: true, text: c.unit } } } }
      });
    });
  }

  function format(seconds) {
    if (seconds <= 0) { return "0 s (passed)"; }
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = Math.floor(seconds % 60);
    if (d) { return d + " d " + h + " h"; }
    if (h) { return h + " h " + m + " min"; }
    return m + " min " + s + " s";
  }

  function countdowns() {
    var els = document.querySelectorAll("[data-countdown]");
    if (!els.length) { return; }
    function tick() {
      var now = Date.now();
      els.forEach(function (el) {
        el.textContent = format((Date.parse(el.dataset.countdown) - now) / 1000);
      });
    }
    tick();
    window.setInterval(tick, 1000);
  }

  perDay();
  proof();
  telemetry();
  countdowns();
}());
