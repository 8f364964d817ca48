/* recon 3D viewer (inlined into report pages by recon/report/viewer.py; a classic script, so it runs
 * from file:// URLs, where browsers refuse ES modules).
 *
 * Reads the mesh table (the JSON script element #rv-data), builds one three.js scene
 * per card (.rv-card[data-mesh]) and draws every scene with ONE shared WebGL context into the card's
 * own 2D canvas: browsers keep only ~16 WebGL contexts alive per page, and a report has more cards.
 * Drawing happens on load and whenever a card's camera moves (drag: orbit, right-drag: pan; the wheel
 * zooms only after a click in the card, so it still scrolls the page; double-click resets the view).
 *
 * Outcome, for people and tests, on <html>: data-viewer-status = "loaded:<n cards>" or
 * "error:<message>"; data-viewer-coverage = per card, the fraction of canvas pixels the mesh covers
 * on load (comma-separated); data-viewer-errors (written by the page's first script) lists uncaught
 * errors and console.error calls.
 */
(function () {
  "use strict";
  var root = document.documentElement;

  function decode(b64, Type) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  function srgbToLinear(u8) { // vertex colours are sRGB bytes; three.js shades in linear RGB
    var out = new Float32Array(u8.length);
    for (var i = 0; i < u8.length; i++) {
      var c = u8[i] / 255;
      out[i] = c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    }
    return out;
  }

  function message(card, text) {
    var ctx = card.canvas.getContext("2d");
    ctx.clearRect(0, 0, card.canvas.width, card.canvas.height);
    ctx.fillStyle = "#a33";
    ctx.font = (12 * card.dpr) + "px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(text, card.canvas.width / 2, card.canvas.height / 2);
  }

  function coverage(canvas) {
    var px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data, n = 0;
    for (var i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return n / (canvas.width * canvas.height);
  }

  function main() {
    var T = window.RECON_THREE;
    var table = JSON.parse(document.getElementById("rv-data").textContent);
    var dpr = Math.min(window.devicePixelRatio || 1, 2);
    var cards = Array.prototype.map.call(document.querySelectorAll(".rv-card[data-mesh]"), function (el) {
      var canvas = el.querySelector("canvas.rv-canvas");
      canvas.width = Math.round(canvas.clientWidth * dpr);
      canvas.height = Math.round(canvas.clientHeight * dpr);
      return {el: el, canvas: canvas, dpr: dpr, mesh: table.meshes[+el.dataset.mesh]};
    });
    if (!T) throw new Error("the three.js bundle did not load");
    var renderer;
    try {
      renderer = new T.WebGLRenderer({antialias: true, alpha: true, canvas: document.createElement("canvas")});
    } catch (e) {
      cards.forEach(function (card) { message(card, "3D view needs WebGL"); });
      throw new Error("WebGL unavailable: " + (e && e.message || e));
    }
    renderer.setClearColor(0x000000, 0);
    var faces = table.faces.map(function (b64) { return decode(b64, Uint32Array); });

    function draw(card) {
      var w = card.canvas.width, h = card.canvas.height;
      renderer.setSize(w, h, false);
      renderer.render(card.scene, card.camera);
      var ctx = card.canvas.getContext("2d");
      ctx.clearRect(0, 0, w, h);
      ctx.drawImage(renderer.domElement, 0, 0); // same task as render: the drawing buffer is still valid
    }

    cards.forEach(function (card) {
      var m = card.mesh, geometry = new T.BufferGeometry();
      geometry.setAttribute("position", new T.BufferAttribute(decode(m.positions, Float32Array), 3));
      geometry.setAttribute("color", new T.BufferAttribute(srgbToLinear(decode(m.colours, Uint8Array)), 3));
      geometry.setIndex(new T.BufferAttribute(faces[m.faces], 1));
      geometry.computeVertexNormals();
      var material = new T.MeshStandardMaterial({vertexColors: true, roughness: 0.85, metalness: 0.0,
                                                 side: T.DoubleSide});
      var scene = new T.Scene();
      scene.add(new T.Mesh(geometry, material));
      scene.add(new T.HemisphereLight(0xffffff, 0x8a8a8a, 1.25));
      var camera = new T.PerspectiveCamera(m.fov, card.canvas.width / card.canvas.height, 0.05, 100);
      camera.position.set(m.eye[0], m.eye[1], m.eye[2]);
      camera.lookAt(0, 0, 0);
      var key = new T.DirectionalLight(0xffffff, 1.5); // a headlight from the upper left, moving with the camera
      key.position.set(-1.2, 1.5, 0.5);
      camera.add(key);
      scene.add(camera);
      card.scene = scene;
      card.camera = camera;
      var controls = new T.OrbitControls(camera, card.canvas);
      controls.enableZoom = false;
      controls.addEventListener("change", function () { draw(card); });
      card.canvas.addEventListener("pointerdown", function () { controls.enableZoom = true; });
      card.canvas.addEventListener("pointerleave", function () { controls.enableZoom = false; });
      card.canvas.addEventListener("dblclick", function () { controls.reset(); });
      draw(card);
    });
    root.dataset.viewerCoverage = cards.map(function (card) { return coverage(card.canvas).toFixed(4); }).join(",");
    return cards.length;
  }

  try {
    root.dataset.viewerStatus = "loaded:" + main();
  } catch (e) {
    root.dataset.viewerStatus = "error:" + (e && e.message || e);
    throw e;
  }
})();
