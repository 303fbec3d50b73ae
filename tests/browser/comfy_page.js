// Shared helpers for driving the ComfyUI web UI with playwright-core and a system Chromium.
// Used by run_templates.js (the browser test) and author_workflows.js (makes example_workflows/*.json).
'use strict';

const fs = require('fs');
const path = require('path');

function loadPlaywright() {
  // playwright-core from tests/browser/node_modules, or any folder on NODE_PATH.
  try {
    return require('playwright-core');
  } catch (e) {
    throw new Error('playwright-core not found: run `npm install` in tests/browser (or set NODE_PATH to a ' +
                    'node_modules folder that has it)');
  }
}

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
  '--autoplay-policy=no-user-gesture-required'];

function chromiumPath() {
  const cands = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser',
    '/usr/bin/google-chrome'].filter(Boolean);
  for (const c of cands) if (fs.existsSync(c)) return c;
  throw new Error('no Chromium found: install it (apt-get install chromium) or set CHROMIUM_PATH');
}

async function launch(viewport = { width: 1600, height: 1000 }) {
  const { chromium } = loadPlaywright();
  const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: CHROMIUM_ARGS });
  const page = await browser.newPage({ viewport });
  page.on('pageerror', (err) => console.error('[page error]', String(err).slice(0, 300)));
  return { browser, page };
}

/** Open the UI and wait until the app object and its graph are ready. */
async function openApp(page, baseUrl, timeoutMs = 180000) {
  await page.goto(baseUrl + '/', { timeout: timeoutMs });
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.LiteGraph,
    null, { timeout: timeoutMs });
  // Node definitions are registered once the frontend has fetched /object_info.
  await page.waitForFunction(() => !!window.LiteGraph.registered_node_types['VSSFlowSampler'],
    null, { timeout: timeoutMs });
  await page.waitForTimeout(500);
}

/** Close whatever dialog is open (the first-run Templates dialog, toasts). */
async function closeDialogs(page) {
  for (let i = 0; i < 3; i++) {
    const open = await page.locator('.p-dialog').count();
    if (!open) break;
    await page.keyboard.press('Escape');
    await page.waitForTimeout(300);
  }
}

/**
 * Build a graph from a spec, in the page, with LiteGraph (as a user would by adding nodes and wiring them):
 * spec = {nodes: [{key, type, pos:[x,y], size?:[w,h], title?, widgets:{name: value}, text?}],
 *         links: [[fromKey, outputName, toKey, inputName]]}.
 * Returns the serialised UI-format workflow (app.graph.serialize()).
 */
async function buildGraph(page, spec) {
  return await page.evaluate((spec) => {
    const LG = window.LiteGraph;
    const app = window.app;
    const g = app.graph;
    g.clear();
    const byKey = {};
    for (const n of spec.nodes) {
      const node = LG.createNode(n.type);
      if (!node) throw new Error('unknown node type ' + n.type);
      node.pos = n.pos;
      g.add(node);
      if (n.title) node.title = n.title;
      for (const [name, value] of Object.entries(n.widgets || {})) {
        const w = (node.widgets || []).find((x) => x.name === name);
        if (!w) throw new Error(`${n.type} has no widget ${name}: ` + (node.widgets || []).map((x) => x.name));
        w.value = value;
        if (w.callback) { try { w.callback(value); } catch (e) { /* some callbacks need a canvas event */ } }
      }
      if (n.size) node.size = n.size;
      if (n.color) node.color = n.color;
      if (n.bgcolor) node.bgcolor = n.bgcolor;
      byKey[n.key] = node;
    }
    for (const [from, outName, to, inName] of spec.links) {
      const a = byKey[from], b = byKey[to];
      const o = a.outputs.findIndex((x) => x.name === outName);
      const i = b.inputs.findIndex((x) => x.name === inName);
      if (o < 0) throw new Error(`${a.type} has no output ${outName}`);
      if (i < 0) throw new Error(`${b.type} has no input ${inName}`);
      const link = a.connect(o, b, i);
      if (!link) throw new Error(`could not connect ${a.type}.${outName} -> ${b.type}.${inName}`);
    }
    g.setDirtyCanvas(true, true);
    return g.serialize();
  }, spec);
}

/** Hide the minimap (it would cover part of screenshots). */
async function hideMinimap(page) {
  await page.evaluate(async () => {
    try { await window.app.extensionManager.setting.set('Comfy.Minimap.Visible', false); } catch (e) { /* older UI */ }
  });
}

/** Screen rectangle {x, y, width, height} covering all nodes (for a clipped screenshot). */
async function graphClip(page, pad = 24) {
  return await page.evaluate((pad) => {
    const c = window.app.canvas, ds = c.ds;
    const rect = c.canvas.getBoundingClientRect();
    const nodes = window.app.graph._nodes || window.app.graph.nodes;
    const titleH = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - titleH);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const sx = (x) => (x + ds.offset[0]) * ds.scale + rect.left;
    const sy = (y) => (y + ds.offset[1]) * ds.scale + rect.top;
    const X0 = Math.max(rect.left, sx(x0) - pad), Y0 = Math.max(rect.top, sy(y0) - pad);
    const X1 = Math.min(rect.right, sx(x1) + pad), Y1 = Math.min(rect.bottom, sy(y1) + pad);
    return { x: X0, y: Y0, width: X1 - X0, height: Y1 - Y0 };
  }, pad);
}

/** Fit the whole graph into the canvas view. */
async function fitView(page) {
  await page.evaluate(() => {
    const c = window.app.canvas;
    const nodes = window.app.graph._nodes || window.app.graph.nodes;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodes) {
      const titleH = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - titleH);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const pad = 40;
    const bounds = [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad];
    if (c.ds.fitToBounds) {
      c.ds.fitToBounds(bounds);
    } else {
      const el = c.canvas;
      const scale = Math.min(el.width / bounds[2], el.height / bounds[3]);
      c.ds.scale = scale;
      c.ds.offset = [-bounds[0], -bounds[1]];
    }
    c.setDirty(true, true);
  });
  await page.waitForTimeout(400);
}

/**
 * Press the UI's Run button and wait for the prompt to finish. Resolves with
 * {status: 'success'|'error'|'timeout', prompt_id, executed: [node ids], error}.
 */
async function runAndWait(page, timeoutMs) {
  await closeDialogs(page);
  await page.evaluate(() => {
    const api = window.app.api;
    const st = window.__vssflowRun = { status: null, prompt_id: null, executed: [], error: null, outputs: {} };
    const mine = (d) => !st.prompt_id || !d || !d.prompt_id || d.prompt_id === st.prompt_id;
    api.addEventListener('promptQueued', (e) => { /* newer frontends */ });
    api.addEventListener('executed', (e) => { if (mine(e.detail)) { st.executed.push(String(e.detail.node)); st.outputs[e.detail.node] = e.detail.output; } });
    api.addEventListener('execution_start', (e) => { if (!st.prompt_id && e.detail) st.prompt_id = e.detail.prompt_id; });
    api.addEventListener('execution_error', (e) => { if (mine(e.detail)) { st.error = e.detail; st.status = 'error'; } });
    api.addEventListener('execution_interrupted', (e) => { if (mine(e.detail)) { st.error = e.detail; st.status = 'error'; } });
    api.addEventListener('execution_success', (e) => { if (mine(e.detail)) st.status = st.status || 'success'; });
  });
  const run = page.getByRole('button', { name: 'Run', exact: true }).first();
  if (await run.count()) {
    await run.click();
  } else {
    await page.evaluate(() => window.app.queuePrompt(0, 1));
  }
  try {
    await page.waitForFunction(() => window.__vssflowRun && window.__vssflowRun.status, null,
      { timeout: timeoutMs, polling: 500 });
  } catch (e) {
    const st = await page.evaluate(() => window.__vssflowRun);
    return { ...st, status: 'timeout' };
  }
  return await page.evaluate(() => window.__vssflowRun);
}

/** Wait (bounded) until every <video> preview on the page has a frame to show. */
async function waitForVideoPreviews(page, timeoutMs = 20000) {
  try {
    await page.waitForFunction(() => Array.from(document.querySelectorAll('video'))
      .every((v) => !v.currentSrc || v.readyState >= 2), null, { timeout: timeoutMs, polling: 500 });
  } catch (e) { /* screenshot anyway */ }
  await page.waitForTimeout(500);
}

/** Open the Templates browser and load `stem` from the custom-node section `module`. */
async function loadTemplateFromBrowser(page, module, stem) {
  await closeDialogs(page);
  await page.getByRole('button', { name: 'Templates' }).first().click();
  const dialog = page.locator('.p-dialog').first();
  await dialog.waitFor({ state: 'visible', timeout: 30000 });
  // Left navigation: the pack's folder name is a category under "Custom Nodes"/"Extensions".
  await dialog.getByText(module, { exact: true }).first().click();
  await page.waitForTimeout(500);
  const card = dialog.getByText(stem, { exact: true }).first();
  await card.waitFor({ state: 'visible', timeout: 30000 });
  await card.click();
  // The dialog closes once the workflow is loaded.
  await dialog.waitFor({ state: 'hidden', timeout: 60000 });
  await page.waitForTimeout(800);
}

function parseArgs(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[a.slice(2)] = argv[++i];
      else out[a.slice(2)] = true;  // a flag
    } else out._.push(a);
  }
  return out;
}

module.exports = { waitForVideoPreviews, launch, openApp, closeDialogs, buildGraph, fitView, hideMinimap, graphClip, runAndWait, loadTemplateFromBrowser,
  parseArgs, chromiumPath };
