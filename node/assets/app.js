// schein console: what JavaScript adds to pages that work without it.
// - the live check of a typed voucher code (asks the node; the rule stays in one place),
// - reading the card's QR code with the camera where the browser offers a barcode detector,
// - print buttons.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const input = document.querySelector("input[data-check]");
  const live = document.getElementById("code-live");
  if (input && live) {
    let timer = null;
    const check = async () => {
      const code = input.value.trim();
      if (!code) { live.textContent = ""; live.className = "live"; return; }
      try {
        // By POST: even a partly typed code stays out of every address.
        const answer = await (await fetch(input.dataset.check, {
          method: "POST",
          credentials: "same-origin",
          body: new URLSearchParams({ code }),
        })).json();
        live.textContent = answer.text;
        live.className = "live " + answer.state;
      } catch (_) { /* the check is only a help; the form still works */ }
    };
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 150); });
  }

  document.querySelectorAll("[data-print]").forEach((button) => {
    button.addEventListener("click", () => window.print());
  });

  const camera = document.getElementById("camera");
  if (camera && input && "BarcodeDetector" in window && navigator.mediaDevices) {
    camera.hidden = false;
    const start = document.getElementById("camera-start");
    const video = document.getElementById("camera-video");
    start.addEventListener("click", async () => {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
        video.srcObject = stream;
        video.hidden = false;
        await video.play();
        const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
        const scan = async () => {
          const codes = await detector.detect(video).catch(() => []);
          if (codes.length > 0) {
            stream.getTracks().forEach((t) => t.stop());
            input.value = codes[0].rawValue;
            input.form.submit();
            return;
          }
          requestAnimationFrame(scan);
        };
        scan();
      } catch (_) { camera.hidden = true; }
    });
  }
});
