// The projector: the status strip from /presenter/state every two seconds, and the
// focus keys the speaker presses on the projector's keyboard: Q the codes, R the
// results, B both (the same as ?focus=qr|results|both).
(() => {
  const $ = (id) => document.getElementById(id);
  const projector = $("projector");
  const FOCUS = { q: "qr", r: "results", b: "both" };

  function focus(name) {
    projector.dataset.focus = name;
    const url = new URL(window.location.href);
    if (name === "both") url.searchParams.delete("focus");
    else url.searchParams.set("focus", name);
    window.history.replaceState(null, "", url);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const name = FOCUS[event.key.toLowerCase()];
    if (name) focus(name);
  });

  async function refresh() {
    try {
      const response = await fetch("/presenter/state", { cache: "no-store" });
      if (!response.ok) return;
      const state = await response.json();
      const mode = $("strip-mode");
      mode.textContent = state.referral.toUpperCase();
      mode.className = `mode ${state.referral}`;
      const { entries, capacity } = state.referral_cache;
      $("strip-cache").textContent = `${entries} / ${capacity}`;
      $("strip-cache").classList.toggle("over", entries >= capacity);
      $("strip-errors").textContent = state.errors_last_minute;
      const firing = state.alerts_firing || [];
      $("strip-alerts").textContent = firing.length ? firing.join(", ") : "NONE FIRING";
      $("strip-alerts").classList.toggle("over", firing.length > 0);
    } catch (_) { /* the next tick tries again */ }
  }

  setInterval(refresh, 2000);
})();
