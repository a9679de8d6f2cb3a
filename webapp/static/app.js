// The staff pages' only script: toasts, readable errors for failed htmx requests, and closing the
// progress panel. Everything else is server-rendered HTML swapped in by htmx.
(function () {
  "use strict";

  var TOAST_MS = { info: 6000, success: 6000, error: 12000 };

  function toast(text, category) {
    var box = document.getElementById("toasts");
    if (!box || !text) return;
    category = category || "info";
    // A poll that keeps failing would stack the same message every second: show it once.
    var existing = Array.prototype.find.call(box.children, function (t) { return t.textContent === text; });
    if (existing) existing.remove();
    var item = document.createElement("div");
    item.className = "toast toast-" + category;
    item.setAttribute("role", category === "error" ? "alert" : "status");
    item.textContent = text;  // text, never HTML: the message may echo user input
    box.appendChild(item);
    expire(item);
  }

  function expire(item) {
    if (item.dataset.expires) return;
    var category = (item.className.match(/toast-(\w+)/) || [])[1] || "info";
    item.dataset.expires = "1";
    setTimeout(function () { item.remove(); }, TOAST_MS[category] || 6000);
  }

  // Our page routes answer a refusal with one plain-text sentence; anything else (a proxy's HTML
  // page, a server crash) becomes a generic sentence instead of markup or a stack trace.
  function messageFor(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    var body = (xhr.responseText || "").trim();
    if (type.indexOf("text/plain") === 0 && body && body.length <= 500) return body;
    if (xhr.status === 403) return "Your session has changed; reload the page and try again.";
    if (xhr.status === 404) return "That item no longer exists; reload the page.";
    if (xhr.status >= 500) return "The server had a problem (" + xhr.status + "); try again in a moment.";
    return "The request failed (" + xhr.status + "); reload the page and try again.";
  }

  function panelOf(elt) { return elt && elt.closest ? elt.closest("[data-poll]") : null; }

  function showInPanel(panel, text) {
    var slot = panel.querySelector("[data-panel-error]");
    if (slot) { slot.textContent = text; slot.hidden = false; }
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    // A form re-rendered with its validation errors (422) or a refusal while generating (409).
    if (xhr.status === 409 || xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
    // An expired session answers with the login page; never swap that into a fragment.
    if (xhr.responseURL && new URL(xhr.responseURL).pathname === "/login") {
      event.detail.shouldSwap = false;
      window.location.reload();
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = messageFor(xhr);
    var panel = panelOf(event.detail.elt);
    if (panel) {
      showInPanel(panel, text);
      // The task is gone (or not ours): stop polling by taking the polling element out of the page.
      if (xhr.status === 404 || xhr.status === 403) stopPolling(panel);
      return;
    }
    toast(text, xhr.getResponseHeader("X-Toast-Category") || "error");
  });

  document.addEventListener("htmx:sendError", function (event) {
    var text = "The server could not be reached; check the connection. It will be retried.";
    var panel = panelOf(event.detail.elt);
    if (panel) { showInPanel(panel, text); return; }
    toast("The server could not be reached; check the connection and try again.", "error");
  });

  function stopPolling(panel) {
    // htmx stops an "every" trigger once its element has left the page.
    var copy = panel.cloneNode(true);
    ["data-poll", "hx-get", "hx-trigger", "hx-swap"].forEach(function (a) { copy.removeAttribute(a); });
    var head = copy.querySelector(".progress-head");
    if (head && !head.querySelector("[data-close-panel]")) {
      var close = document.createElement("button");
      close.type = "button";
      close.className = "close";
      close.setAttribute("data-close-panel", "");
      close.textContent = "Close";
      head.appendChild(close);
    }
    panel.replaceWith(copy);
  }

  document.addEventListener("click", function (event) {
    var close = event.target.closest("[data-close-panel]");
    if (close) {
      var slot = document.createElement("div");
      slot.id = "progress";
      close.closest("#progress").replaceWith(slot);
      return;
    }
    var item = event.target.closest(".toast");
    if (item) item.remove();
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(expire);
  });
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (elt.matches && elt.matches(".toast")) expire(elt);
    if (elt.querySelectorAll) elt.querySelectorAll(".toast").forEach(expire);
  });

  window.appToast = toast;
})();
