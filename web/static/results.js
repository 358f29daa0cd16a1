// Results page: live bars from the /stream Server-Sent Events.
(() => {
  const notice = document.getElementById("stream-notice");
  const dot = document.getElementById("live-dot");
  const rows = new Map([...document.querySelectorAll(".bar-row")].map((row) => [row.dataset.choice, row]));
  const FAILURES_BEFORE_NOTICE = 3;
  let failures = 0;
  let source = null;

  function render(counts) {
    const values = Object.values(counts).map((c) => c.count);
    const total = values.reduce((a, b) => a + b, 0);
    const max = Math.max(1, ...values);
    document.getElementById("total").textContent = total;
    for (const [key, { count }] of Object.entries(counts)) {
      const row = rows.get(key);
      if (!row) continue;
      row.querySelector(".bar-fill").style.width = `${(100 * count) / max}%`;
      row.querySelector(".bar-count").textContent = count;
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
