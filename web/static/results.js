// Results page: live bars from the /stream Server-Sent Events.
(() => {
  const notice = document.getElementById("stream-notice");
  const dot = document.getElementById("live-dot");
  const rows = new Map([...document.querySelectorAll(".bar-row")].map((row) => [row.dataset.choice, row]));
  const FAILURES_BEFORE_NOTICE = 3;
  let failures = 0;
  let source = null;

  // Each bar is its choice's share of all votes, as the page was rendered.
  function render(counts) {
    const total = Object.values(counts).reduce((sum, c) => sum + c.count, 0);
    document.getElementById("total").textContent = total;
    for (const [key, { count }] of Object.entries(counts)) {
      const row = rows.get(key);
      if (!row) continue;
      const share = total > 0 ? (100 * count) / total : 0;
      row.querySelector(".bar-fill").style.width = `${share}%`;
      row.querySelector(".bar-count").textContent = count;
      row.querySelector(".bar-share").textContent = `${Math.round(share)}%`;
    }
  }

  function connect() {
    source = new EventSource("/stream");
    source.addEventListener("votes", (event) => {
      failures = 0;
      notice.hidden = true;
      dot.classList.add("on");
      render(JSON.parse(event.data));
    });
    source.onerror = () => {
      failures += 1;
      dot.classList.remove("on");
      if (failures >= FAILURES_BEFORE_NOTICE) notice.hidden = false;
      // EventSource retries by itself unless the server refused outright.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, Math.min(10000, 1000 * failures));
      }
    };
  }

  fetch("/votes").then((r) => r.json()).then(render).catch(() => {});
  connect();
})();
