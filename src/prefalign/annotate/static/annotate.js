// Keyboard shortcuts for the task page: every answer button lists its keys in data-keys
// ("1 ArrowLeft"). The page works without this script; it only saves the mouse trip.
(function () {
  "use strict";
  const form = document.getElementById("vote-form");
  if (!form) return;

  // One answer per page. The server ignores repeats anyway; this just avoids sending them.
  let sent = false;
  form.addEventListener("submit", function (event) {
    if (sent) {
      event.preventDefault();
      return;
    }
    sent = true;
    form.classList.add("sent");
  });

  const buttonForKey = new Map();
  for (const button of form.querySelectorAll("button[data-keys]")) {
    for (const key of button.dataset.keys.split(" ")) buttonForKey.set(key, button);
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const button = buttonForKey.get(event.key);
    if (!button) return;
    event.preventDefault();
    button.classList.add("pressed");
    form.requestSubmit(button);
  });
})();
