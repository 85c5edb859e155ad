// The PIN pad's buttons type into the PIN field. Without this script the field alone works
// (phones show their number keyboard for it): the pad stays hidden.
"use strict";
document.querySelectorAll(".pinpad").forEach((pad) => {
  const input = document.getElementById(pad.dataset.for);
  if (!input) return;
  pad.hidden = false;
  pad.addEventListener("click", (event) => {
    const key = event.target.closest("button");
    if (!key || key.type === "submit") return;
    if (key.hasAttribute("data-clear")) {
      input.value = input.value.slice(0, -1);
    } else if (input.value.length < 8) {
      input.value += key.dataset.digit;
    }
  });
});
