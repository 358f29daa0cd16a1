// Vote page: forwards ?referral= from the page URL into the vote body. Outcomes are
// said in plain words (the API's own detail names the root cause the talk is about to
// find, so the room does not see it), announced to screen readers, and a vote that
// gets no answer in time says so and can be sent again.
(() => {
  const params = new URLSearchParams(location.search);
  // The page's form carries the code too (a page the server rendered after a vote has no query).
  const carried = document.querySelector('#choices input[name="referral"]');
  let referral = params.get("referral") || (carried && carried.value) || null;
  const $ = (id) => document.getElementById(id);
  const panels = ["recorded", "degraded", "failed"];
  const buttons = document.querySelectorAll(".choice");
  const TIMEOUT_MS = 8000;
  let lastChoice = null;

  function show(panel) {
    if ($("form-outcome")) $("form-outcome").hidden = true;
    panels.forEach((id) => { $(id).hidden = id !== panel; });
    $("choices").closest(".card").hidden = panel !== null;
    // Focus the outcome's heading: keyboard users land on it, screen readers read it.
    if (panel) $(panel).querySelector(".outcome-title").focus();
  }

  async function vote(choice) {
    lastChoice = choice;
    $("submitting").hidden = false;
    buttons.forEach((b) => { b.disabled = true; });
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch("/vote", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ choice, referral }),
        signal: abort.signal,
      });
      let body = {};
      try { body = await response.json(); } catch (_) { /* non-JSON error page from a proxy */ }
      if (response.ok) {
        const label = document.querySelector(`[data-choice="${choice}"]`).textContent;
        $("recorded-text").textContent = `You picked: ${label}`;
        show("recorded");
      } else if (response.status === 503) {
        const partnerBroken = referral !== null && String(body.detail || "").includes("referral");
        $("degraded-text").textContent = partnerBroken
          ? "The partner link is not working right now, so your vote was not counted. You can still vote without it."
          : "The poll is overloaded right now and your vote was not counted. Wait a few seconds and try again.";
        $("without-partner-row").hidden = !partnerBroken;
        show("degraded");
      } else {
        $("failed-detail").textContent = body.detail ? String(body.detail) : `HTTP ${response.status}`;
        show("failed");
      }
    } catch (error) {
      $("failed-detail").textContent = error.name === "AbortError"
        ? `No answer from the poll after ${TIMEOUT_MS / 1000} seconds: your vote may not have been counted. Try again.`
        : "Could not reach the poll. Check your connection and try again.";
      show("failed");
    } finally {
      clearTimeout(timer);
      $("submitting").hidden = true;
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // The buttons are a form (for phones without JavaScript); here the script sends the vote.
  $("choices").addEventListener("submit", (event) => event.preventDefault());
  buttons.forEach((b) => b.addEventListener("click", (event) => { event.preventDefault(); vote(b.dataset.choice); }));

  document.querySelectorAll("[data-again]").forEach((b) => b.addEventListener("click", () => show(null)));
  $("without-partner").addEventListener("click", () => {
    // From now on this page votes without the partner code, as a plain link would.
    referral = null;
    if (carried) carried.remove();
    const url = new URL(location.href);
    url.searchParams.delete("referral");
    history.replaceState(null, "", url);
    if (lastChoice) vote(lastChoice);
  });
})();
