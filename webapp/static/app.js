// The staff pages' only script, for what htmx cannot do itself. The server renders every form error,
// panel and toast, and htmx swaps them (see the htmx-config meta tag in base.html). Left here: a sentence
// for a request the app never answered (the network is down, or a proxy answered with its own page),
// closing the progress panel, toasts that go away, and the bulk button's count and estimate.
(function () {
  "use strict";

  var TOAST_MS = { info: 6000, success: 6000, error: 12000 };

  function expire(item) {
    var category = (item.className.match(/toast-(\w+)/) || [])[1];
    setTimeout(function () { item.remove(); }, TOAST_MS[category] || 6000);
  }

  function toast(text) {
    var box = document.getElementById("toasts");
    // A poll that keeps failing would stack the same sentence every second: show it once.
    Array.prototype.forEach.call(box.children, function (t) { if (t.textContent === text) t.remove(); });
    var item = document.createElement("div");
    item.className = "toast toast-error";
    item.setAttribute("role", "alert");
    item.textContent = text;
    box.appendChild(item);
    expire(item);
  }

  // A failing poll says so inside its panel (the rows stay; the next answer replaces the panel).
  function report(elt, text, inPanel) {
    var panel = elt && elt.closest ? elt.closest("[data-poll]") : null;
    var slot = panel && panel.querySelector("[data-panel-error]");
    if (!slot) return toast(text);
    slot.textContent = inPanel || text;
    slot.hidden = false;
  }

  document.addEventListener("htmx:responseError", function (event) {
    // The app's own refusals went to #toasts already; anything else is a page not meant for a person.
    if (event.detail.target && event.detail.target.id === "toasts") return;
    var status = event.detail.xhr.status;
    report(event.detail.elt, status >= 500
      ? "The server had a problem (" + status + "); try again in a moment."
      : "The request failed (" + status + "); reload the page and try again.");
  });

  document.addEventListener("htmx:sendError", function (event) {
    report(event.detail.elt, "The server could not be reached; check the connection and try again.",
      "The server could not be reached; check the connection. It will be retried.");
  });

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

  // Dollars as jobs/budget.usd writes them (at least cents, at most four decimals, half to even), from
  // whole micro-dollars so that adding never drifts.
  function usd(micros) {
    var q = Math.floor(micros / 100), rest = micros % 100;
    if (rest > 50 || (rest === 50 && q % 2)) q += 1;
    var text = Math.floor(q / 10000) + "." + String(q % 10000).padStart(4, "0");
    return "$" + text.replace(/0{1,2}$/, "");
  }

  // "Generate selected" counts and prices the ticked articles from figures the server put on each box, and
  // on a paid provider asks first (htmx reads hx-confirm when the form is sent).
  function bulk() {
    var form = document.getElementById("bulk");
    if (!form) return;
    var images = 0, micros = 0;
    document.querySelectorAll("input[form=bulk][name=content_id]:checked").forEach(function (box) {
      images += Number(box.dataset.images);
      micros += Math.round(parseFloat(box.dataset.cost) * 1e6);
    });
    var cost = micros > 0 ? " · ≈ " + usd(micros) : "";
    form.querySelector("#generate-selected").textContent = "Generate selected" + (images ? " (" + images + ")" + cost : "");
    if (micros > 0) {
      form.setAttribute("hx-confirm", "Generate " + images + " image" + (images === 1 ? "" : "s") + " for ≈ " + usd(micros) + "?");
    } else {
      form.removeAttribute("hx-confirm");
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("input[form=bulk]")) bulk();
  });

  // Every toast: flashed with the page (htmx fires this for the body once it has started) or swapped in.
  // Articles swapped in come back unticked (and a reload may restore ticks): the bulk button follows.
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (elt.matches(".toast")) expire(elt);
    elt.querySelectorAll(".toast").forEach(expire);
    bulk();
  });
})();
