// Steward dashboard: the only script. Pages work without it; it adds two conveniences.
// 1. Filter selects marked data-autosubmit submit their form on change.
// 2. "auto-refresh" (remembered in localStorage) reloads the page every 30 seconds.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { if (el.form) { el.form.submit(); } });
  });
  var box = document.getElementById("auto-refresh");
  if (!box) { return; }
  var KEY = "steward.dashboard.autoRefresh";
  var timer = null;
  function arm() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (box.checked) { timer = setTimeout(function () { window.location.reload(); }, 30000); }
  }
  try { box.checked = window.localStorage.getItem(KEY) === "1"; } catch (e) { /* storage disabled */ }
  box.addEventListener("change", function () {
    try { window.localStorage.setItem(KEY, box.checked ? "1" : "0"); } catch (e) { /* storage disabled */ }
    arm();
  });
  arm();
}());
