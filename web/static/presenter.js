// Presenter view: the lab's state, refreshed every two seconds once a token is set.
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "breakroom-admin-token";

  async function refresh() {
    const token = sessionStorage.getItem(KEY);
    if (!token) return;
    try {
      const response = await fetch("/admin/state", { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) { $("state").hidden = true; return; }
      const state = await response.json();
      $("state").hidden = false;
      $("state-mode").textContent = state.referral.toUpperCase();
      $("state-mode").className = `mode ${state.referral}`;
      const { entries, capacity } = state.referral_cache;
      $("state-cache").textContent = `${entries} / ${capacity}`;
      $("state-cache-bar").style.width = `${Math.min(100, (100 * entries) / Math.max(1, capacity))}%`;
      $("state-cache-bar").classList.toggle("over", entries > capacity);
      $("state-errors").textContent = state.errors_last_minute;
    } catch (_) { /* the next tick tries again */ }
  }

  $("token-form").addEventListener("submit", () => setTimeout(refresh, 300));
  refresh();
  setInterval(refresh, 2000);
})();
