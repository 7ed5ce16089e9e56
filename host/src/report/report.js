// Hover readout for the charts, and a render check: every chart's lines must
// have real geometry, which the page records on <html data-charts-rendered>.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var charts = document.querySelectorAll("svg.chart");
  var rendered = 0;
  charts.forEach(function (svg) {
    var lines = svg.querySelectorAll("path.line");
    var ok = lines.length > 0;
    lines.forEach(function (p) {
      var box = p.getBBox();
      ok = ok && p.getTotalLength() > 0 && box.width > 0;
    });
    svg.setAttribute("data-rendered", ok ? "yes" : "no");
    if (ok) rendered += 1;
  });
  document.documentElement.setAttribute("data-charts-rendered", String(rendered));

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function when(i) {
    var t = new Date(data.day[i] * 86400000 + data.ms[i]);
    var s = t.getUTCFullYear() + "-" + pad(t.getUTCMonth() + 1) + "-" + pad(t.getUTCDate());
    return data.ms[i] ? s + " " + pad(t.getUTCHours()) + ":" + pad(t.getUTCMinutes()) : s;
  }
  function money(v) { return v === null ? "n/a" : v.toLocaleString("en-US", { maximumFractionDigits: 2 }); }
  function percent(v) { return v === null ? "n/a" : v.toFixed(2) + "%"; }

  charts.forEach(function (svg) {
    var readout = svg.parentNode.querySelector(".readout");
    var cursor = svg.querySelector(".cursor");
    var t0 = Number(svg.dataset.t0), t1 = Number(svg.dataset.t1);
    var left = Number(svg.dataset.left), right = Number(svg.dataset.right);
    var width = svg.viewBox.baseVal.width;
    svg.addEventListener("mousemove", function (event) {
      var box = svg.getBoundingClientRect();
      var x = (event.clientX - box.left) / box.width * width;
      var t = t0 + (x - left) / (width - left - right) * (t1 - t0);
      var lo = 0, hi = data.day.length - 1;
      while (lo < hi) {
        var mid = (lo + hi) >> 1;
        if (data.day[mid] * 86400000 + data.ms[mid] < t) lo = mid + 1; else hi = mid;
      }
      var at = data.day[lo] * 86400000 + data.ms[lo];
      var cx = left + (t1 > t0 ? (at - t0) / (t1 - t0) : 0.5) * (width - left - right);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      cursor.setAttribute("visibility", "visible");
      readout.hidden = false;
      readout.textContent = svg.id === "drawdown-chart"
        ? when(lo) + "  strategy " + percent(data.dde[lo]) + "  buy & hold " + percent(data.ddb[lo])
        : when(lo) + "  strategy " + money(data.eq[lo]) + "  buy & hold " + money(data.bh[lo]);
    });
    svg.addEventListener("mouseleave", function () {
      cursor.setAttribute("visibility", "hidden");
      readout.hidden = true;
    });
  });
})();
