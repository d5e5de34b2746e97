// Mnemo console: small progressive enhancements. Every page works without this file.
"use strict";

// Forms that destroy something ask first (data-confirm holds the question).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// "/" jumps to the search box, unless the visitor is typing somewhere.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const active = document.activeElement;
  const typing = active && (active.isContentEditable ||
    ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName));
  if (typing) return;
  const box = document.querySelector("[data-hotkey='/']");
  if (box) {
    event.preventDefault();
    box.focus();
    box.select();
  }
});

// Copy buttons: data-copy names the element whose text is copied.
document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(() => {
    button.textContent = "Copied";
  });
});
