// report.html and `overnight serve`: sorting, filtering, panels, the chart's tooltip and, when the
// page is live, refreshing from the server. Inlined into the page (html.py). Every listener is
// delegated from the document, so a live refresh that replaces <main> needs no re-binding.
(function () {
  "use strict";
  var sortCol = -1, sortDir = 1, hidden = {}, query = "";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  function sortKey(td, type) {
    var v = td.getAttribute("data-v");
    if (type === "num") return v === "" ? null : parseFloat(v);
    return v.toLowerCase();
  }

  function applySort() {
    var ths = $$("#exp-table thead th");
    ths.forEach(function (th, i) { th.className = i === sortCol ? (sortDir > 0 ? "asc" : "desc") : ""; });
    if (sortCol < 0) return;
    var type = ths[sortCol].getAttribute("data-type"), body = $("#exp-table tbody");
    var rows = $$("tr", body).map(function (tr) { return [sortKey(tr.children[sortCol], type), tr]; });
    rows.sort(function (a, b) {
      if (a[0] === b[0]) return 0;
      if (a[0] === null) return 1;  // missing values last, whichever way
      if (b[0] === null) return -1;
      return (a[0] < b[0] ? -1 : 1) * sortDir;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r[1]); });
    body.appendChild(frag);
  }

  function applyFilter() {
    $$("#experiments input[name=status]").forEach(function (box) { box.checked = !hidden[box.value]; });
    var q = $("#q"); if (q) q.value = query;
    var shown = 0, rows = $$("#exp-table tbody tr");
    rows.forEach(function (tr) {
      var text = tr.lastElementChild.textContent.toLowerCase();
      var show = !hidden[tr.getAttribute("data-status")] && (!query || text.indexOf(query) >= 0);
      tr.hidden = !show;
      if (show) shown++;
    });
    var p = $("#shown"); if (p) p.textContent = shown + " of " + rows.length + " experiments shown";
  }

  // A panel's HTML comes as the text of <script type="text/html" class="panel-src">: made into
  // elements the first time it is opened (html.py _panel_source says why).
  function panelFor(id) {
    var panel = document.getElementById("exp-" + id);
    if (panel) return panel;
    var src = $('script.panel-src[data-id="' + id + '"]');
    if (!src) return null;
    src.insertAdjacentHTML("afterend", src.textContent);
    return document.getElementById("exp-" + id);
  }

  function openPanel() {
    $$(".panel.open").forEach(function (p) { p.classList.remove("open"); });
    var m = /^#exp-(\d+)$/.exec(location.hash);
    var panel = m && panelFor(m[1]);
    if (panel) panel.classList.add("open");
    return panel;
  }

  function closePanel() {
    history.replaceState(null, "", location.pathname + location.search);
    openPanel();
  }

  document.addEventListener("click", function (ev) {
    var th = ev.target.closest("#exp-table thead th");
    if (th) {
      var i = Array.prototype.indexOf.call(th.parentNode.children, th);
      sortDir = i === sortCol ? -sortDir : 1; sortCol = i; applySort(); return;
    }
    if (ev.target.closest(".panel .close")) { ev.preventDefault(); closePanel(); return; }
    var tr = ev.target.closest("#exp-table tbody tr");
    if (tr && !ev.target.closest("a")) location.hash = "#exp-" + tr.getAttribute("data-id");
  });
  document.addEventListener("change", function (ev) {
    if (ev.target.name === "status") { hidden[ev.target.value] = !ev.target.checked; applyFilter(); }
  });
  document.addEventListener("input", function (ev) {
    if (ev.target.id === "q") { query = ev.target.value.toLowerCase(); applyFilter(); }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") closePanel();
    if (ev.key === "Enter" && ev.target.matches("#exp-table thead th")) ev.target.click();
  });
  window.addEventListener("hashchange", openPanel);

  var tip = null;
  document.addEventListener("mouseover", function (ev) {
    var pt = ev.target.closest && ev.target.closest("#chart .pt, #chart .verified");
    tip = tip || $("#tip");
    if (!tip) return;
    if (!pt) { tip.hidden = true; return; }
    var title = pt.querySelector("title");
    tip.textContent = title ? title.textContent : "";
    tip.hidden = false;
  });
  document.addEventListener("mousemove", function (ev) {
    if (tip && !tip.hidden) { tip.style.left = ev.clientX + 14 + "px"; tip.style.top = ev.clientY + 10 + "px"; }
  });

  function refreshed() { applySort(); applyFilter(); openPanel(); tip = null; }

  // --- live: `overnight serve` sets data-live; it answers `state` with the journal's version --------
  var state = window.__overnight = { ready: false, refreshes: 0, version: null };
  function poll() {
    fetch("state", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (s) {
      var live = $("#live"); if (live) { live.className = ""; live.textContent = "live"; }
      if (s.version === state.version) return;
      return fetch(location.pathname, { cache: "no-store" }).then(function (r) { return r.text(); }).then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("night");
        var old = $("#night"), panel = $(".panel.open"), scroll = panel ? panel.scrollTop : 0;
        if (!fresh || !old) return;
        old.replaceWith(fresh);
        refreshed();
        var again = $(".panel.open"); if (again) again.scrollTop = scroll;
        state.version = s.version; state.refreshes++;
      });
    }).catch(function () {
      var live = $("#live"); if (live) { live.className = "stale"; live.textContent = "server unreachable: retrying"; }
    }).then(function () { setTimeout(poll, 2000); });
  }

  refreshed();
  if (document.body.getAttribute("data-live") === "1") {
    state.version = $("#night").getAttribute("data-version");
    setTimeout(poll, 2000);
  }
  state.ready = true;
  if (window.performance && performance.mark) performance.mark("overnight-ready");
})();
