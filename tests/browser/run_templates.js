// Browser test driver: open the ComfyUI UI, load each of the pack's example workflows from the Templates
// browser (Custom Nodes / Extensions section), press Run, wait for completion, save a screenshot.
//
// Usage: node tests/browser/run_templates.js --url http://127.0.0.1:PORT --module PACK_FOLDER_NAME \
//            --out SCREENSHOT_DIR [--timeout SECONDS_PER_WORKFLOW] [--model FILE] stem [stem ...]
// Prints one JSON line per workflow: {stem, loaded_nodes, expected_nodes, api, run: {status, executed,
// error, outputs, elapsed_s}, screenshot}; exits 0 when it could drive the page (the pytest side judges).
// --model FILE swaps the model loader's choice after loading (for quick runs with a small model file).
'use strict';

const fs = require('fs');
const path = require('path');
const { launch, openApp, closeDialogs, fitView, hideMinimap, runAndWait, loadTemplateFromBrowser, parseArgs } =
  require('./comfy_page');
const { waitForVideoPreviews } = require('./comfy_page');

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const url = a.url || 'http://127.0.0.1:8188';
  const module = a.module;
  const outDir = a.out || '.';
  const timeoutMs = Number(a.timeout || 1800) * 1000;
  if (!module) throw new Error('--module PACK_FOLDER_NAME is required');
  fs.mkdirSync(outDir, { recursive: true });

  const { browser, page } = await launch({ width: 1600, height: 1000 });
  try {
    await openApp(page, url);
    await closeDialogs(page);
    await hideMinimap(page);
    for (const stem of a._) {
      const res = { stem };
      try {
        const expected = await page.evaluate(async ({ module, stem }) => {
          const r = await fetch(`/api/workflow_templates/${module}/${stem}.json`);
          return r.ok ? (await r.json()).nodes.length : -1;
        }, { module, stem });
        res.expected_nodes = expected;
        await loadTemplateFromBrowser(page, module, stem);
        res.loaded_nodes = await page.evaluate(() => (window.app.graph._nodes || window.app.graph.nodes).length);
        if (a.model) {
          await page.evaluate((model) => {
            for (const n of window.app.graph._nodes || window.app.graph.nodes) {
              if (n.type === 'VSSFlowModelLoader') n.widgets.find((w) => w.name === 'model').value = model;
            }
          }, a.model);
        }
        await fitView(page);
        res.api = (await page.evaluate(async () => (await window.app.graphToPrompt()).output));
        const t0 = Date.now();
        res.run = await runAndWait(page, timeoutMs);
        res.run.elapsed_s = (Date.now() - t0) / 1000;
        await closeDialogs(page);
        await waitForVideoPreviews(page);   // let the result players load before the screenshot
        res.screenshot = path.join(outDir, stem + '.png');
        await page.screenshot({ path: res.screenshot });
      } catch (e) {
        res.driver_error = String(e && e.message || e).slice(0, 2000);
        try {
          res.screenshot = path.join(outDir, stem + '.failed.png');
          await page.screenshot({ path: res.screenshot });
        } catch (e2) { /* page gone */ }
      }
      console.log(JSON.stringify(res));
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
