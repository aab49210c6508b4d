// dtsflac web front-end: renders /api/status (and the live /api/events
// stream) and sends the few control requests. No framework, no build step.
//
// Security rule for this file: everything that comes from a drive (labels,
// file names, paths, error messages) goes into the page through textContent
// or an attribute setter, never through innerHTML.
'use strict';

(() => {
  const DASH = '—';
  const PANEL_MIN_INTERVAL_MS = 500; // the OLED mirror refreshes at most 2×/s
  const PENDING_TIMEOUT_MS = 8000;   // re-enable a button if no event follows
  const RETRY_MAX_MS = 15000;

  // Which controls apply comes with each drive and job in the status
  // (`can_eject`, `can_cancel`, `can_retry`): the box's rules, not a copy.
  const SHOW_ERROR = new Set(['failed', 'interrupted']);

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- helpers

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // Only touch the DOM when the text really changes: status events can come
  // several times a second and most of the page stays the same.
  function setText(node, text) {
    const t = String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  function setAttr(node, name, value) {
    if (value == null || value === '') node.removeAttribute(name);
    else if (node.getAttribute(name) !== String(value)) node.setAttribute(name, value);
  }

  const isNum = (n) => typeof n === 'number' && Number.isFinite(n);

  // Base 1000, like file managers and drive makers.
  function fmtBytes(n) {
    if (!isNum(n) || n < 0) return DASH;
    if (n < 1000) return `${Math.round(n)} B`;
    const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
    let v = n / 1000;
    let i = 0;
    while (v >= 999.95 && i < units.length - 1) { v /= 1000; i++; }
    return `${v.toFixed(1)} ${units[i]}`;
  }

  // h:mm:ss, or m:ss under an hour.
  function fmtDuration(s) {
    if (!isNum(s) || s < 0) return DASH;
    const t = Math.round(s);
    const h = Math.floor(t / 3600);
    const m = Math.floor((t % 3600) / 60);
    const sec = String(t % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
  }

  function fmtUptime(s) {
    if (!isNum(s) || s < 0) return DASH;
    const days = Math.floor(s / 86400);
    const rest = fmtDuration(s - days * 86400);
    return days ? `${days} d ${rest}` : rest;
  }

  const fmtSpeed = (x) => (isNum(x) && x > 0 ? `${x.toFixed(1)}×` : DASH);
  const clamp01 = (p) => (isNum(p) ? Math.min(1, Math.max(0, p)) : 0);
  const baseName = (p) => (typeof p === 'string' && p ? p.split('/').filter(Boolean).pop() || p : '');

  // ----------------------------------------------------------------- state

  let status = null;       // last /api/status document
  let gotEvent = false;    // an SSE status arrived (newer than the first fetch)
  let authorized = null;   // null = unknown (then we just try and see)
  let afterLogin = null;   // the control that asked for the token, run after unlocking
  const pending = new Set(); // keys of buttons waiting for the next status event
  let pendingTimer = 0;
  let focusKey = null;     // button to give focus back to once re-enabled

  const ui = {
    connection: $('connection'),
    message: $('message'),
    stateDirProblem: $('state-dir-problem'),
    pauseResume: $('pause-resume'),
    pausedNote: $('paused-note'),
    overallProgress: $('overall-progress'),
    overallEta: $('overall-eta'),
    overallCount: $('overall-count'),
    drives: $('drives'),
    drivesEmpty: $('drives-empty'),
    queue: $('queue'),
    queueEmpty: $('queue-empty'),
    history: $('history'),
    historyEmpty: $('history-empty'),
    box: $('box'),
    panel: $('panel-mirror'),
    login: $('login'),
    loginForm: $('login-form'),
    token: $('token'),
    loginError: $('login-error'),
    loginCancel: $('login-cancel'),
    unlock: $('unlock'),
    logout: $('logout'),
    authState: $('auth-state'),
  };

  function say(text, isError) {
    setText(ui.message, text || '');
    ui.message.classList.toggle('error', !!isError);
  }

  // ------------------------------------------------------------- rendering

  // Keeps one <li> per item (keyed by id) so focus, hover and scroll stay put
  // while the data changes underneath.
  function reconcile(list, items, datasetKey, create, update) {
    const old = new Map();
    for (const li of list.children) old.set(li.dataset[datasetKey], li);
    let prev = null;
    for (const item of items) {
      const id = String(item.id);
      let li = old.get(id);
      if (li) old.delete(id);
      else {
        li = create();
        li.dataset[datasetKey] = id;
      }
      update(li, item);
      const want = prev ? prev.nextSibling : list.firstChild;
      if (want !== li) list.insertBefore(li, want);
      prev = li;
    }
    for (const li of old.values()) li.remove();
  }

  // Adds or removes an optional child (error line, button) so that hooks
  // like `button.retry` only exist where they apply.
  function optional(parent, cls, want, make) {
    let node = parent.querySelector(`:scope > .${cls}`);
    if (want && !node) {
      node = make();
      parent.appendChild(node);
    } else if (!want && node) {
      node.remove();
      node = null;
    }
    return node;
  }

  function actionButton(cls, action, text) {
    const b = el('button', cls, text);
    b.type = 'button';
    b.dataset.action = action;
    return b;
  }

  function syncButton(b, key, enabled, label) {
    b.dataset.key = key;
    b.disabled = !enabled || pending.has(key);
    setAttr(b, 'aria-label', label);
  }

  function render() {
    const s = status || {};
    renderOverall(s);
    renderDrives(Array.isArray(s.drives) ? s.drives : []);
    const jobs = Array.isArray(s.jobs) ? s.jobs : [];
    renderQueue(jobs.filter((j) => j && j.state !== 'done'));
    renderHistory(jobs.filter((j) => j && j.state === 'done'));
    renderBox(s.box || {});
    // The SD card cannot record the box's work: said above everything.
    setText(ui.stateDirProblem, s.state_dir_problem || '');
    ui.stateDirProblem.hidden = !s.state_dir_problem;
    restoreFocus();
  }

  function renderOverall(s) {
    const t = s.totals || {};
    const paused = !!s.paused;
    const b = ui.pauseResume;
    setText(b, paused ? 'Resume' : 'Pause');
    b.classList.toggle('resume', paused);
    b.dataset.key = 'pause-resume';
    b.disabled = !status || pending.has('pause-resume');
    ui.pausedNote.hidden = !paused;
    document.body.classList.toggle('is-paused', paused);

    const p = clamp01(t.progress);
    ui.overallProgress.value = p;
    const total = isNum(t.total) ? t.total : 0;
    const done = isNum(t.done) ? t.done : 0;
    setText(ui.overallCount, status ? `${done} of ${total} done (${Math.floor(p * 100)}%)` : DASH);
    setText(ui.overallEta, fmtDuration(t.eta_seconds));

    const left = total > done && status;
    document.title = `${left ? `${Math.floor(p * 100)}% · ` : ''}dtsflac`;
  }

  function createDrive() {
    const li = el('li', 'item drive');
    const head = el('div', 'row');
    head.append(el('span', 'drive-label name'), el('span', 'drive-state badge'));
    const meta = el('p', 'meta');
    meta.append(
      el('span', 'drive-fs'), sep(),
      el('span', 'drive-free'), el('span', 'drive-total'), sep(),
      el('span', 'drive-tracks'),
    );
    const actions = el('div', 'actions');
    actions.append(actionButton('eject', 'eject', 'Eject'));
    li.append(head, meta, actions);
    return li;
  }

  function updateDrive(li, d) {
    const label = d.label || d.device || `drive ${d.id}`;
    const state = String(d.state || 'unknown');
    li.className = `item drive state-${state.replace(/[^a-z]/g, '')}`;
    const name = li.querySelector('.drive-label');
    setText(name, label);
    setAttr(name, 'title', [d.device, d.mount_point].filter(Boolean).join(' on '));
    setText(li.querySelector('.drive-state'), state);
    setText(li.querySelector('.drive-fs'), d.fs || DASH);
    setText(li.querySelector('.drive-free'), fmtBytes(d.free_bytes));
    // "12.3 GB free of 64.0 GB"; the hook .drive-free holds the number alone.
    const total = isNum(d.total_bytes) ? ` of ${fmtBytes(d.total_bytes)}` : '';
    setText(li.querySelector('.drive-total'), isNum(d.free_bytes) ? ` free${total}` : ' free space unknown');
    const n = isNum(d.tracks_found) ? d.tracks_found : 0;
    setText(li.querySelector('.drive-tracks'), `${n} DTS track${n === 1 ? '' : 's'}`);
    // While it is scanned: how far the scan has got.
    const scan = d.scan && state === 'scanning' ? d.scan : null;
    const progress = optional(li, 'drive-scan', !!scan, () => el('p', 'drive-scan'));
    if (progress) {
      const looked = isNum(scan.files_looked_at) ? scan.files_looked_at : 0;
      const found = isNum(scan.tracks_found) ? scan.tracks_found : 0;
      setText(progress, `Scanning: ${looked} file${looked === 1 ? '' : 's'} looked at, ${found} DTS track${found === 1 ? '' : 's'} found, in ${scan.folder || DASH}`);
    }

    const note = optional(li, 'drive-note', state === 'ejected', () => el('p', 'drive-note ok', 'Safe to remove'));
    const err = optional(li, 'drive-error', !!d.error, () => el('p', 'drive-error error'));
    if (err) setText(err, d.error);
    // Keep the notes above the button.
    const actions = li.querySelector('.actions');
    for (const n2 of [progress, note, err]) if (n2) li.insertBefore(n2, actions);

    syncButton(li.querySelector('button.eject'), `eject:${d.id}`, d.can_eject === true, `Eject ${label}`);
  }

  function renderDrives(drives) {
    reconcile(ui.drives, drives, 'driveId', createDrive, updateDrive);
    ui.drivesEmpty.hidden = drives.length > 0;
  }

  function sep() {
    const s = el('span', 'sep', ' · ');
    s.setAttribute('aria-hidden', 'true');
    return s;
  }

  function createJob() {
    const li = el('li', 'item job');
    const head = el('div', 'row');
    head.append(el('span', 'job-name name'), el('span', 'job-state badge'));
    const bar = el('progress', 'job-progress');
    bar.max = 1;
    bar.value = 0;
    const meta = el('p', 'meta');
    meta.append(
      el('span', 'job-pct'), sep(),
      el('span', 'job-speed'), sep(),
      el('span', 'k', 'ETA '), el('span', 'job-eta'),
    );
    li.append(head, el('p', 'job-profile'), bar, meta, el('div', 'actions'));
    return li;
  }

  // Tracks of one source are told apart as their output names are: "Film.mkv · track 2.eng".
  function jobName(j) {
    const name = j.name || baseName(j.source) || `job ${j.id}`;
    return j.track ? `${name} · track ${j.track}` : name;
  }

  function updateJob(li, j) {
    const name = jobName(j);
    const state = String(j.state || 'unknown');
    li.className = `item job state-${state.replace(/[^a-z]/g, '')}`;
    const n = li.querySelector('.job-name');
    setText(n, name);
    setAttr(n, 'title', j.source);
    setText(li.querySelector('.job-state'), state);
    setText(li.querySelector('.job-profile'), j.description || j.profile || DASH);
    const p = clamp01(j.progress);
    const bar = li.querySelector('progress.job-progress');
    if (bar.value !== p) bar.value = p;
    setAttr(bar, 'aria-label', `Progress of ${name}`);
    setText(li.querySelector('.job-pct'), `${Math.floor(p * 100)}%`);
    setText(li.querySelector('.job-speed'), state === 'running' ? fmtSpeed(j.speed) : DASH);
    setText(li.querySelector('.job-eta'), fmtDuration(j.eta_seconds));

    const err = optional(li, 'job-error', SHOW_ERROR.has(state) && !!j.error, () => el('p', 'job-error error'));
    const actions = li.querySelector('.actions');
    if (err) {
      setText(err, j.error);
      li.insertBefore(err, actions);
    }

    const cancel = optional(actions, 'cancel', j.can_cancel === true, () => actionButton('cancel', 'cancel', 'Cancel'));
    const retry = optional(actions, 'retry', j.can_retry === true, () => actionButton('retry', 'retry', 'Retry'));
    if (cancel) syncButton(cancel, `cancel:${j.id}`, true, `Cancel ${name}`);
    if (retry) syncButton(retry, `retry:${j.id}`, true, `Retry ${name}`);
  }

  function renderQueue(jobs) {
    reconcile(ui.queue, jobs, 'jobId', createJob, updateJob);
    ui.queueEmpty.hidden = jobs.length > 0;
  }

  function createHistory() {
    const li = el('li', 'item hist');
    const head = el('div', 'row');
    head.append(el('span', 'history-name name'), el('span', 'history-lossless badge'));
    const meta = el('p', 'meta');
    meta.append(
      el('span', 'history-size'), sep(),
      el('span', 'k', 'audio '), el('span', 'history-duration'), sep(),
      el('span', 'k', 'took '), el('span', 'history-took'), sep(),
      el('span', 'history-md5'),
    );
    li.append(head, meta, el('p', 'history-source small'));
    return li;
  }

  function updateHistory(li, j) {
    const out = baseName(j.output) || j.name || `job ${j.id}`;
    const n = li.querySelector('.history-name');
    setText(n, out);
    setAttr(n, 'title', j.output);
    const ll = li.querySelector('.history-lossless');
    ll.hidden = j.lossless == null;
    setText(ll, j.lossless ? 'lossless' : 'not lossless');
    ll.classList.toggle('warn', j.lossless === false);
    setText(li.querySelector('.history-size'), fmtBytes(j.output_bytes));
    setText(li.querySelector('.history-duration'), fmtDuration(j.duration_seconds));
    setText(li.querySelector('.history-took'), fmtDuration(j.elapsed_seconds));
    const md5 = li.querySelector('.history-md5');
    setText(md5, j.md5 ? 'MD5 ✓ verified' : 'MD5 not verified');
    md5.classList.toggle('warn', !j.md5);
    setAttr(md5, 'title', j.md5 ? `MD5 ${j.md5}` : null);
    const when = isNum(j.finished_at)
      ? ` · ${new Date(j.finished_at * 1000).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })}`
      : '';
    setText(li.querySelector('.history-source'), `from ${jobName(j)}${j.description ? ` (${j.description})` : ''}${when}`);
  }

  function renderHistory(jobs) {
    // Newest first.
    jobs.sort((a, b) => (b.finished_at || 0) - (a.finished_at || 0) || b.id - a.id);
    reconcile(ui.history, jobs, 'jobId', createHistory, updateHistory);
    ui.historyEmpty.hidden = jobs.length > 0;
  }

  function renderBox(b) {
    const q = (cls) => ui.box.querySelector(`.${cls}`);
    setText(q('box-board'), b.board || DASH);
    const temp = q('box-temp');
    setText(temp, isNum(b.cpu_temp_c) ? `${b.cpu_temp_c.toFixed(1)} °C` : DASH);
    temp.classList.toggle('warn', isNum(b.cpu_temp_c) && b.cpu_temp_c >= 80);
    const thr = q('box-throttled');
    setText(thr, b.throttled == null ? DASH : b.throttled ? 'yes' : 'no');
    thr.classList.toggle('warn', b.throttled === true);
    setText(q('box-load'), Array.isArray(b.load) && b.load.length
      ? b.load.map((x) => (isNum(x) ? x.toFixed(2) : DASH)).join(' ')
      : DASH);
    setText(q('box-ffmpeg'), b.ffmpeg || DASH);
    setText(q('box-uptime'), fmtUptime(b.uptime_seconds));
    setText(q('box-version'), b.version || DASH);
  }

  // Disabling a focused button drops keyboard focus to <body>; give it back
  // once the button works again so keyboard users do not start over.
  function restoreFocus() {
    if (!focusKey) return;
    const b = document.querySelector(`button[data-key="${focusKey}"]`);
    if (!b) { focusKey = null; return; }
    if (b.disabled) return;
    const active = document.activeElement;
    if (!active || active === document.body) b.focus();
    focusKey = null;
  }

  // ------------------------------------------------------- the OLED mirror

  let panelLast = 0;
  let panelTimer = 0;
  let panelBusy = false;
  let panelWanted = false;

  // Throttled, and never two downloads at once: a slow Wi-Fi link must not
  // pile up image requests on the box.
  function refreshPanel() {
    panelWanted = true;
    if (panelTimer) return;
    if (panelBusy && Date.now() - panelLast < 5000) return; // onload picks it up
    const wait = Math.max(0, panelLast + PANEL_MIN_INTERVAL_MS - Date.now());
    panelTimer = setTimeout(loadPanel, wait);
  }

  function loadPanel() {
    panelTimer = 0;
    panelWanted = false;
    panelBusy = true;
    panelLast = Date.now();
    ui.panel.src = `/panel.png?t=${panelLast}`;
  }

  function panelDone() {
    panelBusy = false;
    if (panelWanted) refreshPanel();
  }
  ui.panel.addEventListener('load', () => { ui.panel.classList.remove('missing'); panelDone(); });
  ui.panel.addEventListener('error', () => { ui.panel.classList.add('missing'); panelDone(); });

  // --------------------------------------------------------- status intake

  function applyStatus(data) {
    if (!data || typeof data !== 'object') return;
    status = data;
    // A new status is the answer to any control we sent: buttons come back.
    pending.clear();
    clearTimeout(pendingTimer);
    render();
    refreshPanel();
  }

  function setConnection(state) {
    setText(ui.connection, state);
    ui.connection.className = `conn ${state}`;
    document.body.classList.toggle('is-offline', state === 'offline');
  }

  async function fetchStatusOnce() {
    try {
      const r = await fetch('/api/status', { credentials: 'same-origin', cache: 'no-store' });
      if (!r.ok) return;
      const data = await r.json();
      if (!gotEvent) applyStatus(data); // the stream may already have newer data
    } catch (_) {
      // The stream's error handler shows "offline"; nothing more to do here.
    }
  }

  let es = null;
  let retryDelay = 1000;
  let retryTimer = 0;
  let wasOffline = false;

  function onStreamMessage(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    gotEvent = true;
    retryDelay = 1000;
    setConnection('live');
    applyStatus(data);
  }

  function connect() {
    retryTimer = 0;
    es = new EventSource('/api/events');
    es.addEventListener('status', onStreamMessage);
    es.addEventListener('message', onStreamMessage); // unnamed events, just in case
    es.addEventListener('open', () => {
      setConnection('live');
      if (wasOffline) {
        wasOffline = false;
        checkSession(); // the box may have restarted with a new token
      }
    });
    es.addEventListener('error', () => {
      setConnection('offline');
      wasOffline = true;
      // EventSource retries by itself after a dropped connection, but gives
      // up for good on an HTTP error (e.g. a 502 while the box boots): then
      // we start a new one ourselves, backing off.
      if (es.readyState === EventSource.CLOSED && !retryTimer) {
        es.close();
        retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
      }
    });
  }

  // ------------------------------------------------------------- controls

  async function errorText(res) {
    try {
      const j = await res.json();
      if (j && typeof j.error === 'string' && j.error) return j.error;
    } catch (_) { /* not JSON */ }
    return `The box answered HTTP ${res.status}`;
  }

  function markPending(key) {
    pending.add(key);
    focusKey = key;
    clearTimeout(pendingTimer);
    // If the control changed nothing, no event may follow: don't leave the
    // button dead forever.
    pendingTimer = setTimeout(() => { pending.clear(); render(); }, PENDING_TIMEOUT_MS);
    render();
  }

  function unmarkPending(key) {
    pending.delete(key);
    render();
  }

  async function control(action) {
    if (authorized === false) {
      requireLogin(action);
      return;
    }
    markPending(action.key);
    let res;
    try {
      res = await fetch(action.url, { method: 'POST', credentials: 'same-origin' });
    } catch (_) {
      unmarkPending(action.key);
      say('The box did not answer. Is it still on the network?', true);
      return;
    }
    if (res.ok) {
      say(action.done);
      return; // stays disabled until the next status event
    }
    unmarkPending(action.key);
    if (res.status === 401) {
      authorized = false;
      renderAuth();
      requireLogin(action);
      return;
    }
    say(await errorText(res), true);
  }

  function jobOrDriveId(button, attr) {
    const li = button.closest('li');
    const id = li && li.dataset[attr];
    return id && /^\d+$/.test(id) ? id : null;
  }

  // One listener for all list buttons: the lists are re-rendered often.
  document.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b || b.disabled) return;
    const label = b.getAttribute('aria-label') || b.textContent;
    if (b.dataset.action === 'eject') {
      const id = jobOrDriveId(b, 'driveId');
      if (id) control({ key: `eject:${id}`, url: `/api/drives/${id}/eject`, done: `${label} requested` });
    } else if (b.dataset.action === 'cancel' || b.dataset.action === 'retry') {
      const id = jobOrDriveId(b, 'jobId');
      const what = b.dataset.action;
      if (id) control({ key: `${what}:${id}`, url: `/api/jobs/${id}/${what}`, done: `${label} requested` });
    }
  });

  ui.pauseResume.addEventListener('click', () => {
    const paused = !!(status && status.paused);
    control({
      key: 'pause-resume',
      url: paused ? '/api/resume' : '/api/pause',
      done: paused ? 'Resuming' : 'Pausing',
    });
  });

  // ------------------------------------------------------------ the token

  function renderAuth() {
    ui.unlock.hidden = authorized === true;
    ui.logout.hidden = authorized !== true;
    setText(ui.authState, authorized === true ? 'Controls unlocked' : '');
    document.body.classList.toggle('is-locked', authorized === false);
  }

  async function checkSession() {
    try {
      const r = await fetch('/api/session', { credentials: 'same-origin', cache: 'no-store' });
      if (r.ok) {
        const j = await r.json();
        authorized = !!(j && j.authorized);
      }
    } catch (_) { /* unknown: controls will find out (401) */ }
    renderAuth();
  }

  function showLogin() {
    ui.login.hidden = false;
    ui.login.scrollIntoView({ block: 'nearest' });
    ui.token.focus();
  }

  function hideLogin() {
    ui.login.hidden = true;
    setText(ui.loginError, '');
    afterLogin = null;
  }

  function requireLogin(action) {
    afterLogin = action || null;
    say('Enter the token to use the controls', true);
    showLogin();
  }

  ui.unlock.addEventListener('click', () => {
    afterLogin = null;
    showLogin();
  });
  ui.loginCancel.addEventListener('click', () => { hideLogin(); ui.unlock.focus(); });
  ui.login.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { hideLogin(); ui.unlock.focus(); }
  });

  ui.loginForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = ui.token.value.trim();
    if (!token) {
      setText(ui.loginError, 'Enter the token');
      return;
    }
    const submit = ui.loginForm.querySelector('button[type="submit"]');
    submit.disabled = true;
    setText(ui.loginError, '');
    let res;
    try {
      res = await fetch('/api/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      });
    } catch (_) {
      setText(ui.loginError, 'The box did not answer');
      return;
    } finally {
      submit.disabled = false;
    }
    if (res.ok) {
      // The box now holds an HttpOnly cookie; forget the token here.
      ui.token.value = '';
      authorized = true;
      const action = afterLogin;
      hideLogin();
      renderAuth();
      say('Controls unlocked');
      if (action) control(action); // finish what the user asked for
      else ui.logout.focus();
    } else if (res.status === 401) {
      setText(ui.loginError, 'Wrong token');
      ui.token.select();
    } else if (res.status === 429) {
      setText(ui.loginError, 'Too many attempts, wait a moment');
    } else {
      setText(ui.loginError, await errorText(res));
    }
  });

  ui.logout.addEventListener('click', async () => {
    try {
      await fetch('/api/logout', { method: 'POST', credentials: 'same-origin' });
    } catch (_) {
      say('The box did not answer', true);
      return;
    }
    authorized = false;
    renderAuth();
    say('Controls locked');
    ui.unlock.focus();
  });

  // ------------------------------------------------------------------ start

  render();
  renderAuth();
  checkSession();
  fetchStatusOnce();
  connect();
})();
