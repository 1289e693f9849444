// The Custos console's only script. Every page works without it; with it, live views update
// in place. No inline script anywhere: the Content-Security-Policy forbids it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-stream]")) {
    live(el);
  }
});

// A table whose body gains a row for each event of its Server-Sent Events stream.
function live(table) {
  const url = table.getAttribute("data-stream");
  const body = table.querySelector("tbody");
  if (!url || !body || typeof EventSource === "undefined") {
    return;
  }
  const source = new EventSource(url);
  source.addEventListener("row", (event) => {
    const template = document.createElement("template");
    template.innerHTML = event.data; // server-rendered and escaped
    const row = template.content.firstElementChild;
    if (!row) {
      return;
    }
    row.classList.add("fresh");
    body.prepend(row);
    while (body.rows.length > 500) {
      body.deleteRow(body.rows.length - 1);
    }
    const empty = document.getElementById("empty");
    if (empty) {
      empty.remove();
    }
  });
}
