// jobyard console: checks a chosen file against the server's upload limit before it is
// sent (a refused upload would otherwise be cut off mid-way by the server). The server
// checks again: this only spares the wait. No inline script: the CSP allows this file.
(function () {
  "use strict";
  function check(input) {
    var limit = parseInt(input.dataset.maxBytes || "0", 10);
    var file = input.files && input.files[0];
    if (limit > 0 && file && file.size > limit) {
      input.setCustomValidity(
        "This file is " + file.size + " bytes: the largest upload is " + limit +
        " bytes (JOBYARD_UPLOAD_MAX_BYTES)."
      );
      input.reportValidity();
    } else {
      input.setCustomValidity("");
    }
  }
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el instanceof HTMLInputElement && el.type === "file" && el.dataset.maxBytes) check(el);
  });
})();
