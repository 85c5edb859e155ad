/* The dashboard's charts (console/analytics.html): uPlot (vendored, /static/vendor) draws the
   series of the page's JSON block (#analytics-data) into each <figure data-chart="…">. The
   figure's data table holds the same numbers for screen readers and for anyone without
   scripts. The x axis counts periods (0, 1, 2, …) and shows the server's labels (days in the
   program's time zone, formatted in the page's language). After drawing, a figure carries
   data-points (how many periods the chart got) and data-drawn. */
(function () {
  "use strict";

  // Dark enough on white for WCAG's 3:1 for graphics, and told apart by more than hue alone
  // (the table says the same).
  var COLOURS = ["#1d4ed8", "#b45309", "#047857", "#b91c1c"];
  var DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3]];
  var HEIGHT = 240;

  // Whole numbers for what is counted (members, points, purchases): no 2.5 on an axis.
  var WHOLE = [1, 2, 5];
  for (var power = 1; power <= 1e12; power *= 10) {
    WHOLE.push(power * 10, power * 20, power * 50);
  }

  // Values in the page's language; an axis's in short form (1.2K, Rp 3 jt).
  function formatter(data, kind, compact) {
    var options = {maximumFractionDigits: kind === "score" ? 1 : 0};
    if (kind === "money") {
      options = {style: "currency", currency: data.currency, maximumFractionDigits: 0};
    }
    if (compact) {
      options.notation = "compact";
      options.maximumFractionDigits = 1;
    }
    var format;
    try {
      format = new Intl.NumberFormat(data.locale, options);
    } catch (error) {  // a browser without the page's language
      format = new Intl.NumberFormat(undefined, options);
    }
    return function (value) {
      return value === null || value === undefined ? "–" : format.format(value);
    };
  }

  function draw(figure, chart, data) {
    var plot = figure.querySelector(".plot");
    var xs = chart.labels.map(function (label, index) { return index; });
    var format = formatter(data, chart.kind, false);
    var short = formatter(data, chart.kind, true);
    var series = [{
      label: data.period_label,
      value: function (u, index) { return index === null ? "" : chart.labels[index]; }
    }];
    chart.series.forEach(function (line, index) {
      series.push({
        label: line.label,
        stroke: COLOURS[index % COLOURS.length],
        dash: DASHES[index % DASHES.length],
        width: 2,
        spanGaps: false,
        value: function (u, value) { return format(value); }
      });
    });
    var yAxis = {size: 80, values: function (u, splits) { return splits.map(short); }};
    if (chart.kind === "count" || chart.kind === "points") {
      yAxis.incrs = WHOLE;
    }
    var options = {
      width: Math.max(plot.clientWidth, 240),
      height: HEIGHT,
      scales: {x: {time: false}},
      axes: [
        {
          incrs: [1, 2, 3, 7, 14, 28, 56, 91, 182, 364],
          space: 90,
          values: function (u, splits) {
            return splits.map(function (index) { return chart.labels[index] || ""; });
          }
        },
        yAxis
      ],
      padding: [12, 36, null, null],  // room for the last day's label
      series: series
    };
    var values = [xs].concat(chart.series.map(function (line) { return line.values; }));
    var drawn = new window.uPlot(options, values, plot);
    figure.dataset.points = String(drawn.data[0].length);
    figure.dataset.drawn = "true";
    return {plot: plot, chart: drawn};
  }

  function start() {
    var block = document.getElementById("analytics-data");
    if (!block || !window.uPlot) {
      return;
    }
    var data = JSON.parse(block.textContent);
    var drawn = [];
    data.charts.forEach(function (chart) {
      var figure = document.querySelector('figure[data-chart="' + chart.id + '"]');
      if (figure) {
        drawn.push(draw(figure, chart, data));
      }
    });
    var pending = false;
    window.addEventListener("resize", function () {
      if (pending) {
        return;
      }
      pending = true;
      window.requestAnimationFrame(function () {
        pending = false;
        drawn.forEach(function (one) {
          one.chart.setSize({width: Math.max(one.plot.clientWidth, 240), height: HEIGHT});
        });
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
