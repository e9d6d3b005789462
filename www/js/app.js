// The sample site's script: it proves JavaScript loaded (correct MIME type,
// no `nosniff` refusal) and calls the /api/add route from the form.
"use strict";

const status = document.getElementById("status");
if (status) {
  status.textContent = "JavaScript loaded and ran.";
}

const form = document.getElementById("adder");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = new URLSearchParams(new FormData(form));
    const out = document.getElementById("sum");
    try {
      const response = await fetch("/api/add?" + params.toString());
      const body = await response.json();
      out.textContent = response.ok ? String(body.sum) : body.error;
    } catch (err) {
      out.textContent = "request failed: " + err;
    }
  });
}
