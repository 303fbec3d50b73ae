// Author the pack's example workflows by building each graph in the real ComfyUI page (LiteGraph nodes,
// links and widget values, as a user would) and saving app.graph.serialize() -> example_workflows/<name>.json,
// plus a screenshot of the graph as the Templates-browser thumbnail example_workflows/<name>.jpg.
//
// Usage (a ComfyUI with this pack loaded must be running):
//   node tests/browser/author_workflows.js --url http://127.0.0.1:8188 --out example_workflows \
//        --sfx SAMPLE_SFX.mp4 --talking SAMPLE_TALKING.mp4 --mixed SAMPLE_MIXED.mp4 \
//        --talking-text "words spoken in the talking clip" --mixed-text "words spoken in the mixed clip" \
//        [--only name,name] [--run] [--png] [--docs docs/workflow.png] [--model FILE (used for the --run only)]
// --run also queues each graph and waits for it (the thumbnail then shows the result preview).
'use strict';

const fs = require('fs');
const path = require('path');
const { launch, openApp, closeDialogs, buildGraph, fitView, hideMinimap, graphClip, runAndWait, parseArgs } =
  require('./comfy_page');
const { waitForVideoPreviews } = require('./comfy_page');

const NOTE_COLOR = { color: '#432', bgcolor: '#653' };

function note(key, pos, size, text) {
  return { key, type: 'Note', pos, size, widgets: { text }, ...NOTE_COLOR };
}

function specs(a) {
  const sampler = (extra = {}) => ({ seed: 0, control_after_generate: 'fixed', ...extra });
  return {
    vssflow_video_to_sound_effects: {
      nodes: [
        { key: 'load', type: 'VSSFlowLoadVideo', pos: [40, 80], widgets: { video: a.sfx } },
        { key: 'model', type: 'VSSFlowModelLoader', pos: [40, 660], size: [320, 110], widgets: a.modelWidgets },
        { key: 'sampler', type: 'VSSFlowSampler', pos: [400, 80], widgets: sampler() },
        { key: 'mux', type: 'VSSFlowMuxAudio', pos: [760, 80],
          widgets: { filename_prefix: 'VSSFlow/sound_effects' }, size: [360, 560] },
        note('note', [400, 480], [320, 190],
          'Video -> sound effects -> video.\n\nThe sampler hears nothing: it makes the sound from the ' +
          'frames alone. Pick your own clip in "VSSFlow Load Video" (or upload one), press Run, and the ' +
          'mp4 with the new sound is saved under output/VSSFlow/.\n\nMore steps = finer, slower.'),
      ],
      links: [
        ['model', 'model', 'sampler', 'model'],
        ['load', 'images', 'sampler', 'images'],
        ['load', 'fps', 'sampler', 'fps'],
        ['sampler', 'audio', 'mux', 'audio'],
        ['load', 'video', 'mux', 'video'],
      ],
    },
    vssflow_talking_video_to_speech: {
      nodes: [
        { key: 'load', type: 'VSSFlowLoadVideo', pos: [40, 80], widgets: { video: a.talking } },
        { key: 'model', type: 'VSSFlowModelLoader', pos: [40, 660], size: [320, 110], widgets: a.modelWidgets },
        { key: 'lips', type: 'VSSFlowExtractLipFeatures', pos: [400, 80] },
        { key: 'text', type: 'VSSFlowTextCondition', pos: [400, 300], size: [320, 200],
          widgets: { transcript: a.talkingText, speech_start_s: 0.0, speech_end_s: 0.0 } },
        { key: 'sampler', type: 'VSSFlowSampler', pos: [760, 80], widgets: sampler() },
        { key: 'mux', type: 'VSSFlowMuxAudio', pos: [1120, 80],
          widgets: { filename_prefix: 'VSSFlow/speech' }, size: [360, 560] },
        { key: 'frames', type: 'ImageFromBatch', pos: [760, 440], widgets: { batch_index: 40, length: 4 } },
        { key: 'preview', type: 'PreviewImage', pos: [760, 590], size: [320, 330] },
        note('note', [400, 560], [320, 220],
          'Talking video + transcript -> speech -> video.\n\nThe lips are tracked in every frame (preview: ' +
          'mouth boxes on 4 frames) and the words follow them. Speech start/end 0 and 0 = found from the lips; set them ' +
          '(seconds) to place the words yourself. Connect a short recording to "voice" on the Text ' +
          'Condition to imitate a voice.'),
      ],
      links: [
        ['model', 'model', 'sampler', 'model'],
        ['load', 'images', 'lips', 'images'],
        ['load', 'fps', 'lips', 'fps'],
        ['lips', 'preview', 'frames', 'image'],
        ['frames', 'IMAGE', 'preview', 'images'],
        ['load', 'images', 'sampler', 'images'],
        ['load', 'fps', 'sampler', 'fps'],
        ['lips', 'lips', 'sampler', 'lips'],
        ['text', 'text', 'sampler', 'text'],
        ['sampler', 'audio', 'mux', 'audio'],
        ['load', 'video', 'mux', 'video'],
      ],
    },
    vssflow_sound_and_speech: {
      nodes: [
        { key: 'load', type: 'VSSFlowLoadVideo', pos: [40, 80], widgets: { video: a.mixed } },
        { key: 'model', type: 'VSSFlowModelLoader', pos: [40, 660], size: [320, 110], widgets: a.modelWidgets },
        { key: 'lips', type: 'VSSFlowExtractLipFeatures', pos: [400, 80] },
        { key: 'text', type: 'VSSFlowTextCondition', pos: [400, 300], size: [320, 200],
          widgets: { transcript: a.mixedText, speech_start_s: 0.0, speech_end_s: 0.0 } },
        { key: 'sampler', type: 'VSSFlowSampler', pos: [760, 80], widgets: sampler() },
        { key: 'mux', type: 'VSSFlowMuxAudio', pos: [1120, 80],
          widgets: { filename_prefix: 'VSSFlow/sound_and_speech' }, size: [360, 560] },
        note('note', [400, 560], [320, 200],
          'Sound effects and speech at once.\n\nOne sampler gets the frames, the lips and the transcript and ' +
          'makes one track with both the speech and the sounds of what happens in the video (VSSFlow ' +
          'generates them jointly, already mixed).'),
      ],
      links: [
        ['model', 'model', 'sampler', 'model'],
        ['load', 'images', 'lips', 'images'],
        ['load', 'fps', 'lips', 'fps'],
        ['load', 'images', 'sampler', 'images'],
        ['load', 'fps', 'sampler', 'fps'],
        ['lips', 'lips', 'sampler', 'lips'],
        ['text', 'text', 'sampler', 'text'],
        ['sampler', 'audio', 'mux', 'audio'],
        ['load', 'video', 'mux', 'video'],
      ],
    },
    vssflow_after_create_video: {
      nodes: [
        { key: 'core_load', type: 'LoadVideo', pos: [40, 80], widgets: { file: a.sfx }, size: [300, 420] },
        { key: 'components', type: 'GetVideoComponents', pos: [380, 80] },
        { key: 'create', type: 'CreateVideo', pos: [380, 260] },
        { key: 'model', type: 'VSSFlowModelLoader', pos: [380, 440], size: [320, 110], widgets: a.modelWidgets },
        { key: 'sampler', type: 'VSSFlowSampler', pos: [740, 80], widgets: sampler() },
        { key: 'mux', type: 'VSSFlowMuxAudio', pos: [1100, 80],
          widgets: { filename_prefix: 'VSSFlow/after_create_video' }, size: [360, 560] },
        note('note', [40, 640], [640, 160],
          'Chaining after a video generator.\n\nHere an IMAGE batch (frames taken from a clip with core Get ' +
          'Video Components) goes through core Create Video, as the output of any image/video generation ' +
          'model would. The VSSFlow Sampler takes that VIDEO and Mux Audio puts the new sound on it.'),
      ],
      links: [
        ['core_load', 'VIDEO', 'components', 'video'],
        ['components', 'images', 'create', 'images'],
        ['components', 'fps', 'create', 'fps'],
        ['model', 'model', 'sampler', 'model'],
        ['create', 'VIDEO', 'sampler', 'video'],
        ['sampler', 'audio', 'mux', 'audio'],
        ['create', 'VIDEO', 'mux', 'video'],
      ],
    },
  };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const url = a.url || 'http://127.0.0.1:8188';
  const outDir = a.out || 'example_workflows';
  const args = { sfx: a.sfx, talking: a.talking, mixed: a.mixed || a.talking,
    talkingText: a['talking-text'] || '', mixedText: a['mixed-text'] || a['talking-text'] || '',
    modelWidgets: {} };
  for (const k of ['sfx', 'talking']) if (!args[k]) throw new Error(`--${k} CLIP is required`);
  const all = specs(args);
  const only = a.only ? a.only.split(',') : Object.keys(all);
  const timeoutMs = Number(a.timeout || 1800) * 1000;

  const { browser, page } = await launch({ width: 1500, height: 900 });
  try {
    await openApp(page, url);
    await closeDialogs(page);
    await hideMinimap(page);
    const results = {};
    for (const name of only) {
      const spec = all[name];
      if (!spec) throw new Error('unknown workflow ' + name);
      const wf = await buildGraph(page, spec);
      // the graph was built in this page; load the serialised form back so what we save is what users load
      await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, wf);
      await fitView(page);
      await page.waitForTimeout(2000);  // video previews resize their nodes once loaded
      // What is saved is the graph as built (before any trial run).
      const serialised = await page.evaluate(() => window.app.graph.serialize());
      fs.writeFileSync(path.join(outDir, name + '.json'), JSON.stringify(serialised, null, 2) + '\n');
      let run = null;
      if (a.run !== undefined) {
        const setModel = (model) => page.evaluate((model) => {
          let before = null;
          for (const n of window.app.graph._nodes || window.app.graph.nodes) {
            if (n.type !== 'VSSFlowModelLoader') continue;
            const w = n.widgets.find((x) => x.name === 'model');
            before = w.value;
            if (model !== null) w.value = model;
          }
          return before;
        }, model);
        // trial runs may use another model file; the saved workflow and the pictures keep the default
        const saved = a.model ? await setModel(a.model) : null;
        const t0 = Date.now();
        run = await runAndWait(page, timeoutMs);
        run.elapsed_s = (Date.now() - t0) / 1000;
        if (a.model) await setModel(saved);
        await closeDialogs(page);
        await waitForVideoPreviews(page);
        await page.waitForTimeout(2500);
      }
      await closeDialogs(page);
      await fitView(page);
      const clip = await graphClip(page);
      // Templates-browser cards are square: keep the right-hand end of the graph (sampler -> result preview).
      const side = Math.min(clip.width, clip.height);
      const thumb = { x: clip.x + clip.width - side, y: clip.y + (clip.height - side) / 2, width: side, height: side };
      await page.screenshot({ path: path.join(outDir, name + '.jpg'), type: 'jpeg', quality: 85, clip: thumb });
      if (a.png !== undefined) await page.screenshot({ path: path.join(outDir, name + '.png'), clip });
      if (a.docs && name === (a['docs-workflow'] || 'vssflow_talking_video_to_speech')) {
        await page.screenshot({ path: a.docs, clip });  // the whole graph after the run (README picture)
      }
      results[name] = { nodes: serialised.nodes.length, links: serialised.links.length, run };
      console.log(JSON.stringify({ name, ...results[name] }));
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
