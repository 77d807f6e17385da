// Slipway dashboard: live regions over server-sent events, and the
// operator buttons (with a confirm) that call the coordinator's API.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const body = document.body;
  const live = document.getElementById("live");

  // Weight bars are sized here (the content security policy allows no
  // inline style attributes).
  function sizeBars(root) {
    root.querySelectorAll(".wbar span[data-weight]").forEach((el) => {
      el.style.flexGrow = el.dataset.weight;
    });
  }

  function setLive(state, text) {
    live.className = "live " + state;
    live.querySelector("span").textContent = text;
  }

  function connect() {
    const q = new URLSearchParams({ view: body.dataset.view });
    if (body.dataset.name) q.set("name", body.dataset.name);
    const es = new EventSource("/events?" + q.toString());
    es.onopen = () => setLive("on", "live");
    es.onerror = () => setLive("off", "reconnecting");
    es.addEventListener("region", (ev) => {
      const m = JSON.parse(ev.data);
      const el = document.querySelector('[data-region="' + m.id + '"]');
      if (!el) return;
      el.innerHTML = m.html;
      sizeBars(el);
      body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
    });
    es.addEventListener("logout", (ev) => {
      es.close();
      const m = JSON.parse(ev.data);
      location.assign("/login?error=" + encodeURIComponent(m.error || "logged out"));
    });
  }

  let toastTimer;
  function toast(text, bad) {
    const t = document.getElementById("toast");
    t.textContent = text;
    t.className = "toast" + (bad ? " bad" : "");
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  const dlg = document.getElementById("confirm");
  function confirmAction(title, text) {
    return new Promise((resolve) => {
      document.getElementById("confirm-title").textContent = title;
      document.getElementById("confirm-text").textContent = text;
      const reason = document.getElementById("confirm-reason");
      reason.value = "";
      dlg.onclose = () => resolve(dlg.returnValue === "ok" ? { reason: reason.value } : null);
      dlg.returnValue = "";
      dlg.showModal();
    });
  }

  async function act(btn) {
    const action = btn.dataset.action;
    const title = action.charAt(0).toUpperCase() + action.slice(1);
    const ok = await confirmAction(title, btn.dataset.confirm || title + "?");
    if (!ok) return;
    let url, payload = { reason: ok.reason };
    if (action === "rollback") {
      url = "/api/services/" + encodeURIComponent(btn.dataset.service) + "/rollback";
      payload.to_release = Number(btn.dataset.release);
    } else {
      url = "/api/rollouts/" + encodeURIComponent(btn.dataset.rollout) + "/" + action;
    }
    btn.disabled = true;
    try {
      const resp = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Slipway-CSRF": csrf },
        body: JSON.stringify(payload),
      });
      const m = await resp.json();
      if (resp.status === 401) { location.assign("/login?error=" + encodeURIComponent(m.error)); return; }
      toast(m.ok ? m.message : title + " refused: " + m.error, !m.ok);
      body.dataset.lastAction = JSON.stringify({ action: action, ok: !!m.ok, message: m.message || m.error });
    } catch (e) {
      toast(title + " failed: " + e, true);
    } finally {
      btn.disabled = false;
    }
  }

  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (btn && !btn.disabled) { ev.preventDefault(); act(btn); }
  });

  sizeBars(document);
  connect();
})();
