// Admin page: every action sends the admin token as a bearer token.
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "breakroom-admin-token";
  $("token").value = sessionStorage.getItem(KEY) || "";

  function say(text, isError) {
    $("admin-status").textContent = text;
    $("admin-status").classList.toggle("error", Boolean(isError));
  }

  async function call(method, path, body) {
    const token = $("token").value.trim();
    if (!token) { say("Enter the admin token first.", true); return null; }
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) { say("Wrong admin token.", true); return null; }
    if (!response.ok) { say(data.detail || `HTTP ${response.status}`, true); return null; }
    return data;
  }

  function renderBugs(bugs) {
    const box = $("bugs");
    box.replaceChildren();
    for (const bug of bugs) {
      const row = document.createElement("div");
      row.className = "bug";
      const mode = document.createElement("span");
      mode.className = `mode ${bug.mode}`;
      mode.textContent = `${bug.name}: ${bug.mode.toUpperCase()}`;
      const flip = document.createElement("button");
      flip.className = "button";
      flip.type = "button";
      flip.textContent = bug.fixed ? "Run the buggy code" : "Run the fix";
      flip.addEventListener("click", async () => {
        const state = await call("POST", `/admin/bugs/${encodeURIComponent(bug.name)}`, { fixed: !bug.fixed });
        if (state) { say(`${state.name} now runs ${state.mode}.`); loadBugs(); }
      });
      row.append(mode, flip);
      box.append(row);
    }
  }

  async function loadBugs() {
    const data = await call("GET", "/admin/bugs");
    if (data) renderBugs(data.bugs);
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    loadBugs().then(() => { if (!$("admin-status").classList.contains("error")) say("Token accepted."); });
  });

  $("reset").addEventListener("click", async () => {
    if (!confirm("Reset the session? Every vote is deleted and the referral cache is emptied.")) return;
    const data = await call("POST", "/admin/reset?confirm=yes");
    if (data) { say(data.message); loadBugs(); }
  });

  // The lab's state, every two seconds once a token is set: what the projector's strip
  // shows, with the cache's fill.
  async function refreshState() {
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
      $("state-cache-bar").classList.toggle("over", entries >= capacity);
      $("state-errors").textContent = state.errors_last_minute;
      $("state-viewers").textContent = state.viewers;
      const log = $("error-log");
      log.replaceChildren(...state.recent_errors.map((e) => {
        const item = document.createElement("li");
        item.textContent = `${e.at.slice(11, 19)}  ${e.status}  ${e.method} ${e.endpoint}`;
        return item;
      }));
      $("error-log-box").hidden = state.recent_errors.length === 0;
    } catch (_) { /* the next tick tries again */ }
  }

  $("token-form").addEventListener("submit", () => setTimeout(refreshState, 300));
  setInterval(refreshState, 2000);
  refreshState();
  if ($("token").value) loadBugs();
})();
