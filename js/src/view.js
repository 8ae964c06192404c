// The widget's view: live frames while the mask trains, then the settled
// result with its circuit. State that must survive re-display comes from the
// model's traits; live frames come as custom messages.
import { toBytes } from "./bytes.js";
import { createChannelPanel } from "./channel_panel.js";
import { createCircuitView } from "./circuit_view.js";
import { h, paint } from "./dom.js";
import { formatPercent, formatProb, formatSeconds, formatStep, necessaryLine } from "./format.js";
import { decodeChannel, decodeFrame } from "./frame.js";
import { createHalves } from "./halves.js";
import { LossSeries } from "./losses.js";
import { createLossPlot } from "./plot.js";
import { mapToRgba, maskedRgba, rgbToRgba, tintRgba } from "./raster.js";

const SETTLED = new Set(["done", "interrupted"]);
const CHANNEL_TIMEOUT_MS = 15000;
// Captions of the mask and explanation panels for each half shown.
const CAPTIONS = {
  sufficient: ["Mask", "Explanation"],
  necessary: ["Necessary region", "x, necessary in red"],
  both: ["Mask, necessary in red", "Explanation, necessary in red"],
};

/**
 * @param {{model: any, el: HTMLElement}} ctx
 * @returns {() => void} cleanup
 */
export function render({ model, el }) {
  const started = performance.now();
  let series = new LossSeries();
  /** @type {import("./frame.js").Frame | null} the sufficient half's latest live frame */
  let lastFrame = null;
  /** @type {import("./frame.js").Frame | null} the necessary half's latest live frame */
  let lastNecessary = null;
  let frames = 0;
  let framesWhileTraining = 0;
  let necessaryWhileTraining = 0;
  let requestId = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let channelTimer;

  // ---- layout -------------------------------------------------------------
  const statusBadge = h("span", { class: "nbx-badge", "data-role": "status" });
  const targetName = h("span", { class: "nbx-target" });
  const progress = h("div", { class: "nbx-progress" }, h("div", { class: "nbx-progress-bar" }));
  const stat = (/** @type {string} */ role, /** @type {string} */ label) => {
    const value = h("span", { class: "nbx-stat-value", "data-role": role, text: "\u2014" });
    return { card: h("div", { class: "nbx-stat" }, h("span", { class: "nbx-stat-label", text: label }), value), value };
  };
  const stats = {
    step: stat("step", "Step"),
    probX: stat("prob-original", "p(target | x)"),
    probE: stat("prob-explanation", "p(target | explanation)"),
    area: stat("area", "Area kept"),
    robustness: stat("robustness", "Robustness"),
    time: stat("time", "Time"),
  };
  const note = h("p", { class: "nbx-note", hidden: true, "data-role": "note" });
  const canvases = {
    image: /** @type {HTMLCanvasElement} */ (h("canvas", { "data-role": "image" })),
    mask: /** @type {HTMLCanvasElement} */ (h("canvas", { "data-role": "mask", class: "nbx-pixelated" })),
    explanation: /** @type {HTMLCanvasElement} */ (h("canvas", { "data-role": "explanation" })),
  };
  const captions = { mask: h("figcaption", { text: "Mask" }), explanation: h("figcaption", { text: "Explanation" }) };
  const picture = (/** @type {HTMLCanvasElement} */ canvas, /** @type {string | HTMLElement} */ caption) =>
    h("figure", { class: "nbx-panel nbx-picture" }, canvas, typeof caption === "string" ? h("figcaption", { text: caption }) : caption);
  const halves = createHalves({ onChange: () => drawPictures() });
  const plot = createLossPlot();
  const panel = createChannelPanel({
    onNavigate: (id) => circuit.choose(id),
    onClose: () => {
      panel.hide();
      circuit.setSelected(null);
    },
  });
  const circuit = createCircuitView({ onSelect: (node, view) => requestChannel(node, view) });
  const circuitSection = h(
    "div",
    { class: "nbx-circuit", hidden: true, "data-role": "circuit" },
    circuit.el,
    panel.el,
  );
  const root = h(
    "div",
    { class: "nbx-root", "data-role": "root" },
    h("header", { class: "nbx-header" }, h("span", { class: "nbx-title", text: "nbexplain" }), targetName, statusBadge),
    progress,
    h("div", { class: "nbx-stats" }, ...Object.values(stats).map((x) => x.card)),
    note,
    halves.el,
    h(
      "div",
      { class: "nbx-row" },
      picture(canvases.image, "Input x"),
      picture(canvases.mask, captions.mask),
      picture(canvases.explanation, captions.explanation),
      plot.el,
    ),
    circuitSection,
  );
  el.replaceChildren(root);

  // ---- drawing ------------------------------------------------------------
  const settled = () => SETTLED.has(model.get("status"));

  /**
   * A synced picture trait as bytes and size, or null when empty or inconsistent.
   * @param {string} name @param {string} shape @param {number} channels
   */
  function synced(name, shape, channels) {
    const [height, width] = model.get(shape) ?? [0, 0];
    const bytes = toBytes(model.get(name));
    return bytes.length === width * height * channels && width > 0 ? { bytes, width, height } : null;
  }

  const image = () => synced("image", "image_shape", 3);
  /** @param {import("./frame.js").Frame | null} f */
  const live = (f) => (f && !settled() ? { bytes: f.mask, width: f.width, height: f.height } : null);
  // While training, the latest live frame of each half; once settled, the result's.
  const sufficientMask = () => live(lastFrame) ?? synced("mask", "mask_shape", 1);
  const necessaryRegion = () => live(lastNecessary) ?? synced("necessary_mask", "necessary_shape", 1);

  function drawImage() {
    const img = image();
    if (img) paint(canvases.image, rgbToRgba(img.bytes, img.width, img.height), img.width, img.height);
  }

  /**
   * The explanation as RGBA: the result's own picture once settled, else the image where the
   * mask keeps pixels and the fill elsewhere.
   * @param {{bytes: Uint8Array, width: number, height: number} | null} mask
   */
  function explanationRgba(mask) {
    const expl = settled() ? synced("explanation", "explanation_shape", 3) : null;
    if (expl) return { rgba: rgbToRgba(expl.bytes, expl.width, expl.height), width: expl.width, height: expl.height };
    const img = image();
    if (!img || !mask) return null;
    const fill = toBytes(model.get("fill_image"));
    const rgba = maskedRgba(img.bytes, img.width, img.height, mask.bytes, mask.width, mask.height,
      fill.length === img.bytes.length ? fill : null);
    return { rgba, width: img.width, height: img.height };
  }

  // The mask and explanation panels, for the half chosen (only the sufficient one until a
  // necessary region exists). Red is always the necessary region.
  function drawPictures() {
    const mask = sufficientMask();
    const region = necessaryRegion();
    const half = region ? halves.half : "sufficient";
    root.dataset.half = half;
    [captions.mask.textContent, captions.explanation.textContent] = CAPTIONS[half];
    /** @param {Uint8ClampedArray} rgba @param {number} width @param {number} height @param {number} alpha */
    const tint = (rgba, width, height, alpha) =>
      region && half !== "sufficient" ? tintRgba(rgba, width, height, region.bytes, region.width, region.height, alpha) : rgba;
    if (half === "necessary" && region) {
      const black = mapToRgba(new Uint8Array(region.bytes.length));
      paint(canvases.mask, tint(black, region.width, region.height, 1), region.width, region.height);
    } else if (mask) {
      // Stronger than over the photo: pale red on the white mask would hardly show.
      paint(canvases.mask, tint(mapToRgba(mask.bytes), mask.width, mask.height, 0.85), mask.width, mask.height);
    }
    const img = image();
    const base = half === "necessary" && img
      ? { rgba: rgbToRgba(img.bytes, img.width, img.height), width: img.width, height: img.height }
      : explanationRgba(mask);
    if (base) paint(canvases.explanation, tint(base.rgba, base.width, base.height, 0.6), base.width, base.height);
  }

  // What the necessary evidence is: found so far while it trains, the result's line once settled.
  function drawNecessary() {
    const nec = model.get("necessary") ?? {};
    if (!settled() && lastNecessary) halves.setLine(necessaryLine(lastNecessary), lastNecessary.changesDecision);
    else if (settled() && nec.text) halves.setLine(String(nec.text), nec.found !== false, nec.details);
    else halves.setLine(null);
  }

  function drawHeader() {
    const status = model.get("status") ?? "idle";
    root.dataset.status = status;
    // While training, the badge says which phase runs (steps, cut, scoring, circuits).
    const phase = model.get("phase");
    statusBadge.textContent = status === "training" && phase ? phase : status;
    statusBadge.dataset.status = status;
    const name = model.get("target_name");
    targetName.textContent = name ? `explaining \u201c${name}\u201d` : "";
  }

  function drawSummary() {
    const s = model.get("summary") ?? {};
    const total = model.get("total_steps");
    stats.step.value.textContent = formatStep(s.steps ?? lastFrame?.step, total);
    stats.probX.value.textContent = formatProb(s.prob_original);
    stats.probE.value.textContent = formatProb(s.prob_explanation);
    stats.area.value.textContent = formatPercent(s.area);
    stats.robustness.value.textContent = formatPercent(s.robustness, 0);
    stats.time.value.textContent = formatSeconds(s.seconds);
    stats.probE.value.dataset.kept = s.label_kept === false ? "false" : "true";
    setProgress(1);
  }

  /** @param {import("./frame.js").Frame} f */
  function drawFrame(f) {
    stats.step.value.textContent = formatStep(f.step, f.total);
    stats.time.value.textContent = formatSeconds(f.elapsed);
    setProgress(f.total > 0 ? f.step / f.total : 0);
    // The necessary half's numbers are of its own region: they go on its line, not in the mask's stats.
    if (f.half === "sufficient") {
      stats.probE.value.textContent = formatProb(f.prob);
      stats.probE.value.dataset.kept = f.labelKept ? "true" : "false";
      stats.area.value.textContent = formatPercent(f.area);
      plot.update(series, f.total, { probOriginal: (model.get("summary") ?? {}).prob_original });
    }
    drawNecessary();
    drawPictures();
  }

  /** @param {number} share */
  function setProgress(share) {
    const bar = /** @type {HTMLElement} */ (progress.firstChild);
    bar.style.width = `${Math.round(100 * Math.min(1, Math.max(0, share)))}%`;
  }

  function drawNote() {
    const text = model.get("note") ?? "";
    const more = model.get("note_details") ?? "";
    note.hidden = !text;
    note.textContent = text;
    // The short line names the problem; the full message is one click away.
    if (text && more) note.append(" ", h("details", { class: "nbx-details" }, h("summary", { text: "details" }), h("pre", { text: more })));
  }

  function drawSettled() {
    drawHeader();
    drawNote();
    drawImage();
    drawNecessary();
    drawPictures();
    drawSummary();
    series = LossSeries.fromHistory(model.get("history") ?? {}, 600, 1); // steps as the frames count them
    const result = model.get("summary") ?? {};
    plot.update(series, undefined, {
      probOriginal: result.prob_original,
      result: { area: result.area, prob: result.prob_explanation },
    });
    circuit.setCircuits(
      { explanation: model.get("circuit"), original: model.get("circuit_original") },
      model.get("status") === "interrupted"
        ? "No circuit: training was interrupted before the result was complete."
        : "No circuit to show for this result.",
    );
    circuitSection.hidden = false;
  }

  function drawLive() {
    drawHeader();
    drawNote();
    drawImage();
    circuitSection.hidden = true;
    panel.hide();
    // p(target | x) is known before the first step; robustness only once training ends.
    stats.probX.value.textContent = formatProb((model.get("summary") ?? {}).prob_original);
    stats.robustness.value.textContent = "\u2014";
    drawNecessary();
    if (lastFrame) drawFrame(lastFrame);
    if (lastNecessary) drawFrame(lastNecessary);
  }

  function drawAll() {
    if (SETTLED.has(model.get("status"))) drawSettled();
    else drawLive();
  }

  // ---- messages -----------------------------------------------------------
  /** @param {import("./graph.js").PlacedNode} node @param {string} view */
  function requestChannel(node, view) {
    requestId += 1;
    panel.loading(node.id);
    clearTimeout(channelTimer);
    channelTimer = setTimeout(() => {
      panel.error("No answer yet: the kernel may be busy (a cell is running). It will appear when the kernel is free.");
    }, CHANNEL_TIMEOUT_MS);
    model.send({ type: "channel", layer: node.layer, channel: node.channel, source: view, request_id: requestId });
  }

  /** @param {any} content @param {any[]} buffers */
  function onMessage(content, buffers) {
    try {
      if (content?.type === "frame" || content?.type === "necessary") {
        const f = decodeFrame(content, buffers);
        const training = model.get("status") === "training";
        if (f.half === "necessary") {
          lastNecessary = f;
          if (training) necessaryWhileTraining += 1;
        } else {
          if (lastFrame && f.step < lastFrame.step) { // a new run
            series = new LossSeries();
            lastNecessary = null;
          }
          lastFrame = f;
          // The loss terms, and what the panel shows first: area kept and p(target | explanation).
          series.push(f.step, { ...f.losses, prob: f.prob, mask_area: f.area });
        }
        frames += 1;
        if (training) framesWhileTraining += 1;
        root.dataset.frames = String(frames);
        root.dataset.framesWhileTraining = String(framesWhileTraining);
        root.dataset.necessaryWhileTraining = String(necessaryWhileTraining);
        root.dataset.lastStep = String(f.step);
        root.dataset.lastFrameMs = String(Math.round(performance.now() - started));
        root.dataset.firstFrameMs ??= root.dataset.lastFrameMs;
        if (training) drawFrame(f);
      } else if (content?.type === "channel") {
        if (content.request_id !== requestId) return; // an answer to an older click
        clearTimeout(channelTimer);
        panel.show(decodeChannel(content, buffers));
      } else if (content?.type === "channel_error") {
        if (content.request_id !== requestId) return;
        clearTimeout(channelTimer);
        panel.error(String(content.message ?? "This channel cannot be shown."));
      }
    } catch (err) {
      note.hidden = false;
      note.textContent = `Could not show a message from the kernel: ${err instanceof Error ? err.message : err}`;
    }
  }

  const onStatus = () => {
    if (model.get("status") === "training") {
      series = new LossSeries();
      lastFrame = lastNecessary = null;
    }
    drawAll();
  };
  const listeners = /** @type {[string, (...args: any[]) => void][]} */ ([
    ["msg:custom", onMessage],
    ["change:status", onStatus],
    ["change:image", drawImage],
    ["change:necessary", drawNecessary],
    ["change:note", drawNote],
    ["change:note_details", drawNote],
    ["change:target_name", drawHeader],
    ["change:phase", drawHeader],
  ]);
  for (const [event, fn] of listeners) model.on(event, fn);
  drawAll();

  return () => {
    clearTimeout(channelTimer);
    for (const [event, fn] of listeners) model.off(event, fn);
  };
}
