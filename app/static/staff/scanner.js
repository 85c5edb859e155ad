/* The till: camera frames -> jsQR -> POST /staff/scan -> the card, with "add points" (POST
 * /staff/earn, a purchase amount as typed) and reward buttons (POST /staff/redeem) -> the
 * result with the new balance and "Undo" (POST /staff/undo). The server decides everything
 * (is the code genuine, current, can the card afford it, how an amount reads); this script
 * only shows its answers. Text comes translated from the page. A scan pays for one
 * redemption (the card's code rotates): after it, staff scan again. Each tap that changes
 * points carries its own Idempotency-Key; a retry of that tap (the answer was lost) keeps it. */
(function () {
  "use strict";

  const PROBLEM = "urn:pointpass:problem:";
  const DECODE_EVERY_MS = 150;   // about 7 frames a second: quick to find, easy on old phones
  const MAX_DECODE_WIDTH = 640;  // jsQR's time grows with pixels; 640 px reads a card well
  const SAME_CODE_PAUSE_MS = 5000;  // a refused code held in view is not sent again at once

  const $ = (id) => document.getElementById(id);
  const app = $("scanner-app");
  const text = JSON.parse($("staff-messages").textContent);
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const lang = document.documentElement.lang || "en";
  const numbers = new Intl.NumberFormat(lang);
  const EXAMPLE_AMOUNT = 45000;  // shown as the shop writes it: 45.000 (id), 45,000 (en)
  const video = $("camera");
  const canvas = $("frame");
  const context = canvas.getContext("2d", { willReadFrequently: true });

  let stream = null;
  let decoding = false;
  let timer = null;
  let busy = false;
  let current = null;        // the card shown: { scanId (null once used), pointsLabel, rewards }
  let cameraStatus = "";     // what the line under the camera says while scanning
  let refused = { code: null, until: 0 };
  // Idempotency-Key of a tap whose answer never came (network loss): tapping the same reward
  // again resends it with the same key, so the server redeems it at most once.
  let pendingKeys = new Map();
  let lastAction = null;     // the entry the result shows, while it can be undone
  let undoTimer = null;

  function format(message, values) {
    return message.replace(/%\((\w+)\)s/g, (_, name) => String(values[name] ?? ""));
  }

  function setState(state) { app.dataset.state = state; }

  function showMessage(message, withSignIn) {
    const box = $("message");
    box.textContent = message;
    if (withSignIn) {
      const link = document.createElement("a");
      link.href = app.dataset.loginUrl;
      link.textContent = text.sign_in;
      box.append(" ", link);
    }
    box.hidden = false;
  }

  function clearMessage() {
    $("message").hidden = true;
    $("message").textContent = "";
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    // crypto.randomUUID needs a secure context; getRandomValues does not.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function post(url, body, headers) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json",
                   "X-CSRFToken": csrfToken, ...(headers || {}) },
        body: JSON.stringify(body),
      });
    } catch (error) {
      return { ok: false, network: true, status: 0, data: {} };
    }
    let data = {};
    try { data = await response.json(); } catch (error) { /* not JSON: a proxy's page */ }
    return { ok: response.ok, network: false, status: response.status, data: data || {},
             retryAfter: Number(response.headers.get("Retry-After")) || 0 };
  }

  function problemType(result) {
    return String(result.data.type || "").replace(PROBLEM, "");
  }

  /* The staff-facing sentence for a problem answer, and whether to offer signing in. */
  /* ``shortCode``: the code was typed in the short form (not a scanned or pasted PP1/PPT). */
  function explain(result, during, shortCode) {
    if (result.network) return [text.network, false];
    const type = problemType(result);
    if (result.status === 401) return [text.session_expired, true];
    if (result.status === 400 && type === "csrf") return [text.page_expired, false];
    if (type === "short-code-locked") {
      return [format(text.typed_locked, { minutes: Math.max(1, Math.ceil(result.retryAfter / 60)) }),
              false];
    }
    if (result.status === 429) return [text.rate_limited, false];
    if (shortCode && type === "invalid-code") return [text.typed_code_wrong, false];
    switch (type) {
      case "invalid-code": return [during === "redeem" ? text.scan_expired : text.invalid_code, false];
      case "code-already-used": return [during === "redeem" ? text.scan_used : text.code_used, false];
      case "insufficient-points":
        return [during === "undo" ? text.undo_spent : text.insufficient, false];
      case "undo-too-late": return [text.undo_too_late, false];
      case "already-undone": return [text.already_undone, false];
      case "not-your-action": return [text.not_your_action, false];
      case "nothing-to-undo": return [text.nothing_to_undo, false];
      case "card-voided": return [text.voided, false];
      case "not-found": return [text.unknown_card, false];
      case "unprocessable":
      case "validation-failed":
        if (during === "earn") return [amountProblem(result), false];
        return [text.reward_unavailable, false];
      default: return [during === "scan" && result.status === 422 ? text.invalid_code : text.error,
                       false];
    }
  }

  function amountProblem(result) {
    const errors = Array.isArray(result.data.errors) ? result.data.errors : [];
    if (errors.some((e) => /too small/i.test(String(e.message || "")))) {
      return text.amount_too_small;
    }
    return format(text.amount_invalid, { example: numbers.format(EXAMPLE_AMOUNT) });
  }

  // --- Camera ----------------------------------------------------------------------------

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      // Also the case on plain HTTP (other than localhost): browsers need HTTPS for cameras.
      cameraFailed(text.camera_unavailable);
      return;
    }
    $("camera-status").textContent = text.camera_starting;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment" }, audio: false,
      });
    } catch (error) {
      const denied = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
      cameraFailed(denied ? text.camera_denied : text.camera_unavailable);
      return;
    }
    video.srcObject = stream;
    $("viewfinder").hidden = false;
    try { await video.play(); } catch (error) { /* autoplay of a muted stream: allowed */ }
    app.dataset.camera = "on";
    cameraStatus = text.camera_ready;
    $("camera-status").textContent = cameraStatus;
    resumeDecoding();
  }

  function stopCamera() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    pauseDecoding();
  }

  function cameraFailed(message) {
    app.dataset.camera = "off";
    $("viewfinder").hidden = true;
    cameraStatus = message;
    $("camera-status").textContent = message;
    $("manual-code").focus();
  }

  function resumeDecoding() {
    if (!stream || decoding || app.dataset.state !== "scanning") return;
    decoding = true;
    timer = setTimeout(decodeFrame, DECODE_EVERY_MS);
  }

  function pauseDecoding() {
    decoding = false;
    clearTimeout(timer);
  }

  function decodeFrame() {
    if (!decoding) return;
    if (video.readyState >= video.HAVE_CURRENT_DATA && video.videoWidth > 0) {
      const scale = Math.min(1, MAX_DECODE_WIDTH / video.videoWidth);
      const width = Math.round(video.videoWidth * scale);
      const height = Math.round(video.videoHeight * scale);
      if (canvas.width !== width) canvas.width = width;
      if (canvas.height !== height) canvas.height = height;
      context.drawImage(video, 0, 0, width, height);
      const pixels = context.getImageData(0, 0, width, height);
      // Wallet apps show dark modules on light: skipping the inverted pass halves the work.
      const found = window.jsQR(pixels.data, width, height, { inversionAttempts: "dontInvert" });
      const code = found && found.data ? found.data.trim() : "";
      if (code && !busy && !(code === refused.code && Date.now() < refused.until)) {
        if (navigator.vibrate) navigator.vibrate(40);
        scan(code);
        return;
      }
    }
    timer = setTimeout(decodeFrame, DECODE_EVERY_MS);
  }

  // --- Scan and redeem -------------------------------------------------------------------

  async function scan(code, shortCode) {
    if (busy) return;
    busy = true;
    pauseDecoding();
    clearMessage();
    setState("checking");
    $("camera-status").textContent = text.checking;
    const result = await post(app.dataset.scanUrl, { code });
    busy = false;
    if (!result.ok) {
      const [message, signIn] = explain(result, "scan", shortCode);
      showMessage(message, signIn);
      refused = { code, until: Date.now() + SAME_CODE_PAUSE_MS };
      setState("scanning");
      $("camera-status").textContent = cameraStatus;
      if (!stream && $("manual-code").value) $("manual-code").select();  // ready to retype
      resumeDecoding();
      return;
    }
    showCard(result.data);
  }

  function showCard(data) {
    current = { scanId: data.scan_id, pointsLabel: data.card.points_label, rewards: data.rewards };
    pendingKeys = new Map();
    showProgram(data.card.program);
    $("currency").textContent = data.card.program ? data.card.program.currency : "";
    $("amount-hint").textContent = format(text.amount_hint,
                                          { example: numbers.format(EXAMPLE_AMOUNT) });
    $("amount").value = "";
    $("points").value = "";
    $("earn-box").hidden = false;
    hideUndo();
    renderRewards(data.rewards);
    setRewardsDisabled(false);
    $("member-name").textContent = data.card.member_first_name;
    $("points-label").textContent = data.card.points_label;
    $("balance").textContent = numbers.format(data.card.balance);
    $("tier").textContent = data.card.tier || "";
    $("tier-box").hidden = !data.card.tier;
    $("redeemed").hidden = true;
    $("rewards-box").hidden = false;
    $("scan-step").hidden = true;
    $("result-step").hidden = false;
    $("manual-code").value = "";
    setState("card");
    $("member-name").scrollIntoView({ block: "start" });
  }

  function renderRewards(rewards) {
    const list = $("rewards");
    list.replaceChildren();
    for (const reward of rewards) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "reward";
      button.dataset.rewardId = String(reward.id);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = reward.name;
      const cost = document.createElement("span");
      cost.className = "cost";
      cost.textContent = `${numbers.format(reward.points_cost)} ${current.pointsLabel}`;
      button.append(name, cost);
      button.addEventListener("click", () => redeem(reward));
      list.append(button);
    }
    $("no-rewards").hidden = rewards.length > 0;
  }

  function setRewardsDisabled(disabled) {
    for (const button of app.querySelectorAll("#rewards button, #earn-box button")) {
      button.disabled = disabled;
    }
  }

  /* The card's program: its name over the member, its colours on the page. */
  function showProgram(program) {
    if (!program) return;
    $("card-program").textContent = program.name;
    $("program-name").textContent = program.name;
    const root = document.documentElement.style;
    root.setProperty("--brand-bg", program.background_color);
    root.setProperty("--brand-fg", program.foreground_color);
    root.setProperty("--brand-label", program.label_color);
  }

  function tapKey(what) {
    let key = pendingKeys.get(what);
    if (!key) {
      key = newKey();
      pendingKeys.set(what, key);
    }
    return key;
  }

  function settleKey(what, result) {
    // Only an answer that says nothing was done (or that it was) frees the key; a lost answer
    // keeps it, so tapping again retries the same request.
    if (result.ok || (!result.network && result.status < 500 && result.status !== 429)) {
      pendingKeys.delete(what);
    }
  }

  /* The scan is used up (or expired): no more reward buttons until the card is scanned again. */
  function closeScan() {
    current.scanId = null;
    current.rewards = [];
    $("rewards").replaceChildren();
    $("rewards-box").hidden = true;
    $("earn-box").hidden = true;
  }

  async function redeem(reward) {
    // A second tap while the first is on its way does nothing; nor does a used scan.
    if (busy || !current || !current.scanId) return;
    busy = true;
    setRewardsDisabled(true);
    clearMessage();
    setState("redeeming");
    const what = `reward:${reward.id}`;
    const result = await post(app.dataset.redeemUrl,
                              { scan_id: current.scanId, reward_id: reward.id },
                              { "Idempotency-Key": tapKey(what) });
    busy = false;
    settleKey(what, result);
    if (result.ok) {
      showRedeemed(result.data, reward);
      return;
    }
    const [message, signIn] = explain(result, "redeem");
    showMessage(message, signIn);
    setState("card");
    if (!result.network && ["code-already-used", "invalid-code"].includes(problemType(result))) {
      closeScan();  // this scan cannot redeem any more: only "Scan next card" is left
    } else {
      setRewardsDisabled(false);
    }
  }

  function showRedeemed(data, reward) {
    showResult(format(text.redeemed, { reward: data.reward_name || reward.name }), data);
    // The redemption used the scan up: another reward needs the card's new code scanned.
    closeScan();
    $("scan-again").hidden = false;
    offerUndo(data.ledger_entry_id, Number(app.dataset.undoSeconds));
    setState("redeemed");
  }

  /* The result screen: what was done and the new balance; the card's actions are gone. */
  function showResult(headline, data) {
    $("redeemed-reward").textContent = headline;
    $("new-balance").textContent = numbers.format(data.balance);
    $("new-balance-label").textContent = current.pointsLabel;
    $("balance").textContent = numbers.format(data.balance);
    $("tier").textContent = data.tier || "";
    $("tier-box").hidden = !data.tier;
    $("redeemed").hidden = false;
    $("earn-box").hidden = true;
    $("rewards-box").hidden = true;
    $("scan-again").hidden = true;
    $("redeemed").scrollIntoView({ block: "start" });
  }

  function offerUndo(entryId, seconds) {
    hideUndo();
    if (!entryId || !seconds) return;
    lastAction = entryId;
    $("undo").hidden = false;
    $("undo").disabled = false;
    $("undo-hint").hidden = false;
    undoTimer = setTimeout(hideUndo, seconds * 1000);
  }

  function hideUndo() {
    clearTimeout(undoTimer);
    lastAction = null;
    $("undo").hidden = true;
    $("undo-hint").hidden = true;
  }

  async function earn(body, what) {
    if (busy || !current || !current.scanId) return;
    busy = true;
    setRewardsDisabled(true);
    clearMessage();
    setState("earning");
    const result = await post(app.dataset.earnUrl,
                              { scan_id: current.scanId, locale: lang, ...body },
                              { "Idempotency-Key": tapKey(what) });
    busy = false;
    settleKey(what, result);
    setRewardsDisabled(false);
    if (!result.ok) {
      const [message, signIn] = explain(result, "earn");
      showMessage(message, signIn);
      setState("card");
      return;
    }
    // The earn's points and what earning rules gave on it.
    const earned = result.data.total_points ?? result.data.points;
    showResult(format(text.earned, { points: numbers.format(earned),
                                     label: current.pointsLabel }), result.data);
    offerUndo(result.data.entry_id, result.data.undo_seconds);
    setState("earned");
  }

  async function undo() {
    if (busy || !lastAction) return;
    busy = true;
    $("undo").disabled = true;
    clearMessage();
    const result = await post(app.dataset.undoUrl, { entry_id: lastAction });
    busy = false;
    if (!result.ok) {
      const [message, signIn] = explain(result, "undo");
      showMessage(message, signIn);
      if (result.network || result.status === 429) $("undo").disabled = false;
      else hideUndo();
      return;
    }
    hideUndo();
    $("redeemed-reward").textContent = text.undone;
    $("new-balance").textContent = numbers.format(result.data.balance);
    $("balance").textContent = numbers.format(result.data.balance);
    $("tier").textContent = result.data.tier || "";
    $("tier-box").hidden = !result.data.tier;
    setState("undone");
  }

  function scanNext() {
    current = null;
    hideUndo();
    pendingKeys = new Map();
    clearMessage();
    $("result-step").hidden = true;
    $("scan-step").hidden = false;
    setState("scanning");
    $("camera-status").textContent = cameraStatus;
    if (stream) {
      resumeDecoding();
    } else {
      $("manual-code").focus();
    }
  }

  // --- Wiring ----------------------------------------------------------------------------

  $("manual").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = $("manual-code").value.trim();
    if (code) scan(code, !/^pp[1t]:/i.test(code));
  });
  $("next").addEventListener("click", scanNext);
  $("undo").addEventListener("click", undo);
  $("earn").addEventListener("submit", (event) => {
    event.preventDefault();
    const amount = $("amount").value.trim();
    if (amount) earn({ amount }, `amount:${amount}`);
  });
  $("earn-points").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("points").value.trim();
    const points = /^[0-9]{1,10}$/.test(typed) ? Number(typed) : NaN;
    if (!Number.isSafeInteger(points) || points < 1) {
      showMessage(format(text.amount_invalid, { example: "20" }), false);
      return;
    }
    earn({ points }, `points:${points}`);
  });

  // A phone in a pocket should not keep its camera on: stop it while the page is hidden.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      stopCamera();
    } else if (app.dataset.camera === "on" && !stream) {
      startCamera();
    }
  });

  startCamera();
})();
