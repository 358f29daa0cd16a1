// The room's board: the board's JSON, live, read with the admin token (an EventSource
// cannot send one, so the stream is read with fetch). Every name is set as text.
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "breakroom-admin-token";
  let token = sessionStorage.getItem(KEY) || "";
  let board = null;
  let retry = 1000;

  const status = (text, bad) => {
    $("room-status").textContent = text;
    $("room-status").classList.toggle("error", Boolean(bad));
  };
  const auth = () => ({ Authorization: `Bearer ${token}` });

  function askForToken(message) {
    $("token-form").hidden = false;
    status(message, true);
    $("token").focus();
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const m = Math.floor(s / 60);
    return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function render() {
    if (!board || !board.counts) return;
    $("room-code").textContent = board.code;
    for (const name of ["joined", "reproduced", "fixed"]) $(`count-${name}`).textContent = board.counts[name];
    const rows = board.attendees.map((a, i) => {
      const tr = document.createElement("tr");
      tr.className = `state-${a.state}${a.rank ? ` rank-${a.rank}` : ""}`;
      tr.dataset.name = a.name;
      const fix = a.seconds_to_fix == null ? "" : duration(a.seconds_to_fix);
      tr.append(
        cell(String(i + 1), a.rank ? "rank podium" : "rank"),
        cell(a.name, "name"),
        cell(a.state, "st"),
        cell(fix, "fix"),
        cell(String(a.hints), "hints"),
        cell(a.last_verdict || "", "verdict"),
      );
      if (a.last_detail) tr.title = a.last_detail;
      return tr;
    });
    $("attendees").replaceChildren(...rows);
    $("nobody").hidden = rows.length > 0;
    const joined = new Map(board.attendees.map((a) => [a.name, a.joined_at]));
    $("stuck").replaceChildren(...board.stuck.map((name) => {
      const li = document.createElement("li");
      li.textContent = `${name} — ${duration((Date.now() - joined.get(name)) / 1000)}`;
      return li;
    }));
    if (!board.open) status("closed", false);
    $("close-room").disabled = !board.open;
  }

  async function loadCard() {
    const response = await fetch("/room/card", { headers: auth() });
    if (!response.ok) return response.status;
    const card = await response.json();
    $("join-command").textContent = card.command;
    $("join-qr").src = card.qr;
    $("join-qr").hidden = false;
    $("join-note").textContent = card.note || "";
    $("join-note").hidden = !card.note;
    return 200;
  }

  // The server sends at least a keep-alive every 15 s: a stream silent for longer is a
  // connection that died without closing (Wi-Fi dropped, the laptop slept).
  const SILENT_MS = 40000;

  async function stream() {
    const aborter = new AbortController();
    let watchdog = setTimeout(() => aborter.abort(), SILENT_MS);
    const heard = () => { clearTimeout(watchdog); watchdog = setTimeout(() => aborter.abort(), SILENT_MS); };
    try {
      return await read(aborter, heard);
    } catch (error) {
      throw aborter.signal.aborted ? new Error("nothing heard for 40 s") : error;
    } finally {
      clearTimeout(watchdog);
    }
  }

  async function read(aborter, heard) {
    const response = await fetch("/room/events", {
      headers: { ...auth(), Accept: "text/event-stream" },
      signal: aborter.signal,
    });
    if (response.status === 401) { askForToken("Enter the admin token to show the board."); return false; }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    status(board && !board.open ? "closed" : "live");
    retry = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      heard();
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
        if (data) { board = JSON.parse(data); render(); }
      }
    }
  }

  async function connect() {
    if (!token) { askForToken("Enter the admin token to show the board."); return; }
    try {
      const card = await loadCard();
      if (card === 401) { askForToken("Wrong admin token."); return; }
      if (await stream() === false) return;
    } catch (error) {
      // The lab restarted or the network dropped: the board comes back by itself.
      status(`reconnecting… (${error.message})`, true);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 8000);
    }
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    $("token-form").hidden = true;
    connect();
  });

  $("export").addEventListener("click", async () => {
    const response = await fetch("/room/export.csv", { headers: auth() });
    if (!response.ok) { $("room-message").textContent = `Export failed: HTTP ${response.status}`; return; }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `room-${board ? board.code : "export"}.csv`;
    link.click();
    URL.revokeObjectURL(link.href);
  });

  $("close-room").addEventListener("click", async () => {
    if (!confirm("Close the room? Nobody can join or report after this; the board stays.")) return;
    const response = await fetch("/room/close", { method: "POST", headers: auth() });
    $("room-message").textContent = response.ok ? "The room is closed." : `Closing failed: HTTP ${response.status}`;
  });

  // Stuck times move on between updates.
  setInterval(render, 5000);
  connect();
})();
