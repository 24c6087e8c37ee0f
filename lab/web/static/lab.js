// The lab's own little script: scan answers without a page load, and "/" to search.
// Everything works without it; it only saves a round trip at the reception bench.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const scanForm = document.querySelector("form[data-partial]");
  if (scanForm) {
    const input = scanForm.querySelector("input[name=accession_number]");
    const panel = document.getElementById(scanForm.dataset.target);
    // Scans are sent one after another, in the order they were made, even when the
    // scanner is faster than the server.
    let queue = Promise.resolve();
    scanForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = new FormData(scanForm);
      input.value = "";
      input.focus();
      queue = queue.then(() => sendScan(body)).catch(() => undefined);
    });
    const sendScan = async (body) => {
      panel.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(scanForm.action, {
          method: "POST",
          body,
          headers: { "X-Lab-Partial": scanForm.dataset.partial },
          credentials: "same-origin",
        });
        const type = response.headers.get("content-type") || "";
        if (response.redirected || !type.startsWith("text/html")) {
          // Signed out meanwhile, or something unexpected: let the browser show it.
          window.location.assign(response.url);
          return;
        }
        const html = await response.text();
        if (html.includes("<html")) {
          // A whole page (e.g. "not allowed" after the session changed): show its message.
          const main = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          panel.innerHTML = main ? main.innerHTML : "";
        } else {
          panel.innerHTML = html;
        }
      } finally {
        panel.removeAttribute("aria-busy");
        input.focus();
      }
    };
  }

  document.addEventListener("keydown", (event) => {
    const active = document.activeElement;
    const typing = active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
    if (event.key === "/" && !typing) {
      const search = document.getElementById("search-q");
      if (search) {
        event.preventDefault();
        search.focus();
      }
    }
  });
});
