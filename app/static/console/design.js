// The Design page: each colour's picker and hex box show the same colour. Typing in one
// updates the other, and the change bubbles up to the form, whose htmx preview follows.
document.addEventListener("DOMContentLoaded", function () {
  var hex = /^#[0-9a-fA-F]{6}$/;
  document.querySelectorAll("input[type=color][data-for]").forEach(function (picker) {
    var box = document.getElementById(picker.dataset.for);
    if (!box) { return; }
    picker.addEventListener("input", function () {
      box.value = picker.value.toUpperCase();
    });
    box.addEventListener("input", function () {
      if (hex.test(box.value.trim())) { picker.value = box.value.trim().toLowerCase(); }
    });
  });
});
