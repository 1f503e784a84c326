// The live progress of a bulkops job page: polls the job's status.json and moves the
// <progress> bar. When the job's status changes (validated, running, ended) the page
// reloads to show what that status brings. Without JavaScript the page still shows the
// state it was rendered with, and a <noscript> refresh keeps it current.
(function () {
  "use strict";
  var root = document.querySelector("[data-bulkops-job]");
  if (!root || root.dataset.active !== "true") {
    return;
  }
  var url = root.dataset.statusUrl;
  var status = root.dataset.status;
  var bar = root.querySelector("progress");
  var text = root.querySelector("[data-progress-text]");
  var stage = root.querySelector("[data-stage-label]");
  var delay = 700;

  function show(data) {
    var percent = data.progress && data.progress.percent;
    if (percent === null || percent === undefined) {
      bar.removeAttribute("value");
    } else {
      bar.value = percent;
      bar.textContent = percent + "%";
    }
    text.textContent = data.text;
    stage.textContent = data.stage_label;
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error(response.status);
        }
        return response.json();
      })
      .then(function (data) {
        show(data);
        if (data.status !== status) {
          window.location.reload();
          return;
        }
        delay = 700;
        window.setTimeout(poll, document.hidden ? 5000 : delay);
      })
      .catch(function () {
        // A network hiccup or a restarting server: try again, less often.
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
