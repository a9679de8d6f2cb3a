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
    var copy = event.target.closest("[data-copy]");
    if (copy) return copyField(copy);
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
    selectAllFollows();
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

  // "Select all on this page" ticks the page's article boxes that can be ticked (an article with nothing
  // pending has its box disabled), and shows whether all, some or none are.
  function articleBoxes() {
    return Array.prototype.filter.call(
      document.querySelectorAll("input[form=bulk][name=content_id]"), function (box) { return !box.disabled; });
  }

  function selectAllFollows() {
    var all = document.getElementById("select-all");
    if (!all) return;
    var boxes = articleBoxes(), ticked = boxes.filter(function (box) { return box.checked; }).length;
    all.checked = boxes.length > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
    all.disabled = boxes.length === 0;
  }

  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      var on = event.target.checked;
      articleBoxes().forEach(function (box) { box.checked = on; });
      bulk();
    } else if (event.target.matches("input[form=bulk]")) {
      bulk();
    }
  });

  // Copy HTML: the text of the field the button names, to the clipboard (selected in the field when the
  // browser refuses, so that Ctrl+C does it).
  function copyField(button) {
    var field = document.querySelector(button.dataset.copy);
    if (!field) return;
    var label = button.dataset.label || (button.dataset.label = button.textContent);
    function copied() {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    function selectIt() {
      field.focus();
      field.select();
      if (document.execCommand && document.execCommand("copy")) return copied();
      toast("The browser did not allow copying: the HTML is selected, press Ctrl+C (⌘C on a Mac).");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(copied, selectIt);
    } else {
      selectIt();
    }
  }

  // The Images page's answers refresh the blocks of the articles they touch, out of band by id. An article's
  // own page has a stand-in with that id instead: it is left alone, and fetches that page's slots.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.hasAttribute("data-refresh-instead")) {
      event.detail.shouldSwap = false;
      htmx.trigger(target, "refresh");
    }
  });

  // Controls that only work with this script are in the markup hidden; shown here.
  function reveal(elt) {
    var found = Array.prototype.slice.call(elt.querySelectorAll("[data-copy][hidden], [data-select-all][hidden]"));
    if (elt.matches("[data-copy][hidden], [data-select-all][hidden]")) found.push(elt);
    found.forEach(function (control) { control.hidden = false; });
  }

  // Every toast: flashed with the page (htmx fires this for the body once it has started) or swapped in.
  // Articles swapped in come back unticked (and a reload may restore ticks): the bulk button follows.
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (elt.matches(".toast")) expire(elt);
    elt.querySelectorAll(".toast").forEach(expire);
    reveal(elt);
    bulk();
  });
})();
