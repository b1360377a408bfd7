// arbstr playground: "Send" streams the answer in (the form still works without this script).
(function () {
  "use strict";
  var form = document.getElementById("play");
  if (!form || !window.fetch || !window.TextDecoder) { return; }
  var out = document.getElementById("answer");
  var meta = document.getElementById("answer-meta");
  function fact(name, value) {
    var dt = document.createElement("dt"); dt.textContent = name;
    var dd = document.createElement("dd"); dd.textContent = value == null ? "-" : String(value);
    meta.appendChild(dt); meta.appendChild(dd);
  }
  form.addEventListener("submit", function (event) {
    var action = event.submitter ? event.submitter.value : "run";
    if (action !== "run") { return; }  // the candidate test renders on the server
    event.preventDefault();
    out.textContent = ""; meta.textContent = "";
    var body = new URLSearchParams(new FormData(form));
    fetch("/ui/playground/stream", { method: "POST", body: body, credentials: "same-origin" })
      .then(function (response) {
        var headers = response.headers;
        if (!response.body || !response.headers.get("content-type").startsWith("text/event-stream")) {
          return response.text().then(function (text) {
            var message = text;
            try { message = JSON.parse(text).error.message; } catch (e) { /* plain text */ }
            out.textContent = message;
          });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (step) {
            if (step.done) {
              fact("attempts", headers.get("x-arbstr-attempts"));
              fact("request", headers.get("x-arbstr-request-id"));
              return;
            }
            buffer += decoder.decode(step.value, { stream: true });
            var events = buffer.split("\n\n");
            buffer = events.pop();
            events.forEach(function (raw) {
              var data = raw.replace(/^data: /, "");
              if (data === "[DONE]") { return; }
              try {
                var event = JSON.parse(data);
                if (event.arbstr) {
                  fact("provider", event.arbstr.provider);
                  fact("cost (sats)", event.arbstr.cost_sats);
                  fact("latency (ms)", event.arbstr.latency_ms);
                } else if (event.error) {
                  out.textContent += "\n[" + event.error.message + "]";
                } else if (event.choices && event.choices[0] && event.choices[0].delta) {
                  out.textContent += event.choices[0].delta.content || "";
                }
              } catch (e) { /* not JSON: ignore */ }
            });
            return pump();
          });
        }
        return pump();
      })
      .catch(function (error) { out.textContent = "request failed: " + error; });
  });
})();
