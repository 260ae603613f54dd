// subaccount-worker console: the only script besides the vendored htmx (no inline script: CSP).
// 1. Live regions: an element with data-sse="/live/..." opens an EventSource; each server event
//    named N replaces the inner HTML of the descendant [data-sse-target="N"] (HTML rendered and
//    escaped by the server). The event "close" ends the stream (a finished job).
// 2. "Select all on this page" checkboxes.
(function () {
  "use strict";

  function connect(root) {
    if (root.dataset.sseConnected) return;
    root.dataset.sseConnected = "1";
    var source = new EventSource(root.dataset.sse);
    root.querySelectorAll("[data-sse-target]").forEach(function (target) {
      source.addEventListener(target.dataset.sseTarget, function (event) {
        target.innerHTML = event.data;
        if (window.htmx) window.htmx.process(target);
      });
    });
    source.addEventListener("close", function () {
      source.close();
      root.dataset.sseDone = "1";
    });
    var observer = new MutationObserver(function () {
      if (!document.body.contains(root)) { source.close(); observer.disconnect(); }
    });
    observer.observe(document.body, { childList: true, subtree: true });
  }

  function wire(scope) {
    scope.querySelectorAll("[data-sse]").forEach(connect);
    scope.querySelectorAll("input[data-select-all]").forEach(function (box) {
      if (box.dataset.wired) return;
      box.dataset.wired = "1";
      box.addEventListener("change", function () {
        var form = box.form;
        form.querySelectorAll("input[name='ids']").forEach(function (row) {
          row.checked = box.checked;
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:afterSettle", function (event) { wire(event.target); });
})();
