// The lab's own little script: scan answers without a page load, review at the speed of the
// keyboard (partial updates, shortcuts), and "/" to search.
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


  // --- Review at speed: partial updates and the keyboard --------------------------------------
  // Each verify form is sent in the background; the server answers with the tube's block of the
  // same template (empty when nothing of the tube waits any more), which replaces the old block,
  // so the reviewer stays where they were. Keys (not while typing): j/↓ next result, k/↑ previous,
  // v verify (or go to the call form of a critical result), a verify the tube's unremarkable
  // results, c comment, f fix before release (replace, rerun, discard), n next tube.
  const queue = document.querySelector("[data-review-queue]");
  if (queue) {
    const total = document.getElementById("review-total");
    const notice = document.getElementById("review-notice");
    const rows = () => Array.from(queue.querySelectorAll("tr[data-result]"));
    let current = null;
    const focusRow = (row) => {
      if (!row) return;
      if (current) current.classList.remove("current");
      current = row;
      row.classList.add("current");
      row.focus({ preventScroll: false });
      row.scrollIntoView({ block: "nearest" });
    };
    const move = (step) => {
      const all = rows();
      const at = current ? all.indexOf(current) : -1;
      focusRow(all[Math.min(all.length - 1, Math.max(0, at + step))]);
    };

    queue.addEventListener("submit", async (event) => {
      const form = event.target.closest("form[data-review-action]");
      if (!form) return;
      event.preventDefault();
      const group = form.closest("section.review-group");
      const all = rows();
      const place = current ? all.indexOf(current) : 0;
      form.setAttribute("aria-busy", "true");
      // A form with several actions (fix: replace, rerun, discard) names it on the button.
      const submitter = event.submitter;
      const action = submitter && submitter.hasAttribute("formaction")
        ? submitter.formAction
        : form.action;
      let response;
      try {
        response = await fetch(action, {
          method: "POST",
          body: new FormData(form),
          headers: { "X-Lab-Partial": "review" },
          credentials: "same-origin",
        });
      } catch (error) {
        form.removeAttribute("aria-busy");
        form.action = action;
        form.submit(); // the network hiccupped: send it the ordinary way
        return;
      }
      const type = response.headers.get("content-type") || "";
      if (response.redirected || !type.startsWith("text/html")) {
        window.location.assign(response.url);
        return;
      }
      const html = await response.text();
      if (html.includes("<html")) {
        document.open();
        document.write(html); // a whole page (signed out, not allowed): show it as it is
        document.close();
        return;
      }
      const fresh = document.createElement("div");
      fresh.innerHTML = html.trim();
      const block = fresh.firstElementChild;
      if (block) group.replaceWith(block);
      else group.remove();
      const count = response.headers.get("X-Lab-Count");
      if (count !== null && total) total.textContent = count;
      const said = decodeURIComponent(response.headers.get("X-Lab-Notice") || "");
      if (notice) notice.innerHTML = said ? `<p class="notice" role="status"></p>` : "";
      if (said && notice) notice.firstElementChild.textContent = said;
      if (!queue.querySelector("section.review-group")) {
        const empty = document.createElement("p");
        empty.className = "empty";
        empty.textContent = queue.dataset.empty;
        queue.replaceChildren(empty);
      }
      const invalid = block && block.querySelector("[aria-invalid=true], .field-error");
      if (invalid) {
        const field = block.querySelector("[aria-invalid=true]") || block.querySelector("input");
        if (field) field.focus();
        return;
      }
      const left = rows();
      current = null;
      focusRow(left[Math.min(place, left.length - 1)]);
    });

    // The fix forms of a line are fetched when it is opened (the queue page stays light).
    const loadFix = async (fix) => {
      const url = fix.dataset.fixForm;
      if (!url) return;
      delete fix.dataset.fixForm;
      const response = await fetch(url, { credentials: "same-origin" });
      const type = response.headers.get("content-type") || "";
      if (!response.ok || response.redirected || !type.startsWith("text/html")) {
        window.location.assign(fix.querySelector("a").href);
        return;
      }
      const html = await response.text();
      const summary = fix.querySelector("summary");
      fix.replaceChildren(summary);
      fix.insertAdjacentHTML("beforeend", html);
    };
    queue.addEventListener("toggle", (event) => {
      const fix = event.target;
      if (fix.matches && fix.matches("details.fix") && fix.open) loadFix(fix);
    }, true);

    document.addEventListener("keydown", (event) => {
      const active = document.activeElement;
      const typing = active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (typing) {
        if (event.key === "Escape" && current) focusRow(current);
        return;
      }
      const row = current || rows()[0];
      switch (event.key) {
        case "j":
        case "ArrowDown":
          event.preventDefault();
          move(current ? 1 : 0);
          break;
        case "k":
        case "ArrowUp":
          event.preventDefault();
          move(-1);
          break;
        case "n": {
          event.preventDefault();
          const groups = Array.from(queue.querySelectorAll("section.review-group"));
          const here = row ? groups.indexOf(row.closest("section")) : -1;
          const next = groups[here + 1];
          if (next) focusRow(next.querySelector("tr[data-result]"));
          break;
        }
        case "v": {
          if (!row) break;
          event.preventDefault();
          focusRow(row);
          const section = row.closest("section");
          const button = row.querySelector("button[data-key=v]");
          const callField = row.querySelector("input[name=notified_person]") ||
            (row.classList.contains("critical") &&
              section.querySelector("form.critical-call input[name=notified_person]"));
          if (callField) callField.focus();
          else if (button) button.click();
          break;
        }
        case "a": {
          if (!row) break;
          event.preventDefault();
          focusRow(row);
          const all = row.closest("section").querySelector("button[data-key=a]");
          if (all) all.click();
          break;
        }
        case "c": {
          if (!row) break;
          event.preventDefault();
          focusRow(row);
          const comment = row.querySelector("input[data-comment]");
          if (comment) comment.focus();
          break;
        }
        case "f": {
          // Fix before release: open the row's replace / rerun / discard forms.
          if (!row) break;
          const fix = row.querySelector("details.fix");
          if (!fix) break;
          event.preventDefault();
          focusRow(row);
          fix.open = true;
          loadFix(fix).then(() => {
            const field = fix.querySelector("input[data-fix-value]") ||
              fix.querySelector("input:not([type=hidden])");
            if (field) field.focus();
          });
          break;
        }
        default:
      }
    });
    focusRow(rows()[0]);
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
