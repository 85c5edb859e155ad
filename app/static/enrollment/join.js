// The join page's card preview shows the name as it is typed. Without this script the
// preview shows a placeholder and the form works the same.
document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("name");
  const shown = document.getElementById("preview-name");
  if (!input || !shown) return;
  const update = () => {
    shown.textContent = input.value.trim() || shown.dataset.placeholder;
  };
  input.addEventListener("input", update);
});
