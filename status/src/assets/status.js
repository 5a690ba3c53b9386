// The status page's own script: every 2 s it fetches /status.json (same origin) and redraws
// the numbers, the tables and the charts that the server rendered. DOM calls only (no
// innerHTML, no eval, no inline handlers), so the page's CSP holds: script-src 'self'.
'use strict';
(function () {
  const PERIOD_MS = 2000;
  const CHART_W = 150;
  const CHART_H = 32;
  const SVG = 'http://www.w3.org/2000/svg';

  // === formats (the same as page.rs) ===
  const dash = '\u2014';
  const rate = (x) => Number(x).toFixed(2);
  const ms = (x) => x === null || x === undefined ? dash
    : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0);
  const pct = (x) => x === null || x === undefined ? dash : (x * 100).toFixed(1) + '%';
  const opt = (x) => x === null || x === undefined ? dash : String(x);
  function uptime(secs) {
    const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60, s = secs % 60;
    if (d === 0 && h === 0 && m === 0) return s + 's';
    if (d === 0 && h === 0) return m + 'm ' + s + 's';
    if (d === 0) return h + 'h ' + m + 'm';
    return d + 'd ' + h + 'h';
  }
  function storeState(s) {
    if (s.kind === 'memory') return 'in memory';
    return s.healthy ? 'reachable' : 'unreachable: limiting in memory (fallback)';
  }
  const resultClass = (r) => r === 'success' ? 'ok' : r === 'error' ? 'bad' : '';
  function breakerClass(u) {
    if (!u.breaker_enabled) return '';
    return u.breaker === 'open' ? 'bad' : u.breaker === 'half_open' ? 'warn' : 'ok';
  }
  function peerState(p) {
    if (!p.resolved) return ['bad', 'unresolved'];
    return p.healthy ? ['ok', 'healthy'] : ['bad', 'unhealthy'];
  }

  // === DOM helpers ===
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function row(cells, cls) {
    const tr = el('tr', cls || '');
    for (const c of cells) {
      if (c instanceof Node) {
        tr.appendChild(c);
      } else {
        const [text, tdClass] = Array.isArray(c) ? c : [c, ''];
        tr.appendChild(el('td', tdClass, text));
      }
    }
    return tr;
  }
  function orNone(rows, columns) {
    if (rows.length) return rows;
    const td = el('td', '', 'none');
    td.colSpan = columns;
    const tr = el('tr', 'empty');
    tr.appendChild(td);
    return [tr];
  }
  function chartPoints(values) {
    const max = Math.max(1, ...values);
    const step = CHART_W / (Math.max(values.length, 2) - 1);
    return values.map((v, i) =>
      (i * step).toFixed(1) + ',' + (CHART_H - 1 - (v / max) * (CHART_H - 2)).toFixed(1)).join(' ');
  }
  function chart(values) {
    const td = el('td');
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('viewBox', '0 0 ' + CHART_W + ' ' + CHART_H);
    svg.setAttribute('width', CHART_W);
    svg.setAttribute('height', CHART_H);
    svg.setAttribute('role', 'img');
    const title = document.createElementNS(SVG, 'title');
    title.textContent = 'requests per minute, peak ' + Math.max(0, ...values);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', 'currentColor');
    line.setAttribute('stroke-width', '1.5');
    line.setAttribute('points', chartPoints(values));
    svg.append(title, line);
    td.appendChild(svg);
    return td;
  }

  // === the tables, one row builder each ===
  function routeRow(name, upstream, auth, limit, t, cls) {
    return row([
      name, upstream, auth, opt(limit),
      [rate(t.requests_per_second), 'n'], [ms(t.p50_ms), 'n'], [ms(t.p99_ms), 'n'],
      [rate(t.client_errors_per_second), 'n'],
      [rate(t.server_errors_per_second), t.server_errors_per_second > 0 ? 'n bad' : 'n'],
      [t.rate_limited_last_minute, 'n'],
      chart(t.history.requests),
    ], cls);
  }
  const tables = {
    routes: (s) => s.routes.map((r) => routeRow(r.name, r.upstream, r.auth, r.rate_limit, r, ''))
      .concat([routeRow('(no route)', dash, dash, null, s.unrouted, 'unrouted')]),
    upstreams: (s) => s.upstreams.map((u) => {
      const peers = el('td');
      for (const p of u.peers) {
        const [cls, word] = peerState(p);
        peers.append(el('span', 'peer ' + cls, p.address + ' ' + word), ' ');
      }
      const tr = row([
        u.name,
        [u.breaker_enabled ? u.breaker : 'none', 'breaker ' + breakerClass(u)],
        opt(u.breaker_changed_at),
        [u.retries_last_minute, 'n'],
        [opt(u.retry_budget_left), 'n'],
        peers,
      ]);
      tr.dataset.key = u.name;
      return tr;
    }),
    rate_limited_clients: (s) => orNone(s.rate_limited_clients.map((c) =>
      row([c.client, [c.refusals, 'n'], c.scope])), 3),
    'suspicious.rules': (s) => s.suspicious.rules.map((r) =>
      row([r.rule, [r.logged, 'n'], [r.blocked, 'n'], [r.last_minute, 'n']])),
    bans: (s) => orNone(s.bans.map((b) =>
      row([b.client, b.expires_at, [b.expires_in_seconds, 'n']])), 3),
    'bounds.refusals': (s) => s.bounds.refusals.map((r) =>
      row([r.limit, [r.last_minute, 'n'], [r.total, 'n']])),
    'tracing.slow': (s) => orNone((s.tracing ? s.tracing.slow : []).map((t) => {
      const trace = el('td', 'trace');
      if (t.link) {
        const a = el('a', '', t.trace_id);
        a.href = t.link;
        trace.appendChild(a);
      } else {
        trace.textContent = t.trace_id;
      }
      return row([t.at, t.route, [t.status, 'n'], [ms(t.duration_ms), 'n'], trace]);
    }), 5),
  };

  // === single fields: data-f names a path into the document, data-fmt its format ===
  const formats = {
    uptime: (v) => uptime(v),
    pct: (v) => pct(v),
    counts: (v) => v.length ? v.map((c) => c.name + ' ' + c.count).join(', ') : dash,
    keys: (v) => v.length ? v.map((k) => (k.kid === null ? 'no kid' : k.kid) + ' (' + k.source + ')').join(', ') : 'none loaded',
    store: (v, s) => storeState(s.rate_limit_store),
    result: (v) => v,
    names: (v) => (v && v.length ? v.join(', ') : dash),
  };
  function lookup(doc, path) {
    return path.split('.').reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), doc);
  }

  function redraw(s) {
    // A reload that adds or removes [jwt] changes the page's shape: take the new one.
    const jwtShown = document.querySelector('[data-f="jwt.cache_hit_ratio"]') !== null;
    const tracingShown = document.getElementById('tracing') !== null;
    if (jwtShown !== (s.jwt !== null) || tracingShown !== (s.tracing !== null)) {
      location.reload();
      return;
    }
    for (const node of document.querySelectorAll('[data-f]')) {
      const path = node.dataset.f;
      const fmt = formats[node.dataset.fmt];
      const v = lookup(s, path);
      if (fmt === undefined && node.dataset.fmt !== undefined) continue;
      const text = fmt ? fmt(v, s) : opt(v);
      if (node.textContent !== text) node.textContent = text;
    }
    const result = document.querySelector('[data-f="config.last_reload.result"]');
    if (result) result.className = resultClass(s.config.last_reload.result);
    const store = document.querySelector('[data-f="rate_limit_store.healthy"]');
    if (store) store.className = s.rate_limit_store.healthy ? 'ok' : 'bad';
    for (const [name, build] of Object.entries(tables)) {
      const body = document.querySelector('tbody[data-list="' + name + '"]');
      if (body) body.replaceChildren(...build(s));
    }
  }

  const live = () => document.getElementById('live');
  function mark(state, text) {
    const l = live();
    if (l) {
      l.className = 'live ' + state;
      l.textContent = text;
    }
  }

  async function tick() {
    try {
      const resp = await fetch('/status.json', { cache: 'no-store' });
      if (!resp.ok) throw new Error('status ' + resp.status);
      redraw(await resp.json());
      mark('on', 'live');
    } catch (e) {
      mark('stale', 'not updating (' + e.message + ')');
    }
    setTimeout(tick, PERIOD_MS);
  }

  document.addEventListener('DOMContentLoaded', () => {
    mark('on', 'live');
    setTimeout(tick, PERIOD_MS);
  });
})();
