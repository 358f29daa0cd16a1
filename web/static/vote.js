// Vote page: forwards ?referral= from the page URL into the vote body.
(() => {
  const params = new URLSearchParams(location.search);
  const referral = params.get("referral") || null;
  const $ = (id) => document.getElementById(id);
  const panels = ["recorded", "degraded", "failed"];
  const buttons = document.querySelectorAll(".choice");

  function show(panel) {
    panels.forEach((id) => { $(id).hidden = id !== panel; });
    $("choices").closest(".card").hidden = panel !== null;
  }

  async function vote(choice) {
    $("submitting").hidden = false;
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch("/vote", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ choice, referral }),
      });
      let body = {};
      try { body = await response.json(); } catch (_) { /* non-JSON error page from a proxy */ }
      if (response.ok) {
        const label = document.querySelector(`[data-choice="${choice}"]`).textContent;
        $("recorded-text").textContent = `You picked: ${label}`;
        show("recorded");
      } else if (response.status === 503) {
        $("degraded-detail").textContent = body.detail || "Service unavailable.";
        show("degraded");
      } else {
        $("failed-detail").textContent = body.detail ? String(body.detail) : `HTTP ${response.status}`;
        show("failed");
      }
    } catch (_) {
      $("failed-detail").textContent = "Could not reach the poll. Check your connection and try again.";
      show("failed");
    } finally {
      $("submitting").hidden = true;
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  buttons.forEach((b) => b.addEventListener("click", () => vote(b.dataset.choice)));
  document.querySelectorAll("[data-again]").forEach((b) => b.addEventListener("click", () => show(null)));
})();
