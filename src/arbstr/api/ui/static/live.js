// arbstr dashboard: the only script. Refreshes [data-src] regions every 3 s and copies the
// value of an input for [data-copy] buttons. No framework, no inline script (the CSP forbids it).
(function () {
  "use strict";
  document.querySelectorAll("[data-src]").forEach(function (region) {
    setInterval(function () {
      fetch(region.dataset.src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { region.innerHTML = html; })
        .catch(function () { /* keep the last state; the next tick tries again */ });
    }, 3000);
  });
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      if (field && navigator.clipboard) {
        navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; });
      } else if (field) {
        field.select();
      }
    });
  });
})();
